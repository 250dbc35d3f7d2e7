"""Decode the Kubernetes protobuf request bodies that kubectl's typed client sends into JSON dicts.

``kubectl create configmap|secret generic|namespace|serviceaccount|service clusterip|quota`` POST
``application/vnd.kubernetes.protobuf`` (``kubectl drain`` its Evictions and DeleteOptions) and
never fall back to JSON (kubectl-api-contract.md
section 9), so the server must read them.  A body is the magic ``k8s\\0`` followed by a
``runtime.Unknown`` message whose ``raw`` field holds the object message.

The object layouts are declared once in :data:`_MESSAGES` with field numbers taken from
upstream ``generated.proto`` (``k8s.io/api/core/v1``, ``k8s.io/apimachinery/pkg/apis/meta/v1``,
``.../runtime``, ``.../util/intstr``) and the Go JSON tags of ``types.go``; one generic
wire-format decoder walks them.  The result is what kube-apiserver's JSON encoding of the decoded
Go struct would be: ``omitempty`` scalars, slices and maps are dropped when empty, pointers are
kept when present on the wire, non-pointer structs are always present (``"status": {}``).  One
deliberate difference: zero timestamps are omitted instead of rendered as ``null``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from tinykube.api import registry
from tinykube.api.errors import ApiError, bad_request

MAGIC = b"k8s\x00"

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

# message -> ((field number, Go JSON tag, Go type), ...) in Go struct order.  Types: string, int32,
# int64, bool, []byte (base64 in JSON), bytes (kept raw); *T (pointer: kept when on the wire), []T,
# map[string]T; Time, IntOrString, FieldsV1 (special encodings); any other name is a message below
# (a non-pointer struct).
_MESSAGES: dict[str, tuple[tuple[int, str, str], ...]] = {
    # k8s.io/apimachinery/pkg/runtime
    "Unknown": ((1, "typeMeta", "TypeMeta"), (2, "raw", "bytes"), (3, "contentEncoding", "string"),
                (4, "contentType", "string")),
    "TypeMeta": ((1, "apiVersion,omitempty", "string"), (2, "kind,omitempty", "string")),
    # k8s.io/apimachinery/pkg/apis/meta/v1
    "ObjectMeta": (
        (1, "name,omitempty", "string"), (2, "generateName,omitempty", "string"),
        (3, "namespace,omitempty", "string"), (4, "selfLink,omitempty", "string"), (5, "uid,omitempty", "string"),
        (6, "resourceVersion,omitempty", "string"), (7, "generation,omitempty", "int64"),
        (8, "creationTimestamp,omitempty", "Time"), (9, "deletionTimestamp,omitempty", "*Time"),
        (10, "deletionGracePeriodSeconds,omitempty", "*int64"), (11, "labels,omitempty", "map[string]string"),
        (12, "annotations,omitempty", "map[string]string"), (13, "ownerReferences,omitempty", "[]OwnerReference"),
        (14, "finalizers,omitempty", "[]string"), (17, "managedFields,omitempty", "[]ManagedFieldsEntry"),
    ),
    "OwnerReference": ((5, "apiVersion", "string"), (1, "kind", "string"), (3, "name", "string"),
                       (4, "uid", "string"), (6, "controller,omitempty", "*bool"),
                       (7, "blockOwnerDeletion,omitempty", "*bool")),
    "ManagedFieldsEntry": ((1, "manager,omitempty", "string"), (2, "operation,omitempty", "string"),
                           (3, "apiVersion,omitempty", "string"), (4, "time,omitempty", "*Time"),
                           (6, "fieldsType,omitempty", "string"), (7, "fieldsV1,omitempty", "*FieldsV1"),
                           (8, "subresource,omitempty", "string")),
    "DeleteOptions": ((1, "gracePeriodSeconds,omitempty", "*int64"), (2, "preconditions,omitempty", "*Preconditions"),
                      (3, "orphanDependents,omitempty", "*bool"), (4, "propagationPolicy,omitempty", "*string"),
                      (5, "dryRun,omitempty", "[]string"),
                      (6, "ignoreStoreReadErrorWithClusterBreakingPotential,omitempty", "*bool")),
    "Preconditions": ((1, "uid,omitempty", "*string"), (2, "resourceVersion,omitempty", "*string")),
    "Condition": ((1, "type", "string"), (2, "status", "string"), (3, "observedGeneration,omitempty", "int64"),
                  (4, "lastTransitionTime", "Time"), (5, "reason", "string"), (6, "message", "string")),
    # k8s.io/api/core/v1
    "ConfigMap": ((1, "metadata,omitempty", "ObjectMeta"), (4, "immutable,omitempty", "*bool"),
                  (2, "data,omitempty", "map[string]string"), (3, "binaryData,omitempty", "map[string][]byte")),
    "Secret": ((1, "metadata,omitempty", "ObjectMeta"), (5, "immutable,omitempty", "*bool"),
               (2, "data,omitempty", "map[string][]byte"), (4, "stringData,omitempty", "map[string]string"),
               (3, "type,omitempty", "string")),
    "Namespace": ((1, "metadata,omitempty", "ObjectMeta"), (2, "spec,omitempty", "NamespaceSpec"),
                  (3, "status,omitempty", "NamespaceStatus")),
    "NamespaceSpec": ((1, "finalizers,omitempty", "[]string"),),
    "NamespaceStatus": ((1, "phase,omitempty", "string"), (2, "conditions,omitempty", "[]NamespaceCondition")),
    "NamespaceCondition": ((1, "type", "string"), (2, "status", "string"),
                           (4, "lastTransitionTime,omitempty", "Time"), (5, "reason,omitempty", "string"),
                           (6, "message,omitempty", "string")),
    "ServiceAccount": ((1, "metadata,omitempty", "ObjectMeta"), (2, "secrets,omitempty", "[]ObjectReference"),
                       (3, "imagePullSecrets,omitempty", "[]LocalObjectReference"),
                       (4, "automountServiceAccountToken,omitempty", "*bool")),
    "ObjectReference": ((1, "kind,omitempty", "string"), (2, "namespace,omitempty", "string"),
                        (3, "name,omitempty", "string"), (4, "uid,omitempty", "string"),
                        (5, "apiVersion,omitempty", "string"), (6, "resourceVersion,omitempty", "string"),
                        (7, "fieldPath,omitempty", "string")),
    "LocalObjectReference": ((1, "name,omitempty", "string"),),
    "Service": ((1, "metadata,omitempty", "ObjectMeta"), (2, "spec,omitempty", "ServiceSpec"),
                (3, "status,omitempty", "ServiceStatus")),
    "ServiceSpec": (
        (1, "ports,omitempty", "[]ServicePort"), (2, "selector,omitempty", "map[string]string"),
        (3, "clusterIP,omitempty", "string"), (18, "clusterIPs,omitempty", "[]string"),
        (4, "type,omitempty", "string"), (5, "externalIPs,omitempty", "[]string"),
        (7, "sessionAffinity,omitempty", "string"), (8, "loadBalancerIP,omitempty", "string"),
        (9, "loadBalancerSourceRanges,omitempty", "[]string"), (10, "externalName,omitempty", "string"),
        (11, "externalTrafficPolicy,omitempty", "string"), (12, "healthCheckNodePort,omitempty", "int32"),
        (13, "publishNotReadyAddresses,omitempty", "bool"),
        (14, "sessionAffinityConfig,omitempty", "*SessionAffinityConfig"),
        (19, "ipFamilies,omitempty", "[]string"), (17, "ipFamilyPolicy,omitempty", "*string"),
        (20, "allocateLoadBalancerNodePorts,omitempty", "*bool"), (21, "loadBalancerClass,omitempty", "*string"),
        (22, "internalTrafficPolicy,omitempty", "*string"), (23, "trafficDistribution,omitempty", "*string"),
    ),
    "ServicePort": ((1, "name,omitempty", "string"), (2, "protocol,omitempty", "string"),
                    (6, "appProtocol,omitempty", "*string"), (3, "port", "int32"),
                    (4, "targetPort,omitempty", "IntOrString"), (5, "nodePort,omitempty", "int32")),
    "SessionAffinityConfig": ((1, "clientIP,omitempty", "*ClientIPConfig"),),
    "ClientIPConfig": ((1, "timeoutSeconds,omitempty", "*int32"),),
    "ServiceStatus": ((1, "loadBalancer,omitempty", "LoadBalancerStatus"),
                      (2, "conditions,omitempty", "[]Condition")),
    "LoadBalancerStatus": ((1, "ingress,omitempty", "[]LoadBalancerIngress"),),
    "LoadBalancerIngress": ((1, "ip,omitempty", "string"), (2, "hostname,omitempty", "string"),
                            (3, "ipMode,omitempty", "*string"), (4, "ports,omitempty", "[]PortStatus")),
    "PortStatus": ((1, "port", "int32"), (2, "protocol", "string"), (3, "error,omitempty", "*string")),
    "ResourceQuota": ((1, "metadata,omitempty", "ObjectMeta"), (2, "spec,omitempty", "ResourceQuotaSpec"),
                      (3, "status,omitempty", "ResourceQuotaStatus")),
    "ResourceQuotaSpec": ((1, "hard,omitempty", "map[string]Quantity"), (2, "scopes,omitempty", "[]string"),
                          (3, "scopeSelector,omitempty", "*ScopeSelector")),
    "ScopeSelector": ((1, "matchExpressions,omitempty", "[]ScopedResourceSelectorRequirement"),),
    "ScopedResourceSelectorRequirement": ((1, "scopeName", "string"), (2, "operator", "string"),
                                          (3, "values,omitempty", "[]string")),
    "ResourceQuotaStatus": ((1, "hard,omitempty", "map[string]Quantity"), (2, "used,omitempty", "map[string]Quantity")),
    # k8s.io/api/policy/v1 (``kubectl drain``)
    "Eviction": ((1, "metadata,omitempty", "ObjectMeta"), (2, "deleteOptions,omitempty", "*DeleteOptions")),
    # k8s.io/api/authentication/v1 (``kubectl create token``)
    "TokenRequest": ((1, "metadata,omitempty", "ObjectMeta"), (2, "spec", "TokenRequestSpec"),
                     (3, "status,omitempty", "TokenRequestStatus")),
    "TokenRequestSpec": ((1, "audiences", "[]string"), (4, "expirationSeconds", "*int64"),
                         (3, "boundObjectRef", "*BoundObjectReference")),
    "BoundObjectReference": ((1, "kind,omitempty", "string"), (2, "apiVersion,omitempty", "string"),
                             (3, "name,omitempty", "string"), (4, "uid,omitempty", "string")),
    "TokenRequestStatus": ((1, "token", "string"), (2, "expirationTimestamp", "Time")),
}

# (apiVersion, kind) -> top-level message.  Other kinds (Pod, ...) kubectl sends as JSON.
_KINDS = {("v1", kind): kind for kind in ("ConfigMap", "Secret", "Namespace", "ServiceAccount", "Service",
                                          "ResourceQuota")}
_KINDS[("authentication.k8s.io/v1", "TokenRequest")] = "TokenRequest"
_KINDS.update({(version, "Eviction"): "Eviction" for version in ("policy/v1", "policy/v1beta1")})
_VERSIONLESS = {"DeleteOptions"}  # registered in every group version (a typed client's DELETE body)


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object kube-apiserver would decode from a protobuf request body.

    Raises 400 BadRequest for malformed bytes or unregistered kinds and 415 for kinds this
    server only accepts as JSON.
    """
    envelope = _unwrap(body)
    type_meta = envelope["typeMeta"]  # contentEncoding/contentType are ignored, as kube-apiserver does
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if not kind:
        raise bad_request(f"Object 'Kind' is missing in '{orjson.dumps(type_meta).decode()}'")
    message = kind if kind in _VERSIONLESS else _KINDS.get((api_version, kind))
    if message is None:
        raise _unsupported(api_version, kind)
    return {"kind": kind, "apiVersion": api_version, **_message(message, envelope["raw"])}


