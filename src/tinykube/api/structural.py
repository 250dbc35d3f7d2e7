"""Decode a request body structurally, exactly as kube-apiserver's JSON decoder fills Go structs.

Kubernetes unmarshals every body into the typed Go object (``sigs.k8s.io/json``, a case-sensitive
fork of ``encoding/json``) before anything else looks at it, and clients see the side effects:

- a JSON value of the wrong type is a 400 ``Pod in version "v1" cannot be handled as a Pod: json:
  cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of
  type int32`` (the *first* such error; decoding goes on after it);
- a field the struct does not have is dropped; ``fieldValidation=Strict`` turns the collected
  paths (``spec.containers[0].bar``, at most 100) into a 400 ``strict decoding error: unknown
  field "..."``, ``Warn`` (the server default) into ``Warning`` headers;
- ``resource.Quantity``, ``intstr.IntOrString``, ``metav1.Time``/``MicroTime`` decode themselves
  (``UnmarshalJSON``): their errors abort decoding at once and win over an earlier type error,
  and what the server stores is their re-encoding (``0.5`` -> ``500m``, times in UTC);
- ``[]byte`` fields (``Secret.data`` values) are base64 and re-encoded canonically.

:func:`normalize` walks a decoded body once against a compact, precompiled form of the upstream
v1.32 schemas and performs that round trip in place.  JSON null follows Go too: a field set to
null keeps its zero value, which we store as an absent key (what the omitempty round trip gives
for nearly every field); inside a map or list null decodes to the element's zero value (``""``
for ``map[string]string``, ``"0"`` for a quantity, ``{}`` for a struct), and stays null where Go
keeps a nil (``[]byte``, slices, maps, times).

Go type names in messages come from the schema (``int32``, ``[]v1.Container``,
``map[string]string``, ``v1.ResourceList`` for quantity maps) plus :data:`_NAMED`, the named
string types of ``k8s.io/api`` that the schema does not record (``v1.PullPolicy``, ``types.UID``).

Not reproduced: ``duplicate field`` errors (a parsed dict has no duplicates; they need the raw
body), number literals whose Python form differs from the text sent (``1e3`` is reported as
``1000.0``), and JSON arrays of bytes for ``[]byte`` fields (reported as a type error).

Upstream: sigs.k8s.io/json internal/golang/encoding/json (decode.go, kubernetes_patch.go),
apimachinery pkg/runtime/serializer/json/json.go, apiserver pkg/endpoints/handlers/create.go
(``transformDecodeError``, ``addStrictDecodingWarnings``), api/resource/quantity.go,
util/intstr/intstr.go, apis/meta/v1/time.go and micro_time.go, Go's time/format.go and
encoding/base64.
"""

from __future__ import annotations

import binascii
import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import orjson

from tinykube.api import errors
from tinykube.api.quantity import QuantityError, canonical
from tinykube.api.schemas import definitions, ref_name

MAX_STRICT_ERRORS = 100  # sigs.k8s.io/json stops collecting strict errors here


@dataclass(frozen=True)
class Normalized:
    """What decoding found: unknown-field paths in document order, and the decode error text.

    ``error`` is the text after ``cannot be handled as a Pod: ``; when it is set the request
    fails whatever ``fieldValidation`` says, and the walked object is only partly normalized.
    """

    unknown: list[str]
    error: str | None = None


def normalize(obj: dict[str, Any], definition: str) -> Normalized:
    """Decode ``obj`` as the Go type ``definition`` (e.g. ``io.k8s.api.core.v1.Pod``), in place.

    Unknown fields and null fields are removed, quantities, times and base64 values are
    rewritten in the form the API server would store, and problems are reported, not raised.
    """
    root = _compiler().definition(definition)
    state = _State()
    try:
        _WALK[root.kind](state, root, obj, "", "", "")
    except _Fatal as fatal:
        return Normalized(state.unknown, str(fatal))
    return Normalized(state.unknown, state.error)


