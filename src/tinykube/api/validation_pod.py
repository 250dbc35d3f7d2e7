"""Pod validation: ``ValidatePodCreate``, ``ValidatePodUpdate`` and ``ValidatePodStatusUpdate`` (v1.32).

Pods are where users meet validation most (``kubectl apply`` of a typo), so paths and messages
follow ``pkg/apis/core/validation/validation.go`` closely.  Feature-gated fields follow the 1.32
defaults: relaxed env var names on, sidecar init containers on, image volumes and user namespaces
off.  Windows-only and cloud-volume rules are reduced to the checks a Linux node can act on.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from tinykube.api.errors import (
    duplicate,
    forbidden_field,
    invalid_value,
    not_found_field,
    not_supported,
    required,
)
from tinykube.api.formats import (
    inclusive_range_error,
    is_config_map_key,
    is_dns1123_subdomain,
    is_http_header_name,
    is_relaxed_env_var_name,
    is_valid_id,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
)
from tinykube.api.validation import (
    Errors,
    Obj,
    SourceCheck,
    counted_only,
    dns_label,
    dns_subdomain,
    each_invalid,
    enum,
    ip_errors,
    is_hugepages,
    lst,
    local_descending_path,
    m,
    n,
    name_is_dns_subdomain,
    objs,
    nonnegative,
    overcommit_allowed,
    path_no_backsteps,
    port_num_or_name,
    qualified_name,
    quantity_or_none,
    required_fields,
    s,
    same,
    shown,
    validate_annotations,
    validate_container_resource_name,
    validate_csi_driver,
    validate_host_path,
    validate_label_selector,
    validate_labels,
    validate_nfs,
    validate_node_selector,
    validate_node_selector_term,
    validate_object_meta,
    validate_object_meta_update,
    validate_pvc_spec,
    validate_resource_quantity_value,
    validate_sources,
)

MAX_INT32 = 2**31 - 1
FILE_MODE_ERROR = "must be a number between 0 and 0777 (octal), both inclusive"
RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
ENV_FIELD_PATHS = ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
                   "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"]
VOLUME_FIELD_PATHS = ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"]
# Every fieldPath ConvertDownwardAPIFieldLabel knows for v1 (env and volumes then narrow it down).
_DOWNWARD_API_LABELS = {"metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid",
                        "spec.nodeName", "spec.restartPolicy", "spec.serviceAccountName", "spec.schedulerName",
                        "status.phase", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"}
RESOURCE_FIELD_PATHS = ["limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu",
                        "requests.ephemeral-storage", "requests.memory"]

# --- volumes ---------------------------------------------------------------------------------


def _file_mode(path: str, mode: Any) -> Errors:
    return [invalid_value(path, mode, FILE_MODE_ERROR)] if mode is not None and not 0 <= mode <= 0o777 else []


def local_non_reserved_path(path: str, value: str) -> Errors:
    errs = local_descending_path(path, value)
    if value.startswith("..") and not value.startswith("../"):
        errs.append(invalid_value(path, value, "must not start with '..'"))
    return errs


def _key_to_path(item: Obj, path: str) -> Errors:
    errs = required_fields(item, path, "key", "path")
    return errs + local_non_reserved_path(f"{path}.path", s(item, "path")) + _file_mode(f"{path}.mode", item.get("mode"))


def _items(source: Obj, path: str) -> Errors:
    errs: Errors = []
    for i, item in enumerate(objs(source, "items")):
        errs += _key_to_path(item, f"{path}.items[{i}]")
    return errs


def _secret_volume(source: Obj, path: str) -> Errors:
    errs = required_fields(source, path, "secretName") + _file_mode(f"{path}.defaultMode", source.get("defaultMode"))
    return errs + _items(source, path)


def _config_map_volume(source: Obj, path: str) -> Errors:
    errs = required_fields(source, path, "name") + _file_mode(f"{path}.defaultMode", source.get("defaultMode"))
    return errs + _items(source, path)


def _object_field_selector(selector: Obj, allowed: list[str], path: str) -> Errors:
    """``validateObjectFieldSelector``: a v1 downward API fieldPath, maybe ``metadata.labels['k']``."""
    if not s(selector, "apiVersion"):
        return [required(f"{path}.apiVersion")]
    field_path = s(selector, "fieldPath")
    if not field_path:
        return [required(f"{path}.fieldPath")]
    base, subscript = _split_subscript(field_path)
    problem = _convert_field_label(s(selector, "apiVersion"), field_path, base, subscript)
    if problem:
        return [invalid_value(f"{path}.fieldPath", field_path, f"error converting fieldPath: {problem}")]
    if subscript is None:
        return [] if base in allowed else [not_supported(f"{path}.fieldPath", base, allowed)]
    if base == "metadata.annotations":
        return qualified_name(path, subscript.lower())
    if base == "metadata.labels":
        return qualified_name(path, subscript)
    return [invalid_value(path, base, "does not support subscript")]


def _split_subscript(field_path: str) -> tuple[str, str | None]:
    if field_path.endswith("']") and "['" in field_path:
        base, _, rest = field_path.partition("['")
        return base, rest[:-2]
    return field_path, None


def _convert_field_label(api_version: str, field_path: str, base: str, subscript: str | None) -> str:
    if api_version != "v1":
        return f"unsupported pod version: {api_version}"
    if subscript is not None and base in ("metadata.annotations", "metadata.labels"):
        return ""
    return "" if field_path in _DOWNWARD_API_LABELS else f"field label not supported: {field_path}"


_DIVISORS = {"cpu": ("1m", "1"), "memory": ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")}
_DIVISOR_MESSAGES = {
    "cpu": "only divisor's values 1m and 1 are supported with the cpu resource",
    "memory": "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource",
    "ephemeral-storage": "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local "
                         "ephemeral storage resource",
}


def _divisor(resource: str, divisor: Any, path: str) -> Errors:
    if divisor is None or quantity_or_none(divisor) in (None, 0):
        return []
    kind = resource.partition(".")[2]
    allowed = _DIVISORS.get(kind, _DIVISORS["memory"])
    message = _DIVISOR_MESSAGES.get(kind)
    return [invalid_value(f"{path}.divisor", resource, message)] if message and shown(divisor) not in allowed else []


def _resource_field_selector(selector: Obj, path: str, volume: bool) -> Errors:
    resource = s(selector, "resource")
    if volume and not s(selector, "containerName"):
        errs = [required(f"{path}.containerName")]
    elif not resource:
        errs = [required(f"{path}.resource")]
    elif resource not in RESOURCE_FIELD_PATHS and not resource.startswith(("requests.hugepages-", "limits.hugepages-")):
        errs = [not_supported(f"{path}.resource", resource, RESOURCE_FIELD_PATHS)]
    else:
        errs = []
    return errs + _divisor(resource, selector.get("divisor"), path)


def _downward_api_file(item: Obj, path: str) -> Errors:
    """One ``items`` entry; upstream reports these at the source's path, not the item's."""
    errs = required_fields(item, path, "path") + local_non_reserved_path(f"{path}.path", s(item, "path"))
    if item.get("fieldRef") is not None:
        errs += _object_field_selector(m(item, "fieldRef"), VOLUME_FIELD_PATHS, f"{path}.fieldRef")
        if item.get("resourceFieldRef") is not None:
            errs.append(invalid_value(path, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
    elif item.get("resourceFieldRef") is not None:
        errs += _resource_field_selector(m(item, "resourceFieldRef"), f"{path}.resourceFieldRef", volume=True)
    else:
        errs.append(required(path, "one of fieldRef and resourceFieldRef is required"))
    return errs + _file_mode(f"{path}.mode", item.get("mode"))


def _downward_api_volume(source: Obj, path: str) -> Errors:
    errs = _file_mode(f"{path}.defaultMode", source.get("defaultMode"))
    for item in objs(source, "items"):
        errs += _downward_api_file(item, path)
    return errs


def _projection(source: Obj, path: str, src_path: str, paths: set[str]) -> tuple[int, Errors]:
    """One projected source: how many kinds it sets, and its errors (with duplicate paths)."""
    count, errs = 0, []
    for kind in ("secret", "configMap"):
        if source.get(kind) is not None:
            count += 1
            sub = m(source, kind)
            errs += required_fields(sub, f"{src_path}.{kind}", "name")
            for i, item in enumerate(objs(sub, "items")):
                errs += _key_to_path(item, f"{src_path}.{kind}.items[{i}]")
                errs += _conflict(path, s(sub, "name"), s(item, "path"), paths)
    if source.get("downwardAPI") is not None:
        count += 1
        for item in objs(m(source, "downwardAPI"), "items"):
            errs += _downward_api_file(item, f"{src_path}.downwardAPI")
            errs += _conflict(path, s(item, "path"), s(item, "path"), paths)
    if source.get("serviceAccountToken") is not None:
        count += 1
        errs += _token_projection(m(source, "serviceAccountToken"), path, f"{src_path}.serviceAccountToken")
    count += source.get("clusterTrustBundle") is not None
    return count, errs


def _conflict(path: str, shown_value: str, item_path: str, paths: set[str]) -> Errors:
    if not item_path:
        return []
    if item_path in paths:
        return [invalid_value(path, shown_value, "conflicting duplicate paths")]
    paths.add(item_path)
    return []


def _token_projection(token: Obj, path: str, token_path: str) -> Errors:
    errs: Errors = []
    seconds = n(token, "expirationSeconds")
    if seconds < 600:
        errs.append(invalid_value(f"{token_path}.expirationSeconds", seconds, "may not specify a duration less than 10 minutes"))
    if seconds > 1 << 32:
        errs.append(invalid_value(f"{token_path}.expirationSeconds", seconds, "may not specify a duration larger than 2^32 seconds"))
    if not s(token, "path"):
        return errs + [required(f"{path}.path")]
    return errs + local_non_reserved_path(f"{path}.path", s(token, "path"))


def _projected_volume(source: Obj, path: str) -> Errors:
    errs = _file_mode(f"{path}.defaultMode", source.get("defaultMode"))
    paths: set[str] = set()
    for i, item in enumerate(objs(source, "sources")):
        src_path = f"{path}.sources[{i}]"
        count, item_errs = _projection(item, path, src_path, paths)
        errs += item_errs
        if count > 1:
            errs.append(forbidden_field(src_path, "may not specify more than 1 volume type per source"))
    return errs


def _empty_dir(source: Obj, path: str) -> Errors:
    limit = quantity_or_none(source.get("sizeLimit")) if source.get("sizeLimit") is not None else None
    if limit is not None and limit < 0:
        return [forbidden_field(f"{path}.sizeLimit", "SizeLimit field must be a valid resource quantity")]
    return []


def _partitioned(key: str) -> SourceCheck:
    def check(source: Obj, path: str) -> Errors:
        errs = required_fields(source, path, key)
        partition = n(source, "partition")
        return errs + ([invalid_value(f"{path}.partition", partition, inclusive_range_error(1, 255))]
                       if not 0 <= partition <= 255 else [])
    return check


def _git_repo(source: Obj, path: str) -> Errors:
    return required_fields(source, path, "repository") + local_descending_path(f"{path}.directory", s(source, "directory"))


def _csi_volume(source: Obj, path: str) -> Errors:
    errs = validate_csi_driver(s(source, "driver"), f"{path}.driver")
    secret = source.get("nodePublishSecretRef")
    if isinstance(secret, dict) and not s(secret, "name"):
        errs.append(required(f"{path}.nodePublishSecretRef.name"))
    elif isinstance(secret, dict):
        errs += each_invalid(f"{path}.name", s(secret, "name"), name_is_dns_subdomain(s(secret, "name"), False))
    return errs


def _ephemeral(source: Obj, path: str) -> Errors:
    template = source.get("volumeClaimTemplate")
    if not isinstance(template, dict):
        return [required(f"{path}.volumeClaimTemplate")]
    meta, tpl_path = m(template, "metadata"), f"{path}.volumeClaimTemplate"
    errs = validate_annotations(m(meta, "annotations"), f"{tpl_path}.metadata.annotations")
    errs += validate_labels(m(meta, "labels"), f"{tpl_path}.metadata.labels")
    errs += [forbidden_field(f"{tpl_path}.metadata.{key}", "cannot be set") for key, value in meta.items()
             if key not in ("labels", "annotations") and value not in (None, "", [], {})]
    return errs + validate_pvc_spec(m(template, "spec"), f"{tpl_path}.spec")


POD_SOURCES: dict[str, SourceCheck] = {
    "emptyDir": _empty_dir,
    "hostPath": validate_host_path,
    "gitRepo": _git_repo,
    "gcePersistentDisk": _partitioned("pdName"),
    "awsElasticBlockStore": _partitioned("volumeID"),
    "secret": _secret_volume,
    "nfs": validate_nfs,
    "iscsi": lambda src, p: required_fields(src, p, "targetPortal", "iqn"),
    "glusterfs": lambda src, p: required_fields(src, p, "endpoints", "path"),
    "flocker": counted_only,
    "persistentVolumeClaim": lambda src, p: required_fields(src, p, "claimName"),
    "rbd": lambda src, p: required_fields(src, p, "monitors", "image"),
    "cinder": lambda src, p: required_fields(src, p, "volumeID"),
    "cephfs": lambda src, p: required_fields(src, p, "monitors"),
    "quobyte": lambda src, p: required_fields(src, p, "registry", "volume"),
    "downwardAPI": _downward_api_volume,
    "fc": counted_only,
    "flexVolume": lambda src, p: required_fields(src, p, "driver"),
    "configMap": _config_map_volume,
    "azureFile": lambda src, p: required_fields(src, p, "secretName", "shareName"),
    "vsphereVolume": lambda src, p: required_fields(src, p, "volumePath"),
    "photonPersistentDisk": lambda src, p: required_fields(src, p, "pdID"),
    "portworxVolume": lambda src, p: required_fields(src, p, "volumeID"),
    "azureDisk": lambda src, p: required_fields(src, p, "diskName", "diskURI"),
    "storageos": lambda src, p: required_fields(src, p, "volumeName"),
    "projected": _projected_volume,
    "scaleIO": lambda src, p: required_fields(src, p, "gateway", "system", "volumeName"),
    "csi": _csi_volume,
    "ephemeral": _ephemeral,
}


def _ephemeral_pvc_name(volume: Obj, pod_name: str, path: str) -> Errors:
    if volume.get("ephemeral") is None or not pod_name or not s(volume, "name"):
        return []
    claim = f"{pod_name}-{s(volume, 'name')}"
    return [invalid_value(f"{path}.name", s(volume, "name"), f'PVC name "{claim}": {msg}') for msg in is_dns1123_subdomain(claim)]


def validate_volumes(volumes: list[Obj], pod_name: str) -> tuple[dict[str, Obj], Errors]:
    """``ValidateVolumes``: the valid volumes by name (for mounts to refer to) and the errors."""
    valid: dict[str, Obj] = {}
    errs: Errors = []
    created = {f"{pod_name}-{s(v, 'name')}" for v in volumes if pod_name and v.get("ephemeral")}
    for i, volume in enumerate(volumes):
        path, name = f"spec.volumes[{i}]", s(volume, "name")
        item_errs = validate_sources(volume, path, POD_SOURCES) + _ephemeral_pvc_name(volume, pod_name, path)
        item_errs += dns_label(f"{path}.name", name) if name else [required(f"{path}.name")]
        item_errs += [duplicate(f"{path}.name", name)] if name in valid else []
        if item_errs:
            errs += item_errs
        else:
            valid[name] = volume
        claim = s(m(volume, "persistentVolumeClaim"), "claimName")
        if claim and claim in created:
            errs.append(invalid_value(f"{path}.persistentVolumeClaim.claimName", claim,
                                      "must not reference a PVC that gets created for an ephemeral volume"))
    return valid, errs


# --- containers ------------------------------------------------------------------------------


def _container_ports(ports: list[Any], path: str) -> Errors:
    errs: Errors = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        item, name = f"{path}[{i}]", s(port, "name")
        if name and is_valid_port_name(name):
            errs += each_invalid(f"{item}.name", name, is_valid_port_name(name))
        elif name in names:
            errs.append(duplicate(f"{item}.name", name))
        elif name:
            names.add(name)
        container_port, host_port = n(port, "containerPort"), n(port, "hostPort")
        errs += [required(f"{item}.containerPort")] if not container_port else \
            each_invalid(f"{item}.containerPort", container_port, is_valid_port_num(container_port))
        errs += each_invalid(f"{item}.hostPort", host_port, is_valid_port_num(host_port)) if host_port else []
        errs += enum(f"{item}.protocol", port.get("protocol"), PROTOCOLS)
    return errs


def _key_selector(selector: Obj, path: str) -> Errors:
    errs = each_invalid(f"{path}.name", s(selector, "name"), name_is_dns_subdomain(s(selector, "name"), False))
    key = s(selector, "key")
    return errs + ([required(f"{path}.key")] if not key else each_invalid(f"{path}.key", key, is_config_map_key(key)))


def _env_value_from(var: Obj, path: str) -> Errors:
    source = var.get("valueFrom")
    if not isinstance(source, dict):
        return []
    errs: Errors = []
    checks = {"fieldRef": lambda sel, p: _object_field_selector(sel, ENV_FIELD_PATHS, p),
              "resourceFieldRef": lambda sel, p: _resource_field_selector(sel, p, volume=False),
              "configMapKeyRef": _key_selector, "secretKeyRef": _key_selector}
    present = [key for key in checks if source.get(key) is not None]
    for key in present:
        errs += checks[key](m(source, key), f"{path}.{key}")
    if not present:
        errs.append(invalid_value(path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
    elif s(var, "value"):
        errs.append(invalid_value(path, "", "may not be specified when `value` is not empty"))
    elif len(present) > 1:
        errs.append(invalid_value(path, "", "may not have more than one field specified at a time"))
    return errs


def _env(env: list[Any], path: str) -> Errors:
    errs: Errors = []
    for i, var in enumerate(env):
        item, name = f"{path}[{i}]", s(var, "name")
        errs += [required(f"{item}.name")] if not name else each_invalid(f"{item}.name", name, is_relaxed_env_var_name(name))
        errs += _env_value_from(var, f"{item}.valueFrom")
    return errs


def _env_from(sources: list[Any], path: str) -> Errors:
    errs: Errors = []
    for i, source in enumerate(sources):
        item, prefix = f"{path}[{i}]", s(source, "prefix")
        errs += each_invalid(f"{item}.prefix", prefix, is_relaxed_env_var_name(prefix)) if prefix else []
        present = [key for key in ("configMapRef", "secretRef") if source.get(key) is not None]
        for key in present:
            name = s(m(source, key), "name")
            errs += [required(f"{item}.{key}.name")] if not name else \
                each_invalid(f"{item}.{key}.name", name, name_is_dns_subdomain(name, True))
        if len(present) != 1:
            detail = "must specify one of: `configMapRef` or `secretRef`" if not present else \
                "may not have more than one field specified at a time"
            errs.append(invalid_value(path, "", detail))
    return errs


_PROPAGATIONS = ["Bidirectional", "HostToContainer", "None"]


def _mount_options(mount: Obj, container: Obj, path: str) -> Errors:
    """mountPropagation and recursiveReadOnly; Bidirectional needs a privileged container."""
    errs: Errors = []
    propagation = mount.get("mountPropagation")
    if propagation is not None:
        if propagation not in _PROPAGATIONS:
            errs.append(not_supported(f"{path}.mountPropagation", propagation, _PROPAGATIONS))
        if propagation == "Bidirectional" and m(container, "securityContext").get("privileged") is not True:
            errs.append(forbidden_field(f"{path}.mountPropagation",
                                        "Bidirectional mount propagation is available only to privileged containers"))
    rro = mount.get("recursiveReadOnly")
    if rro in ("Enabled", "IfPossible"):
        if mount.get("readOnly") is not True:
            errs.append(forbidden_field(f"{path}.recursiveReadOnly", "may only be specified when readOnly is true"))
        if propagation not in (None, "None"):
            errs.append(forbidden_field(f"{path}.recursiveReadOnly",
                                        "may only be specified when mountPropagation is None or not specified"))
    elif rro is not None and rro != "Disabled":
        errs.append(not_supported(f"{path}.recursiveReadOnly", rro, ["Disabled", "Enabled", "IfPossible"]))
    return errs


def _volume_mounts(container: Obj, volumes: dict[str, Obj], path: str) -> Errors:
    errs: Errors = []
    mount_paths: set[str] = set()
    devices = {s(d, "name"): s(d, "devicePath") for d in objs(container, "volumeDevices")}
    for i, mount in enumerate(objs(container, "volumeMounts")):
        item, name, mount_path = f"{path}[{i}]", s(mount, "name"), s(mount, "mountPath")
        errs += [required(f"{item}.name")] if not name else []
        errs += [not_found_field(f"{item}.name", name)] if name not in volumes else []
        errs += [required(f"{item}.mountPath")] if not mount_path else []
        errs += [invalid_value(f"{item}.mountPath", mount_path, "must be unique")] if mount_path in mount_paths else []
        mount_paths.add(mount_path)
        if name in devices:
            errs.append(invalid_value(f"{item}.name", name, "must not already exist in volumeDevices"))
        if mount_path in devices.values():
            errs.append(invalid_value(f"{item}.mountPath", mount_path, "must not already exist as a path in volumeDevices"))
        errs += _sub_paths(mount, path, item)
        errs += _mount_options(mount, container, path)
    return errs


def _sub_paths(mount: Obj, path: str, item: str) -> Errors:
    sub_path, expr = s(mount, "subPath"), s(mount, "subPathExpr")
    errs = local_descending_path(f"{path}.subPath", sub_path) if sub_path else []
    if expr and sub_path:
        errs.append(invalid_value(f"{item}.subPathExpr", expr, "subPathExpr and subPath are mutually exclusive"))
    return errs + (local_descending_path(f"{path}.subPathExpr", expr) if expr else [])


def _volume_devices(container: Obj, volumes: dict[str, Obj], path: str) -> Errors:
    errs: Errors = []
    mounts = {s(mt, "name"): s(mt, "mountPath") for mt in objs(container, "volumeMounts")}
    names, paths = set(), set()
    for i, device in enumerate(objs(container, "volumeDevices")):
        item, name, device_path = f"{path}[{i}]", s(device, "name"), s(device, "devicePath")
        volume = volumes.get(name)
        errs += [required(f"{item}.name")] if not name else []
        errs += [invalid_value(f"{item}.name", name, "must be unique")] if name in names else []
        if volume is not None and volume.get("persistentVolumeClaim") is None and volume.get("ephemeral") is None:
            errs.append(invalid_value(f"{item}.name", name,
                                      "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode"))
        errs += [not_found_field(f"{item}.name", name)] if volume is None else []
        errs += [required(f"{item}.devicePath")] if not device_path else []
        errs += [invalid_value(f"{item}.devicePath", device_path, "must be unique")] if device_path in paths else []
        if device_path and path_no_backsteps(path, device_path):
            errs.append(invalid_value(f"{item}.devicePath", device_path, "can not contain backsteps ('..')"))
        else:
            paths.add(device_path)
        errs += [invalid_value(f"{item}.name", name, "must not already exist in volumeMounts")] if name in mounts else []
        if device_path in mounts.values():
            errs.append(invalid_value(f"{item}.devicePath", device_path, "must not already exist as a path in volumeMounts"))
        if name:
            names.add(name)
    return errs


def _request_vs_limit(name: str, value: Any, limits: Obj, path: str) -> Errors:
    """A request is at most its limit; non-overcommittable resources need an equal limit."""
    if name not in limits:
        return [] if overcommit_allowed(name) else [required(f"{path}.limits", "Limit must be set for non overcommitable resources")]
    request, limit = quantity_or_none(value), quantity_or_none(limits[name])
    if request is None or limit is None:
        return []
    if request != limit and not overcommit_allowed(name):
        return [invalid_value(f"{path}.requests", shown(value), f"must be equal to {name} limit of {shown(limits[name])}")]
    if request > limit:
        return [invalid_value(f"{path}.requests", shown(value), f"must be less than or equal to {name} limit of {shown(limits[name])}")]
    return []


def _hugepage_errors(name: str, value: Any, path: str) -> Errors:
    page = quantity_or_none(name.removeprefix("hugepages-"))
    amount = quantity_or_none(value)
    if page is None or amount is None or (page > 0 and amount % page == 0 and amount > 0):
        return []
    return [invalid_value(path, shown(value), f"{shown(value)} is not positive integer multiple of {name}")]


def validate_resource_requirements(requirements: Obj, path: str) -> Errors:
    """``ValidateContainerResourceRequirements``: names, quantities, requests <= limits, hugepages."""
    errs: Errors = []
    names: set[str] = set()
    limits = m(requirements, "limits")
    for kind in ("limits", "requests"):
        for name, value in m(requirements, kind).items():
            item = f"{path}.{kind}[{name}]"
            errs += validate_container_resource_name(name, item) + validate_resource_quantity_value(name, value, item)
            errs += _request_vs_limit(name, value, limits, path) if kind == "requests" else []
            errs += _hugepage_errors(name, value, item) if is_hugepages(name) else []
            names.add(name)
    if any(is_hugepages(x) for x in names) and not names & {"cpu", "memory"}:
        errs.append(forbidden_field(path, "HugePages require cpu or memory"))
    return errs


def _resize_policy(policies: list[Any], path: str, restart_policy: str) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, policy in enumerate(policies):
        name, restart = s(policy, "resourceName"), s(policy, "restartPolicy")
        errs += [duplicate(f"{path}[{i}]", name)] if name in seen else []
        seen.add(name)
        errs += enum(path, name, ["cpu", "memory"]) + enum(path, restart, ["NotRequired", "RestartContainer"])
        if restart_policy == "Never" and restart != "NotRequired":
            errs.append(invalid_value(path, restart, "must be 'NotRequired' when `restartPolicy` is 'Never'"))
    return errs


def _seccomp_profile(profile: Any, path: str) -> Errors:
    if not isinstance(profile, dict):
        return []
    kind = s(profile, "type")
    errs = [required(f"{path}.type", "type is required when seccompProfile is set")] if not kind else \
        enum(f"{path}.type", kind, ["Localhost", "RuntimeDefault", "Unconfined"])
    localhost = profile.get("localhostProfile")
    if kind == "Localhost" and localhost is None:
        errs.append(required(f"{path}.localhostProfile", "must be set when seccomp type is Localhost"))
    elif kind == "Localhost":
        errs += local_descending_path(f"{path}.localhostProfile", localhost)
    elif localhost is not None:
        errs.append(invalid_value(f"{path}.localhostProfile", profile, "can only be set when seccomp type is Localhost"))
    return errs


def _app_armor_profile(profile: Any, path: str) -> Errors:
    if not isinstance(profile, dict):
        return []
    kind, localhost = s(profile, "type"), profile.get("localhostProfile")
    if not kind:
        return [required(f"{path}.type", "type is required when appArmorProfile is set")]
    if kind not in ("Localhost", "RuntimeDefault", "Unconfined"):
        return [not_supported(f"{path}.type", kind, ["Localhost", "RuntimeDefault", "Unconfined"])]
    if kind != "Localhost":
        return [invalid_value(f"{path}.localhostProfile", localhost,
                              "can only be set when AppArmor type is Localhost")] if localhost is not None else []
    if not isinstance(localhost, str) or not localhost.strip():
        return [required(f"{path}.localhostProfile", "must be set when AppArmor type is Localhost")]
    if localhost != localhost.strip():
        return [invalid_value(f"{path}.localhostProfile", localhost, "must not be padded with whitespace")]
    return []


def _security_context(context: Any, path: str) -> Errors:
    """``ValidateSecurityContext`` for a container (privileged containers are allowed)."""
    if not isinstance(context, dict):
        return []
    errs: Errors = []
    for key in ("runAsUser", "runAsGroup"):
        if context.get(key) is not None:
            errs += each_invalid(f"{path}.{key}", context[key], is_valid_id(context[key]))
    proc_mount = context.get("procMount")
    if proc_mount is not None:
        errs += enum(f"{path}.procMount", proc_mount, ["Default", "Unmasked"])
        if proc_mount == "Unmasked":
            errs.append(invalid_value(f"{path}.procMount", proc_mount, "`hostUsers` must be false to use `Unmasked`"))
    errs += _seccomp_profile(context.get("seccompProfile"), f"{path}.seccompProfile")
    if context.get("allowPrivilegeEscalation") is False:
        if context.get("privileged") is True:
            errs.append(invalid_value(path, context, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
        if "CAP_SYS_ADMIN" in lst(m(context, "capabilities"), "add"):
            errs.append(invalid_value(path, context,
                                      "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"))
    return errs + _app_armor_profile(context.get("appArmorProfile"), f"{path}.appArmorProfile")


def _container_common(container: Obj, volumes: dict[str, Obj], path: str, restart_policy: str) -> Errors:
    """``validateContainerCommon``: what every container kind must satisfy."""
    name = s(container, "name")
    errs = [required(f"{path}.name")] if not name else dns_label(f"{path}.name", name)
    errs += [required(f"{path}.image")] if not s(container, "image") else []
    errs += enum(f"{path}.terminationMessagePolicy", container.get("terminationMessagePolicy"),
                 ["File", "FallbackToLogsOnError"])
    errs += _container_ports(objs(container, "ports"), f"{path}.ports")
    errs += _env(objs(container, "env"), f"{path}.env") + _env_from(objs(container, "envFrom"), f"{path}.envFrom")
    errs += _volume_mounts(container, volumes, f"{path}.volumeMounts")
    errs += _volume_devices(container, volumes, f"{path}.volumeDevices")
    errs += enum(f"{path}.imagePullPolicy", container.get("imagePullPolicy"), PULL_POLICIES)
    errs += validate_resource_requirements(m(container, "resources"), f"{path}.resources")
    errs += _resize_policy(objs(container, "resizePolicy"), f"{path}.resizePolicy", restart_policy)
    return errs + _security_context(container.get("securityContext"), f"{path}.securityContext")


# --- probes and lifecycle handlers --------------------------------------------------------------


def _http_get(action: Obj, path: str) -> Errors:
    errs = required_fields(action, path, "path") + port_num_or_name(f"{path}.port", action.get("port"))
    errs += [] if action.get("scheme") in ("HTTP", "HTTPS") else [not_supported(f"{path}.scheme", action.get("scheme") or "",
                                                                                ["HTTP", "HTTPS"])]
    for header in objs(action, "httpHeaders"):
        errs += each_invalid(f"{path}.httpHeaders", s(header, "name"), is_http_header_name(s(header, "name")))
    return errs


def _sleep(action: Obj, path: str, grace: Any) -> Errors:
    seconds = n(action, "seconds")
    if grace is None or 0 < seconds <= grace:
        return []
    return [invalid_value(path, seconds, f"must be greater than 0 and less than terminationGracePeriodSeconds ({grace}). "
                                         "Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep.")]


def _handler(handler: Obj, path: str, grace: Any, kinds: tuple[str, ...]) -> Errors:
    """Exactly one handler of ``kinds`` (probes: exec/httpGet/tcpSocket/grpc; hooks: sleep not grpc)."""
    checks = {"exec": lambda a, p: required_fields(a, p, "command"),
              "httpGet": _http_get,
              "tcpSocket": lambda a, p: port_num_or_name(f"{p}.port", a.get("port")),
              "grpc": lambda a, p: port_num_or_name(f"{p}.port", n(a, "port")),
              "sleep": lambda a, p: _sleep(a, p, grace)}
    errs: Errors = []
    count = 0
    for kind in kinds:
        if handler.get(kind) is None:
            continue
        if count:
            errs.append(forbidden_field(f"{path}.{kind}", "may not specify more than 1 handler type"))
            continue
        count += 1
        errs += checks[kind](m(handler, kind), f"{path}.{kind}")
    return errs + ([] if count else [required(path, "must specify a handler type")])


_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_HOOK_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")


def _probe(probe: Any, path: str, grace: Any, kind: str) -> Errors:
    if not isinstance(probe, dict):
        return []
    errs = _handler(probe, path, grace, _PROBE_HANDLERS)
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += nonnegative(f"{path}.{key}", n(probe, key))
    probe_grace = probe.get("terminationGracePeriodSeconds")
    if probe_grace is not None and probe_grace <= 0:
        errs.append(invalid_value(f"{path}.terminationGracePeriodSeconds", probe_grace, "must be greater than 0"))
    if kind in ("livenessProbe", "startupProbe") and n(probe, "successThreshold") != 1:
        errs.append(invalid_value(f"{path}.successThreshold", n(probe, "successThreshold"), "must be 1"))
    if kind == "readinessProbe" and probe_grace is not None:
        errs.append(invalid_value(f"{path}.terminationGracePeriodSeconds", probe_grace, "must not be set for readinessProbes"))
    return errs


def _probes_and_lifecycle(container: Obj, path: str, grace: Any) -> Errors:
    errs: Errors = []
    lifecycle = container.get("lifecycle")
    for hook in ("postStart", "preStop"):
        if isinstance(lifecycle, dict) and isinstance(lifecycle.get(hook), dict):
            errs += _handler(lifecycle[hook], f"{path}.lifecycle.{hook}", grace, _HOOK_HANDLERS)
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        errs += _probe(container.get(kind), f"{path}.{kind}", grace, kind)
    return errs


def _host_port_conflicts(containers: list[Obj], path: str) -> Errors:
    seen: set[str] = set()
    errs: Errors = []
    for i, container in enumerate(containers):
        for j, port in enumerate(objs(container, "ports")):
            if not n(port, "hostPort"):
                continue
            key = f"{s(port, 'protocol')}/{s(port, 'hostIP')}/{n(port, 'hostPort')}"
            errs += [duplicate(f"{path}[{i}].ports[{j}].hostPort", key)] if key in seen else []
            seen.add(key)
    return errs


def _containers(spec: Obj, volumes: dict[str, Obj]) -> Errors:
    containers = objs(spec, "containers")
    if not containers:
        return [required("spec.containers")]
    grace, restart = spec.get("terminationGracePeriodSeconds"), s(spec, "restartPolicy")
    errs: Errors = []
    names: set[str] = set()
    for i, container in enumerate(containers):
        path, name = f"spec.containers[{i}]", s(container, "name")
        errs += _container_common(container, volumes, path, restart)
        errs += [duplicate(f"{path}.name", name)] if name in names else []
        names.add(name)
        errs += _probes_and_lifecycle(container, path, grace)
        if container.get("restartPolicy") is not None:
            errs.append(forbidden_field(f"{path}.restartPolicy", "may not be set for non-init containers"))
    return errs + _host_port_conflicts(containers, "spec.containers")


_NOT_FOR_INIT = ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe")


def _init_containers(spec: Obj, volumes: dict[str, Obj]) -> Errors:
    grace, restart = spec.get("terminationGracePeriodSeconds"), s(spec, "restartPolicy")
    names = {s(c, "name") for c in objs(spec, "containers")}
    errs: Errors = []
    for i, container in enumerate(objs(spec, "initContainers")):
        path, name = f"spec.initContainers[{i}]", s(container, "name")
        errs += _container_common(container, volumes, path, restart)
        policy = container.get("restartPolicy")
        errs += enum(f"{path}.restartPolicy", policy, ["Always"]) if policy is not None else []
        errs += [duplicate(f"{path}.name", name)] if name in names else []
        if name:
            names.add(name)
        errs += _host_port_conflicts([container], "spec.initContainers")
        if policy == "Always":
            errs += _probes_and_lifecycle(container, path, grace)
        else:
            errs += [forbidden_field(f"{path}.{key}", "may not be set for init containers without restartPolicy=Always")
                     for key in _NOT_FOR_INIT if container.get(key) is not None]
        if objs(container, "resizePolicy"):
            errs.append(invalid_value(f"{path}.resizePolicy", objs(container, "resizePolicy"), "must not be set for init containers"))
    return errs


# --- pod-level fields ----------------------------------------------------------------------------

TOLERATION_OPERATORS = ["Equal", "Exists"]


def validate_tolerations(tolerations: list[Any], path: str) -> Errors:
    errs: Errors = []
    for i, toleration in enumerate(tolerations):
        item, key, op, effect = f"{path}[{i}]", s(toleration, "key"), s(toleration, "operator"), s(toleration, "effect")
        errs += qualified_name(f"{item}.key", key) if key else []
        if not key and op != "Exists":
            errs.append(invalid_value(f"{item}.operator", op, "operator must be Exists when `key` is empty, which means "
                                                              "\"match all values and all keys\""))
        if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(invalid_value(f"{item}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        errs += _toleration_operator(toleration, op, item)
        errs += enum(f"{item}.effect", effect, ["NoSchedule", "PreferNoSchedule", "NoExecute"]) if effect else []
    return errs


def _toleration_operator(toleration: Obj, op: str, item: str) -> Errors:
    value = s(toleration, "value")
    if op in ("Equal", ""):
        problems = is_valid_label_value(value)
        return [invalid_value(f"{item}.operator", value, ";".join(problems))] if problems else []
    if op == "Exists":
        return [invalid_value(f"{item}.operator", value, "value must be empty when `operator` is 'Exists'")] if value else []
    return [not_supported(f"{item}.operator", op, TOLERATION_OPERATORS)]


def _pod_security_context(context: Any, path: str) -> Errors:
    if not isinstance(context, dict):
        return []
    errs: Errors = []
    for key in ("fsGroup", "runAsUser", "runAsGroup"):
        if context.get(key) is not None:
            errs += each_invalid(f"{path}.{key}", context[key], is_valid_id(context[key]))
    for i, gid in enumerate(lst(context, "supplementalGroups")):
        errs += each_invalid(f"{path}.supplementalGroups[{i}]", gid, is_valid_id(gid))
    errs += _sysctls(objs(context, "sysctls"), f"{path}.sysctls")
    policy = context.get("fsGroupChangePolicy")
    if policy is not None and policy not in ("Always", "OnRootMismatch"):
        errs.append(not_supported(f"{path}.fsGroupChangePolicy", policy, ["Always", "OnRootMismatch"]))
    errs += _seccomp_profile(context.get("seccompProfile"), f"{path}.seccompProfile")
    return errs + _app_armor_profile(context.get("appArmorProfile"), f"{path}.appArmorProfile")


_SYSCTL_FMT = r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?"


def _sysctls(sysctls: list[Any], path: str) -> Errors:
    errs: Errors = []
    names: set[str] = set()
    for i, sysctl in enumerate(sysctls):
        name = s(sysctl, "name")
        if not name:
            errs.append(required(f"{path}[{i}].name"))
        elif len(name) > 253 or not re.fullmatch(_SYSCTL_FMT, name):
            errs.append(invalid_value(f"{path}[{i}].name", name, f"must have at most 253 characters and match regex ^{_SYSCTL_FMT}$"))
        elif name in names:
            errs.append(duplicate(f"{path}[{i}].name", name))
        names.add(name)
    return errs


def _preferred_terms(terms: list[Any], path: str, term_key: str) -> Errors:
    errs: Errors = []
    for i, term in enumerate(terms):
        weight = n(term, "weight")
        if not 0 < weight <= 100:
            errs.append(invalid_value(f"{path}[{i}].weight", weight, "must be in the range 1-100"))
        if term_key == "preference":
            errs += validate_node_selector_term(m(term, term_key), f"{path}[{i}].preference")
        else:
            errs += _pod_affinity_term(m(term, term_key), f"{path}[{i}].podAffinityTerm")
    return errs


def _pod_affinity_term(term: Obj, path: str) -> Errors:
    errs = validate_label_selector(term.get("labelSelector"), f"{path}.labelSelector")
    errs += validate_label_selector(term.get("namespaceSelector"), f"{path}.namespaceSelector")
    for namespace in lst(term, "namespaces"):
        errs += dns_label(f"{path}.namespace", namespace)
    if not s(term, "topologyKey"):
        errs.append(required(f"{path}.topologyKey", "can not be empty"))
    return errs + qualified_name(f"{path}.topologyKey", s(term, "topologyKey"))


def _affinity(affinity: Any) -> Errors:
    if not isinstance(affinity, dict):
        return []
    errs: Errors = []
    node = m(affinity, "nodeAffinity")
    required_terms = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if isinstance(required_terms, dict):
        errs += validate_node_selector(required_terms, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution")
    errs += _preferred_terms(objs(node, "preferredDuringSchedulingIgnoredDuringExecution"),
                             "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution", "preference")
    for kind in ("podAffinity", "podAntiAffinity"):
        pod = m(affinity, kind)
        for i, term in enumerate(objs(pod, "requiredDuringSchedulingIgnoredDuringExecution")):
            errs += _pod_affinity_term(term, f"spec.affinity.{kind}.requiredDuringSchedulingIgnoredDuringExecution[{i}]")
        errs += _preferred_terms(objs(pod, "preferredDuringSchedulingIgnoredDuringExecution"),
                                 f"spec.affinity.{kind}.preferredDuringSchedulingIgnoredDuringExecution", "podAffinityTerm")
    return errs


def _dns_config(spec: Obj) -> Errors:
    config, path = spec.get("dnsConfig"), "spec.dnsConfig"
    if s(spec, "dnsPolicy") == "None" and not isinstance(config, dict):
        return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
    if not isinstance(config, dict):
        return []
    servers, searches = lst(config, "nameservers"), lst(config, "searches")
    if s(spec, "dnsPolicy") == "None" and not servers:
        return [required(f"{path}.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` is None")]
    errs = [invalid_value(f"{path}.nameservers", servers, "must not have more than 3 nameservers")] if len(servers) > 3 else []
    for i, server in enumerate(servers):
        errs += ip_errors(f"{path}.nameservers[{i}]", server)
    if len(searches) > 32:
        errs.append(invalid_value(f"{path}.searches", searches, "must not have more than 32 search paths"))
    if len(" ".join(searches)) > 2048:
        errs.append(invalid_value(f"{path}.searches", searches,
                                  "must not have more than 2048 characters (including spaces) in the search list"))
    for i, search in enumerate(searches):
        errs += dns_subdomain(f"{path}.searches[{i}]", search.removesuffix("."))
    return errs + [required(f"{path}.options[{i}]", "must not be empty")
                   for i, option in enumerate(objs(config, "options")) if not s(option, "name")]


def _topology_spread(constraints: list[Any]) -> Errors:
    errs: Errors = []
    for i, constraint in enumerate(constraints):
        path = f"spec.topologySpreadConstraints[{i}]"
        skew, key, action = n(constraint, "maxSkew"), s(constraint, "topologyKey"), s(constraint, "whenUnsatisfiable")
        errs += [invalid_value(f"{path}.maxSkew", skew, "must be greater than zero")] if skew <= 0 else []
        errs += [required(f"{path}.topologyKey", "can not be empty")] if not key else []
        errs += [] if action in ("DoNotSchedule", "ScheduleAnyway") else [
            not_supported(f"{path}.whenUnsatisfiable", action, ["DoNotSchedule", "ScheduleAnyway"])]
        if any(s(other, "topologyKey") == key and s(other, "whenUnsatisfiable") == action for other in constraints[i + 1:]):
            errs.append(duplicate(f"{path}.{{topologyKey, whenUnsatisfiable}}", f"{{{key}, {action}}}"))
        errs += _min_domains(constraint.get("minDomains"), action, f"{path}.minDomains")
        for policy in ("nodeAffinityPolicy", "nodeTaintsPolicy"):
            value = constraint.get(policy)
            errs += [not_supported(f"{path}.{policy}", value, ["Honor", "Ignore"])] if value not in (None, "Honor", "Ignore") else []
        errs += validate_label_selector(constraint.get("labelSelector"), f"{path}.labelSelector")
    return errs


def _min_domains(value: Any, action: str, path: str) -> Errors:
    if value is None:
        return []
    errs = [invalid_value(path, value, "must be greater than zero")] if value <= 0 else []
    if action != "DoNotSchedule":
        errs.append(invalid_value(path, value, f"can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"))
    return errs


def _host_network_ports(spec: Obj) -> Errors:
    if spec.get("hostNetwork") is not True:
        return []
    return [invalid_value(f"spec.containers[{i}].ports[{j}].hostPort", n(port, "hostPort"),
                          "must match `containerPort` when `hostNetwork` is true")
            for i, container in enumerate(objs(spec, "containers")) for j, port in enumerate(objs(container, "ports"))
            if n(port, "hostPort") != n(port, "containerPort")]


def _name_field(spec: Obj, key: str) -> Errors:
    value = s(spec, key)
    return each_invalid(f"spec.{key}", value, name_is_dns_subdomain(value, False)) if value else []


def _scheduling_gates(gates: list[Any]) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, gate in enumerate(gates):
        name = s(gate, "name")
        errs += qualified_name(f"spec.schedulingGates[{i}]", name)
        errs += [duplicate(f"spec.schedulingGates[{i}]", name)] if name in seen else []
        seen.add(name)
    return errs


def _misc_spec_fields(spec: Obj) -> Errors:
    """The scalar and list fields ``ValidatePodSpec`` checks after the security context."""
    errs = _affinity(spec.get("affinity")) + _dns_config(spec)
    for i, gate in enumerate(objs(spec, "readinessGates")):
        errs += qualified_name(f"spec.readinessGates[{i}].conditionType", s(gate, "conditionType"))
    errs += _scheduling_gates(objs(spec, "schedulingGates")) + _topology_spread(objs(spec, "topologySpreadConstraints"))
    errs += _name_field(spec, "serviceAccountName") + _name_field(spec, "nodeName")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= MAX_INT32:
        errs.append(invalid_value("spec.activeDeadlineSeconds", deadline, inclusive_range_error(1, MAX_INT32)))
    for key in ("hostname", "subdomain"):
        errs += dns_label(f"spec.{key}", s(spec, key)) if s(spec, key) else []
    errs += validate_tolerations(objs(spec, "tolerations"), "spec.tolerations")
    for i, alias in enumerate(objs(spec, "hostAliases")):
        errs += ip_errors(f"spec.hostAliases[{i}].ip", s(alias, "ip"))
        for j, hostname in enumerate(lst(alias, "hostnames")):
            errs += dns_subdomain(f"spec.hostAliases[{i}].hostnames[{j}]", hostname)
    errs += _name_field(spec, "priorityClassName")
    if spec.get("runtimeClassName") is not None:
        errs += each_invalid("spec.runtimeClassName", s(spec, "runtimeClassName"),
                             name_is_dns_subdomain(s(spec, "runtimeClassName"), False))
    if spec.get("preemptionPolicy") is not None:
        errs += enum("spec.preemptionPolicy", spec.get("preemptionPolicy"), ["PreemptLowerPriority", "Never"])
    for name, value in m(spec, "overhead").items():
        errs += validate_container_resource_name(name, f"spec.overhead.limits[{name}]")
        errs += validate_resource_quantity_value(name, value, f"spec.overhead.limits[{name}]")
    return errs + _os(spec)


def _os(spec: Obj) -> Errors:
    os = spec.get("os")
    if not isinstance(os, dict):
        return []
    if not s(os, "name"):
        return [required("spec.os.name", "cannot be empty")]
    if s(os, "name") not in ("linux", "windows"):
        return [not_supported("spec.os", s(os, "name"), ["linux", "windows"])]
    if s(os, "name") != "linux":
        return []
    errs = [forbidden_field("spec.securityContext.windowsOptions", "windows options cannot be set for a linux pod")] \
        if m(spec, "securityContext").get("windowsOptions") is not None else []
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        errs += [forbidden_field(f"spec.{kind}[{i}].securityContext.windowsOptions", "windows options cannot be set for a linux pod")
                 for i, c in enumerate(objs(spec, kind)) if m(c, "securityContext").get("windowsOptions") is not None]
    return errs


def validate_pod_spec(spec: Obj, pod_name: str) -> Errors:
    """``ValidatePodSpec`` for a Pod (``ResourceIsPod``), in upstream's order."""
    errs = [required("spec.terminationGracePeriodSeconds")] if spec.get("terminationGracePeriodSeconds") is None else []
    volumes, volume_errs = validate_volumes(objs(spec, "volumes"), pod_name)
    errs += volume_errs + _containers(spec, volumes) + _init_containers(spec, volumes)
    errs += _host_network_ports(spec)
    errs += enum("spec.restartPolicy", spec.get("restartPolicy"), RESTART_POLICIES)
    errs += enum("spec.dnsPolicy", spec.get("dnsPolicy"), DNS_POLICIES)
    errs += validate_labels(m(spec, "nodeSelector"), "spec.nodeSelector")
    errs += _pod_security_context(spec.get("securityContext"), "spec.securityContext")
    return errs + _misc_spec_fields(spec)


