"""Resource quota: the arithmetic and its printed forms, the evaluators, admission (with concurrent
creates against one quota), the controller's recount, the Table, validation; and node allocatable
with --system-reserved/--kube-reserved as the scheduler counts it."""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tinykube.api import defaults, tables
from tinykube.api.errors import ApiError, conflict
from tinykube.api.quota import EVALUATORS, Refused, calculate_usage, check_request, synced_status
from tinykube.api.registry import ResourceType, lookup
from tinykube.api.resourcelist import Amount, add, parse_list, pod_limits, pod_requests, pretty, render
from tinykube.api.validation_quota import validate_resource_quota, validate_resource_quota_update
from tinykube.apiserver.quota import QuotaAdmission
from tinykube.apiserver.storage import Storage, WriteOptions
from tinykube.controllers.resourcequota import ResourceQuotaController, needs_sync
from tinykube.controllers.scheduler import NodeInfo, PodUsage, schedule
from tinykube.node.host import HostFacts
from tinykube.node.registration import allocatable, parse_reserved, reservation
from tinykube.store.sqlite import SqliteStore

Obj = dict[str, Any]
NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
PODS, QUOTAS, CONFIGMAPS, NAMESPACES = (lookup("", "v1", r) for r in ("pods", "resourcequotas", "configmaps", "namespaces"))
assert PODS and QUOTAS and CONFIGMAPS and NAMESPACES
POD_EVALUATOR, SERVICES, CLAIMS = EVALUATORS[("", "pods")], EVALUATORS[("", "services")], EVALUATORS[("", "persistentvolumeclaims")]


def container(name: str = "c", requests: Obj | None = None, limits: Obj | None = None, **extra: Any) -> Obj:
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {"name": name, "image": "busybox", "resources": resources, **extra}


def pod(*containers: Obj, name: str = "p", **spec: Any) -> Obj:
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"},
         "spec": {"containers": list(containers) or [container()], **spec}}
    defaults.default(PODS, p)
    return p


def quota(hard: Obj, used: Obj | None = None, name: str = "q", **spec: Any) -> Obj:
    status = {"hard": hard, "used": used} if used is not None else {}
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"}, "spec": {"hard": hard, **spec},
            "status": status}


# --- amounts and lists --------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "total"), [
    ("0", "128Mi", "128Mi"), ("128Mi", "256Mi", "384Mi"), ("500m", "1", "1500m"), ("1", "500m", "1500m"),
    ("1Gi", "1", "1073741825"), ("100m", "900m", "1"),
])
def test_sums_print_in_the_format_go_keeps(a: str, b: str, total: str) -> None:
    assert str(Amount.parse(a).plus(Amount.parse(b))) == total


def test_an_unchanged_quantity_prints_as_written() -> None:
    assert str(Amount.parse("1.5")) == "1500m" and str(Amount.parse("+1")) == "+1"
    assert render(add({"cpu": Amount.parse("1")}, {})) == {"cpu": "1"}
    assert pretty(parse_list({"pods": "2", "limits.cpu": "1"})) == "limits.cpu=1,pods=2"


def test_pod_requests_take_sidecars_init_steps_and_overhead() -> None:
    p = pod(container("a", requests={"cpu": "100m"}, limits={"cpu": "200m"}),
            initContainers=[container("side", requests={"cpu": "50m"}, restartPolicy="Always"),
                            container("init", requests={"cpu": "1", "memory": "1Gi"})],
            overhead={"cpu": "10m", "memory": "1Mi"})
    assert render(pod_requests(p)) == {"cpu": "1060m", "memory": "1025Mi"}  # max(150m, 1050m) + 10m
    assert render(pod_limits(p)) == {"cpu": "210m"}  # overhead only where a limit is set


# --- evaluators ---------------------------------------------------------------------------------