def _unwrap(body: bytes) -> dict[str, Any]:
    """Check the magic prefix (messages as k8s.io/apimachinery's protobuf serializer) and decode the envelope."""
    if not body:
        raise bad_request("empty data")
    if not body.startswith(MAGIC):
        raise bad_request(f"provided data does not appear to be a protobuf message, expected prefix {list(MAGIC)}")
    if len(body) == len(MAGIC):
        raise bad_request("empty body")
    return _message("Unknown", body[len(MAGIC):])


def _unsupported(api_version: str, kind: str) -> ApiError:
    if registry.by_kind(api_version, kind) is None:
        version = api_version.rpartition("/")[2]
        return bad_request(f'no kind "{kind}" is registered for version "{api_version or version}" '
                           'in scheme "pkg/api/legacyscheme/scheme.go:30"')
    return ApiError(415, "UnsupportedMediaType",
                    f"protobuf request bodies for {api_version}, Kind={kind} are not supported by this server; "
                    "send application/json")


# --- generic message decoding -----------------------------------------------------------------


def _message(name: str, data: bytes) -> dict[str, Any]:
    """Decode one message by its layout and render it as Go's encoding/json would."""
    layout = _MESSAGES[name]
    seen = _decode_fields(data, {number: (tag.partition(",")[0], gotype) for number, tag, gotype in layout})
    out: dict[str, Any] = {}
    for number, tag, gotype in layout:
        json_name, _, options = tag.partition(",")
        value = seen[number] if number in seen else _zero(gotype)
        if _emitted(gotype, value, omitempty=options == "omitempty"):
            out[json_name] = value
    return out


