"""Protobuf request bodies decode to the JSON kube-apiserver would see.

The ConfigMap body is the exact capture from kubectl 1.32 (kubectl-api-contract.md section 9);
the others are built with a tiny encoder that writes fields the way gogo-protobuf does
(non-pointer scalars always written, empty strings included).
"""

from __future__ import annotations

import pytest

from tinykube.api import protobuf
from tinykube.api.errors import ApiError

CONFIGMAP_BODY = bytes.fromhex(
    "6b387300"
    "0a0f0a0276311209436f6e6669674d6170"
    "121b" "0a110a017812001a0022002a00320038004200" "12060a0161120162"
    "1a002200"
)


# --- a minimal encoder for fixtures -----------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def num(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def lb(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(field << 3 | 2) + varint(len(data)) + data


def entry(field: int, key: str, value: bytes | str) -> bytes:
    return lb(field, lb(1, key) + lb(2, value))


def meta(name: str, *extra: bytes) -> bytes:
    """ObjectMeta as client-go writes it: every non-pointer field, empty or zero, then ``extra``."""
    return lb(1, lb(1, name) + lb(2, "") + lb(3, "") + lb(4, "") + lb(5, "") + lb(6, "") + num(7, 0)
              + lb(8, b"") + b"".join(extra))


def envelope(kind: str, raw: bytes, api_version: str = "v1") -> bytes:
    return protobuf.MAGIC + lb(1, lb(1, api_version) + lb(2, kind)) + lb(2, raw) + lb(3, "") + lb(4, "")


# --- tests ------------------------------------------------------------------------------------


def test_kubectl_create_configmap_capture() -> None:
    assert protobuf.decode(CONFIGMAP_BODY) == {
        "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}, "data": {"a": "b"},
    }


def test_secret_data_is_base64_and_empty_type_is_omitted() -> None:
    raw = meta("s") + entry(2, "a", b"b") + entry(2, "bin", b"\x00\xff") + lb(3, "")
    assert protobuf.decode(envelope("Secret", raw)) == {
        "kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"},
        "data": {"a": "Yg==", "bin": "AP8="},
    }


def test_secret_keeps_pointer_false_and_string_data() -> None:
    raw = meta("s") + num(5, 0) + entry(4, "k", "v") + lb(3, "kubernetes.io/tls")
    obj = protobuf.decode(envelope("Secret", raw))
    assert obj["immutable"] is False
    assert obj["stringData"] == {"k": "v"}
    assert obj["type"] == "kubernetes.io/tls"


def test_namespace_always_has_spec_and_status_structs() -> None:
    raw = meta("dev") + lb(2, b"") + lb(3, lb(1, ""))
    assert protobuf.decode(envelope("Namespace", raw)) == {
        "kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "dev"}, "spec": {}, "status": {},
    }


def test_object_meta_fully() -> None:
    owner = lb(5, "apps/v1") + lb(1, "ReplicaSet") + lb(3, "rs") + lb(4, "u-1") + num(6, 1) + num(7, 0)
    managed = lb(1, "kubectl") + lb(2, "Update") + lb(3, "v1") + lb(4, num(1, 86400)) + lb(6, "FieldsV1") \
        + lb(7, lb(1, '{"f:data":{}}'))
    raw = meta("x", lb(11, lb(1, "app") + lb(2, "web")), entry(12, "note", "hi"), lb(13, owner),
                lb(14, "example.com/f"), lb(17, managed), num(10, 30), lb(9, num(1, 1_700_000_000) + num(2, 5)))
    metadata = protobuf.decode(envelope("ConfigMap", raw))["metadata"]
    assert metadata == {
        "name": "x",
        "deletionTimestamp": "2023-11-14T22:13:20Z",
        "deletionGracePeriodSeconds": 30,
        "labels": {"app": "web"},
        "annotations": {"note": "hi"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u-1",
                             "controller": True, "blockOwnerDeletion": False}],
        "finalizers": ["example.com/f"],
        "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                           "time": "1970-01-02T00:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:data": {}}}],
    }


def test_creation_timestamp_when_set() -> None:
    raw = lb(1, lb(1, "x") + lb(8, num(1, 0)))
    assert protobuf.decode(envelope("ConfigMap", raw))["metadata"]["creationTimestamp"] == "1970-01-01T00:00:00Z"


