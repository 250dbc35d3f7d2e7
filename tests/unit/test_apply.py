"""Server-side apply and managedFields bookkeeping, checked against what kube-apiserver records."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tinykube.api.apply import LAST_APPLIED, fields_of, record_update, server_side_apply
from tinykube.api.errors import ApiError

POD = "io.k8s.api.core.v1.Pod"
T0, T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z", "2024-05-01T10:10:00Z"
CSA = "kubectl-client-side-apply"


def config(label: str = "web", image: str = "nginx") -> dict[str, Any]:
    """What `kubectl apply --server-side` sends."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": label}},
        "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]},
    }


def apply(live: dict[str, Any] | None, body: dict[str, Any], manager: str = "kubectl", force: bool = False, now: str = T1) -> dict[str, Any]:
    return server_side_apply(live, body, manager, force, "v1", now, POD)


def entries(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["manager"]: e for e in obj["metadata"]["managedFields"]}


def csa_created(last_applied: bool = False) -> dict[str, Any]:
    """A Pod created by `kubectl apply` (client-side): a create by manager kubectl-client-side-apply."""
    obj = config()
    obj["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP"
    if last_applied:
        obj["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(config(), sort_keys=True, separators=(",", ":")) + "\n"}
    record_update(None, obj, CSA, "v1", T0, POD)
    return obj


# --- Update operations ---------------------------------------------------------------------------


def test_create_records_the_fields_like_the_apiserver() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "uid": "u", "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "nginx", "image": "nginx", "resources": {}, "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
            "restartPolicy": "Always",
            "securityContext": {},
        },
        "status": {"phase": "Pending"},
    }
    record_update(None, pod, CSA, "v1", T0, POD)
    assert pod["metadata"]["managedFields"] == [
        {
            "manager": CSA,
            "operation": "Update",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"nginx"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:protocol": {}}},
                            "f:resources": {},
                        }
                    },
                    "f:restartPolicy": {},
                    "f:securityContext": {},
                },
            },
        }
    ]


def test_update_moves_changed_fields_and_drops_empty_entries() -> None:
    live = csa_created()
    new = copy.deepcopy(live)
    new["metadata"]["labels"]["app"] = "other"
    record_update(live, new, "kubectl-label", "v1", T1, POD)
    label = entries(new)["kubectl-label"]
    assert label["fieldsV1"] == {"f:metadata": {"f:labels": {"f:app": {}}}} and label["time"] == T1
    assert "f:app" not in entries(new)[CSA]["fieldsV1"]["f:metadata"]["f:labels"]

    newer = copy.deepcopy(new)
    del newer["metadata"]["labels"]
    record_update(new, newer, "kubectl-edit", "v1", T2, POD)
    assert set(entries(newer)) == {CSA}, "kubectl-label owned nothing left; the remover gained nothing"


def test_noop_update_keeps_entries_and_time() -> None:
    live = csa_created()
    new = copy.deepcopy(live)
    record_update(live, new, CSA, "v1", T2, POD)
    assert new["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_status_subresource_records_only_status() -> None:
    live = csa_created()
    new = copy.deepcopy(live)
    new["status"] = {"phase": "Running"}
    new["spec"]["nodeName"] = "n1"
    record_update(live, new, "kubelet", "v1", T1, POD, subresource="status")
    kubelet = next(e for e in new["metadata"]["managedFields"] if e["manager"] == "kubelet")
    assert kubelet["subresource"] == "status"
    assert kubelet["fieldsV1"] == {"f:status": {"f:phase": {}}}


def test_client_may_reset_managed_fields() -> None:
    live = csa_created()
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = []
    record_update(live, new, "kubectl-edit", "v1", T1, POD)
    assert "managedFields" not in new["metadata"]


# --- server-side apply ---------------------------------------------------------------------------


def test_apply_create_sets_fields_and_an_apply_entry() -> None:
    obj = apply(None, config(), now=T0)
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert obj["spec"]["containers"] == [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"nginx"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                        }
                    }
                },
            },
        }
    ]


def test_apply_is_idempotent() -> None:
    first = apply(None, config(), now=T0)
    assert apply(first, config(), now=T2) == first