# --- Pod ------------------------------------------------------------------------------------------

_SECCOMP_PROFILES = ("runtime/default", "docker/default", "unconfined")


def _pod_annotations(meta: Obj, spec: Obj) -> Errors:
    """``ValidatePodSpecificAnnotations``: mirror pods, deletion cost, legacy seccomp and AppArmor."""
    annotations, path = m(meta, "annotations"), "metadata.annotations"
    errs: Errors = []
    mirror = annotations.get("kubernetes.io/config.mirror")
    if mirror is not None and not s(spec, "nodeName"):
        errs.append(invalid_value(f"{path}[kubernetes.io/config.mirror]", mirror, "must set spec.nodeName if mirror pod annotation is set"))
    cost = annotations.get("controller.kubernetes.io/pod-deletion-cost")
    if cost is not None and not _is_int32(cost):
        errs.append(invalid_value(f"{path}[controller.kubernetes.io/pod-deletion-cost]", cost, "must be a 32bit integer"))
    for key, value in annotations.items():
        if key == "seccomp.security.alpha.kubernetes.io/pod" or key.startswith("container.seccomp.security.alpha.kubernetes.io/"):
            errs += _seccomp_annotation(value or "", f"{path}.{key}")
        if key.startswith("container.apparmor.security.beta.kubernetes.io/"):
            errs += _app_armor_annotation(key, value or "", spec)
    return errs