def test_pod_usage() -> None:
    p = pod(container(requests={"cpu": "250m", "memory": "64Mi", "hugepages-2Mi": "2Mi", "example.com/gpu": "1"},
                      limits={"cpu": "500m", "memory": "64Mi", "hugepages-2Mi": "2Mi", "example.com/gpu": "1"}))
    assert render(POD_EVALUATOR.usage(p, NOW)) == {
        "count/pods": "1", "cpu": "250m", "hugepages-2Mi": "2Mi", "limits.cpu": "500m", "limits.memory": "64Mi",
        "memory": "64Mi", "pods": "1", "requests.cpu": "250m", "requests.example.com/gpu": "1",
        "requests.hugepages-2Mi": "2Mi", "requests.memory": "64Mi"}


def test_finished_pods_and_pods_past_their_grace_cost_only_their_count() -> None:
    done = pod(container(requests={"cpu": "1"}))
    done["status"]["phase"] = "Succeeded"
    assert render(POD_EVALUATOR.usage(done, NOW)) == {"count/pods": "1"}
    leaving = pod(container(requests={"cpu": "1"}))
    leaving["metadata"].update(deletionTimestamp="2024-12-31T23:59:00Z", deletionGracePeriodSeconds=30)
    assert render(POD_EVALUATOR.usage(leaving, NOW)) == {"count/pods": "1"}
    leaving["metadata"]["deletionGracePeriodSeconds"] = 300
    assert "requests.cpu" in POD_EVALUATOR.usage(leaving, NOW)