def decode_failure(kind: str, api_version: str, normalized: Normalized, strict: bool) -> errors.ApiError | None:
    """The 400 BadRequest kube-apiserver answers for a body that failed decoding, if any.

    A type error always fails; unknown fields fail only when ``strict`` (fieldValidation=Strict).
    The message names only the version part of ``api_version``, as ``transformDecodeError`` does.
    """
    if normalized.error is not None:
        detail = normalized.error
    elif strict and normalized.unknown:
        detail = "strict decoding error: " + ", ".join(warnings(normalized))
    else:
        return None
    version = _go_quote(api_version.rsplit("/", 1)[-1])
    return errors.bad_request(f"{kind} in version {version} cannot be handled as a {kind}: {detail}")


def warnings(normalized: Normalized) -> list[str]:
    """The ``Warning`` header texts for fieldValidation=Warn: ``unknown field "spec.foo"``."""
    return [f"unknown field {_go_quote(path)}" for path in normalized.unknown]


# --- the compiled schema ---------------------------------------------------------------------

_STRUCT, _LIST, _MAP, _STRING, _INT, _BOOL, _FLOAT, _BYTES, _QUANTITY, _INT_OR_STRING, _TIME, _MICRO_TIME, _RAW = range(13)

_SPECIAL = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": _QUANTITY,
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": _INT_OR_STRING,
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": _TIME,
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": _MICRO_TIME,
}

_INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