def _is_int32(text: str) -> bool:
    try:
        return -(2**31) <= int(text, 10) < 2**31 and text.strip() == text
    except ValueError:
        return False


def _seccomp_annotation(profile: str, path: str) -> Errors:
    if profile in _SECCOMP_PROFILES:
        return []
    if profile.startswith("localhost/"):
        return local_descending_path(path, profile.removeprefix("localhost/"))
    return [invalid_value(path, profile, "must be a valid seccomp profile")]


def _app_armor_annotation(key: str, profile: str, spec: Obj) -> Errors:
    container = key.removeprefix("container.apparmor.security.beta.kubernetes.io/")
    all_names = {s(c, "name") for kind in ("containers", "initContainers", "ephemeralContainers") for c in objs(spec, kind)}
    path = f"metadata.annotations[{key}]"
    errs = [] if container in all_names else [invalid_value(path, container, "container not found")]
    if profile not in ("", "runtime/default", "unconfined") and not profile.startswith("localhost/"):
        errs.append(invalid_value(path, profile, f"invalid AppArmor profile name: \"{profile}\""))
    return errs


def _metadata_and_spec(obj: Obj) -> Errors:
    """``validatePodMetadataAndSpec``: shared by create and update."""
    meta, spec = m(obj, "metadata"), m(obj, "spec")
    errs = validate_object_meta(meta, True, name_is_dns_subdomain) + _pod_annotations(meta, spec)
    errs += validate_pod_spec(spec, s(meta, "name"))
    if not s(spec, "serviceAccountName"):
        for i, volume in enumerate(objs(spec, "volumes")):
            errs += [forbidden_field(f"spec.volumes[{i}].projected.sources[{j}].serviceAccountToken",
                                     "must not be specified when serviceAccountName is not set")
                     for j, source in enumerate(objs(m(volume, "projected"), "sources"))
                     if source.get("serviceAccountToken") is not None]
    for kind in ("containers", "initContainers"):
        errs += [invalid_value(f"spec.{kind}[{i}].image", s(c, "image"), "must not have leading or trailing whitespace")
                 for i, c in enumerate(objs(spec, kind)) if s(c, "image") != s(c, "image").strip()]
    return errs