def test_service_and_claim_usage() -> None:
    node_port = {"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}
    assert render(SERVICES.usage(node_port, NOW)) == {"count/services": "1", "services": "1",
                                                      "services.loadbalancers": "0", "services.nodeports": "2"}
    pvc = {"spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "1.5"}}}}
    assert render(CLAIMS.usage(pvc, NOW)) == {
        "count/persistentvolumeclaims": "1", "gold.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
        "gold.storageclass.storage.k8s.io/requests.storage": "2", "persistentvolumeclaims": "1", "requests.storage": "2"}


# --- CheckRequest -------------------------------------------------------------------------------


def test_a_pod_over_the_count_is_refused_with_upstream_words() -> None:
    with pytest.raises(Refused) as refused:
        check_request([quota({"pods": "2"}, {"pods": "2"})], POD_EVALUATOR, pod(), None, NOW)
    assert str(refused.value) == "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"


def test_a_pod_that_fits_is_charged() -> None:
    q = quota({"pods": "3", "requests.memory": "1Gi"}, {"pods": "1", "requests.memory": "128Mi"})
    [charged] = check_request([q], POD_EVALUATOR, pod(container(requests={"memory": "256Mi"})), None, NOW)
    assert charged["status"]["used"] == {"pods": "2", "requests.memory": "384Mi"}
    assert q["status"]["used"] == {"pods": "1", "requests.memory": "128Mi"}  # the input is left alone


def test_compute_quota_requires_every_container_to_state_it() -> None:
    p = pod(container("a", requests={"cpu": "1"}), container("b"), initContainers=[container("i")])
    with pytest.raises(Refused, match=r"^failed quota: q: must specify limits.cpu for: a,b,i; requests.cpu for: b,i$"):
        check_request([quota({"requests.cpu": "2", "limits.cpu": "2"}, {})], POD_EVALUATOR, p, None, NOW)


def test_a_quota_not_yet_counted_refuses() -> None:
    with pytest.raises(Refused, match="^status unknown for quota: q, resources: pods$"):
        check_request([quota({"pods": "2"}, {})], POD_EVALUATOR, pod(), None, NOW)
    assert check_request([quota({"pods": "2"})], POD_EVALUATOR, pod(), None, NOW) == []  # no status.hard: no match


def test_scoped_quotas_only_see_their_pods() -> None:
    best_effort = quota({"pods": "0"}, {"pods": "0"}, scopes=["BestEffort"])
    burstable = pod(container(requests={"cpu": "1"}))
    assert check_request([best_effort], POD_EVALUATOR, burstable, None, NOW) == []
    with pytest.raises(Refused):
        check_request([best_effort], POD_EVALUATOR, pod(), None, NOW)


def test_object_counts_and_node_ports() -> None:
    configmaps = EVALUATORS[("", "configmaps")]
    q = quota({"configmaps": "1", "count/configmaps": "5"}, {"configmaps": "1", "count/configmaps": "1"})
    with pytest.raises(Refused, match="^exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1$"):
        check_request([q], configmaps, {"metadata": {"name": "c"}}, None, NOW)
    old = {"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    new = {"spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    with pytest.raises(Refused, match="services.nodeports=1, used: services.nodeports=0, limited: services.nodeports=0"):
        check_request([quota({"services.nodeports": "0"}, {"services.nodeports": "0"})], SERVICES, new, old, NOW)


# --- the controller's recount -------------------------------------------------------------------


def test_usage_is_recounted_from_the_namespace() -> None:
    q = quota({"pods": "5", "requests.cpu": "2", "count/configmaps": "3"})
    objects = {("", "pods"): [pod(container(requests={"cpu": "500m"})), pod(container(requests={"cpu": "1"}))]}
    status = synced_status(q, calculate_usage(q, objects, NOW))
    assert status == {"hard": {"count/configmaps": "3", "pods": "5", "requests.cpu": "2"},
                      "used": {"count/configmaps": "0", "pods": "2", "requests.cpu": "1500m"}}
    assert synced_status({**q, "status": status}, calculate_usage(q, objects, NOW)) is None


def test_only_spec_changes_and_new_quotas_need_a_sync() -> None:
    q = quota({"pods": "2"}, {"pods": "1"})
    assert needs_sync(q, None)
    assert not needs_sync({**q, "status": {"hard": {"pods": "2"}, "used": {"pods": "2"}}}, q)
    assert needs_sync(quota({"pods": "3"}, {"pods": "1"}), q)


class FakeClient:
    """Answers the controller's reads from dicts and records its status writes."""

    def __init__(self, objects: dict[str, Obj]):
        self.objects = objects
        self.writes: list[tuple[str, Obj]] = []

    async def get_or_none(self, url: str, params: Any = None) -> Obj | None:
        return copy.deepcopy(self.objects.get(url))

    async def get(self, url: str, params: Any = None) -> Obj:
        return copy.deepcopy(self.objects[url])

    async def update(self, url: str, obj: Obj) -> Obj:
        self.writes.append((url, obj))
        return obj


async def test_the_controller_writes_hard_and_used_and_recounts_after_a_delete() -> None:
    q = quota({"pods": "2"})
    p = pod()
    client = FakeClient({"/api/v1/namespaces/ns/resourcequotas/q": q,
                         "/api/v1/namespaces/ns/pods": {"items": [p]}})
    controller = ResourceQuotaController(client, clock=lambda: NOW)  # type: ignore[arg-type]
    await controller._on_quota("ADDED", q)
    assert controller.queue._queued == {"ns/q"}
    await controller.sync("ns/q")
    assert client.writes == [("/api/v1/namespaces/ns/resourcequotas/q/status",
                              {**q, "status": {"hard": {"pods": "2"}, "used": {"pods": "1"}}})]
    controller.queue._queued.clear()
    await controller._on_quota("MODIFIED", client.writes[0][1])  # the watch brings the write back
    controller.on_object(POD_EVALUATOR, "ADDED", p)
    assert not controller.queue._queued  # creates were charged by admission: no recount
    controller.on_object(POD_EVALUATOR, "MODIFIED", p)
    assert not controller.queue._queued  # nothing it costs changed
    controller.on_object(POD_EVALUATOR, "DELETED", p)
    assert controller.queue._queued == {"ns/q"}


# --- admission ----------------------------------------------------------------------------------


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = SqliteStore(str(tmp_path / "store.db"))
    await store.start()
    reads = Storage(store)
    admission = QuotaAdmission(reads.list_objects,
                               lambda q: reads.replace(QUOTAS, q, int(q["metadata"]["resourceVersion"])))
    try:
        storage = Storage(store, admission=[admission.admit], release=[admission.release])
        await storage.create(NAMESPACES, {"metadata": {"name": "ns"}}, None, WriteOptions())
        yield storage
    finally:
        await store.close()


async def counted_quota(storage: Storage, hard: Obj) -> None:
    """A quota as the controller leaves it: status.hard set, nothing used yet."""
    created = await storage.create(QUOTAS, {"metadata": {"name": "q"}, "spec": {"hard": hard}}, "ns", WriteOptions())
    created["status"] = {"hard": hard, "used": {name: "0" for name in hard}}
    await storage.replace(QUOTAS, created, int(created["metadata"]["resourceVersion"]))


async def test_concurrent_creates_never_exceed_the_quota(storage: Storage) -> None:
    await counted_quota(storage, {"count/configmaps": "5"})

    async def create(i: int) -> bool:
        try:
            await storage.create(CONFIGMAPS, {"metadata": {"name": f"c{i}"}}, "ns", WriteOptions())
            return True
        except ApiError as e:
            assert e.code == 403 and "exceeded quota: q, requested: count/configmaps=1" in e.message
            return False

    results = await asyncio.gather(*(create(i) for i in range(12)))
    assert sum(results) == 5
    stored, _ = await storage.get(QUOTAS, "ns", "q")
    assert stored["status"]["used"] == {"count/configmaps": "5"}


async def test_a_dry_run_or_a_taken_name_is_refunded(storage: Storage) -> None:
    await counted_quota(storage, {"count/configmaps": "2"})
    await storage.create(CONFIGMAPS, {"metadata": {"name": "a"}}, "ns", WriteOptions(dry_run=True))
    await storage.create(CONFIGMAPS, {"metadata": {"name": "a"}}, "ns", WriteOptions())
    with pytest.raises(ApiError, match="already exists"):
        await storage.create(CONFIGMAPS, {"metadata": {"name": "a"}}, "ns", WriteOptions())
    stored, _ = await storage.get(QUOTAS, "ns", "q")
    assert stored["status"]["used"] == {"count/configmaps": "1"}


async def test_conflicting_quota_writes_are_retried_then_given_up() -> None:
    stored = quota({"pods": "2"}, {"pods": "0"})
    attempts: list[Obj] = []

    async def list_in_namespace(rt: ResourceType, namespace: str) -> list[Obj]:
        return [copy.deepcopy(stored)]

    async def losing_update(q: Obj) -> Obj:
        attempts.append(q)
        raise conflict("resourcequotas", "q", "the object has been modified; please apply your changes to the "
                                              "latest version and try again")

    with pytest.raises(ApiError) as lost:
        await QuotaAdmission(list_in_namespace, losing_update, lambda: NOW).admit(PODS, pod(), None)
    assert lost.value.code == 409 and len(attempts) == 4


# --- table and validation ---------------------------------------------------------------------


def test_the_table_splits_requests_and_limits() -> None:
    q = quota({"pods": "2", "limits.cpu": "2", "requests.cpu": "1"}, {"pods": "1", "requests.cpu": "100m"})
    q["metadata"]["creationTimestamp"] = "2024-12-31T23:59:00Z"
    table = tables.table(QUOTAS, [q], NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age", "Request", "Limit"]
    assert table["rows"][0]["cells"] == ["q", "60s", "pods: 1/2, requests.cpu: 100m/1", "limits.cpu: 0/2"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"hard": {"cpu": "-1"}}, 'spec.hard[cpu]: Invalid value: "-1": must be greater than or equal to 0'),
    ({"hard": {"storage": "1"}}, 'spec.hard[storage]: Invalid value: "storage": must be a standard resource for quota'),
    ({"hard": {"pods": "1500m"}}, 'spec.hard[pods]: Invalid value: "1500m": must be an integer'),
    ({"hard": {"services": "1"}, "scopes": ["BestEffort"]},
     'spec.scopes: Invalid value: ["BestEffort"]: unsupported scope applied to resource'),
    ({"hard": {"pods": "1"}, "scopes": ["Terminating", "NotTerminating"]},
     'spec.scopes: Invalid value: ["Terminating","NotTerminating"]: conflicting scopes'),
])
def test_quota_validation(spec: Obj, message: str) -> None:
    obj = {"metadata": {"name": "q", "namespace": "ns"}, "spec": spec}
    assert [str(e) for e in validate_resource_quota(obj)] == [message]


def test_an_unknown_name_is_neither_a_resource_nor_a_quota_resource() -> None:
    obj = {"metadata": {"name": "q", "namespace": "ns"}, "spec": {"hard": {"foo": "1", "count/pods": "1"}}}
    assert [str(e) for e in validate_resource_quota(obj)] == [
        'spec.hard[foo]: Invalid value: "foo": must be a standard resource type or fully qualified',
        'spec.hard[foo]: Invalid value: "foo": must be a standard resource for quota']


def test_scopes_are_immutable() -> None:
    old = {"metadata": {"name": "q", "namespace": "ns", "resourceVersion": "1"}, "spec": {"hard": {"pods": "1"}}}
    new = copy.deepcopy(old)
    new["spec"]["scopes"] = ["BestEffort"]
    assert [str(e) for e in validate_resource_quota_update(new, old)] == [
        'spec.scopes: Invalid value: ["BestEffort"]: field is immutable']


# --- node allocatable -------------------------------------------------------------------------

FACTS = HostFacts(cpus=4, memory_bytes=16 * 1024**3, storage_bytes=100 * 1024**3, kernel="", os_image="",
                  architecture="amd64", runtime_version="", internal_ip="192.0.2.10", hostname="n1", machine_id="",
                  system_uuid="", boot_id="", hugepages=())


def test_reserved_resources_come_off_allocatable() -> None:
    reserved = reservation(parse_reserved("cpu=500m,memory=512Mi,pid=1000"), parse_reserved("cpu=250m,ephemeral-storage=1Gi"))
    assert reserved == {"cpu": Fraction(3, 4), "memory": 512 * 1024**2, "pid": 1000, "ephemeral-storage": 1024**3}
    node_allocatable = allocatable(FACTS, reserved)
    assert node_allocatable["cpu"] == "3250m"
    assert node_allocatable["memory"] == "15772Mi"  # 16Gi - 512Mi - the 100Mi hard eviction threshold
    assert node_allocatable["ephemeral-storage"] == "95563022176"  # 100Gi - 1Gi - 10% (as float32)
    assert allocatable(FACTS, {"cpu": Fraction(8)})["cpu"] == "0"


@pytest.mark.parametrize(("text", "message"), [
    ("gpu=1", 'cannot reserve "gpu" resource'),
    ("cpu=-1", 'resource quantity for "cpu" cannot be negative: -1'),
    ("cpu", "malformed pair, expect string=string: cpu"),
    ("memory=lots", 'failed to parse quantity "lots" for "memory" resource: '
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
])
def test_reserved_flag_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_reserved(text)
    assert str(error.value) == message


def test_the_scheduler_counts_requests_against_allocatable() -> None:
    node = {"metadata": {"name": "n1", "labels": {}}, "spec": {},
            "status": {"allocatable": allocatable(FACTS, {"cpu": Fraction(3)}), "conditions": [{"type": "Ready", "status": "True"}]}}
    fits = pod(container(requests={"cpu": "1"}))
    fits["metadata"]["uid"] = "u1"
    assert schedule(fits, [NodeInfo.of(node)], random.Random(0)).node == "n1"
    too_big = pod(container(requests={"cpu": "1001m"}))
    assert schedule(too_big, [NodeInfo.of(node)], random.Random(0)).message == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod.")
    busy = NodeInfo.of(node, [fits])
    assert busy.requested["cpu"] == 1000 and PodUsage.of(fits).requests == {"cpu": 1000}