# Go types of fields whose schema says only "string" (k8s.io/api core/v1, meta/v1, coordination/v1
# types.go), keyed "GoStruct.jsonField"; pointers are dereferenced, as reflect reports them.
_NAMED = {
    "AppArmorProfile.type": "v1.AppArmorProfileType",
    "AttachedVolume.name": "v1.UniqueVolumeName",
    "AzureDiskVolumeSource.cachingMode": "v1.AzureDataDiskCachingMode",
    "AzureDiskVolumeSource.kind": "v1.AzureDataDiskKind",
    "Capabilities.add": "[]v1.Capability",
    "Capabilities.drop": "[]v1.Capability",
    "Condition.status": "v1.ConditionStatus",
    "ConfigMapNodeConfigSource.uid": "types.UID",
    "Container.imagePullPolicy": "v1.PullPolicy",
    "Container.restartPolicy": "v1.ContainerRestartPolicy",
    "Container.terminationMessagePolicy": "v1.TerminationMessagePolicy",
    "ContainerPort.protocol": "v1.Protocol",
    "ContainerResizePolicy.resourceName": "v1.ResourceName",
    "ContainerResizePolicy.restartPolicy": "v1.ResourceResizeRestartPolicy",
    "EmptyDirVolumeSource.medium": "v1.StorageMedium",
    "EndpointPort.protocol": "v1.Protocol",
    "EphemeralContainer.imagePullPolicy": "v1.PullPolicy",
    "EphemeralContainer.restartPolicy": "v1.ContainerRestartPolicy",
    "EphemeralContainer.terminationMessagePolicy": "v1.TerminationMessagePolicy",
    "HTTPGetAction.scheme": "v1.URIScheme",
    "HostPathVolumeSource.type": "v1.HostPathType",
    "ImageVolumeSource.pullPolicy": "v1.PullPolicy",
    "LabelSelectorRequirement.operator": "v1.LabelSelectorOperator",
    "LeaseSpec.strategy": "v1.CoordinatedLeaseStrategy",
    "LoadBalancerIngress.ipMode": "v1.LoadBalancerIPMode",
    "ManagedFieldsEntry.operation": "v1.ManagedFieldsOperationType",
    "ModifyVolumeStatus.status": "v1.PersistentVolumeClaimModifyVolumeStatus",
    "NamespaceCondition.status": "v1.ConditionStatus",
    "NamespaceCondition.type": "v1.NamespaceConditionType",
    "NamespaceSpec.finalizers": "[]v1.FinalizerName",
    "NamespaceStatus.phase": "v1.NamespacePhase",
    "NodeAddress.type": "v1.NodeAddressType",
    "NodeCondition.status": "v1.ConditionStatus",
    "NodeCondition.type": "v1.NodeConditionType",
    "NodeSelectorRequirement.operator": "v1.NodeSelectorOperator",
    "NodeStatus.phase": "v1.NodePhase",
    "NodeStatus.volumesInUse": "[]v1.UniqueVolumeName",
    "ObjectMeta.uid": "types.UID",
    "ObjectReference.uid": "types.UID",
    "OwnerReference.uid": "types.UID",
    "PersistentVolumeClaimCondition.status": "v1.ConditionStatus",
    "PersistentVolumeClaimCondition.type": "v1.PersistentVolumeClaimConditionType",
    "PersistentVolumeClaimSpec.accessModes": "[]v1.PersistentVolumeAccessMode",
    "PersistentVolumeClaimSpec.volumeMode": "v1.PersistentVolumeMode",
    "PersistentVolumeClaimStatus.accessModes": "[]v1.PersistentVolumeAccessMode",
    "PersistentVolumeClaimStatus.allocatedResourceStatuses": "map[v1.ResourceName]v1.ClaimResourceStatus",
    "PersistentVolumeClaimStatus.phase": "v1.PersistentVolumeClaimPhase",
    "PersistentVolumeSpec.accessModes": "[]v1.PersistentVolumeAccessMode",
    "PersistentVolumeSpec.persistentVolumeReclaimPolicy": "v1.PersistentVolumeReclaimPolicy",
    "PersistentVolumeSpec.volumeMode": "v1.PersistentVolumeMode",
    "PersistentVolumeStatus.phase": "v1.PersistentVolumePhase",
    "PodCondition.status": "v1.ConditionStatus",
    "PodCondition.type": "v1.PodConditionType",
    "PodOS.name": "v1.OSName",
    "PodReadinessGate.conditionType": "v1.PodConditionType",
    "PodSecurityContext.fsGroupChangePolicy": "v1.PodFSGroupChangePolicy",
    "PodSecurityContext.seLinuxChangePolicy": "v1.PodSELinuxChangePolicy",
    "PodSecurityContext.supplementalGroupsPolicy": "v1.SupplementalGroupsPolicy",
    "PodSpec.dnsPolicy": "v1.DNSPolicy",
    "PodSpec.preemptionPolicy": "v1.PreemptionPolicy",
    "PodSpec.restartPolicy": "v1.RestartPolicy",
    "PodStatus.phase": "v1.PodPhase",
    "PodStatus.qosClass": "v1.PodQOSClass",
    "PodStatus.resize": "v1.PodResizeStatus",
    "PortStatus.protocol": "v1.Protocol",
    "ResourceHealth.health": "v1.ResourceHealthStatus",
    "ResourceHealth.resourceID": "v1.ResourceID",
    "ResourceStatus.name": "v1.ResourceName",
    "SeccompProfile.type": "v1.SeccompProfileType",
    "Secret.type": "v1.SecretType",
    "SecurityContext.procMount": "v1.ProcMountType",
    "ServicePort.protocol": "v1.Protocol",
    "ServiceSpec.externalTrafficPolicy": "v1.ServiceExternalTrafficPolicy",
    "ServiceSpec.internalTrafficPolicy": "v1.ServiceInternalTrafficPolicy",
    "ServiceSpec.ipFamilies": "[]v1.IPFamily",
    "ServiceSpec.ipFamilyPolicy": "v1.IPFamilyPolicy",
    "ServiceSpec.sessionAffinity": "v1.ServiceAffinity",
    "ServiceSpec.type": "v1.ServiceType",
    "Taint.effect": "v1.TaintEffect",
    "Toleration.effect": "v1.TaintEffect",
    "Toleration.operator": "v1.TolerationOperator",
    "TopologySpreadConstraint.nodeAffinityPolicy": "v1.NodeInclusionPolicy",
    "TopologySpreadConstraint.nodeTaintsPolicy": "v1.NodeInclusionPolicy",
    "TopologySpreadConstraint.whenUnsatisfiable": "v1.UnsatisfiableConstraintAction",
    "VolumeMount.mountPropagation": "v1.MountPropagationMode",
    "VolumeMount.recursiveReadOnly": "v1.RecursiveReadOnlyMode",
    "VolumeMountStatus.recursiveReadOnly": "v1.RecursiveReadOnlyMode",
}


class _Node:
    """One Go type: its kind, ``reflect.Type.String()``, and what it contains.

    ``struct`` is the unqualified struct name (``ContainerPort``) that type errors cite, and
    ``bounds`` the range of an integer kind.
    """

    __slots__ = ("kind", "go_type", "fields", "struct", "elem", "bounds")

    def __init__(self, kind: int, go_type: str, elem: _Node | None = None, bounds: tuple[int, int] = (0, 0)):
        self.kind = kind
        self.go_type = go_type
        self.elem = elem
        self.bounds = bounds
        self.fields: dict[str, _Node] = {}
        self.struct = ""


