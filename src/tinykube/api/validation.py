"""Semantic validation of decoded, defaulted objects, as ``pkg/apis/core/validation`` (v1.32) does it.

The API server calls :func:`validate_create`, :func:`validate_update` and
:func:`validate_status_update`; each returns the :class:`FieldError` list that becomes a 422
``Invalid`` Status, so field paths and messages are kept byte-identical to upstream (kubectl
prints them verbatim).  JSON types and unknown fields are checked earlier by ``structural``;
here every field is assumed to have its schema type, but any optional one may be absent or null.

This module holds the string formats (``apimachinery/pkg/util/validation``), ObjectMeta rules,
the non-Pod kinds and the per-kind dispatch table; Pod rules live in ``validation_pod``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tinykube.api import quantity
from tinykube.api.errors import (
    FieldError,
    duplicate,
    forbidden_field,
    invalid_value,
    not_supported,
    required,
    too_long,
)
from tinykube.api.registry import ResourceType
from tinykube.api.formats import (
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
)

Errors = list[FieldError]
Obj = dict[str, Any]

# --- reading decoded JSON that may hold nulls ------------------------------------------------


def m(obj: Any, key: str) -> Obj:
    """``obj[key]`` as a dict, ``{}`` when absent or null (Go's zero value)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def lst(obj: Any, key: str) -> list[Any]:
    """``obj[key]`` as a list, ``[]`` when absent or null."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, list) else []


def objs(obj: Any, key: str) -> list[Obj]:
    """``obj[key]`` as a list of objects; a null item reads as ``{}`` (Go's zero struct)."""
    return [item if isinstance(item, dict) else {} for item in lst(obj, key)]


def s(obj: Any, key: str) -> str:
    """``obj[key]`` as a string, ``""`` when absent or null."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else ""


def n(obj: Any, key: str) -> int:
    """``obj[key]`` as an int, ``0`` when absent or null."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``netutils.ParseIPSloppy``: like Go's ParseIP but IPv4 octets may have leading zeros."""
    parts = value.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        value = ".".join(str(int(p)) for p in parts)
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def ip_errors(path: str, value: str) -> Errors:
    if parse_ip(value) is not None:
        return []
    return [invalid_value(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]


def cidr_errors(path: str, value: str) -> Errors:
    address, slash, prefix = value.partition("/")
    ip = parse_ip(address)
    limit = 32 if isinstance(ip, ipaddress.IPv4Address) else 128
    if ip is None or not slash or not prefix.isdigit() or int(prefix) > limit:
        return [invalid_value(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    return []


# --- name functions (apimachinery/pkg/api/validation/generic.go) ------------------------------

NameFn = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str) -> str:
    """A generateName prefix may end in ``-``; upstream masks it exactly like this."""
    return name[:-2] + "a" if len(name) > 1 and name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def each_invalid(path: str, value: Any, messages: list[str]) -> Errors:
    """One Invalid error per message, the common shape of upstream's format checks."""
    return [invalid_value(path, value, msg) for msg in messages]


def dns_label(path: str, value: str) -> Errors:
    return each_invalid(path, value, is_dns1123_label(value))


def dns_subdomain(path: str, value: str) -> Errors:
    return each_invalid(path, value, is_dns1123_subdomain(value))


def qualified_name(path: str, value: str) -> Errors:
    return each_invalid(path, value, is_qualified_name(value))


def enum(path: str, value: Any, supported: list[str], allow_empty: bool = False) -> Errors:
    """Required when empty (unless allowed), NotSupported when not one of ``supported``."""
    if value in (None, ""):
        return [] if allow_empty else [required(path)]
    return [] if value in supported else [not_supported(path, value, supported)]


def nonnegative(path: str, value: int) -> Errors:
    return [invalid_value(path, value, "must be greater than or equal to 0")] if value < 0 else []


# --- ObjectMeta (apimachinery/pkg/api/validation/objectmeta.go) ------------------------------

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
_STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


def validate_labels(labels: Obj, path: str) -> Errors:
    errs: Errors = []
    for key, value in labels.items():
        errs += qualified_name(path, key)
        errs += each_invalid(path, value, is_valid_label_value(value if isinstance(value, str) else ""))
    return errs


def validate_annotations(annotations: Obj, path: str) -> Errors:
    """Keys are qualified names compared case-insensitively; all keys+values fit in 256 KiB."""
    errs: Errors = []
    for key in annotations:
        errs += each_invalid(path, key, is_qualified_name(key.lower()))
    size = sum(len(k.encode()) + len((v or "").encode()) for k, v in annotations.items())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _validate_owner_reference(ref: Obj, path: str) -> Errors:
    errs: Errors = []
    api_version = s(ref, "apiVersion")
    if not api_version.rpartition("/")[2]:
        errs.append(invalid_value(f"{path}.apiVersion", api_version, "version must not be empty"))
    for key in ("kind", "name", "uid"):
        if not s(ref, key):
            errs.append(invalid_value(f"{path}.{key}", s(ref, key), "must not be empty"))
    if api_version == "v1" and s(ref, "kind") == "Event":
        errs.append(invalid_value(path, ref, "/v1, Kind=Event is disallowed from being an owner"))
    return errs


def validate_owner_references(refs: list[Any], path: str) -> Errors:
    errs: Errors = []
    controller = ""
    for ref in refs:
        errs += _validate_owner_reference(ref if isinstance(ref, dict) else {}, path)
        if isinstance(ref, dict) and ref.get("controller") is True:
            current = f"{s(ref, 'kind')}/{s(ref, 'name')}"
            if controller:
                errs.append(invalid_value(path, refs, "Only one reference can have Controller set to true. Found \"true\" "
                                                      f"in references for {controller} and {current}"))
            else:
                controller = current
    return errs


def validate_finalizers(finalizers: list[Any], path: str) -> Errors:
    """Qualified names, legacy short names only if standard, never orphan+foreground together."""
    errs: Errors = []
    for finalizer in finalizers:
        errs += qualified_name(path, finalizer)
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errs.append(invalid_value(path, finalizers, "finalizer orphan and foregroundDeletion cannot be both set"))
    for i, finalizer in enumerate(finalizers):
        errs += kube_finalizer_name(f"{path}[{i}]", finalizer)
    return errs


def kube_finalizer_name(path: str, value: str) -> Errors:
    if "/" in value or value in _STANDARD_FINALIZERS:
        return []
    return [invalid_value(path, value, "name is neither a standard finalizer name nor is it fully qualified")]


def _validate_meta_common(meta: Obj, namespaced: bool, path: str) -> Errors:
    errs: Errors = []
    namespace = s(meta, "namespace")
    if namespaced and not namespace:
        errs.append(required(f"{path}.namespace"))
    elif namespaced:
        errs += each_invalid(f"{path}.namespace", namespace, name_is_dns_label(namespace, False))
    elif namespace:
        errs.append(forbidden_field(f"{path}.namespace", "not allowed on this type"))
    errs += nonnegative(f"{path}.generation", n(meta, "generation"))
    errs += validate_labels(m(meta, "labels"), f"{path}.labels")
    errs += validate_annotations(m(meta, "annotations"), f"{path}.annotations")
    errs += validate_owner_references(objs(meta, "ownerReferences"), f"{path}.ownerReferences")
    return errs + validate_finalizers(lst(meta, "finalizers"), f"{path}.finalizers")


def validate_object_meta(meta: Obj, namespaced: bool, name_fn: NameFn, path: str = "metadata") -> Errors:
    """``ValidateObjectMeta``: expects generateName to have been turned into a name already."""
    errs: Errors = []
    generate_name = s(meta, "generateName")
    if generate_name:
        errs += each_invalid(f"{path}.generateName", generate_name, name_fn(generate_name, True))
    name = s(meta, "name")
    if not name:
        errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs += each_invalid(f"{path}.name", name, name_fn(name, False))
    return errs + _validate_meta_common(meta, namespaced, path)


def same(a: Any, b: Any) -> bool:
    """``apiequality.Semantic.DeepEqual`` for JSON: null, "", false, [] and {} equal absence."""
    return normalize(a) == normalize(b)


def normalize(value: Any) -> Any:
    """Zero values become None, and dicts drop them, so omitted and empty fields compare equal."""
    if isinstance(value, dict):
        value = {k: v for k, v in ((k, normalize(v)) for k, v in value.items()) if v is not None}
    elif isinstance(value, list):
        value = [normalize(v) for v in value]
    return None if value is False or value == "" or value == [] or value == {} else value


def immutable(path: str, new: Any, old: Any) -> Errors:
    return [] if same(new, old) else [invalid_value(path, new if new is not None else "null", "field is immutable")]


def validate_object_meta_update(new: Obj, old: Obj, path: str = "metadata") -> Errors:
    """``ValidateObjectMetaUpdate``: identity and timestamps are immutable, RV is required."""
    errs: Errors = []
    if old.get("deletionTimestamp"):
        added = sorted(set(lst(new, "finalizers")) - set(lst(old, "finalizers")))
        if added:
            errs.append(forbidden_field(f"{path}.finalizers", "no new finalizers can be added if the object is being "
                                                              f"deleted, found new finalizers {_go_string_slice(added)}"))
    if not s(new, "resourceVersion"):
        errs.append(invalid_value(f"{path}.resourceVersion", "", "must be specified for an update"))
    if n(new, "generation") < n(old, "generation"):
        errs.append(invalid_value(f"{path}.generation", n(new, "generation"), "must not be decremented"))
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        errs += immutable(f"{path}.{key}", new.get(key), old.get(key))
    errs += validate_labels(m(new, "labels"), f"{path}.labels")
    errs += validate_annotations(m(new, "annotations"), f"{path}.annotations")
    errs += validate_owner_references(objs(new, "ownerReferences"), f"{path}.ownerReferences")
    return errs + validate_finalizers(lst(new, "finalizers"), f"{path}.finalizers")


def _go_string_slice(values: list[str]) -> str:
    return "[]string{" + ", ".join(orjson.dumps(v).decode() for v in values) + "}"


# --- label and node selectors -----------------------------------------------------------------


def validate_label_selector(selector: Any, path: str) -> Errors:
    """metav1 ``ValidateLabelSelector`` (label values must be valid)."""
    if not isinstance(selector, dict):
        return []
    errs = validate_labels(m(selector, "matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(objs(selector, "matchExpressions")):
        errs += _selector_requirement(expr, f"{path}.matchExpressions[{i}]", numeric=False)
    return errs


def _operator_errors(op: str, values: list[Any], path: str, numeric: bool) -> Errors:
    """Value-count rules per operator; ``Gt``/``Lt`` exist only in node selectors."""
    if op in ("In", "NotIn"):
        return [] if values else [required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'")]
    if op in ("Exists", "DoesNotExist"):
        return [forbidden_field(f"{path}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")] \
            if values else []
    if numeric and op in ("Gt", "Lt"):
        return [] if len(values) == 1 else [
            required(f"{path}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'")]
    return [invalid_value(f"{path}.operator", op, "not a valid selector operator")]


def _selector_requirement(req: Obj, path: str, numeric: bool) -> Errors:
    values = lst(req, "values")
    errs = _operator_errors(s(req, "operator"), values, path, numeric)
    errs += qualified_name(f"{path}.key", s(req, "key"))
    for j, value in enumerate(values):
        errs += each_invalid(f"{path}.values[{j}]", value, is_valid_label_value(value))
    return errs


def _node_field_requirement(req: Obj, path: str) -> Errors:
    errs: Errors = []
    if s(req, "operator") not in ("In", "NotIn"):
        errs.append(invalid_value(f"{path}.operator", s(req, "operator"), "not a valid selector operator"))
    elif len(lst(req, "values")) != 1:
        errs.append(required(f"{path}.values", "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"))
    if s(req, "key") != "metadata.name":
        return errs + [invalid_value(f"{path}.key", s(req, "key"), "not a valid field selector key")]
    for i, value in enumerate(lst(req, "values")):
        errs += each_invalid(f"{path}.values[{i}]", value, name_is_dns_subdomain(value, False))
    return errs


def validate_node_selector_term(term: Obj, path: str) -> Errors:
    errs: Errors = []
    for i, req in enumerate(objs(term, "matchExpressions")):
        errs += _selector_requirement(req, f"{path}.matchExpressions[{i}]", numeric=True)
    for i, req in enumerate(objs(term, "matchFields")):
        errs += _node_field_requirement(req, f"{path}.matchFields[{i}]")
    return errs


def validate_node_selector(selector: Obj, path: str) -> Errors:
    terms = objs(selector, "nodeSelectorTerms")
    if not terms:
        return [required(f"{path}.nodeSelectorTerms", "must have at least one node selector term")]
    errs: Errors = []
    for i, term in enumerate(terms):
        errs += validate_node_selector_term(term, f"{path}.nodeSelectorTerms[{i}]")
    return errs


# --- resources (quantities and resource names) ------------------------------------------------

_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_STANDARD_RESOURCES = _STANDARD_CONTAINER_RESOURCES + (
    "requests.cpu", "requests.memory", "requests.ephemeral-storage", "limits.cpu", "limits.memory",
    "limits.ephemeral-storage", "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "storage", "requests.storage", "services.nodeports", "services.loadbalancers")
_INTEGER_RESOURCES = ("pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
                      "persistentvolumeclaims", "services.nodeports", "services.loadbalancers")


def is_hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def is_native_resource(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def is_extended_resource(name: str) -> bool:
    """Fully qualified, outside ``kubernetes.io``, and usable as ``requests.<name>`` in quota."""
    if is_native_resource(name) or name.startswith("requests."):
        return False
    return not is_qualified_name("requests." + name)


def overcommit_allowed(name: str) -> bool:
    return is_native_resource(name) and not is_hugepages(name)


def quantity_or_none(value: Any) -> Any:
    """The parsed value, or None when it does not parse (the decoder already reported that)."""
    try:
        return quantity.parse_quantity(value)
    except (quantity.QuantityError, TypeError):
        return None


def shown(value: Any) -> str:
    """``Quantity.String()`` for error messages."""
    try:
        return quantity.canonical(value)
    except (quantity.QuantityError, TypeError):
        return str(value)


def validate_resource_quantity_value(name: str, value: Any, path: str) -> Errors:
    """Non-negative, and whole for integer resources (pods, services, extended resources...)."""
    exact = quantity_or_none(value)
    if exact is None:
        return []
    errs = [invalid_value(path, shown(value), "must be greater than or equal to 0")] if exact < 0 else []
    if (name in _INTEGER_RESOURCES or is_extended_resource(name)) and quantity.milli_value(exact) % 1000:
        errs.append(invalid_value(path, shown(value), "must be an integer"))
    return errs


def validate_resource_name(name: str, path: str) -> Errors:
    errs = qualified_name(path, name)
    if not errs and "/" not in name and name not in _STANDARD_RESOURCES and not is_hugepages(name):
        errs.append(invalid_value(path, name, "must be a standard resource type or fully qualified"))
    return errs


def validate_container_resource_name(name: str, path: str) -> Errors:
    errs = validate_resource_name(name, path)
    if errs:
        return errs
    if "/" not in name and name not in _STANDARD_CONTAINER_RESOURCES and not is_hugepages(name):
        return [invalid_value(path, name, "must be a standard resource for containers")]
    if "/" in name and not is_native_resource(name) and not is_extended_resource(name):
        return [invalid_value(path, name, "doesn't follow extended resource name standard")]
    return []


def positive_quantity(value: Any, path: str) -> Errors:
    exact = quantity_or_none(value)
    if exact is not None and exact <= 0:
        return [invalid_value(path, shown(value), "must be greater than zero")]
    return []


def basic_resource(value: Any, path: str) -> Errors:
    exact = quantity_or_none(value)
    if exact is not None and quantity.value(exact) < 0:
        return [invalid_value(path, quantity.value(exact), "must be a valid resource quantity")]
    return []


# --- volume sources shared by Pods and PersistentVolumes --------------------------------------


def path_no_backsteps(path: str, value: str) -> Errors:
    if ".." in value.replace("\\", "/").split("/"):
        return [invalid_value(path, value, "must not contain '..'")]
    return []


def local_descending_path(path: str, value: str) -> Errors:
    errs = [invalid_value(path, value, "must be a relative path")] if value.startswith("/") else []
    return errs + path_no_backsteps(path, value)


HOST_PATH_TYPES = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"]


def validate_host_path(source: Obj, path: str) -> Errors:
    if not s(source, "path"):
        return [required(f"{path}.path")]
    errs = path_no_backsteps(f"{path}.path", s(source, "path"))
    kind = source.get("type")
    if kind is not None and kind not in HOST_PATH_TYPES:
        errs.append(not_supported(f"{path}.type", kind, HOST_PATH_TYPES))
    return errs


def validate_nfs(source: Obj, path: str) -> Errors:
    errs = [required(f"{path}.{key}") for key in ("server", "path") if not s(source, key)]
    if not s(source, "path").startswith("/"):
        errs.append(invalid_value(f"{path}.path", s(source, "path"), "must be an absolute path"))
    return errs


def validate_csi_driver(driver: str, path: str) -> Errors:
    errs = [required(path)] if not driver else []
    if len(driver) > 63:
        errs.append(too_long(path, 63))
    return errs + each_invalid(path, driver, is_dns1123_subdomain(driver.lower()))


def required_fields(source: Obj, path: str, *keys: str) -> Errors:
    """Required errors for each empty string/list field: most legacy volume sources need no more."""
    return [required(f"{path}.{key}") for key in keys if not source.get(key)]


def counted_only(source: Obj, path: str) -> Errors:
    """For sources tinykube never mounts: they count towards the one-of rule and nothing more."""
    return []


SourceCheck = Callable[[Obj, str], Errors]
# Upstream spells a few paths differently from the JSON keys; kubectl users see these spellings.
_FORBIDDEN_PATH = {"downwardAPI": "downwarAPI", "cephfs": "cephFS"}
_CHECK_PATH = {"gcePersistentDisk": "persistentDisk"}


def validate_sources(holder: Obj, path: str, validators: dict[str, SourceCheck]) -> Errors:
    """Exactly one of ``validators``' keys must be set on ``holder``; the first one set is checked."""
    errs: Errors = []
    count = 0
    for key, check in validators.items():
        if holder.get(key) is None:
            continue
        if count:
            errs.append(forbidden_field(f"{path}.{_FORBIDDEN_PATH.get(key, key)}", "may not specify more than 1 volume type"))
            continue
        count += 1
        errs += check(m(holder, key), f"{path}.{_CHECK_PATH.get(key, key)}")
    if not count:
        errs.append(required(path, "must specify a volume type"))
    return errs


# --- ConfigMap, Secret, ServiceAccount ---------------------------------------------------------

MAX_SECRET_SIZE = 1024 * 1024


def _data_keys(data: Obj, path: str) -> Errors:
    errs: Errors = []
    for key in data:
        errs += each_invalid(f"{path}[{key}]", key, is_config_map_key(key))
    return errs


def _decoded(value: Any) -> bytes:
    """A ``[]byte`` field's bytes; undecodable text was rejected by the decoder already."""
    try:
        return base64.b64decode(value or "")
    except (binascii.Error, ValueError, TypeError):
        return str(value).encode()


def validate_config_map(obj: Obj) -> Errors:
    errs = validate_object_meta(m(obj, "metadata"), True, name_is_dns_subdomain)
    data, binary = m(obj, "data"), m(obj, "binaryData")
    errs += _data_keys(data, "data")
    errs += [invalid_value(f"data[{key}]", key, "duplicate of key present in binaryData") for key in data if key in binary]
    errs += _data_keys(binary, "binaryData")
    size = sum(len((v or "").encode()) for v in data.values()) + sum(len(_decoded(v)) for v in binary.values())
    if size > MAX_SECRET_SIZE:
        errs.append(too_long("", MAX_SECRET_SIZE))
    return errs


def _immutable_data(new: Obj, old: Obj, keys: tuple[str, ...]) -> Errors:
    """Once ``immutable: true`` is stored, the flag and the data can never change again."""
    if old.get("immutable") is not True:
        return []
    errs = [] if new.get("immutable") is True else [forbidden_field("immutable", "field is immutable when `immutable` is set")]
    return errs + [forbidden_field(key, "field is immutable when `immutable` is set")
                   for key in keys if (new.get(key) or {}) != (old.get(key) or {})]


def validate_config_map_update(new: Obj, old: Obj) -> Errors:
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata"))
    errs += _immutable_data(new, old, ("data", "binaryData"))
    return errs + validate_config_map(new)


def _json_error(raw: bytes) -> str | None:
    """The gist of Go's ``json.Unmarshal`` error into ``map[string]interface{}``."""
    if not raw.strip():
        return "unexpected end of JSON input"
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return f"invalid character {raw.strip()[:1].decode(errors='replace')!r} looking for beginning of value"
    if not isinstance(parsed, dict):
        kind = {list: "array", str: "string", bool: "bool", type(None): "null"}.get(type(parsed), "number")
        return f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
    return None


def _docker_config(key: str) -> Callable[[Obj], Errors]:
    """The rule for a docker config Secret type: ``key`` must hold a JSON object."""
    def check(obj: Obj) -> Errors:
        data = m(obj, "data")
        if key not in data:
            return [required(f"data[{key}]")]
        problem = _json_error(_decoded(data[key]))
        return [invalid_value(f"data[{key}]", "<secret contents redacted>", problem)] if problem else []
    return check


def _service_account_token(obj: Obj) -> Errors:
    name = s(m(m(obj, "metadata"), "annotations"), "kubernetes.io/service-account.name")
    return [] if name else [required("metadata.annotations[kubernetes.io/service-account.name]")]


def _basic_auth(obj: Obj) -> Errors:
    data = m(obj, "data")
    return [required("data[username]"), required("data[password]")] if not {"username", "password"} & set(data) else []


def _ssh_auth(obj: Obj) -> Errors:
    return [] if _decoded(m(obj, "data").get("ssh-privatekey")) else [required("data[ssh-privatekey]")]


def _tls(obj: Obj) -> Errors:
    return [required(f"data[{key}]") for key in ("tls.crt", "tls.key") if key not in m(obj, "data")]


_SECRET_TYPE_RULES: dict[str, Callable[[Obj], Errors]] = {
    "kubernetes.io/service-account-token": _service_account_token,
    "kubernetes.io/dockercfg": _docker_config(".dockercfg"),
    "kubernetes.io/dockerconfigjson": _docker_config(".dockerconfigjson"),
    "kubernetes.io/basic-auth": _basic_auth,
    "kubernetes.io/ssh-auth": _ssh_auth,
    "kubernetes.io/tls": _tls,
}


def _secret_type_rules(obj: Obj) -> Errors:
    rule = _SECRET_TYPE_RULES.get(s(obj, "type"))
    return rule(obj) if rule else []


def validate_secret(obj: Obj) -> Errors:
    errs = validate_object_meta(m(obj, "metadata"), True, name_is_dns_subdomain)
    data = m(obj, "data")
    errs += _data_keys(data, "data")
    if sum(len(_decoded(v)) for v in data.values()) > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    return errs + _secret_type_rules(obj)


def validate_secret_update(new: Obj, old: Obj) -> Errors:
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata"))
    errs += immutable("type", new.get("type"), old.get("type"))
    errs += _immutable_data(new, old, ("data",))
    return errs + validate_secret(new)


def validate_service_account(obj: Obj) -> Errors:
    return validate_object_meta(m(obj, "metadata"), True, name_is_dns_subdomain)


# --- Service -----------------------------------------------------------------------------------

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
NODE_PORT_RANGE = (30000, 32767)
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400


def is_headless(spec: Obj) -> bool:
    return lst(spec, "clusterIPs") == ["None"]


def externally_accessible(spec: Obj) -> bool:
    kind = s(spec, "type")
    return kind in ("LoadBalancer", "NodePort") or (kind == "ClusterIP" and bool(lst(spec, "externalIPs")))


def port_num_or_name(path: str, port: Any) -> Errors:
    """An IntOrString port: a valid number, or an IANA service name."""
    if isinstance(port, str):
        return each_invalid(path, port, is_valid_port_name(port))
    return each_invalid(path, port or 0, is_valid_port_num(port or 0))


def _service_port(port: Obj, require_name: bool, names: set[str], path: str) -> Errors:
    errs: Errors = []
    name = s(port, "name")
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs += dns_label(f"{path}.name", name)
        errs += [duplicate(f"{path}.name", name)] if name in names else []
        names.add(name)
    errs += each_invalid(f"{path}.port", n(port, "port"), is_valid_port_num(n(port, "port")))
    errs += enum(f"{path}.protocol", port.get("protocol"), PROTOCOLS)
    errs += port_num_or_name(f"{path}.targetPort", port.get("targetPort"))
    if port.get("appProtocol") is not None:
        errs += qualified_name(f"{path}.appProtocol", s(port, "appProtocol"))
    return errs


def _service_type_rules(spec: Obj) -> Errors:
    kind = s(spec, "type")
    if kind in ("LoadBalancer", "NodePort") and is_headless(spec):
        return [invalid_value("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {kind} services")]
    if kind != "ExternalName":
        return []
    errs = [forbidden_field(f"spec.{key}", "may not be set for ExternalName services")
            for key in ("clusterIPs", "ipFamilies") if lst(spec, key)]
    if spec.get("ipFamilyPolicy") is not None:
        errs.append(forbidden_field("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
    cname = s(spec, "externalName").removesuffix(".")
    return errs + (dns_subdomain("spec.externalName", cname) if cname else [required("spec.externalName")])


def _session_affinity(spec: Obj) -> Errors:
    affinity = spec.get("sessionAffinity")
    errs = enum("spec.sessionAffinity", affinity, ["ClientIP", "None"])
    config = spec.get("sessionAffinityConfig")
    if affinity == "None" and config is not None:
        errs.append(forbidden_field("spec.sessionAffinityConfig", "must not be set when session affinity is None"))
    if affinity != "ClientIP":
        return errs
    path, detail = "spec.sessionAffinityConfig", "when session affinity type is ClientIP"
    if not isinstance(config, dict):
        return errs + [required(path, detail)]
    client_ip = config.get("clientIP")
    if not isinstance(client_ip, dict):
        return errs + [required(f"{path}.clientIP", detail)]
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        return errs + [required(f"{path}.clientIP.timeoutSeconds", detail)]
    if not 0 < timeout <= MAX_CLIENT_IP_AFFINITY_SECONDS:
        errs.append(invalid_value(f"{path}.clientIP.timeoutSeconds", timeout,
                                  f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"))
    return errs


def _cluster_ips(spec: Obj) -> Errors:
    """``ValidateServiceClusterIPsRelatedFields``, single-stack view of dual-stack rules."""
    if s(spec, "type") == "ExternalName":
        return []
    ips, cluster_ip = lst(spec, "clusterIPs"), s(spec, "clusterIP")
    errs: Errors = []
    if cluster_ip and not ips:
        errs.append(required("spec.clusterIPs"))
    elif cluster_ip and ips[0] != cluster_ip:
        errs.append(invalid_value("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    elif not cluster_ip and ips:
        errs.append(invalid_value("spec.clusterIPs", ips, "must be empty when `clusterIP` is not specified"))
    errs += _ip_families(spec)
    bad = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                bad = True
                errs.append(invalid_value("spec.clusterIPs", ips, "'None' must be the first and only value"))
            continue
        ip_errs = ip_errors(f"spec.clusterIPs[{i}]", ip)
        bad = bad or bool(ip_errs)
        errs += ip_errs
    if len(ips) > 2:
        errs.append(invalid_value("spec.clusterIPs", ips, "may only hold up to 2 values"))
    return errs if bad else errs + _dual_stack(spec, ips)


def _ip_families(spec: Obj) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, family in enumerate(lst(spec, "ipFamilies")):
        if family not in ("IPv4", "IPv6"):
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, ["IPv4", "IPv6"]))
        if family in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    policies = ["PreferDualStack", "RequireDualStack", "SingleStack"]
    if policy is not None and policy not in policies:
        errs.append(not_supported("spec.ipFamilyPolicy", policy, policies))
    return errs


def _ip_version(ip: str) -> int:
    parsed = parse_ip(ip)
    return parsed.version if parsed is not None else 0


def _dual_stack(spec: Obj, ips: list[str]) -> Errors:
    """Two cluster IPs must be of different families, each matching ``ipFamilies``."""
    versions = [_ip_version(ip) for ip in ips]
    errs: Errors = []
    if len(ips) > 1 and len(set(versions)) != len(versions):
        errs.append(invalid_value("spec.clusterIPs", ips, "may specify no more than one IP for each IP family"))
    if is_headless(spec):
        return errs
    for i, (version, family) in enumerate(zip(versions, lst(spec, "ipFamilies"))):
        expected = {"IPv4": 4, "IPv6": 6}.get(family)
        if expected and version != expected:
            errs.append(invalid_value(f"spec.clusterIPs[{i}]", ips[i],
                                      f"expected an IPv{expected} value as indicated by `ipFamilies[{i}]`"))
    return errs


def _service_ports(spec: Obj) -> Errors:
    ports = objs(spec, "ports")
    errs: Errors = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _service_port(port, len(ports) > 1, names, f"spec.ports[{i}]")
    if s(spec, "type") == "ClusterIP":
        errs += [forbidden_field(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'")
                 for i, port in enumerate(ports) if n(port, "nodePort")]
    errs += _duplicate_ports(ports, "nodePort", lambda p, i: f"spec.ports[{i}].nodePort", lambda p: n(p, "nodePort"))
    return errs + _duplicate_ports(ports, "port", lambda p, i: f"spec.ports[{i}]",
                                   lambda p: {"protocol": s(p, "protocol"), "port": n(p, "port")})


def _duplicate_ports(ports: list[Obj], key: str, path: Callable[[Obj, int], str], shown_as: Callable[[Obj], Any]) -> Errors:
    """Ports (and node ports) must be unique per protocol."""
    seen: set[tuple[str, int]] = set()
    errs: Errors = []
    for i, port in enumerate(ports):
        if key == "nodePort" and not n(port, key):
            continue
        pair = (s(port, "protocol"), n(port, key))
        if pair in seen:
            errs.append(duplicate(path(port, i), shown_as(port)))
        seen.add(pair)
    return errs


def _node_port_range(spec: Obj) -> Errors:
    """The allocator's range check (``--service-node-port-range``, default 30000-32767)."""
    lo, hi = NODE_PORT_RANGE
    return [invalid_value(f"spec.ports[{i}].nodePort", n(p, "nodePort"), "provided port is not in the valid range. "
                          f"The range of valid ports is {lo}-{hi}")
            for i, p in enumerate(objs(spec, "ports")) if n(p, "nodePort") and not lo <= n(p, "nodePort") <= hi]


def _traffic_policies(spec: Obj) -> Errors:
    errs: Errors = []
    external = spec.get("externalTrafficPolicy")
    if not externally_accessible(spec) and external:
        errs.append(invalid_value("spec.externalTrafficPolicy", external, "may only be set for externally-accessible services"))
    elif externally_accessible(spec):
        errs += enum("spec.externalTrafficPolicy", external, ["Cluster", "Local"])
    needs_health_check = s(spec, "type") == "LoadBalancer" and external == "Local"
    if not needs_health_check and n(spec, "healthCheckNodePort"):
        errs.append(invalid_value("spec.healthCheckNodePort", n(spec, "healthCheckNodePort"),
                                  "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    internal = spec.get("internalTrafficPolicy")
    if internal is None and s(spec, "type") in ("ClusterIP", "LoadBalancer", "NodePort"):
        errs.append(required("spec.internalTrafficPolicy"))
    elif internal is not None and internal not in ("Cluster", "Local"):
        errs.append(not_supported("spec.internalTrafficPolicy", internal, ["Cluster", "Local"]))
    return errs


def _load_balancer_fields(spec: Obj) -> Errors:
    is_lb = s(spec, "type") == "LoadBalancer"
    errs: Errors = []
    ranges = lst(spec, "loadBalancerSourceRanges")
    if ranges and not is_lb:
        errs.append(forbidden_field("spec.LoadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"))
    for i, value in enumerate(ranges):
        errs += cidr_errors(f"spec.LoadBalancerSourceRanges[{i}]", str(value).strip())
    if spec.get("allocateLoadBalancerNodePorts") is not None and not is_lb:
        errs.append(forbidden_field("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if is_lb and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(required("allocateLoadBalancerNodePorts"))
    lb_class = spec.get("loadBalancerClass")
    if lb_class is not None and not is_lb:
        errs.append(forbidden_field("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    elif lb_class is not None:
        errs += qualified_name("spec.loadBalancerClass", lb_class)
    return errs


def _external_ips(spec: Obj) -> Errors:
    errs: Errors = []
    for i, ip in enumerate(lst(spec, "externalIPs")):
        path = f"spec.externalIPs[{i}]"
        errs += ip_errors(path, ip) or non_special_ip(path, ip)
    return errs


def non_special_ip(path: str, value: str) -> Errors:
    """No unspecified, loopback or link-local addresses (Endpoints and external IPs)."""
    ip = parse_ip(value)
    if ip is None:
        return [invalid_value(path, value, "must be a valid IP address")]
    errs: Errors = []
    if ip.is_unspecified:
        errs.append(invalid_value(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid_value(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        errs.append(invalid_value(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if ip.is_multicast and (ip in ipaddress.ip_network("224.0.0.0/24") or str(ip).startswith("ff02:")):
        errs.append(invalid_value(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


def validate_service(obj: Obj) -> Errors:
    """``ValidateService`` plus the node port range check the allocator applies."""
    spec = m(obj, "spec")
    errs = validate_object_meta(m(obj, "metadata"), True, name_is_dns1035_label)
    if not objs(spec, "ports") and not is_headless(spec) and s(spec, "type") != "ExternalName":
        errs.append(required("spec.ports"))
    errs += _service_type_rules(spec)
    errs += _service_ports(spec)
    if spec.get("selector") is not None:
        errs += validate_labels(m(spec, "selector"), "spec.selector")
    errs += _session_affinity(spec)
    errs += _cluster_ips(spec)
    errs += _external_ips(spec)
    errs += enum("spec.type", spec.get("type"), SERVICE_TYPES)
    errs += _load_balancer_fields(spec)
    errs += _traffic_policies(spec)
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution != "PreferClose":
        errs.append(not_supported("spec.trafficDistribution", distribution, ["PreferClose"]))
    return errs + _node_port_range(spec)


def _cluster_ip_upgrade(new: Obj, old: Obj) -> Errors:
    """Allocated cluster IPs may be added to or trimmed, but never changed."""
    if "ExternalName" in (s(new, "type"), s(old, "type")) or (is_headless(new) and is_headless(old)):
        return []
    new_ips, old_ips = lst(new, "clusterIPs"), lst(old, "clusterIPs")
    if len(new_ips) == len(old_ips):
        return [invalid_value(f"spec.clusterIPs[{i}]", new_ips, "may not change once set")
                for i, ip in enumerate(old_ips) if ip != new_ips[i]]
    if len(new_ips) < len(old_ips) and not new_ips:
        return [invalid_value("spec.clusterIPs[0]", new_ips, "primary clusterIP can not be unset")]
    if old_ips and new_ips[0] != old_ips[0]:
        return [invalid_value("spec.clusterIPs[0]", new_ips, "may not change once set")]
    if len(new_ips) == 1 < len(old_ips) and new.get("ipFamilyPolicy") != "SingleStack":
        return [invalid_value("spec.ipFamilyPolicy", new.get("ipFamilyPolicy") or "null",
                              "must be set to 'SingleStack' when releasing the secondary clusterIP")]
    return []


def _ip_family_upgrade(new: Obj, old: Obj) -> Errors:
    """The primary IP family of a non-headless Service is fixed once set."""
    if "ExternalName" in (s(new, "type"), s(old, "type")) or is_headless(new) or is_headless(old):
        return []
    new_families, old_families = lst(new, "ipFamilies"), lst(old, "ipFamilies")
    if len(new_families) == len(old_families) and new_families != old_families:
        return [invalid_value("spec.ipFamilies[0]", new_families, "may not change once set")]
    if old_families and new_families and new_families[0] != old_families[0]:
        return [invalid_value("spec.ipFamilies[0]", lst(new, "clusterIPs"), "may not change once set")]
    return []


def validate_service_update(new: Obj, old: Obj) -> Errors:
    new_spec, old_spec = m(new, "spec"), m(old, "spec")
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata"))
    errs += _cluster_ip_upgrade(new_spec, old_spec) + _ip_family_upgrade(new_spec, old_spec)
    both_lb = s(new_spec, "type") == s(old_spec, "type") == "LoadBalancer"
    if both_lb and new_spec.get("loadBalancerClass") != old_spec.get("loadBalancerClass"):
        errs.append(invalid_value("spec.loadBalancerClass", new_spec.get("loadBalancerClass") or "null", "may not change once set"))
    return errs + validate_service(new)


# --- Endpoints ----------------------------------------------------------------------------------


def _endpoint_address(address: Obj, path: str) -> Errors:
    errs = ip_errors(f"{path}.ip", s(address, "ip"))
    if s(address, "hostname"):
        errs += dns_label(f"{path}.hostname", s(address, "hostname"))
    if address.get("nodeName") is not None:
        errs += each_invalid(f"{path}.nodeName", s(address, "nodeName"), name_is_dns_subdomain(s(address, "nodeName"), False))
    return errs + non_special_ip(f"{path}.ip", s(address, "ip"))


def _endpoint_port(port: Obj, require_name: bool, path: str) -> Errors:
    errs: Errors = []
    if require_name and not s(port, "name"):
        errs.append(required(f"{path}.name"))
    elif s(port, "name"):
        errs += dns_label(f"{path}.name", s(port, "name"))
    errs += each_invalid(f"{path}.port", n(port, "port"), is_valid_port_num(n(port, "port")))
    errs += enum(f"{path}.protocol", port.get("protocol"), PROTOCOLS)
    if port.get("appProtocol") is not None:
        errs += qualified_name(f"{path}.appProtocol", s(port, "appProtocol"))
    return errs


def validate_endpoints(obj: Obj) -> Errors:
    errs = validate_object_meta(m(obj, "metadata"), True, name_is_dns_subdomain)
    for i, subset in enumerate(objs(obj, "subsets")):
        path = f"subsets[{i}]"
        if not objs(subset, "addresses") and not lst(subset, "notReadyAddresses"):
            errs.append(required(path, "must specify `addresses` or `notReadyAddresses`"))
        for key in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(objs(subset, key)):
                errs += _endpoint_address(address, f"{path}.{key}[{j}]")
        ports = objs(subset, "ports")
        for j, port in enumerate(ports):
            errs += _endpoint_port(port, len(ports) > 1, f"{path}.ports[{j}]")
    return errs


# --- Namespace, Node -------------------------------------------------------------------------


def validate_namespace(obj: Obj) -> Errors:
    errs = validate_object_meta(m(obj, "metadata"), False, name_is_dns_label)
    for finalizer in lst(m(obj, "spec"), "finalizers"):
        errs += qualified_name("spec.finalizers", finalizer) + kube_finalizer_name("spec.finalizers", finalizer)
    return errs


def validate_namespace_status_update(new: Obj, old: Obj) -> Errors:
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata"))
    phase = s(m(new, "status"), "phase")
    if not m(new, "metadata").get("deletionTimestamp") and phase != "Active":
        errs.append(invalid_value("status.Phase", phase, "may only be 'Active' if `deletionTimestamp` is empty"))
    elif m(new, "metadata").get("deletionTimestamp") and phase != "Terminating":
        errs.append(invalid_value("status.Phase", phase, "may only be 'Terminating' if `deletionTimestamp` is not empty"))
    return errs


TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


def validate_taints(taints: list[Any], path: str) -> Errors:
    errs: Errors = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints):
        item = f"{path}[{i}]"
        errs += qualified_name(f"{item}.key", s(taint, "key"))
        problems = is_valid_label_value(s(taint, "value"))
        errs += [invalid_value(f"{item}.value", s(taint, "value"), ";".join(problems))] if problems else []
        errs += enum(f"{item}.effect", taint.get("effect"), TAINT_EFFECTS)
        pair = (s(taint, "effect"), s(taint, "key"))
        if pair in seen:
            errs.append(FieldError("Duplicate value", item, taint, "taints must be unique by key and effect pair"))
            continue
        seen.add(pair)
    return errs


def _node_resources(obj: Obj) -> Errors:
    errs: Errors = []
    for key in ("capacity", "allocatable"):
        for name, value in m(m(obj, "status"), key).items():
            errs += validate_resource_quantity_value(name, value, f"status.{key}.{name}")
    return errs


def _pod_cidrs(spec: Obj) -> Errors:
    cidrs = lst(spec, "podCIDRs")
    errs: Errors = []
    for i, cidr in enumerate(cidrs):
        errs += cidr_errors(f"spec.podCIDRs[{i}]", cidr)
    if len(cidrs) > 1 and not errs:
        families = [_ip_version(c.partition("/")[0]) for c in cidrs]
        if len(cidrs) > 2 or len(set(families)) != len(families):
            errs.append(invalid_value("spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family"))
        errs += [duplicate(f"spec.podCIDRs[{i}]", c) for i, c in enumerate(cidrs) if c in cidrs[:i]]
    return errs


def validate_node(obj: Obj) -> Errors:
    errs = validate_object_meta(m(obj, "metadata"), False, name_is_dns_subdomain)
    errs += validate_taints(objs(m(obj, "spec"), "taints"), "metadata.taints")
    return errs + _node_resources(obj) + _pod_cidrs(m(obj, "spec"))


def validate_node_update(new: Obj, old: Obj) -> Errors:
    """Node spec is mostly mutable; podCIDRs and providerID only go from unset to set."""
    new_spec, old_spec = m(new, "spec"), m(old, "spec")
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata")) + _node_resources(new)
    addresses = objs(m(new, "status"), "addresses")
    errs += [duplicate(f"status.addresses[{i}]", a) for i, a in enumerate(addresses) if a in addresses[:i]]
    cidr_message = "node updates may not change podCIDR except from \"\" to valid"
    if lst(old_spec, "podCIDRs") and lst(old_spec, "podCIDRs") != lst(new_spec, "podCIDRs"):
        errs.append(forbidden_field("spec.podCIDRs", cidr_message))
    if s(old_spec, "providerID") and s(old_spec, "providerID") != s(new_spec, "providerID"):
        errs.append(forbidden_field("spec.providerID", "node updates may not change providerID except from \"\" to valid"))
    errs += validate_taints(objs(new_spec, "taints"), "metadata.taints")
    if s(new_spec, "externalID") != s(old_spec, "externalID"):
        errs.append(forbidden_field("spec.externalID", "may not be updated"))
    return errs


# --- PersistentVolume, PersistentVolumeClaim ---------------------------------------------------

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
VOLUME_MODES = ["Block", "Filesystem"]
RECLAIM_POLICIES = ["Delete", "Recycle", "Retain"]


def _access_modes(spec: Obj, path: str, empty_detail: str) -> Errors:
    modes = lst(spec, "accessModes")
    errs = [] if modes else [required(f"{path}.accessModes", empty_detail)]
    errs += [not_supported(f"{path}.accessModes", mode, ACCESS_MODES) for mode in modes if mode not in ACCESS_MODES]
    if "ReadWriteOncePod" in modes and any(mode in ACCESS_MODES and mode != "ReadWriteOncePod" for mode in modes):
        errs.append(forbidden_field(f"{path}.accessModes", "may not use ReadWriteOncePod with other access modes"))
    return errs


def _class_name(path: str, value: Any) -> Errors:
    return each_invalid(path, value, name_is_dns_subdomain(value, False)) if value else []


def _pv_csi(source: Obj, path: str) -> Errors:
    return validate_csi_driver(s(source, "driver"), f"{path}.driver") + required_fields(source, path, "volumeHandle")


def _pv_local(source: Obj, path: str) -> Errors:
    return [required(f"{path}.path")] if not s(source, "path") else path_no_backsteps(f"{path}.path", s(source, "path"))


def _pv_local_with_affinity(has_affinity: bool) -> SourceCheck:
    """A local volume is pinned to a node, so (when it is the PV's source) it needs node affinity."""
    def check(source: Obj, path: str) -> Errors:
        errs = _pv_local(source, path)
        return errs if has_affinity else errs + [required("spec.nodeAffinity", "Local volume requires node affinity")]
    return check


PV_SOURCES: dict[str, SourceCheck] = {
    "hostPath": validate_host_path,
    "gcePersistentDisk": lambda src, p: required_fields(src, p, "pdName"),
    "awsElasticBlockStore": lambda src, p: required_fields(src, p, "volumeID"),
    "glusterfs": lambda src, p: required_fields(src, p, "endpoints", "path"),
    "flocker": counted_only,
    "nfs": validate_nfs,
    "rbd": lambda src, p: required_fields(src, p, "monitors", "image"),
    "quobyte": lambda src, p: required_fields(src, p, "registry", "volume"),
    "cephfs": lambda src, p: required_fields(src, p, "monitors"),
    "iscsi": lambda src, p: required_fields(src, p, "targetPortal", "iqn"),
    "cinder": lambda src, p: required_fields(src, p, "volumeID"),
    "fc": counted_only,
    "flexVolume": lambda src, p: required_fields(src, p, "driver"),
    "azureFile": lambda src, p: required_fields(src, p, "secretName", "shareName"),
    "vsphereVolume": lambda src, p: required_fields(src, p, "volumePath"),
    "photonPersistentDisk": lambda src, p: required_fields(src, p, "pdID"),
    "portworxVolume": lambda src, p: required_fields(src, p, "volumeID"),
    "azureDisk": lambda src, p: required_fields(src, p, "diskName", "diskURI"),
    "scaleIO": lambda src, p: required_fields(src, p, "gateway", "system", "volumeName"),
    "local": _pv_local,
    "storageos": lambda src, p: required_fields(src, p, "volumeName"),
    "csi": _pv_csi,
}


def _pv_capacity(spec: Obj) -> Errors:
    capacity = m(spec, "capacity")
    errs = [] if capacity else [required("spec.capacity")]
    if "storage" not in capacity or len(capacity) > 1:
        errs.append(not_supported("spec.capacity", capacity, ["storage"]))
    for name, value in capacity.items():
        errs += basic_resource(value, f"spec.capacity[{name}]") + positive_quantity(value, f"spec.capacity[{name}]")
    return errs


def _volume_node_affinity(affinity: Any) -> Errors:
    selector = affinity.get("required") if isinstance(affinity, dict) else None
    if not isinstance(selector, dict):
        return [required("spec.nodeAffinity.required", "must specify required node constraints")]
    return validate_node_selector(selector, "spec.nodeAffinity.required")


def validate_persistent_volume(obj: Obj) -> Errors:
    spec = m(obj, "spec")
    errs = validate_object_meta(m(obj, "metadata"), False, name_is_dns_subdomain)
    errs += _access_modes(spec, "spec", "") + _pv_capacity(spec)
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in RECLAIM_POLICIES:
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES))
    affinity = spec.get("nodeAffinity")
    errs += _volume_node_affinity(affinity) if affinity is not None else []
    errs += validate_sources(spec, "spec", {**PV_SOURCES, "local": _pv_local_with_affinity(affinity is not None)})
    if spec.get("hostPath") is not None and s(m(spec, "hostPath"), "path").rstrip("/") == "" and policy == "Recycle":
        errs.append(forbidden_field("spec.persistentVolumeReclaimPolicy", "may not be 'recycle' for a hostPath mount of '/'"))
    errs += _class_name("spec.storageClassName", s(spec, "storageClassName"))
    mode = spec.get("volumeMode")
    return errs + ([not_supported("spec.volumeMode", mode, VOLUME_MODES)] if mode is not None and mode not in VOLUME_MODES else [])


def validate_persistent_volume_update(new: Obj, old: Obj) -> Errors:
    errs = validate_persistent_volume(new)
    sources = {key: m(new, "spec").get(key) for key in PV_SOURCES}
    if not same(sources, {key: m(old, "spec").get(key) for key in PV_SOURCES}):
        errs.append(forbidden_field("spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation"))
    errs += immutable("volumeMode", m(new, "spec").get("volumeMode"), m(old, "spec").get("volumeMode"))
    if m(old, "spec").get("nodeAffinity") is not None and not same(m(new, "spec").get("nodeAffinity"),
                                                                    m(old, "spec").get("nodeAffinity")):
        errs.append(invalid_value("nodeAffinity", m(new, "spec").get("nodeAffinity") or "null",
                                  "field is immutable, except for updating from beta label to GA"))
    return errs


def _data_source(source: Any, path: str) -> Errors:
    if not isinstance(source, dict):
        return []
    errs = [required(f"{path}.{key}") for key in ("name", "kind") if not s(source, key)]
    group = s(source, "apiGroup")
    if not group and s(source, "kind") != "PersistentVolumeClaim":
        errs.append(invalid_value(path, s(source, "kind"), "must be 'PersistentVolumeClaim' when referencing the default apiGroup"))
    elif group:
        errs += dns_subdomain(f"{path}.apiGroup", group)
    return errs


def validate_pvc_spec(spec: Obj, path: str) -> Errors:
    errs = _access_modes(spec, path, "at least 1 access mode is required")
    errs += validate_label_selector(spec.get("selector"), f"{path}.selector")
    storage_path = f"{path}.resources[storage]"
    requests = m(m(spec, "resources"), "requests")
    if "storage" not in requests:
        errs.append(required(storage_path))
    else:
        errs += positive_quantity(requests["storage"], storage_path) or \
            validate_resource_quantity_value("storage", requests["storage"], storage_path)
    errs += _class_name(f"{path}.storageClassName", s(spec, "storageClassName"))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        errs.append(not_supported(f"{path}.volumeMode", mode, VOLUME_MODES))
    errs += _data_source(spec.get("dataSource"), f"{path}.dataSource")
    errs += _data_source(spec.get("dataSourceRef"), f"{path}.dataSourceRef")
    return errs


def validate_persistent_volume_claim(obj: Obj) -> Errors:
    return validate_object_meta(m(obj, "metadata"), True, name_is_dns_subdomain) + validate_pvc_spec(m(obj, "spec"), "spec")


def validate_persistent_volume_claim_update(new: Obj, old: Obj) -> Errors:
    """Only ``volumeName`` (once) and, for bound claims, a larger storage request may change."""
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata")) + validate_persistent_volume_claim(new)
    new_spec, old_spec = dict(m(new, "spec")), dict(m(old, "spec"))
    if not s(old_spec, "volumeName"):
        old_spec["volumeName"] = new_spec.get("volumeName")
    old_beta = m(m(old, "metadata"), "annotations").get("volume.beta.kubernetes.io/storage-class")
    if old_spec.get("storageClassName") is None and new_spec.get("storageClassName") is not None \
            and old_beta in (None, new_spec["storageClassName"]):  # validateStorageClassUpgradeFromNil
        old_spec["storageClassName"] = new_spec["storageClassName"]
    if s(m(new, "status"), "phase") == "Bound":
        new_spec["resources"] = {**m(new_spec, "resources"), "requests": {
            **m(m(new_spec, "resources"), "requests"), "storage": m(m(old_spec, "resources"), "requests").get("storage")}}
    if not same(new_spec, old_spec):
        errs.append(forbidden_field("spec", "spec is immutable after creation except resources.requests and "
                                            "volumeAttributesClassName for bound claims"))
    new_size = quantity_or_none(m(m(m(new, "spec"), "resources"), "requests").get("storage"))
    old_size = quantity_or_none(m(m(old_spec, "resources"), "requests").get("storage"))
    if new_size is not None and old_size is not None and new_size < old_size:
        errs.append(forbidden_field("spec.resources.requests.storage", "field can not be less than previous value"))
    return errs + immutable("volumeMode", m(new, "spec").get("volumeMode"), m(old, "spec").get("volumeMode"))


# --- Event (core/v1 and events.k8s.io/v1), Lease --------------------------------------------

_EVENTS_V1_FIELDS = {"regarding": "involvedObject", "note": "message", "deprecatedCount": "count",
                     "deprecatedSource": "source", "deprecatedFirstTimestamp": "firstTimestamp",
                     "deprecatedLastTimestamp": "lastTimestamp"}


def as_core_event(obj: Obj) -> Obj:
    """An events.k8s.io/v1 Event under its internal (core) field names, which errors use."""
    return {_EVENTS_V1_FIELDS.get(key, key): value for key, value in obj.items()}


def _legacy_event(event: Obj) -> Errors:
    """``legacyValidateEvent``: applies to every Event, whatever group it came through."""
    namespace = s(m(event, "metadata"), "namespace")
    involved = s(m(event, "involvedObject"), "namespace")
    mismatch = invalid_value("involvedObject.namespace", involved, "does not match event.namespace")
    errs: Errors = []
    if not event.get("eventTime"):
        if (not involved and namespace not in ("", "default")) or (involved and namespace != involved):
            errs.append(mismatch)
    else:
        if not involved and namespace not in ("default", "kube-system"):
            errs.append(mismatch)
        errs += _reported_fields(event)
    return errs + each_invalid("namespace", namespace, is_dns1123_subdomain(namespace))


def _reported_fields(event: Obj) -> Errors:
    controller = s(event, "reportingController") or s(event, "reportingComponent")  # internal name / core v1 JSON
    errs = [] if controller else [required("reportingController")]
    errs += each_invalid("reportingController", controller, is_qualified_name(controller))
    for key, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128), ("message", 1024)):
        if key != "message" and not s(event, key):
            errs.append(required(key))
        if len(s(event, key)) > limit:
            errs.append(invalid_value(key, "", f"can have at most {limit} characters"))
    return errs


def _event_series(event: Obj) -> Errors:
    series = event.get("series")
    if not isinstance(series, dict):
        return []
    errs = [invalid_value("series.count", "", "should be at least 2")] if n(series, "count") < 2 else []
    return errs + ([] if series.get("lastObservedTime") else [required("series.lastObservedTime")])


def _strict_event(event: Obj) -> Errors:
    """The extra rules for Events written through events.k8s.io/v1."""
    errs = validate_object_meta(m(event, "metadata"), True, name_is_dns_subdomain) + _event_series(event)
    if not event.get("eventTime"):
        errs.append(required("eventTime"))
    if event.get("type") not in ("Normal", "Warning"):
        errs.append(invalid_value("type", "", f"has invalid value: {s(event, 'type')}"))
    unset = [key for key in ("firstTimestamp", "lastTimestamp") if event.get(key)]
    unset += ["count"] if n(event, "count") else []
    unset += ["source"] if s(m(event, "source"), "component") or s(m(event, "source"), "host") else []
    return errs + [invalid_value(key, "", "needs to be unset") for key in unset]


def validate_core_event(obj: Obj) -> Errors:
    return _legacy_event(obj)


def validate_events_v1_event(obj: Obj) -> Errors:
    event = as_core_event(obj)
    return _legacy_event(event) + _strict_event(event)


_EVENT_IMMUTABLE = ("involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count",
                    "reason", "type", "eventTime", "action", "related", "reportingController", "reportingInstance")


def validate_events_v1_event_update(new: Obj, old: Obj) -> Errors:
    new_event, old_event = as_core_event(new), as_core_event(old)
    errs = _legacy_event(new_event) + validate_object_meta_update(m(new, "metadata"), m(old, "metadata"))
    if not same(new_event.get("series"), old_event.get("series")):
        errs += _event_series(new_event)
    for key in _EVENT_IMMUTABLE:
        errs += immutable(key, new_event.get(key), old_event.get(key))
    return errs


def validate_lease(obj: Obj) -> Errors:
    return validate_object_meta(m(obj, "metadata"), True, name_is_dns_subdomain) + _lease_spec(m(obj, "spec"))


def _lease_spec(spec: Obj) -> Errors:
    errs: Errors = []
    duration, transitions = spec.get("leaseDurationSeconds"), spec.get("leaseTransitions")
    if duration is not None and duration <= 0:
        errs.append(invalid_value("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    if transitions is not None and transitions < 0:
        errs.append(invalid_value("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    strategy = spec.get("strategy")
    if strategy is not None and "/" not in strategy and strategy != "OldestEmulationVersion":
        errs.append(not_supported("spec.strategy.strategy", strategy, ["OldestEmulationVersion"]))
    elif strategy is not None and "/" in strategy:
        errs += qualified_name("spec.strategy.strategy", strategy)
    if spec.get("preferredHolder") and not strategy:
        errs.append(forbidden_field("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


# --- dispatch -----------------------------------------------------------------------------------

Create = Callable[[Obj], Errors]
Update = Callable[[Obj, Obj], Errors]


@dataclass(frozen=True)
class Rules:
    """How one kind is validated; ``update`` defaults to metadata rules plus ``create``."""

    create: Create
    update: Update | None = None
    status: Update | None = None


def _meta_then(create: Create) -> Update:
    def update(new: Obj, old: Obj) -> Errors:
        return validate_object_meta_update(m(new, "metadata"), m(old, "metadata")) + create(new)
    return update


def _meta_only(new: Obj, old: Obj) -> Errors:
    return validate_object_meta_update(m(new, "metadata"), m(old, "metadata"))


def _pv_status(new: Obj, old: Obj) -> Errors:
    errs = _meta_only(new, old)
    return errs + ([] if s(m(new, "metadata"), "resourceVersion") else [required("resourceVersion")])


def _rules() -> dict[tuple[str, str], Rules]:
    from tinykube.api import validation_csr, validation_pod, validation_quota  # imported here: they build on the helpers above

    return {
        ("", "Pod"): Rules(validation_pod.validate_pod_create, validation_pod.validate_pod_update,
                           validation_pod.validate_pod_status_update),
        ("", "ConfigMap"): Rules(validate_config_map, validate_config_map_update),
        ("", "Secret"): Rules(validate_secret, validate_secret_update),
        ("", "ServiceAccount"): Rules(validate_service_account),
        ("", "Service"): Rules(validate_service, validate_service_update, _meta_only),
        ("", "Endpoints"): Rules(validate_endpoints),
        ("", "Namespace"): Rules(validate_namespace, _meta_only, validate_namespace_status_update),
        ("", "Node"): Rules(validate_node, validate_node_update, validate_node_update),
        ("", "PersistentVolume"): Rules(validate_persistent_volume, validate_persistent_volume_update, _pv_status),
        ("", "PersistentVolumeClaim"): Rules(validate_persistent_volume_claim, validate_persistent_volume_claim_update,
                                             _pv_status),
        ("", "Event"): Rules(validate_core_event, lambda new, old: validate_core_event(new)),
        ("events.k8s.io", "Event"): Rules(validate_events_v1_event, validate_events_v1_event_update),
        ("coordination.k8s.io", "Lease"): Rules(validate_lease),
        ("certificates.k8s.io", "CertificateSigningRequest"): Rules(validation_csr.validate_csr,
                                                                    validation_csr.validate_csr_update,
                                                                    validation_csr.validate_csr_update),
        ("", "LimitRange"): Rules(validation_quota.validate_limit_range),
        ("", "ResourceQuota"): Rules(validation_quota.validate_resource_quota, validation_quota.validate_resource_quota_update,
                                     validation_quota.validate_resource_quota_status_update),
    }


_RULES: dict[tuple[str, str], Rules] = {}


def rules_for(rt: ResourceType) -> Rules:
    """The rules of ``rt``'s kind; kinds without specific rules get ObjectMeta checks only."""
    if not _RULES:
        _RULES.update(_rules())
    fallback = Rules(lambda obj: validate_object_meta(m(obj, "metadata"), rt.namespaced, name_is_dns_subdomain))
    return _RULES.get((rt.group, rt.kind), fallback)


def validate_create(rt: ResourceType, obj: Obj) -> Errors:
    """Errors for creating ``obj`` (already decoded, defaulted, named and namespaced)."""
    return rules_for(rt).create(obj)


def validate_update(rt: ResourceType, new: Obj, old: Obj) -> Errors:
    """Errors for replacing ``old`` with ``new`` (both defaulted; ``new`` carries a resourceVersion)."""
    rules = rules_for(rt)
    return (rules.update or _meta_then(rules.create))(new, old)


def validate_status_update(rt: ResourceType, new: Obj, old: Obj) -> Errors:
    """Errors for a write to the ``status`` subresource."""
    return (rules_for(rt).status or _meta_only)(new, old)