def validate_pod_create(obj: Obj) -> Errors:
    spec = m(obj, "spec")
    errs = _metadata_and_spec(obj)
    if objs(spec, "ephemeralContainers"):
        errs.append(forbidden_field("spec.ephemeralContainers", "cannot be set on create"))
    if s(spec, "nodeName") and objs(spec, "schedulingGates"):
        errs.append(forbidden_field("spec.nodeName", "cannot be set until all schedulingGates have been cleared"))
    return errs


UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)


def _container_updates(new: list[Obj], old: list[Obj], path: str) -> tuple[Errors, bool]:
    """Containers may not be added or removed; images must stay non-empty and trimmed."""
    if len(new) != len(old):
        return [forbidden_field(path, "pod updates may not add or remove containers")], True
    errs: Errors = []
    for i, container in enumerate(new):
        image = s(container, "image")
        errs += [required(f"{path}[{i}].image")] if not image else []
        if image != image.strip():
            errs.append(invalid_value(f"{path}[{i}].image", image, "must not have leading or trailing whitespace"))
    return errs, False


def _deadline_update(new: Obj, old: Obj) -> tuple[Errors, bool]:
    """activeDeadlineSeconds may be set from nil, or lowered; never raised or removed.

    The second value says whether upstream stops validating the update here.
    """
    new_value, old_value = new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds")
    path = "spec.activeDeadlineSeconds"
    if new_value is None:
        removed = old_value is not None
        return ([invalid_value(path, "null", "must not update from a positive integer to nil value")] if removed else []), False
    if not 0 <= new_value <= MAX_INT32:
        return [invalid_value(path, new_value, inclusive_range_error(0, MAX_INT32))], True
    if old_value is not None and old_value < new_value:
        return [invalid_value(path, new_value, "must be less than or equal to previous value")], True
    return [], False