class _Compiler:
    """Turns schema definitions into :class:`_Node` graphs once; shared across definitions."""

    def __init__(self, defs: dict[str, dict[str, Any]]):
        self._defs = defs
        self._built: dict[str, _Node] = {}

    def definition(self, name: str) -> _Node:
        """The node of a named definition; structs are registered before their fields (cycles)."""
        node = self._built.get(name)
        if node is not None:
            return node
        schema = self._defs[name]
        if name in _SPECIAL:
            node = _Node(_SPECIAL[name], _go_name(name))
        elif "properties" in schema:
            node = _Node(_STRUCT, _go_name(name))
            node.struct = name.rsplit(".", 1)[1]
            self._built[name] = node
            node.fields = {key: self.schema(sub, _NAMED.get(f"{node.struct}.{key}")) for key, sub in schema["properties"].items()}
        else:
            node = self.schema(schema, None)
        self._built[name] = node
        return node

    def schema(self, schema: dict[str, Any], named: str | None) -> _Node:
        """The node of an inline schema; ``named`` is the Go type when the schema can't tell it."""
        if "$ref" in schema:
            return self.definition(ref_name(schema["$ref"]))
        kinds = schema.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "array" in kinds:
            item = self.schema(schema["items"], named[2:] if named else None)
            return _Node(_LIST, named or "[]" + item.go_type, item)
        if "object" in kinds and isinstance(schema.get("additionalProperties"), dict):
            value = self.schema(schema["additionalProperties"], named.split("]", 1)[1] if named else None)
            return _Node(_MAP, named or _map_type(value), value)
        if "string" in kinds:
            return _Node(_BYTES, "[]uint8") if schema.get("format") == "byte" else _Node(_STRING, named or "string")
        if "integer" in kinds:
            go_type = schema.get("format", "int64")
            return _Node(_INT, go_type, bounds=_INT_BOUNDS[go_type])
        if "boolean" in kinds:
            return _Node(_BOOL, "bool")
        if "number" in kinds:
            return _Node(_FLOAT, "float64")
        return _Node(_RAW, "")  # FieldsV1 and other raw JSON: any value, kept verbatim


def _go_name(definition: str) -> str:
    """``io.k8s.api.core.v1.PodSpec`` -> ``v1.PodSpec`` (Go's package-qualified type name)."""
    package, name = definition.rsplit(".", 2)[-2:]
    return f"{package}.{name}"


def _map_type(value: _Node) -> str:
    """Every quantity map in these APIs is the named ``v1.ResourceList``."""
    return "v1.ResourceList" if value.kind == _QUANTITY else "map[string]" + value.go_type


@functools.cache
def _compiler() -> _Compiler:
    return _Compiler(definitions())


# --- the walk --------------------------------------------------------------------------------


class _Fatal(Exception):
    """An ``UnmarshalJSON`` error: Go stops decoding and returns it, even over a saved error."""


class _State:
    """What one walk collects: unknown-field paths and the first saved (non-fatal) error."""

    __slots__ = ("unknown", "error")

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.error: str | None = None

    def unknown_field(self, path: str) -> None:
        if len(self.unknown) < MAX_STRICT_ERRORS:
            self.unknown.append(path)

    def save(self, message: str) -> None:
        if self.error is None:
            self.error = message

    def mismatch(self, value: Any, node: _Node, struct: str, fpath: str, described: str = "") -> Any:
        """Save Go's ``UnmarshalTypeError`` for ``value``; Go skips the value, so it stays."""
        self.save(_type_error(described or _describe(value), node.go_type, struct, fpath))
        return value


def _type_error(described: str, go_type: str, struct: str, fpath: str) -> str:
    """``UnmarshalTypeError.Error()``: the struct is the innermost one, the path has no indexes."""
    if struct or fpath:
        return f"json: cannot unmarshal {described} into Go struct field {struct}.{fpath} of type {go_type}"
    return f"json: cannot unmarshal {described} into Go value of type {go_type}"