def _decode_fields(data: bytes, types: dict[int, tuple[str, str]]) -> dict[int, Any]:
    """Field number -> JSON value for the fields in ``types`` (number -> (name, Go type)); others are skipped."""
    seen: dict[int, Any] = {}
    for number, wire, value in _fields(data):
        if number in types:
            name, gotype = types[number]
            _collect(seen, number, gotype, _value(gotype, wire, value, name))
    return seen


def _collect(seen: dict[int, Any], number: int, gotype: str, value: Any) -> None:
    """Repeated fields accumulate, map entries merge, a repeated singular field keeps the last value."""
    if gotype.startswith("[]") and gotype != "[]byte":
        seen.setdefault(number, []).append(value)
    elif gotype.startswith("map["):
        seen.setdefault(number, {}).update(value)
    else:
        seen[number] = value


def _value(gotype: str, wire: int, value: int | bytes, field: str) -> Any:
    """One wire value as the JSON value of ``gotype`` (the element type for slices)."""
    gotype = gotype.removeprefix("*")
    if gotype.startswith("[]") and gotype != "[]byte":
        gotype = gotype[2:]
    expected = _VARINT if gotype in _VARINT_TYPES else _BYTES
    if wire != expected:
        raise bad_request(f"proto: wrong wireType = {wire} for field {field}")
    if gotype in _VARINT_TYPES:
        return _VARINT_TYPES[gotype](value)
    assert isinstance(value, bytes)
    if gotype.startswith("map[string]"):
        value_type = gotype.removeprefix("map[string]")
        entry = _decode_fields(value, {1: (field, "string"), 2: (field, value_type)})
        return {entry.get(1, ""): entry.get(2, _zero(value_type))}
    if gotype in _BYTES_TYPES:
        return _BYTES_TYPES[gotype](value)
    return _message(gotype, value)