def _only_added_tolerations(new: list[Any], old: list[Any]) -> Errors:
    for existing in old:
        if not any(same({**existing, "tolerationSeconds": t.get("tolerationSeconds")}, t) for t in new if isinstance(t, dict)):
            return [forbidden_field("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")]
    return validate_tolerations(new, "spec.tolerations")


def _munged_spec(new: Obj, old: Obj) -> Obj:
    """``new`` with every updatable field reset to ``old``'s value, for the equality check."""
    munged = dict(new)
    for kind in ("containers", "initContainers"):
        munged[kind] = [{**c, "image": old_c.get("image")} for c, old_c in zip(objs(new, kind), objs(old, kind))]
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        munged[key] = old.get(key)
    old_grace = old.get("terminationGracePeriodSeconds")
    if old_grace is not None and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    return munged


def spec_diff(old: Obj, new: Obj) -> str:
    """A short, cmp.Diff-flavoured rendering of the top-level spec fields that differ."""
    lines = ["  core.PodSpec{"]
    for key in sorted(set(old) | set(new)):
        if not same(old.get(key), new.get(key)):
            lines.append(f"- \t{key}: {_render(old.get(key))},")
            lines.append(f"+ \t{key}: {_render(new.get(key))},")
    lines.append("  }")
    return "\n".join(lines) + "\n"