def test_service_clusterip() -> None:
    port = lb(1, "80-8080") + lb(2, "TCP") + num(3, 80) + lb(4, num(1, 0) + num(2, 8080) + lb(3, "")) + num(5, 0)
    spec = lb(1, port) + entry(2, "app", "web") + lb(3, "") + lb(4, "ClusterIP") + lb(7, "") + lb(8, "") \
        + lb(10, "") + lb(11, "") + num(12, 0) + num(13, 0) + lb(17, "SingleStack")
    raw = meta("web") + lb(2, spec) + lb(3, lb(1, b""))
    assert protobuf.decode(envelope("Service", raw)) == {
        "kind": "Service", "apiVersion": "v1", "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                 "selector": {"app": "web"}, "type": "ClusterIP", "ipFamilyPolicy": "SingleStack"},
        "status": {"loadBalancer": {}},
    }


def test_service_named_target_port_and_defaults_like_go() -> None:
    named = lb(1, "") + num(3, 443) + lb(4, num(1, 1) + lb(3, "https"))
    bare = num(3, 0)
    affinity = lb(1, num(1, 10800))
    raw = meta("web") + lb(2, lb(1, named) + lb(1, bare) + lb(14, affinity) + lb(23, "PreferClose"))
    spec = protobuf.decode(envelope("Service", raw))["spec"]
    assert spec["ports"] == [{"port": 443, "targetPort": "https"}, {"port": 0, "targetPort": 0}]
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert spec["trafficDistribution"] == "PreferClose"


def test_service_account() -> None:
    raw = meta("robot") + lb(2, lb(3, "tok") + lb(1, "Secret")) + lb(3, lb(1, "pull")) + num(4, 1)
    assert protobuf.decode(envelope("ServiceAccount", raw)) == {
        "kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "robot"},
        "secrets": [{"kind": "Secret", "name": "tok"}], "imagePullSecrets": [{"name": "pull"}],
        "automountServiceAccountToken": True,
    }


def test_negative_and_unknown_fields() -> None:
    raw = meta("x", num(10, -1)) + num(99, 7) + lb(98, "ignored") + varint(97 << 3 | 5) + b"\x00" * 4
    obj = protobuf.decode(envelope("ConfigMap", raw))
    assert obj == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x", "deletionGracePeriodSeconds": -1}}


@pytest.mark.parametrize(("body", "message"), [
    (b"", "empty data"),
    (b"{}", "provided data does not appear to be a protobuf message, expected prefix [107, 56, 115, 0]"),
    (protobuf.MAGIC, "empty body"),
    (protobuf.MAGIC + b"\x0a\x05\x0a", "unexpected EOF"),
    (protobuf.MAGIC + b"\x0a\x80", "unexpected EOF"),
    (envelope("ConfigMap", lb(1, num(1, 5))), "proto: wrong wireType = 0 for field name"),
    (protobuf.MAGIC + lb(1, lb(1, "v1")), "Object 'Kind' is missing in '{\"apiVersion\":\"v1\"}'"),
])
def test_malformed_bodies_are_bad_requests(body: bytes, message: str) -> None:
    with pytest.raises(ApiError) as err:
        protobuf.decode(body)
    assert (err.value.code, err.value.reason, err.value.message) == (400, "BadRequest", message)


def test_kind_served_only_as_json_is_unsupported_media_type() -> None:
    with pytest.raises(ApiError) as err:
        protobuf.decode(envelope("Pod", meta("p")))
    assert (err.value.code, err.value.reason) == (415, "UnsupportedMediaType")
    assert "Kind=Pod" in err.value.message


def test_unregistered_kind_is_bad_request() -> None:
    with pytest.raises(ApiError) as err:
        protobuf.decode(envelope("Widget", b""))
    assert err.value.code == 400
    assert err.value.message.startswith('no kind "Widget" is registered for version "v1"')


def test_kubectl_drains_eviction_and_its_delete_options() -> None:
    options = num(1, 1) + lb(2, lb(1, "uid-1")) + lb(5, "All")
    body = envelope("Eviction", meta("pod-2") + lb(2, options), "policy/v1")
    assert protobuf.decode(body) == {
        "kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": "pod-2"},
        "deleteOptions": {"gracePeriodSeconds": 1, "preconditions": {"uid": "uid-1"}, "dryRun": ["All"]}}
    delete = protobuf.decode(envelope("DeleteOptions", num(1, 0) + lb(4, "Background")))
    assert delete == {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                      "propagationPolicy": "Background"}
