"""The /openapi/v2 document decodes as gnostic's ``openapi.v2.Document`` with kubectl's models in it.

kubectl (kube-openapi ``pkg/util/proto``) finds a model by its ``x-kubernetes-group-version-kind``
vendor extension, follows ``#/definitions/`` references, and needs one schema under ``items``.
"""

from __future__ import annotations

from typing import Any

import yaml

from tinykube.api import openapi_v2


def fields(data: bytes) -> list[tuple[int, Any]]:
    """(field number, varint or bytes) pairs of one protobuf message."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        else:
            size, pos = varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        out.append((number, value))
    return out


def varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def named(data: bytes) -> dict[str, bytes]:
    """A repeated ``NamedSchema`` / ``NamedAny`` field 1 as {name: value bytes}."""
    out = {}
    for _, entry in fields(data):
        parts = dict(fields(entry))
        out[parts[1].decode()] = parts[2]
    return out


def definitions() -> dict[str, bytes]:
    doc = dict(fields(openapi_v2.protobuf_bytes()))
    assert doc[1] == b"2.0"
    return named(doc[9])


def test_models_carry_their_group_version_kind() -> None:
    raw = definitions()["io.k8s.api.core.v1.ConfigMap"]
    configmap = dict(fields(raw))
    extensions = {}
    for number, value in fields(raw):
        if number == 31:
            entry = dict(fields(value))
            extensions[entry[1].decode()] = yaml.safe_load(dict(fields(entry[2]))[2])
    assert extensions["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "ConfigMap", "version": "v1"}]
    assert dict(fields(configmap[22]))[1] == b"object"
    assert set(named(configmap[25])) >= {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}


def test_references_point_at_definitions_and_arrays_have_one_item_schema() -> None:
    spec = named(dict(fields(definitions()["io.k8s.api.core.v1.Pod"]))[25])["spec"]
    assert dict(fields(spec))[1] == b"#/definitions/io.k8s.api.core.v1.PodSpec"
    containers = dict(fields(named(dict(fields(definitions()["io.k8s.api.core.v1.PodSpec"]))[25])["containers"]))
    items = fields(containers[23])
    assert len(items) == 1 and dict(fields(items[0][1]))[1] == b"#/definitions/io.k8s.api.core.v1.Container"


def test_json_form_matches() -> None:
    doc = openapi_v2.document()
    assert doc["swagger"] == "2.0" and set(doc["definitions"]) == set(definitions())
    spec = doc["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"]
    assert spec["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec" and "allOf" not in spec