def _render(value: Any) -> str:
    return "nil" if value is None else orjson.dumps(value).decode()


def validate_pod_update(new: Obj, old: Obj) -> Errors:
    """``ValidatePodUpdate``: a running Pod's spec is frozen except for a few fields."""
    new_spec, old_spec = m(new, "spec"), m(old, "spec")
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata")) + _metadata_and_spec(new)
    errs += _annotation_updates(m(m(new, "metadata"), "annotations"), m(m(old, "metadata"), "annotations"))
    for kind in ("containers", "initContainers"):
        container_errs, stop = _container_updates(objs(new_spec, kind), objs(old_spec, kind), f"spec.{kind}")
        errs += container_errs
        if stop:
            return errs
    deadline_errs, stop = _deadline_update(new_spec, old_spec)
    if stop:
        return errs + deadline_errs
    errs += deadline_errs + _only_added_tolerations(objs(new_spec, "tolerations"), objs(old_spec, "tolerations"))
    munged = _munged_spec(new_spec, old_spec)
    if not same(munged, old_spec):
        detail = f"pod updates may not change fields other than {','.join(UPDATABLE_POD_SPEC_FIELDS)}\n"
        errs.append(forbidden_field("spec", detail + spec_diff(old_spec, munged)))
    return errs


def _annotation_updates(new: Obj, old: Obj) -> Errors:
    """The mirror-pod annotation and legacy AppArmor annotations are fixed at creation."""
    path = "metadata.annotations"
    errs: Errors = []
    for key, value in old.items():
        if new.get(key) == value and key in new:
            continue
        if key.startswith("container.apparmor.security.beta.kubernetes.io/"):
            errs.append(forbidden_field(f"{path}[{key}]", "may not remove or update AppArmor annotations"))
        if key == "kubernetes.io/config.mirror":
            errs.append(forbidden_field(f"{path}[{key}]", "may not remove or update mirror pod annotation"))
    for key in new:
        if key in old:
            continue
        if key.startswith("container.apparmor.security.beta.kubernetes.io/"):
            errs.append(forbidden_field(f"{path}[{key}]", "may not add AppArmor annotations"))
        if key == "kubernetes.io/config.mirror":
            errs.append(forbidden_field(f"{path}[{key}]", "may not add mirror pod annotation"))
    return errs


