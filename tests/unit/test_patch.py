"""JSON patch, merge patch and strategic merge patch, checked against apiserver behaviour."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tinykube.api.errors import ApiError
from tinykube.api.patch import json_patch, merge_patch, strategic_merge_patch

POD = "io.k8s.api.core.v1.Pod"


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "1"}, "finalizers": ["x", "y"]},
        "spec": {
            "containers": [
                {
                    "name": "a",
                    "image": "nginx",
                    "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                },
                {"name": "b", "image": "busybox", "command": ["sleep", "1"]},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


def smp(patch: Any, obj: dict[str, Any] | None = None) -> dict[str, Any]:
    return strategic_merge_patch(obj or pod(), patch, POD)


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["name"] for i in items]


# --- strategic merge patch: what kubectl sends ------------------------------------------------


def test_kubectl_client_side_apply_metadata_body() -> None:
    out = smp({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}, "labels": {"app": "web2"}}})
    assert out["metadata"]["labels"] == {"app": "web2"}
    assert out["metadata"]["annotations"] == {"a": "1", "kubectl.kubernetes.io/last-applied-configuration": "{}"}


def test_kubectl_set_element_order_body_merges_container_by_name() -> None:
    out = smp({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"image": "x", "name": "a"}]}})
    containers = out["spec"]["containers"]
    assert names(containers) == ["a", "b"]
    assert containers[0]["image"] == "x" and containers[0]["env"] == pod()["spec"]["containers"][0]["env"]
    assert "$setElementOrder/containers" not in out["spec"]


def test_set_element_order_alone_reorders() -> None:
    out = smp({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}})
    assert names(out["spec"]["containers"]) == ["b", "a"]


def test_patch_delete_directive_removes_container() -> None:
    out = smp({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"$patch": "delete", "name": "b"}]}})
    assert names(out["spec"]["containers"]) == ["a"]


def test_retain_keys_clears_the_old_volume_source() -> None:
    patch = {
        "spec": {
            "$setElementOrder/volumes": [{"name": "data"}],
            "volumes": [{"$retainKeys": ["hostPath", "name"], "emptyDir": None, "hostPath": {"path": "/srv"}, "name": "data"}],
        }
    }
    assert smp(patch)["spec"]["volumes"] == [{"name": "data", "hostPath": {"path": "/srv"}}]


def test_env_merges_by_name_keeping_live_order() -> None:
    out = smp({"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}]}})
    assert out["spec"]["containers"][0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]


def test_new_item_without_order_directive_goes_first() -> None:
    """mergeSortedSlice puts patch-only items before server-only ones."""
    out = smp({"spec": {"containers": [{"name": "c", "image": "redis"}]}})
    assert names(out["spec"]["containers"]) == ["c", "a", "b"]


def test_ports_merge_by_container_port_and_mounts_by_path() -> None:
    patch = {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}], "volumeMounts": [{"mountPath": "/data", "readOnly": True}]}]}}
    container = smp(patch)["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"}]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]


def test_null_deletes_and_maps_merge() -> None:
    out = smp({"metadata": {"labels": {"app": None, "tier": "fe"}, "annotations": None}})
    assert out["metadata"]["labels"] == {"tier": "fe"}
    assert "annotations" not in out["metadata"]


def test_atomic_list_is_replaced() -> None:
    out = smp({"spec": {"containers": [{"name": "b", "command": ["echo"]}]}})
    assert out["spec"]["containers"][-1]["command"] == ["echo"]


def test_primitive_merge_list_union_and_delete_from_primitive_list() -> None:
    assert smp({"metadata": {"finalizers": ["z", "x"]}})["metadata"]["finalizers"] == ["z", "x", "y"]
    assert smp({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})["metadata"]["finalizers"] == ["y"]


def test_replace_directives_on_list_and_map() -> None:
    out = smp({"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}})
    assert out["spec"]["containers"] == [{"name": "z", "image": "z"}]
    out = smp({"metadata": {"labels": {"$patch": "replace", "only": "this"}}})
    assert out["metadata"]["labels"] == {"only": "this"}
    assert smp({"metadata": {"labels": {"$patch": "delete"}}})["metadata"]["labels"] == {}


def test_directives_in_new_values_are_not_stored() -> None:
    obj = pod()
    del obj["spec"]["volumes"]
    out = smp({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "gone", "$patch": "delete"}]}}, obj)
    assert out["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]


def test_unknown_kind_replaces_lists() -> None:
    obj = {"spec": {"items": [{"name": "a"}], "m": {"k": 1}}}
    out = strategic_merge_patch(obj, {"spec": {"items": [{"name": "b"}], "m": {"j": 2}}}, "example.com.v1.Widget")
    assert out == {"spec": {"items": [{"name": "b"}], "m": {"k": 1, "j": 2}}}


def test_input_is_not_mutated() -> None:
    obj, patch = pod(), {"spec": {"containers": [{"name": "a", "image": "x"}]}}
    before = copy.deepcopy((obj, patch))
    smp(patch, obj)
    assert (obj, patch) == before


@pytest.mark.parametrize(
    ("patch", "code", "reason", "message"),
    [
        ([1], 400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
        ({"spec": {"containers": [{"image": "x"}]}}, 500, "", "map: map[image:x] does not contain declared merge key: name"),
        ({"spec": {"volumes": [{"name": "data", "$retainKeys": ["name"], "hostPath": {"path": "/"}}]}}, 400, "BadRequest", "invalid patch format of retainKeys"),
        ({"metadata": {"$deleteFromPrimitiveListfinalizers": ["x"]}}, 400, "BadRequest", "invalid patch format of primitive list"),
        ({"metadata": {"finalizers": [["x"]]}}, 500, "", "list element types are not identical: [[x y] [[x]]]"),
        ({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}, 500, "", "merging lists cannot yet be specified in the patch"),
        ({"metadata": {"labels": {"$patch": "bogus"}}}, 500, "", "unknown patch type: bogus in map: map[$patch:bogus]"),
    ],
)
def test_invalid_strategic_patches(patch: Any, code: int, reason: str, message: str) -> None:
    with pytest.raises(ApiError) as err:
        smp(patch)
    assert (err.value.code, err.value.reason, err.value.message) == (code, reason, message)


def test_list_of_lists_is_unprocessable() -> None:
    obj = pod()
    obj["metadata"]["finalizers"] = []
    with pytest.raises(ApiError) as err:
        smp({"metadata": {"finalizers": [["x"]]}}, obj)
    assert err.value.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server rejected our request due to an error in our request",
        "reason": "Invalid",
        "details": {},
        "code": 422,
    }


# --- merge patch -------------------------------------------------------------------------------


def test_merge_patch_rfc7386() -> None:
    out = merge_patch(pod(), {"metadata": {"labels": {"app": None, "new": "1"}}, "spec": {"containers": [{"name": "only"}]}})
    assert out["metadata"]["labels"] == {"new": "1"}
    assert out["spec"]["containers"] == [{"name": "only"}]
    assert merge_patch({"a": 1}, {"b": {"c": None, "d": 2}}) == {"a": 1, "b": {"d": 2}}


@pytest.mark.parametrize("patch", [None, "text", 3])
def test_merge_patch_rejects_non_objects(patch: Any) -> None:
    with pytest.raises(ApiError) as err:
        merge_patch(pod(), patch)
    assert (err.value.code, err.value.message) == (400, "Invalid JSON Patch")


def test_merge_patch_array_body_fails_decoding() -> None:
    with pytest.raises(ApiError) as err:
        merge_patch(pod(), [1])
    assert err.value.code == 422 and err.value.message.startswith(' "" is invalid: patch: Invalid value: "[1]"')


# --- JSON patch --------------------------------------------------------------------------------


def test_json_patch_operations() -> None:
    ops = [
        {"op": "add", "path": "/metadata/labels/tier", "value": "fe"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"},
        {"op": "remove", "path": "/metadata/annotations"},
        {"op": "test", "path": "/metadata/name", "value": "web"},
        {"op": "copy", "from": "/metadata/name", "path": "/metadata/generateName"},
    ]
    out = json_patch(pod(), ops)
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert out["spec"]["containers"][0]["image"] == "nginx:2"
    assert "annotations" not in out["metadata"] and out["metadata"]["generateName"] == "web"


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/metadata/name", "value": "other"}],
        [{"op": "remove", "path": "/metadata/nope"}],
        [{"op": "replace", "path": "/spec/missing", "value": 1}],
        [{"op": "bogus", "path": "/a"}],
        [{"path": "/a"}],
    ],
)
def test_failing_json_patch_is_a_generic_422(ops: list[Any]) -> None:
    with pytest.raises(ApiError) as err:
        json_patch(pod(), ops)
    assert err.value.status()["code"] == 422
    assert err.value.reason == "Invalid"
    assert err.value.message == "the server rejected our request due to an error in our request"


def test_malformed_json_patch_bodies() -> None:
    with pytest.raises(ApiError) as err:
        json_patch(pod(), {"op": "add"})
    assert (err.value.code, err.value.message) == (400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    with pytest.raises(ApiError) as err:
        json_patch(pod(), [{"op": "test", "path": "/a", "value": 1}] * 10001)
    assert err.value.code == 413
    assert err.value.message == "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