def _describe(value: Any) -> str:
    """How ``encoding/json`` names a JSON value that does not fit (numbers without their text)."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "object" if isinstance(value, dict) else "array"


def _describe_number(value: Any) -> str:
    """As :func:`_describe`, but numbers that miss an integer target carry their text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"number {value!r}"
    return _describe(value)


# Every walker takes (state, node, value, path, struct, fpath) and returns the value to store:
# ``path`` is the strict-error path (``spec.containers[0]``), ``struct``/``fpath`` the error
# context of the innermost struct field (``Container``, ``spec.containers``).
_Walker = Callable[[_State, _Node, Any, str, str, str], Any]


def _walk_struct(state: _State, node: _Node, obj: Any, path: str, struct: str, fpath: str) -> Any:
    if type(obj) is not dict:
        return state.mismatch(obj, node, struct, fpath)
    fields = node.fields
    for key in list(obj):
        child = fields.get(key)
        if child is None:
            state.unknown_field(f"{path}.{key}" if path else key)
            del obj[key]
            continue
        value = obj[key]
        if value is None:
            del obj[key]
            continue
        new = _WALK[child.kind](state, child, value, f"{path}.{key}" if path else key, node.struct, f"{fpath}.{key}" if fpath else key)
        if new is not value:
            obj[key] = new
    return obj


def _walk_list(state: _State, node: _Node, items: Any, path: str, struct: str, fpath: str) -> Any:
    if type(items) is not list:
        return state.mismatch(items, node, struct, fpath)
    elem = node.elem
    assert elem is not None
    walk = _WALK[elem.kind]
    for index, item in enumerate(items):
        new = _zero(elem) if item is None else walk(state, elem, item, f"{path}[{index}]", struct, fpath)
        if new is not item:
            items[index] = new
    return items


def _walk_map(state: _State, node: _Node, mapping: Any, path: str, struct: str, fpath: str) -> Any:
    if type(mapping) is not dict:
        return state.mismatch(mapping, node, struct, fpath)
    elem = node.elem
    assert elem is not None
    walk = _WALK[elem.kind]
    for key, value in mapping.items():
        new = _zero(elem) if value is None else walk(state, elem, value, f"{path}.{key}", struct, fpath)
        if new is not value:
            mapping[key] = new  # replacing a value keeps the dict's size: safe while iterating
    return mapping


def _zero(node: _Node) -> Any:
    """What Go's zero value of ``node`` encodes back to, for a null map value or list item."""
    if node.kind == _STRUCT:
        return {}
    return _ZEROS.get(node.kind)


_ZEROS: dict[int, Any] = {_STRING: "", _INT: 0, _BOOL: False, _FLOAT: 0, _QUANTITY: "0", _INT_OR_STRING: 0}


def _walk_string(state: _State, node: _Node, value: Any, path: str, struct: str, fpath: str) -> Any:
    return value if type(value) is str else state.mismatch(value, node, struct, fpath)


def _walk_int(state: _State, node: _Node, value: Any, path: str, struct: str, fpath: str) -> Any:
    low, high = node.bounds
    if type(value) is int and low <= value <= high:
        return value
    return state.mismatch(value, node, struct, fpath, _describe_number(value))


def _walk_bool(state: _State, node: _Node, value: Any, path: str, struct: str, fpath: str) -> Any:
    return value if type(value) is bool else state.mismatch(value, node, struct, fpath)


def _walk_float(state: _State, node: _Node, value: Any, path: str, struct: str, fpath: str) -> Any:
    if type(value) in (int, float):
        return value
    return state.mismatch(value, node, struct, fpath)


def _walk_raw(state: _State, node: _Node, value: Any, path: str, struct: str, fpath: str) -> Any:
    return value


def _walk_bytes(state: _State, node: _Node, value: Any, path: str, struct: str, fpath: str) -> Any:
    """A ``[]byte``: base64 in, canonical base64 out; a bad one is a saved, context-free error."""
    if type(value) is not str:
        return state.mismatch(value, node, struct, fpath)
    try:
        return _canonical_base64(value)
    except _CorruptBase64 as bad:
        state.save(f"illegal base64 data at input byte {bad.offset}")
        return value