_SYSTEM_CONDITIONS = ("PodScheduled", "Ready", "Initialized")


def validate_pod_status_update(new: Obj, old: Obj) -> Errors:
    """``ValidatePodStatusUpdate``: the kubelet's writes to ``pods/status``."""
    status, old_status = m(new, "status"), m(old, "status")
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata"))
    errs += _annotation_updates(m(m(new, "metadata"), "annotations"), m(m(old, "metadata"), "annotations"))
    for i, condition in enumerate(objs(status, "conditions")):
        if s(condition, "type") not in _SYSTEM_CONDITIONS:
            errs += qualified_name(f"metadata.conditions[{i}].Type", s(condition, "type"))
    if s(m(new, "spec"), "nodeName") != s(m(old, "spec"), "nodeName"):
        errs.append(forbidden_field("status.nodeName", "may not be changed directly"))
    nominated = s(status, "nominatedNodeName")
    if nominated and nominated != s(old_status, "nominatedNodeName"):
        errs += each_invalid("status.nominatedNodeName", nominated, name_is_dns_subdomain(nominated, False))
    if s(status, "qosClass") != s(old_status, "qosClass"):
        errs.append(invalid_value("status.qosClass", s(status, "qosClass"), "field is immutable"))
    return errs + _status_ips(status)


def _status_ips(status: Obj) -> Errors:
    errs: Errors = []
    for key in ("podIPs", "hostIPs"):
        ips = [s(item, "ip") for item in objs(status, key)]
        for i, ip in enumerate(ips):
            errs += ip_errors(f"status.{key}[{i}]", ip)
        errs += [duplicate(f"status.{key}[{i}]", {"ip": ip}) for i, ip in enumerate(ips) if ip in ips[:i]]
    host_ips = objs(status, "hostIPs")
    if host_ips and s(status, "hostIP") != s(host_ips[0], "ip"):
        errs.append(invalid_value("status.hostIPs[0].ip", s(host_ips[0], "ip"), "must be equal to `hostIP`"))
    return errs

