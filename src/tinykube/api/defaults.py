"""Fill in the defaults Kubernetes 1.32 adds to a decoded object before validating and storing it.

Clients read objects back and expect exactly what a real API server returns (``kubectl get -o
yaml`` shows ``dnsPolicy: ClusterFirst``, ``resources: {}``, the two ``not-ready``/``unreachable``
tolerations ...), so this follows ``pkg/apis/core/v1/defaults.go`` and the generated
``zz_generated.defaults.go``, plus the pure parts of what upstream does elsewhere before
validation: v1 conversion quirks (Secret ``stringData``, Pod ``serviceAccount``), the
ServiceAccount, Priority and DefaultTolerationSeconds admission plugins, and each strategy's
``PrepareForCreate`` status reset.  Name generation, IP and node-port allocation and UIDs need
state or randomness and stay with the API server.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from tinykube.api import quantity
from tinykube.api.registry import ResourceType

Obj = dict[str, Any]

# --- small helpers ---------------------------------------------------------------------------


def _dict(obj: Obj, key: str) -> Obj:
    """``obj[key]``, created empty when absent or null (the Go struct is always there)."""
    value = obj.get(key)
    if not isinstance(value, dict):
        value = obj[key] = {}
    return value


def _dicts(obj: Any, key: str) -> list[Obj]:
    """The dict items of the list ``obj[key]`` (absent, null and non-dict items skipped)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _child(obj: Any, *keys: str) -> Obj | None:
    """The nested dict at ``keys`` if every step is present, else None (nothing is created)."""
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, dict) else None


def _empty(value: Any) -> bool:
    """Go's zero value for a string or number: unset, null, "" or 0."""
    return value is None or value == "" or (value == 0 and not isinstance(value, bool))


def _setdefault(obj: Obj, key: str, value: Any) -> None:
    """Set ``obj[key]`` when it holds Go's zero value."""
    if _empty(obj.get(key)):
        obj[key] = value


def _round_resources(obj: Any, *keys: str) -> None:
    """``SetDefaults_ResourceList``: every quantity rounded up to milli precision."""
    resources = _child(obj, *keys)
    if resources is None:
        return
    for name, value in list(resources.items()):
        try:
            resources[name] = quantity.round_up_milli(value)
        except (quantity.QuantityError, TypeError):
            pass  # the decoder reports unparseable quantities; nothing to default


# --- images --------------------------------------------------------------------------------------

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*" \
          r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?")


def image_tag(image: str) -> str | None:
    """The tag ``parsers.ParseImageName`` finds: ``latest`` when neither tag nor digest is given,
    ``""`` for a digest only, None when the reference does not parse."""
    match = _REFERENCE.fullmatch(image)
    if match is None or re.fullmatch("[a-f0-9]{64}", image) or len(match["name"]) > 255:
        return None
    return match["tag"] or ("" if match["digest"] else "latest")


def pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` (or no tag), ``IfNotPresent`` otherwise, as SetDefaults_Container."""
    return "Always" if image_tag(image) == "latest" else "IfNotPresent"


# --- Pod: containers ---------------------------------------------------------------------------


def _default_http_get(holder: Any) -> None:
    action = _child(holder, "httpGet")
    if action is not None:
        _setdefault(action, "path", "/")
        _setdefault(action, "scheme", "HTTP")


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        _setdefault(probe, key, value)
    _default_http_get(probe)
    grpc = _child(probe, "grpc")
    if grpc is not None and grpc.get("service") is None:
        grpc["service"] = ""


def _default_container(container: Obj) -> None:
    """SetDefaults_Container plus the generated per-field defaults of a container."""
    _setdefault(container, "imagePullPolicy", pull_policy(container.get("image") or ""))
    _setdefault(container, "terminationMessagePath", "/dev/termination-log")
    _setdefault(container, "terminationMessagePolicy", "File")
    for port in _dicts(container, "ports"):
        _setdefault(port, "protocol", "TCP")
    for var in _dicts(container, "env"):
        field_ref = _child(var, "valueFrom", "fieldRef")
        if field_ref is not None:
            _setdefault(field_ref, "apiVersion", "v1")
    _dict(container, "resources")
    _round_resources(container, "resources", "limits")
    _round_resources(container, "resources", "requests")
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(kind))
    for hook in ("postStart", "preStop"):
        _default_http_get(_child(container, "lifecycle", hook))


def _requests_from_limits(container: Obj) -> None:
    """SetDefaults_Pod: a limit without a request becomes the request too."""
    limits = _child(container, "resources", "limits")
    if not limits:
        return
    requests = _dict(container["resources"], "requests")
    for name, value in limits.items():
        requests.setdefault(name, value)


# --- Pod: volumes ---------------------------------------------------------------------------------

_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs", "iscsi",
    "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI", "fc",
    "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
    "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image")

# Field defaults of legacy in-tree sources, shared by Pod volumes and PersistentVolumes.
_SOURCE_FIELD_DEFAULTS: dict[str, dict[str, Any]] = {
    "iscsi": {"iscsiInterface": "default"},
    "rbd": {"pool": "rbd", "user": "admin", "keyring": "/etc/ceph/keyring"},
    "azureDisk": {"cachingMode": "ReadWrite", "fsType": "ext4", "readOnly": False, "kind": "Shared"},
    "scaleIO": {"storageMode": "ThinProvisioned", "fsType": "xfs"},
}


def _default_source_fields(holder: Obj) -> None:
    """hostPath type, the in-tree driver defaults and the default file modes (0644)."""
    host_path = _child(holder, "hostPath")
    if host_path is not None and host_path.get("type") is None:
        host_path["type"] = ""
    for key, defaults in _SOURCE_FIELD_DEFAULTS.items():
        source = _child(holder, key)
        if source is None:
            continue
        for field, value in defaults.items():
            if source.get(field) is None:
                source[field] = value
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        source = _child(holder, key)
        if source is not None and source.get("defaultMode") is None:
            source["defaultMode"] = 0o644


def _default_field_refs(items: list[Obj]) -> None:
    for item in items:
        field_ref = _child(item, "fieldRef")
        if field_ref is not None:
            _setdefault(field_ref, "apiVersion", "v1")


def _default_claim_spec(spec: Any) -> None:
    """SetDefaults_PersistentVolumeClaimSpec and its resource lists."""
    if not isinstance(spec, dict):
        return
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    _round_resources(spec, "resources", "limits")
    _round_resources(spec, "resources", "requests")


def _default_volume(volume: Obj) -> None:
    """SetDefaults_Volume (no source means emptyDir) and the defaults of each source kind."""
    if all(volume.get(key) is None for key in _VOLUME_SOURCES):
        volume["emptyDir"] = {}
    _default_source_fields(volume)
    _default_field_refs(_dicts(_child(volume, "downwardAPI"), "items"))
    for source in _dicts(_child(volume, "projected"), "sources"):
        _default_field_refs(_dicts(_child(source, "downwardAPI"), "items"))
        token = _child(source, "serviceAccountToken")
        if token is not None and token.get("expirationSeconds") is None:
            token["expirationSeconds"] = 3600
    _default_claim_spec(_child(volume, "ephemeral", "volumeClaimTemplate", "spec"))


# --- Pod: spec, admission and status ------------------------------------------------------------

_SYSTEM_PRIORITIES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
_DEFAULT_TOLERATIONS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def _default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec, SetDefaults_Pod's spec parts, and the generated list defaults."""
    for container in _dicts(spec, "containers") + _dicts(spec, "initContainers"):
        _requests_from_limits(container)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork") is True:
        for container in _dicts(spec, "containers") + _dicts(spec, "initContainers"):
            for port in _dicts(container, "ports"):
                _setdefault(port, "hostPort", port.get("containerPort"))
    _setdefault(spec, "dnsPolicy", "ClusterFirst")
    _setdefault(spec, "restartPolicy", "Always")
    _dict(spec, "securityContext")
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    _setdefault(spec, "schedulerName", "default-scheduler")
    for volume in _dicts(spec, "volumes"):
        _default_volume(volume)
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in _dicts(spec, kind):
            _default_container(container)
    _round_resources(spec, "overhead")


def _tolerated(tolerations: list[Obj], key: str) -> bool:
    return any(t.get("key") in (key, "", None) and t.get("effect") in ("NoExecute", "", None) for t in tolerations)


def _admission_defaults(spec: Obj, old_spec: Obj | None) -> None:
    """What the ServiceAccount, Priority and DefaultTolerationSeconds admission plugins add."""
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or ("default" if old_spec is None else "")
    if account:
        spec["serviceAccountName"] = spec["serviceAccount"] = account
    if old_spec is None:
        if spec.get("priority") is None:
            spec["priority"] = _SYSTEM_PRIORITIES.get(spec.get("priorityClassName") or "", 0)
        if spec.get("preemptionPolicy") is None:
            spec["preemptionPolicy"] = "PreemptLowerPriority"
    else:
        for key in ("priority", "preemptionPolicy"):
            if spec.get(key) is None and old_spec.get(key) is not None:
                spec[key] = old_spec[key]
    tolerations = _dicts(spec, "tolerations")
    added = [{"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
             for key in _DEFAULT_TOLERATIONS if not _tolerated(tolerations, key)]
    if added:
        spec["tolerations"] = [*(spec.get("tolerations") or []), *added]


def _default_status_resources(pod: Obj) -> None:
    for kind in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for status in _dicts(_child(pod, "status"), kind):
            _round_resources(status, "allocatedResources")
            _round_resources(status, "resources", "limits")
            _round_resources(status, "resources", "requests")


def _default_pod(pod: Obj, old: Obj | None) -> None:
    spec = _dict(pod, "spec")
    _default_pod_spec(spec)
    _admission_defaults(spec, _child(old, "spec") if old is not None else None)
    if old is None:  # podStrategy.PrepareForCreate
        pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod)}
    _default_status_resources(pod)


_QOS_RESOURCES = ("cpu", "memory")


def _positive_sums(containers: list[Obj], kind: str) -> tuple[dict[str, Any], bool]:
    """Summed positive cpu/memory quantities of ``kind``, and whether every container set both."""
    totals: dict[str, Any] = {}
    all_set = True
    for container in containers:
        found = set()
        for name, value in (_child(container, "resources", kind) or {}).items():
            amount = _parse_or_zero(value)
            if name in _QOS_RESOURCES and amount > 0:
                totals[name] = totals.get(name, 0) + amount
                found.add(name)
        all_set = all_set and found == set(_QOS_RESOURCES)
    return totals, all_set


def _parse_or_zero(value: Any) -> Any:
    try:
        return quantity.parse_quantity(value)
    except (quantity.QuantityError, TypeError):
        return 0


def qos_class(pod: Obj) -> str:
    """``qos.ComputePodQOS``: BestEffort, Guaranteed or Burstable from cpu/memory of all
    regular and init containers (ephemeral containers cannot have resources)."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    containers = _dicts(spec, "containers") + _dicts(spec, "initContainers")
    requests, _ = _positive_sums(containers, "requests")
    limits, guaranteed = _positive_sums(containers, "limits")
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(limits.get(name) == value for name, value in requests.items()) and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


# --- other kinds ------------------------------------------------------------------------------------


def _default_secret(secret: Obj, old: Obj | None) -> None:
    """Type Opaque; ``stringData`` (write-only) is merged into ``data`` by v1 conversion."""
    _setdefault(secret, "type", "Opaque")
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _dict(secret, "data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value or "").encode()).decode()


def _externally_accessible(spec: Obj) -> bool:
    kind = spec.get("type")
    return kind in ("LoadBalancer", "NodePort") or (kind == "ClusterIP" and bool(spec.get("externalIPs")))


def _default_session_affinity(spec: Obj) -> None:
    _setdefault(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = _child(spec, "sessionAffinityConfig", "clientIP")
        if client_ip is None or client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}


def _default_service_fields(spec: Obj) -> None:
    """SetDefaults_Service."""
    _default_session_affinity(spec)
    _setdefault(spec, "type", "ClusterIP")
    for port in _dicts(spec, "ports"):
        _setdefault(port, "protocol", "TCP")
        if _empty(port.get("targetPort")):
            port["targetPort"] = port.get("port")
    if _externally_accessible(spec):
        _setdefault(spec, "externalTrafficPolicy", "Cluster")
    if spec.get("internalTrafficPolicy") is None and spec["type"] in ("NodePort", "LoadBalancer", "ClusterIP"):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True


def _normalize_cluster_ips(spec: Obj, old_spec: Obj | None) -> None:
    """The strategy's NormalizeClusterIPs: keep ``clusterIP`` and ``clusterIPs`` in step."""
    cluster_ip, cluster_ips = spec.get("clusterIP") or "", spec.get("clusterIPs") or []
    if old_spec is None:
        if cluster_ip and not cluster_ips:
            spec["clusterIPs"] = [cluster_ip]
        return
    old_ip, old_ips = old_spec.get("clusterIP") or "", old_spec.get("clusterIPs") or []
    if old_ips and not cluster_ips and old_ip == cluster_ip:
        spec["clusterIPs"] = cluster_ips = old_ips
    if old_ip != cluster_ip:
        if old_ip and not cluster_ip:
            spec.pop("clusterIPs", None)
        elif cluster_ips == old_ips:
            spec["clusterIPs"] = [cluster_ip]


def _patch_allocated(spec: Obj, old_spec: Obj) -> None:
    """patchAllocatedValues: an update that omits allocated IPs and ports keeps the old ones."""
    if spec.get("type") != "ExternalName" and old_spec.get("type") != "ExternalName":
        _setdefault(spec, "clusterIP", old_spec.get("clusterIP"))
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
            spec["clusterIPs"] = old_spec["clusterIPs"]
    node_ports = ("NodePort", "LoadBalancer")
    if spec.get("type") in node_ports and old_spec.get("type") in node_ports:
        used = {p.get("nodePort") for p in _dicts(spec, "ports")} & {p.get("nodePort") for p in _dicts(old_spec, "ports")}
        by_name = {p.get("name") or "": p.get("nodePort") for p in _dicts(old_spec, "ports")}
        for port in _dicts(spec, "ports"):
            old_port = by_name.get(port.get("name") or "")
            if _empty(port.get("nodePort")) and old_port not in used:
                port["nodePort"] = old_port
    if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy") == "Local":
        _setdefault(spec, "healthCheckNodePort", old_spec.get("healthCheckNodePort"))


def _default_ip_families(spec: Obj) -> None:
    """Single-stack IPv4 cluster: what IP allocation records for every non-ExternalName Service."""
    if spec.get("type") == "ExternalName":
        return
    selectorless_headless = spec.get("clusterIPs") == ["None"] and not spec.get("selector")
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "RequireDualStack" if selectorless_headless else "SingleStack"
    if not spec.get("ipFamilies"):
        spec["ipFamilies"] = ["IPv4"]


def _default_service(service: Obj, old: Obj | None) -> None:
    spec = _dict(service, "spec")
    _default_service_fields(spec)
    old_spec = _child(old, "spec") if old is not None else None
    _normalize_cluster_ips(spec, old_spec)
    if old_spec is not None:
        _patch_allocated(spec, old_spec)
    _default_ip_families(spec)
    if old is None:  # svcStrategy.PrepareForCreate
        service["status"] = {"loadBalancer": {}}
    if spec.get("type") == "LoadBalancer":
        for ingress in _dicts(_child(service, "status", "loadBalancer"), "ingress"):
            if ingress.get("ip") and ingress.get("ipMode") is None:
                ingress["ipMode"] = "VIP"


def _default_namespace(namespace: Obj, old: Obj | None) -> None:
    """Name label; on create the ``kubernetes`` finalizer and phase Active (PrepareForCreate)."""
    metadata = _dict(namespace, "metadata")
    if metadata.get("name"):
        _dict(metadata, "labels")["kubernetes.io/metadata.name"] = metadata["name"]
    spec = _dict(namespace, "spec")
    if old is None:
        finalizers = spec.get("finalizers") or []
        spec["finalizers"] = finalizers if "kubernetes" in finalizers else [*finalizers, "kubernetes"]
        namespace["status"] = {"phase": "Active"}
    _setdefault(_dict(namespace, "status"), "phase", "Active")


def _default_node(node: Obj, old: Obj | None) -> None:
    status = _dict(node, "status")
    if status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])
    _round_resources(status, "capacity")
    _round_resources(status, "allocatable")


def _default_persistent_volume(pv: Obj, old: Obj | None) -> None:
    spec = _dict(pv, "spec")
    _setdefault(spec, "persistentVolumeReclaimPolicy", "Retain")
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    _round_resources(spec, "capacity")
    _default_source_fields(spec)
    if old is None:  # persistentvolumeStrategy.PrepareForCreate
        pv["status"] = {}
    _setdefault(_dict(pv, "status"), "phase", "Pending")


def _default_persistent_volume_claim(pvc: Obj, old: Obj | None) -> None:
    _default_claim_spec(_dict(pvc, "spec"))
    if old is None:  # persistentvolumeclaimStrategy.PrepareForCreate
        pvc["status"] = {}
    status = _dict(pvc, "status")
    _setdefault(status, "phase", "Pending")
    _round_resources(status, "capacity")
    _round_resources(status, "allocatedResources")


def _default_endpoints(endpoints: Obj, old: Obj | None) -> None:
    for subset in _dicts(endpoints, "subsets"):
        for port in _dicts(subset, "ports"):
            _setdefault(port, "protocol", "TCP")


def fill_missing(into: Obj, key: str, source: Any) -> list[str]:
    """Copy the entries of ``source`` missing from ``into[key]`` (created only if needed); their names, sorted."""
    current = into.get(key) or {}
    missing = {k: v for k, v in source.items() if k not in current} if isinstance(source, dict) else {}
    if missing:
        into[key] = {**current, **missing}
    return sorted(missing)


def _default_limit_range(limit_range: Obj, old: Obj | None) -> None:
    """SetDefaults_LimitRangeItem: a Container item's default limit falls back to its max, its
    default request to that limit, then to its min; every quantity rounded as a ResourceList."""
    for item in _dicts(_child(limit_range, "spec"), "limits"):
        if item.get("type") == "Container":
            fill_missing(item, "default", item.get("max"))
            fill_missing(item, "defaultRequest", item.get("default"))
            fill_missing(item, "defaultRequest", item.get("min"))
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            _round_resources(item, key)


def _default_resource_quota(quota: Obj, old: Obj | None) -> None:
    if old is None:  # resourcequotaStrategy.PrepareForCreate: usage is the controller's to fill
        quota["status"] = {}
    _round_resources(quota, "spec", "hard")
    _round_resources(quota, "status", "hard")
    _round_resources(quota, "status", "used")


Defaulter = Callable[[Obj, Obj | None], None]

_DEFAULTERS: dict[tuple[str, str], Defaulter] = {
    ("", "Pod"): _default_pod,
    ("", "Secret"): _default_secret,
    ("", "Service"): _default_service,
    ("", "Namespace"): _default_namespace,
    ("", "Node"): _default_node,
    ("", "PersistentVolume"): _default_persistent_volume,
    ("", "PersistentVolumeClaim"): _default_persistent_volume_claim,
    ("", "Endpoints"): _default_endpoints,
    ("", "LimitRange"): _default_limit_range,
    ("", "ResourceQuota"): _default_resource_quota,
}


def default(rt: ResourceType, obj: Obj, old: Obj | None = None) -> None:
    """Apply ``rt``'s defaults to ``obj`` in place.

    ``old`` is the stored object on update and None on create: create-only steps (status reset,
    ServiceAccount admission) run only without it, and update keeps values the server assigned
    (Pod priority, Service IPs and node ports).  Kinds without defaults
    (ConfigMap, ServiceAccount, Event, Lease) are left unchanged.
    """
    defaulter = _DEFAULTERS.get((rt.group, rt.kind))
    if defaulter is not None:
        defaulter(obj, old)