def _walk_quantity(state: _State, node: _Node, value: Any, path: str, struct: str, fpath: str) -> Any:
    """``Quantity.UnmarshalJSON`` parses the raw JSON text of whatever it is handed."""
    text = orjson.dumps(value).decode() if isinstance(value, (dict, list)) else value
    try:
        return canonical(text)
    except QuantityError as error:
        raise _Fatal(str(error)) from None


def _walk_int_or_string(state: _State, node: _Node, value: Any, path: str, struct: str, fpath: str) -> Any:
    """``IntOrString.UnmarshalJSON``: a string, else ``encoding/json`` into an int32."""
    low, high = _INT_BOUNDS["int32"]
    if type(value) is str or (type(value) is int and low <= value <= high):
        return value
    raise _Fatal(_type_error(_describe_number(value), "int32", struct, fpath))


def _walk_time(state: _State, node: _Node, value: Any, path: str, struct: str, fpath: str) -> Any:
    """``Time``/``MicroTime.UnmarshalJSON``: a string in the layout; stored re-encoded in UTC."""
    if type(value) is not str:
        raise _Fatal(_type_error(_describe(value), "string", struct, fpath))
    return _canonical_time(value, _RFC3339_MICRO if node.kind == _MICRO_TIME else _RFC3339)


_WALK: dict[int, _Walker] = {
    _STRUCT: _walk_struct,
    _LIST: _walk_list,
    _MAP: _walk_map,
    _STRING: _walk_string,
    _INT: _walk_int,
    _BOOL: _walk_bool,
    _FLOAT: _walk_float,
    _BYTES: _walk_bytes,
    _QUANTITY: _walk_quantity,
    _INT_OR_STRING: _walk_int_or_string,
    _TIME: _walk_time,
    _MICRO_TIME: _walk_time,
    _RAW: _walk_raw,
}


# --- Go's strconv.Quote ------------------------------------------------------------------------

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def _go_quote(text: str) -> str:
    """``strconv.Quote`` (``%q``), which strict errors and the version in messages use."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return '"' + "".join(_go_escape(char) for char in text) + '"'


def _go_escape(char: str) -> str:
    if char in _GO_ESCAPES:
        return _GO_ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# --- encoding/base64 StdEncoding ---------------------------------------------------------------

_PLAIN_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_BASE64_VALUES = {char: index for index, char in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_NEWLINES = (ord("\n"), ord("\r"))
_PAD = ord("=")


class _CorruptBase64(Exception):
    """``base64.CorruptInputError``: the byte offset of the first bad input byte."""

    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


def _canonical_base64(text: str) -> str:
    """Decode as Go's ``StdEncoding`` (which skips newlines) and re-encode canonically."""
    if len(text) % 4 == 0 and _PLAIN_BASE64.fullmatch(text):
        data = binascii.a2b_base64(text)
    else:
        data = _go_base64_decode(text.encode())
    encoded = binascii.b2a_base64(data, newline=False).decode()
    return text if encoded == text else encoded


def _go_base64_decode(src: bytes) -> bytes:
    """Port of ``Encoding.Decode``: quantum by quantum, so error offsets match upstream."""
    out = bytearray()
    at = 0
    while at < len(src):
        at, chunk = _go_base64_quantum(src, at)
        out += chunk
    return bytes(out)


def _go_base64_quantum(src: bytes, at: int) -> tuple[int, bytes]:
    """Port of ``decodeQuantum``: up to four symbols, skipping newlines, honouring padding."""
    sextets: list[int] = []
    while len(sextets) < 4:
        if at == len(src):
            if not sextets:
                return at, b""
            raise _CorruptBase64(at - len(sextets))
        char = src[at]
        at += 1
        if char in _BASE64_VALUES:
            sextets.append(_BASE64_VALUES[char])
        elif char not in _NEWLINES:
            at = _go_base64_padding(src, at, char, len(sextets))
            break
    value = 0
    for sextet in sextets + [0] * (4 - len(sextets)):
        value = value << 6 | sextet
    return at, value.to_bytes(3, "big")[: len(sextets) - 1]