def _zero(gotype: str) -> Any:
    """The JSON of a field's Go zero value; None marks "nothing to emit" (nil pointer, zero Time)."""
    if gotype.startswith("*") or gotype == "Time":
        return None
    if gotype.startswith("map["):
        return {}
    if gotype.startswith("[]") and gotype != "[]byte":
        return []
    if gotype in _ZEROS:
        return _ZEROS[gotype]
    return _message(gotype, b"")


def _emitted(gotype: str, value: Any, *, omitempty: bool) -> bool:
    """Go's encoding/json rules: structs always, pointers when set, omitempty drops empty values."""
    if value is None:  # nil pointer or zero Time
        return False
    if gotype.startswith("*") or gotype in _MESSAGES or gotype == "IntOrString":
        return True
    return not (omitempty and value in ("", 0, [], {}))


def _signed(bits: int) -> Callable[[int | bytes], int]:
    """Varints carry negative ints as 64-bit two's complement."""
    def convert(value: int | bytes) -> int:
        assert isinstance(value, int)
        value &= (1 << 64) - 1
        if value >= 1 << 63:
            value -= 1 << 64
        return value if bits == 64 else ((value + (1 << 31)) % (1 << 32)) - (1 << 31)
    return convert


def _string(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _time(value: bytes) -> str | None:
    """metav1.Time: {1: seconds, 2: nanos}; kube-apiserver keeps only the seconds, an empty message is zero."""
    if not value:
        return None
    seconds = _decode_fields(value, {1: ("seconds", "int64"), 2: ("nanos", "int32")}).get(1, 0)
    try:
        return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OverflowError:
        raise bad_request(f"invalid timestamp: {seconds} seconds") from None


def _int_or_string(value: bytes) -> int | str:
    """intstr.IntOrString: {1: type (0 int, 1 string), 2: intVal, 3: strVal}."""
    fields = _decode_fields(value, {1: ("type", "int64"), 2: ("intVal", "int32"), 3: ("strVal", "string")})
    return fields.get(3, "") if fields.get(1, 0) == 1 else fields.get(2, 0)


def _quantity(value: bytes) -> str:
    """resource.Quantity: {1: string}, its text (checked and canonicalized by decoding as JSON is)."""
    return str(_decode_fields(value, {1: ("string", "string")}).get(1, ""))


def _fields_v1(value: bytes) -> Any:
    """metav1.FieldsV1: {1: Raw}, whose bytes are the JSON document itself."""
    raw = _decode_fields(value, {1: ("Raw", "bytes")}).get(1, b"")
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"invalid FieldsV1: {exc}") from None


