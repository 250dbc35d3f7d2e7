"""LimitRanges: their defaulting and validation, and the LimitRanger admission plugin's two halves,
alone and in the write pipeline (defaults applied before validation and before the QoS class)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tinykube.api import defaults
from tinykube.api.errors import ApiError
from tinykube.api.registry import ResourceType, lookup
from tinykube.api.validation_quota import validate_limit_range
from tinykube.apiserver.limitranger import LimitRanger, aggregate_message, apply_defaults, claim_violations, pod_violations
from tinykube.apiserver.storage import Storage, WriteOptions
from tinykube.store.sqlite import SqliteStore

Obj = dict[str, Any]
LIMIT_RANGES, PODS, CLAIMS, NAMESPACES = (lookup("", "v1", r) for r in
                                          ("limitranges", "pods", "persistentvolumeclaims", "namespaces"))
assert LIMIT_RANGES and PODS and CLAIMS and NAMESPACES


def limit_range(*items: Obj) -> Obj:
    lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr", "namespace": "ns"},
          "spec": {"limits": list(items)}}
    defaults.default(LIMIT_RANGES, lr)
    return lr


def container(name: str = "c", requests: Obj | None = None, limits: Obj | None = None) -> Obj:
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {"name": name, "image": "busybox", "resources": resources}


def pod(*containers: Obj, init: list[Obj] | None = None, name: str = "p") -> Obj:
    spec: Obj = {"containers": list(containers) or [container()]}
    if init:
        spec["initContainers"] = init
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"}, "spec": spec}
    defaults.default(PODS, p)
    return p


def claim(storage: str) -> Obj:
    return {"metadata": {"name": "data", "namespace": "ns"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}}


# --- the LimitRange object --------------------------------------------------------------------


def test_container_defaults_fall_back_to_max_then_min() -> None:
    lr = limit_range({"type": "Container", "max": {"cpu": "1", "memory": "1Gi"}, "min": {"ephemeral-storage": "1Mi"}},
                     {"type": "Pod", "max": {"cpu": "2"}})
    item, pod_item = lr["spec"]["limits"]
    assert item["default"] == {"cpu": "1", "memory": "1Gi"}
    assert item["defaultRequest"] == {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Mi"}
    assert "default" not in pod_item and "defaultRequest" not in pod_item


@pytest.mark.parametrize(("item", "message"), [
    ({"type": "Pod", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
     'spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1'),
    ({"type": "Container", "default": {"cpu": "2"}, "defaultRequest": {"cpu": "1"}, "max": {"cpu": "1500m"}},
     'spec.limits[0].default[cpu]: Invalid value: "1500m": default value 2 is greater than max value 1500m'),
    ({"type": "Pod", "default": {"cpu": "1"}},
     "spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'"),
    ({"type": "PersistentVolumeClaim", "max": {"cpu": "1"}},
     "spec.limits[0].limits: Required value: either minimum or maximum storage value is required, but neither was provided"),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}},
     'spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: "500m": ratio 500m is less than 1'),
    ({"type": "Container", "min": {"cpu": "1"}, "max": {"cpu": "2"}, "maxLimitRequestRatio": {"cpu": "3"}},
     'spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: "3": ratio 3 is greater than max/min = 2.000000'),
    ({"type": "Volume", "max": {"storage": "1Gi"}},
     'spec.limits[0].type: Invalid value: "Volume": must be a standard limit type or fully qualified'),
    ({"type": "Pod", "max": {"storage": "1Gi"}},
     'spec.limits[0].max[storage]: Invalid value: "storage": must be a standard resource for containers'),
])
def test_limit_range_validation(item: Obj, message: str) -> None:
    assert [str(e) for e in validate_limit_range(limit_range(item))] == [message]


def test_a_limit_type_appears_once() -> None:
    errs = validate_limit_range(limit_range({"type": "Pod", "max": {"cpu": "1"}}, {"type": "Pod", "max": {"cpu": "2"}}))
    assert [str(e) for e in errs] == ['spec.limits[1].type: Duplicate value: "Pod"']


# --- defaults on pods -------------------------------------------------------------------------


def test_defaults_fill_what_containers_leave_unset_and_annotate() -> None:
    lr = limit_range({"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
                      "defaultRequest": {"cpu": "100m"}})
    p = pod(container("app"), container("side", requests={"cpu": "50m"}), init=[container("setup")])
    assert apply_defaults(lr, p)
    app, side = p["spec"]["containers"]
    # the LimitRange's own defaulting made the memory limit its default request too
    assert app["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert side["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "50m", "memory": "256Mi"}}
    assert p["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app; "
        "memory request for container side; cpu, memory limit for container side; "
        "cpu, memory request for init container setup; cpu, memory limit for init container setup")


def test_a_container_limit_is_already_its_request() -> None:
    """Defaulting (SetDefaults_Pod) runs first, so defaultRequest does not replace the copied limit."""
    lr = limit_range({"type": "Container", "defaultRequest": {"cpu": "100m"}})
    p = pod(container(limits={"cpu": "2"}))
    assert not apply_defaults(lr, p)
    assert p["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "2"}, "requests": {"cpu": "2"}}
    assert "annotations" not in p["metadata"]


# --- bounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("item", "resources", "reasons"), [
    ({"type": "Container", "max": {"cpu": "1"}}, {"limits": {"cpu": "2"}},
     ["maximum cpu usage per Container is 1, but limit is 2"]),
    ({"type": "Container", "max": {"memory": "1Gi"}}, {},
     ["maximum memory usage per Container is 1Gi.  No limit is specified"]),
    ({"type": "Container", "min": {"cpu": "100m"}}, {"requests": {"cpu": "50m"}},
     ["minimum cpu usage per Container is 100m, but request is 50m"]),
    ({"type": "Container", "min": {"cpu": "100m"}}, {},
     ["minimum cpu usage per Container is 100m.  No request is specified"]),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}, {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m"}},
     ["cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000"]),
    ({"type": "Container", "maxLimitRequestRatio": {"memory": "2"}}, {"limits": {"cpu": "1"}},
     ["memory max limit to request ratio per Container is 2, but no request is specified or request is 0"]),
])
def test_container_bounds(item: Obj, resources: Obj, reasons: list[str]) -> None:
    p = pod(container(requests=resources.get("requests"), limits=resources.get("limits")))
    assert pod_violations(limit_range(item), p) == reasons


def test_pod_bounds_sum_the_containers_and_take_the_largest_init_step() -> None:
    lr = limit_range({"type": "Pod", "max": {"cpu": "1", "memory": "1Gi"}})
    p = pod(container("a", limits={"cpu": "600m", "memory": "512Mi"}), container("b", limits={"cpu": "600m", "memory": "256Mi"}),
            init=[container("i", limits={"cpu": "100m", "memory": "1Gi"})])
    assert pod_violations(lr, p) == ["maximum cpu usage per Pod is 1, but limit is 1200m"]  # memory: max(768Mi, 1Gi)


def test_claim_storage_between_min_and_max() -> None:
    lr = limit_range({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}})
    assert claim_violations(lr, claim("5Gi")) == []
    assert claim_violations(lr, claim("20Gi")) == ["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"]
    assert claim_violations(lr, claim("500Mi")) == ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]


def test_several_reasons_are_aggregated_like_utilerrors() -> None:
    assert aggregate_message(["a"]) == "a"
    assert aggregate_message(["a", "b", "a"]) == "[a, b]"


# --- the admission hooks ----------------------------------------------------------------------


def ranger(*ranges: Obj) -> LimitRanger:
    async def list_in_namespace(rt: ResourceType, namespace: str) -> list[Obj]:
        assert rt is LIMIT_RANGES and namespace == "ns"
        return [copy.deepcopy(r) for r in ranges]
    return LimitRanger(list_in_namespace)


async def test_mutate_defaults_pods_on_create_and_recomputes_their_qos_class() -> None:
    hook = ranger(limit_range({"type": "Container", "default": {"cpu": "1", "memory": "1Gi"}}))
    p = pod()
    assert p["status"]["qosClass"] == "BestEffort"
    await hook.mutate(PODS, p, None)
    assert p["status"]["qosClass"] == "Guaranteed"
    old, new = pod(), pod()
    await hook.mutate(PODS, new, old)
    assert new == old  # containers cannot change after create: updates are left alone


async def test_validate_refuses_with_403_and_upstream_wording() -> None:
    hook = ranger(limit_range({"type": "Container", "max": {"cpu": "1"}}))
    with pytest.raises(ApiError) as refused:
        await hook.validate(PODS, pod(container(limits={"cpu": "2"}), name="big"), None)
    assert refused.value.code == 403 and refused.value.reason == "Forbidden"
    assert refused.value.message == 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
    assert refused.value.details == {"name": "big", "kind": "pods"}


async def test_claims_are_checked_on_create_and_on_spec_updates_only() -> None:
    hook = ranger(limit_range({"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}))
    big = claim("2Gi")
    with pytest.raises(ApiError, match='persistentvolumeclaims "data" is forbidden: maximum storage usage'):
        await hook.validate(CLAIMS, big, None)
    bound = {**big, "status": {"phase": "Bound"}}
    await hook.validate(CLAIMS, bound, big)  # a status write: the spec did not change
    with pytest.raises(ApiError):
        await hook.validate(CLAIMS, claim("3Gi"), big)


# --- in the write pipeline --------------------------------------------------------------------


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = SqliteStore(str(tmp_path / "store.db"))
    await store.start()
    reads = Storage(store)
    limits = LimitRanger(reads.list_objects)
    try:
        storage = Storage(store, mutating=[limits.mutate], admission=[limits.validate])
        await storage.create(NAMESPACES, {"metadata": {"name": "ns"}}, None, WriteOptions())
        yield storage
    finally:
        await store.close()


async def test_defaults_are_applied_before_validation(storage: Storage) -> None:
    lr = {"metadata": {"name": "lr"}, "spec": {"limits": [{"type": "Container", "default": {"cpu": "50m"}}]}}
    await storage.create(LIMIT_RANGES, lr, "ns", WriteOptions())
    created = await storage.create(PODS, pod(), "ns", WriteOptions())
    assert created["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "50m"}, "requests": {"cpu": "50m"}}
    assert created["status"]["qosClass"] == "Burstable"
    with pytest.raises(ApiError) as invalid:  # the default limit is below the pod's own request
        await storage.create(PODS, pod(container(requests={"cpu": "100m"}), name="q"), "ns", WriteOptions())
    assert invalid.value.code == 422
    assert 'spec.containers[0].resources.requests: Invalid value: "100m": must be less than or equal to cpu limit' \
        in invalid.value.message