def _go_base64_padding(src: bytes, at: int, char: int, count: int) -> int:
    """The end of input after ``=``: "==" after two symbols, "=" after three, then nothing."""
    if char != _PAD or count < 2:
        raise _CorruptBase64(at - 1)
    if count == 2:
        at = _skip_newlines(src, at)
        if at == len(src):
            raise _CorruptBase64(len(src))
        if src[at] != _PAD:
            raise _CorruptBase64(at - 1)
        at += 1
    at = _skip_newlines(src, at)
    if at < len(src):
        raise _CorruptBase64(at)
    return at


def _skip_newlines(src: bytes, at: int) -> int:
    while at < len(src) and src[at] in _NEWLINES:
        at += 1
    return at


# --- time.Parse for RFC 3339 layouts ----------------------------------------------------------

_RFC3339 = "2006-01-02T15:04:05Z07:00"
_RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"
_FRACTION = ".000000"
# (literal prefix, layout element) in layout order, as time.nextStdChunk splits the layouts.
_CHUNKS = {
    _RFC3339: (("", "2006"), ("-", "01"), ("-", "02"), ("T", "15"), (":", "04"), (":", "05"), ("", "Z07:00")),
    _RFC3339_MICRO: (("", "2006"), ("-", "01"), ("-", "02"), ("T", "15"), (":", "04"), (":", "05"), ("", _FRACTION), ("", "Z07:00")),
}
_CANONICAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


class _BadElement(Exception):
    """Go's ``errBad``: the value does not match the layout element being parsed."""


class _Clock:
    """The fields ``time.Parse`` fills in."""

    __slots__ = ("year", "month", "day", "hour", "minute", "second", "nanos", "offset")

    def __init__(self) -> None:
        self.year = self.month = self.day = self.hour = self.minute = self.second = self.nanos = self.offset = 0


def _canonical_time(value: str, layout: str) -> str:
    """Parse as ``time.Parse(layout)`` and format as the API server re-encodes it (UTC)."""
    clock = _parse_time(value, layout)
    if layout == _RFC3339 and _CANONICAL_TIME.fullmatch(value):
        return value  # the common case: already UTC to the second
    try:
        utc = datetime(clock.year, clock.month, clock.day, clock.hour, clock.minute, clock.second) - timedelta(seconds=clock.offset)
    except (ValueError, OverflowError):  # year 0 or beyond Python's range: keep the text
        return value
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    if layout == _RFC3339_MICRO:
        text += f".{clock.nanos // 1000:06d}"
    return text + "Z"


def _parse_time(value: str, layout: str) -> _Clock:
    """Port of ``time.parse`` for our two layouts, raising :class:`_Fatal` with Go's message."""
    clock = _Clock()
    rest = value
    chunks = _CHUNKS[layout]
    for index, (prefix, element) in enumerate(chunks):
        if not rest.startswith(prefix):
            raise _Fatal(_cannot_parse(value, layout, rest, prefix))
        rest = rest[len(prefix) :]
        fraction_next = index + 1 < len(chunks) and chunks[index + 1][1] == _FRACTION
        try:
            after, out_of_range = _ELEMENTS[element](rest, clock, fraction_next)
        except _BadElement:
            raise _Fatal(_cannot_parse(value, layout, rest, element)) from None
        if out_of_range:
            raise _Fatal(f"parsing time {_time_quote(value)}: {out_of_range} out of range")
        rest = after
    if rest:
        raise _Fatal(f"parsing time {_time_quote(value)}: extra text: {_time_quote(rest)}")
    if not 1 <= clock.day <= _days_in(clock.month, clock.year):
        raise _Fatal(f"parsing time {_time_quote(value)}: day out of range")
    return clock


def _cannot_parse(value: str, layout: str, rest: str, element: str) -> str:
    quoted = _time_quote
    return f"parsing time {quoted(value)} as {quoted(layout)}: cannot parse {quoted(rest)} as {quoted(element)}"


def _time_quote(text: str) -> str:
    """time's own ``quote``: like %q, but every non-ASCII or control byte becomes ``\\xNN``."""
    out = []
    for char in text:
        if char < " " or char >= "\x80":
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
        else:
            out.append("\\" + char if char in '"\\' else char)
    return '"' + "".join(out) + '"'


def _is_digit(text: str, at: int) -> bool:
    return at < len(text) and "0" <= text[at] <= "9"