def test_apply_conflicts_with_client_side_apply_owner() -> None:
    with pytest.raises(ApiError) as err:
        apply(csa_created(), config(label="web2"))
    assert err.value.code == 409 and err.value.reason == "Conflict"
    assert err.value.message == 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .metadata.labels.app'
    assert err.value.details == {
        "causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-client-side-apply" using v1', "field": ".metadata.labels.app"}]
    }


def test_several_conflicts_are_listed_per_manager() -> None:
    with pytest.raises(ApiError) as err:
        apply(csa_created(), config(label="web2", image="nginx:2"), manager="ci")
    assert err.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using v1:\n'
        "- .metadata.labels.app\n"
        '- .spec.containers[name="nginx"].image'
    )
    assert [c["field"] for c in err.value.details["causes"]] == [".metadata.labels.app", '.spec.containers[name="nginx"].image']


def test_force_takes_ownership() -> None:
    obj = apply(csa_created(), config(label="web2"), force=True)
    assert obj["metadata"]["labels"] == {"app": "web2"}
    owners = entries(obj)
    assert owners["kubectl"]["fieldsV1"]["f:metadata"] == {"f:labels": {"f:app": {}}}
    assert owners[CSA]["fieldsV1"]["f:metadata"] == {"f:labels": {}}, "the label map itself stays with its creator"
    assert owners[CSA]["fieldsV1"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']["f:image"] == {}


def test_kubectl_takes_over_from_client_side_apply_without_conflict() -> None:
    obj = apply(csa_created(last_applied=True), config(label="web2"))
    assert obj["metadata"]["labels"] == {"app": "web2"}
    assert json.loads(obj["metadata"]["annotations"][LAST_APPLIED]) == config(label="web2")
    assert obj["metadata"]["annotations"][LAST_APPLIED].endswith("\n")


def test_dropped_field_is_removed_unless_someone_else_owns_it() -> None:
    live = apply(None, config(), now=T0)
    body = config()
    del body["metadata"]["labels"]
    del body["spec"]["containers"][0]["ports"]
    obj = apply(live, body)
    assert "labels" not in obj["metadata"] and "ports" not in obj["spec"]["containers"][0]

    shared = copy.deepcopy(live)
    shared["metadata"]["labels"]["team"] = "a"
    record_update(live, shared, "kubectl-label", "v1", T1, POD)
    obj = apply(shared, {**body, "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}}}, manager="kubectl")
    assert obj["metadata"]["labels"] == {"team": "a"}


def test_existing_fields_without_managers_go_to_before_first_apply() -> None:
    live = config()
    with pytest.raises(ApiError) as err:
        apply(live, config(image="nginx:2"), manager="ci")
    assert err.value.message.startswith('Apply failed with 1 conflict: conflict with "before-first-apply" using v1: .spec.containers[name="nginx"].image')


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"apiVersion": "v1", "kind": "Pood", "metadata": {"name": "web"}}, 400, "invalid object type: /v1, Kind=Pood"),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "managedFields": []}}, 400, "metadata.managedFields must be nil"),
        (
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "imagee": "x"}]}},
            500,
            'failed to create typed patch object (/web; /v1, Kind=Pod): .spec.containers[name="c"].imagee: field not declared in schema',
        ),
    ],
)
def test_invalid_apply_bodies(body: dict[str, Any], code: int, message: str) -> None:
    with pytest.raises(ApiError) as err:
        apply(None, body)
    assert (err.value.code, err.value.message) == (code, message)


def test_fields_of_is_the_applied_set() -> None:
    obj = config()
    obj["status"] = {"phase": "Running"}
    assert fields_of(obj, POD) == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:containers": {
                'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}, "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}
            }
        },
    }


def test_kinds_without_a_schema_are_tracked_untyped() -> None:
    body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"a": {"b": 1}, "l": [1, 2]}}
    obj = server_side_apply(None, body, "m", False, "example.com/v1", T0, "com.example.v1.Widget")
    assert obj["metadata"]["managedFields"][0]["fieldsV1"] == {"f:spec": {".": {}, "f:a": {".": {}, "f:b": {}}, "f:l": {}}}
    body["spec"] = {"a": {"c": 2}}
    assert server_side_apply(obj, body, "m", False, "example.com/v1", T1, "com.example.v1.Widget")["spec"] == {"a": {"c": 2}}