_VARINT_TYPES: dict[str, Callable[[int | bytes], Any]] = {
    "int32": _signed(32), "int64": _signed(64), "bool": bool,
}
_BYTES_TYPES: dict[str, Callable[[bytes], Any]] = {
    "string": _string, "[]byte": lambda v: base64.b64encode(v).decode(), "bytes": bytes, "Time": _time,
    "IntOrString": _int_or_string, "FieldsV1": _fields_v1, "Quantity": _quantity,
}
_ZEROS: dict[str, Any] = {"string": "", "int32": 0, "int64": 0, "bool": False, "[]byte": "", "bytes": b"",
                          "IntOrString": 0, "Quantity": "0"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --- wire format ------------------------------------------------------------------------------


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for every field: an int for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise bad_request(f"proto: illegal tag 0 (wire type {wire})")
        if wire == _VARINT:
            value, pos = _varint(data, pos)
            yield number, wire, value
            continue
        if wire == _BYTES:
            size, pos = _varint(data, pos)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
        else:
            raise bad_request(f"proto: illegal wireType {wire}")
        if pos + size > len(data):
            raise bad_request("unexpected EOF")
        yield number, wire, data[pos:pos + size]
        pos += size


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise bad_request("proto: integer overflow")
    raise bad_request("unexpected EOF")