def _getnum(text: str, fixed: bool) -> tuple[int, str]:
    """``getnum``: one or two digits, exactly two when ``fixed``."""
    if not _is_digit(text, 0):
        raise _BadElement
    if not _is_digit(text, 1):
        if fixed:
            raise _BadElement
        return int(text[0]), text[1:]
    return int(text[:2]), text[2:]


def _atoi(text: str) -> int:
    """``time.atoi``: an optional sign and ASCII digits (possibly none)."""
    sign = -1 if text[:1] == "-" else 1
    digits = text[1:] if text[:1] in ("-", "+") else text
    if not all("0" <= char <= "9" for char in digits):
        raise _BadElement
    return sign * int(digits or "0")


def _nanoseconds(text: str, width: int) -> tuple[int, str]:
    """``parseNanoseconds`` of ``text[:width]`` (separator included): (nanos, range error)."""
    if text[0] not in ".,":
        raise _BadElement
    digits = text[1 : min(width, 10)]
    nanos = _atoi(digits)
    if nanos < 0:
        return 0, "fractional second"
    return nanos * 10 ** (9 - len(digits)), ""


def _year(text: str, clock: _Clock, fraction_next: bool) -> tuple[str, str]:
    if len(text) < 4 or not _is_digit(text, 0):
        raise _BadElement
    clock.year = _atoi(text[:4])
    return text[4:], ""


def _month(text: str, clock: _Clock, fraction_next: bool) -> tuple[str, str]:
    clock.month, rest = _getnum(text, True)
    return rest, "" if 1 <= clock.month <= 12 else "month"


def _day(text: str, clock: _Clock, fraction_next: bool) -> tuple[str, str]:
    clock.day, rest = _getnum(text, True)
    return rest, ""


def _hour(text: str, clock: _Clock, fraction_next: bool) -> tuple[str, str]:
    clock.hour, rest = _getnum(text, False)
    return rest, "" if clock.hour < 24 else "hour"


def _minute(text: str, clock: _Clock, fraction_next: bool) -> tuple[str, str]:
    clock.minute, rest = _getnum(text, True)
    return rest, "" if clock.minute < 60 else "minute"


def _second(text: str, clock: _Clock, fraction_next: bool) -> tuple[str, str]:
    """Seconds, plus any fraction the layout does not spell out (RFC 3339 accepts one)."""
    clock.second, rest = _getnum(text, True)
    if clock.second >= 60:
        return rest, "second"
    if fraction_next or len(rest) < 2 or rest[0] not in ".," or not _is_digit(rest, 1):
        return rest, ""
    width = 2
    while _is_digit(rest, width):
        width += 1
    clock.nanos, out_of_range = _nanoseconds(rest, width)
    return rest[width:], out_of_range


def _fraction(text: str, clock: _Clock, fraction_next: bool) -> tuple[str, str]:
    """``.000000``: exactly six digits after the separator."""
    width = len(_FRACTION)
    if len(text) < width:
        raise _BadElement
    clock.nanos, out_of_range = _nanoseconds(text, width)
    return text[width:], out_of_range


def _zone(text: str, clock: _Clock, fraction_next: bool) -> tuple[str, str]:
    """``Z07:00``: ``Z`` or ``±hh:mm``; Go checks the ranges before the sign."""
    if text[:1] == "Z":
        return text[1:], ""
    if len(text) < 6 or text[3] != ":":
        raise _BadElement
    sign, rest = text[0], text[6:]
    hours, _ = _getnum(text[1:3], True)
    try:
        minutes, bad = _getnum(text[4:6], True)[0], False
    except _BadElement:
        minutes, bad = 0, True
    if minutes > 60:
        return rest, "time zone offset minute"
    if hours > 24:
        return rest, "time zone offset hour"
    if bad or sign not in "+-":
        raise _BadElement
    clock.offset = (hours * 60 + minutes) * 60 * (-1 if sign == "-" else 1)
    return rest, ""


_ELEMENTS: dict[str, Callable[[str, _Clock, bool], tuple[str, str]]] = {
    "2006": _year,
    "01": _month,
    "02": _day,
    "15": _hour,
    "04": _minute,
    "05": _second,
    _FRACTION: _fraction,
    "Z07:00": _zone,
}


def _days_in(month: int, year: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31
