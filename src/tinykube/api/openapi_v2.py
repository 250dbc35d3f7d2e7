"""Build the Swagger 2.0 document kubectl fetches from ``/openapi/v2``, as JSON or gnostic protobuf.

kubectl still reads it for one common case: client-side validation of a ``kind: List`` (its
field-validation verifier declines Lists, so ``kubectl apply -f`` of ``kubectl get -o yaml``
output validates each item against these models, fetched with client-go's ``OpenAPISchema()``,
which only accepts protobuf).  The definitions are the v3 component schemas of
:mod:`tinykube.api.openapi` in Swagger 2.0 form (``#/definitions/`` references, a described
``$ref`` without the ``allOf`` wrapper); the protobuf is ``openapi.v2.Document`` of
google/gnostic's ``openapiv2/OpenAPIv2.proto``.  Paths are left out: kubectl reads them only when
the v3 documents fail.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import Any

import orjson
import yaml

from tinykube.api.openapi import component_schemas
from tinykube.api.schemas import KUBERNETES_VERSION

Schema = dict[str, Any]

PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # what kube-openapi answers, for either Accept form
_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"


@functools.cache
def document() -> Schema:
    """The whole Swagger 2.0 document."""
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"}, "paths": {},
            "definitions": {name: swagger(schema) for name, schema in sorted(component_schemas().items())}}


@functools.cache
def json_bytes() -> bytes:
    return orjson.dumps(document())


@functools.cache
def protobuf_bytes() -> bytes:
    """``openapi.v2.Document``: swagger = 1, info = 2, paths = 8, definitions = 9."""
    doc = document()
    info = _string(1, doc["info"]["title"]) + _string(2, doc["info"]["version"])
    definitions = b"".join(_named_schema(1, name, schema) for name, schema in doc["definitions"].items())
    return _string(1, doc["swagger"]) + _message(2, info) + _message(8, b"") + _message(9, definitions)


def swagger(node: Any) -> Any:
    """One v3 schema in Swagger 2.0 form: ``allOf: [{$ref}]`` plus siblings becomes ``$ref`` plus siblings."""
    if isinstance(node, list):
        return [swagger(value) for value in node]
    if not isinstance(node, dict):
        return node
    out = {key: swagger(value) for key, value in node.items()}
    wrapped = out.get("allOf")
    if isinstance(wrapped, list) and len(wrapped) == 1 and set(wrapped[0]) == {"$ref"}:
        del out["allOf"]
        out["$ref"] = wrapped[0]["$ref"]
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace(_V3_REF, _V2_REF)
    return out


# --- protobuf ---------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _string(number: int, text: str) -> bytes:
    return _message(number, text.encode())


def _bool(number: int, value: bool) -> bytes:
    return _varint(number << 3) + b"\x01" if value else b""


def _int64(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value & 0xFFFFFFFFFFFFFFFF)


def _double(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", value)


def _any(number: int, value: Any) -> bytes:
    """gnostic's ``Any``: the value as YAML (field 2), as it unmarshals vendor extensions and defaults."""
    return _message(number, _string(2, yaml.safe_dump(value, default_flow_style=False)))


def _strings(number: int, values: list[str]) -> bytes:
    return b"".join(_string(number, value) for value in values)


def _anys(number: int, values: list[Any]) -> bytes:
    return b"".join(_any(number, value) for value in values)


def _named_schema(number: int, name: str, schema: Schema) -> bytes:
    return _message(number, _string(1, name) + _message(2, _schema(schema)))


def _schema_field(number: int, schema: Schema) -> bytes:
    return _message(number, _schema(schema))


def _additional(number: int, value: Schema | bool) -> bytes:
    """``AdditionalPropertiesItem``: oneof schema = 1, boolean = 2."""
    inner = _bool(2, value) if isinstance(value, bool) else _schema_field(1, value)
    return _message(number, inner)


def _type(number: int, value: str | list[str]) -> bytes:
    return _message(number, _strings(1, [value] if isinstance(value, str) else value))


def _items(number: int, value: Schema | list[Schema]) -> bytes:
    schemas = value if isinstance(value, list) else [value]
    return _message(number, b"".join(_schema_field(1, schema) for schema in schemas))


def _all_of(number: int, values: list[Schema]) -> bytes:
    return b"".join(_schema_field(number, schema) for schema in values)


def _properties(number: int, value: dict[str, Schema]) -> bytes:
    return _message(number, b"".join(_named_schema(1, name, schema) for name, schema in value.items()))


_SCHEMA_FIELDS: dict[str, tuple[int, Callable[[int, Any], bytes]]] = {
    "$ref": (1, _string), "format": (2, _string), "title": (3, _string), "description": (4, _string),
    "default": (5, _any), "multipleOf": (6, _double), "maximum": (7, _double), "exclusiveMaximum": (8, _bool),
    "minimum": (9, _double), "exclusiveMinimum": (10, _bool), "maxLength": (11, _int64), "minLength": (12, _int64),
    "pattern": (13, _string), "maxItems": (14, _int64), "minItems": (15, _int64), "uniqueItems": (16, _bool),
    "maxProperties": (17, _int64), "minProperties": (18, _int64), "required": (19, _strings), "enum": (20, _anys),
    "additionalProperties": (21, _additional), "type": (22, _type), "items": (23, _items), "allOf": (24, _all_of),
    "properties": (25, _properties), "discriminator": (26, _string), "readOnly": (27, _bool), "example": (30, _any),
}
_VENDOR_EXTENSION = 31


def _schema(schema: Schema) -> bytes:
    """``openapi.v2.Schema``, fields in number order as Go's marshaller writes them; ``x-`` keys are vendor extensions."""
    known = sorted((_SCHEMA_FIELDS[key][0], key) for key in schema if key in _SCHEMA_FIELDS)
    out = b"".join(_SCHEMA_FIELDS[key][1](number, schema[key]) for number, key in known)
    for key, value in schema.items():
        if key.startswith("x-"):
            out += _message(_VENDOR_EXTENSION, _string(1, key) + _any(2, value))
    return out
