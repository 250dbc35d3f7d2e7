"""The scheduler's pure half: requests, filters, scores and upstream's FitError text; plus one
sync of the controller against a small fake client."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tinykube.api.errors import ApiError
from tinykube.controllers.scheduler import (
    NO_NODES,
    ClusterCache,
    NodeInfo,
    PodUsage,
    SchedulerController,
    filter_node,
    pod_requests,
    schedule,
    score_nodes,
    unschedulable_condition,
    wants_scheduling,
)

Obj = dict[str, Any]
GI = 1024 ** 3


def node(name: str = "n1", cpu: str = "2", memory: str = "4Gi", pods: str = "110", ready: str | None = "True",
         labels: dict[str, str] | None = None, taints: list[Obj] | None = None, unschedulable: bool = False) -> Obj:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    spec: Obj = {"taints": taints} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec,
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}, "conditions": conditions}}


def container(name: str = "c", cpu: str | None = None, memory: str | None = None, **extra: Any) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": name, "image": "x", "resources": {"requests": requests} if requests else {}, **extra}


def pod(name: str = "p", containers: list[Obj] | None = None, **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"containers": containers or [container()], "schedulerName": "default-scheduler", **spec},
            "status": {"phase": "Pending"}}


def reasons(p: Obj, n: Obj, bound: list[Obj] = ()) -> tuple[str, ...] | None:  # type: ignore[assignment]
    rejection = filter_node(p, PodUsage.of(p), NodeInfo.of(n, bound))
    return None if rejection is None else rejection.reasons


# --- requests ---------------------------------------------------------------------------------

def test_requests_sum_app_containers_and_take_the_largest_init_container() -> None:
    # computePodResourceRequest's own example: cpu max(3, 2) = 3, memory max(2G, 3G) = 3G
    p = pod(containers=[container("c1", "2", "1G"), container("c2", "1", "1G")],
            initContainers=[container("i1", "2", "1G"), container("i2", "2", "3G")])
    assert pod_requests(p) == {"cpu": 3000, "memory": 3_000_000_000}


def test_requests_count_sidecars_with_app_containers_and_with_later_init_steps() -> None:
    sidecar = container("s", "1", restartPolicy="Always")
    p = pod(containers=[container("c", "1")], initContainers=[sidecar, container("i", "2500m")])
    assert pod_requests(p) == {"cpu": 3500}  # init step 2.5 + sidecar 1 beats app 1 + sidecar 1


def test_requests_add_overhead_and_scalar_resources_and_drop_unknown_names() -> None:
    c = container("c", "250m", "64Mi")
    c["resources"]["requests"].update({"example.com/gpu": "2", "hugepages-2Mi": "4Mi", "storage": "1Gi"})
    p = pod(containers=[c], overhead={"cpu": "250m", "memory": "64Mi"})
    assert pod_requests(p) == {"cpu": 500, "memory": 128 * 1024 ** 2, "example.com/gpu": 2,
                               "hugepages-2Mi": 4 * 1024 ** 2}


def test_non_zero_requests_fill_in_defaults_per_container() -> None:
    p = pod(containers=[container("a"), container("b", cpu="1")])
    assert pod_requests(p, non_zero=True) == {"cpu": 1100, "memory": 400 * 1024 ** 2}
    assert pod_requests(p) == {"cpu": 1000}


# --- filters ----------------------------------------------------------------------------------

def selector(*expressions: Obj) -> Obj:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": list(expressions)}]}}}


def expr(key: str, operator: str, *values: str) -> Obj:
    return {"key": key, "operator": operator, **({"values": list(values)} if values else {})}


INSUFFICIENT_MEMORY = ("Insufficient memory",)
AFFINITY = ("node(s) didn't match Pod's node affinity/selector",)


@pytest.mark.parametrize(("case", "p", "n", "bound", "expected"), [
    ("fits", pod(containers=[container(cpu="1", memory="1Gi")]), node(), [], None),
    ("memory", pod(containers=[container(memory="100Gi")]), node(), [], INSUFFICIENT_MEMORY),
    ("cpu and memory, in fitsRequest's order", pod(containers=[container(cpu="3", memory="5Gi")]), node(), [],
     ("Insufficient cpu", "Insufficient memory")),
    ("bound pods count", pod(containers=[container(memory="2Gi")]), node(),
     [pod("a", [container(memory="3Gi")])], INSUFFICIENT_MEMORY),
    ("init container peak", pod(containers=[container(memory="1Gi")], initContainers=[container("i", memory="5Gi")]),
     node(), [], INSUFFICIENT_MEMORY),
    ("pod count", pod(), node(pods="1"), [pod("a")], ("Too many pods",)),
    ("a pod asking nothing fits a full node", pod(), node(cpu="1"), [pod("a", [container(cpu="1")])], None),
    ("extended resource", pod(containers=[container(**{"resources": {"requests": {"example.com/gpu": "1"}}})]),
     node(), [], ("Insufficient example.com/gpu",)),
    ("nodeSelector", pod(nodeSelector={"disk": "ssd"}), node(labels={"disk": "hdd"}), [], AFFINITY),
    ("nodeSelector matches", pod(nodeSelector={"disk": "ssd"}), node(labels={"disk": "ssd"}), [], None),
    ("In", pod(affinity=selector(expr("zone", "In", "a", "b"))), node(labels={"zone": "b"}), [], None),
    ("NotIn", pod(affinity=selector(expr("zone", "NotIn", "b"))), node(labels={"zone": "b"}), [], AFFINITY),
    ("NotIn without the label", pod(affinity=selector(expr("zone", "NotIn", "b"))), node(), [], None),
    ("Exists", pod(affinity=selector(expr("gpu", "Exists"))), node(), [], AFFINITY),
    ("DoesNotExist", pod(affinity=selector(expr("gpu", "DoesNotExist"))), node(), [], None),
    ("Gt", pod(affinity=selector(expr("cores", "Gt", "4"))), node(labels={"cores": "8"}), [], None),
    ("Lt", pod(affinity=selector(expr("cores", "Lt", "4"))), node(labels={"cores": "8"}), [], AFFINITY),
    ("Gt on a non-integer label", pod(affinity=selector(expr("cores", "Gt", "4"))), node(labels={"cores": "x"}), [],
     AFFINITY),
    ("matchFields metadata.name", pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [expr("metadata.name", "In", "n1")]}]}}}), node(), [], None),
    ("an empty term matches nothing", pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{}]}}}), node(), [], AFFINITY),
])
def test_filters(case: str, p: Obj, n: Obj, bound: list[Obj], expected: tuple[str, ...] | None) -> None:
    assert reasons(p, n, bound) == expected, case


TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
UNTOLERATED = ("node(s) had untolerated taint {dedicated: gpu}",)


@pytest.mark.parametrize(("case", "taints", "tolerations", "expected"), [
    ("NoSchedule blocks", [TAINT], [], UNTOLERATED),
    ("NoExecute blocks", [{**TAINT, "effect": "NoExecute"}], [], UNTOLERATED),
    ("PreferNoSchedule only scores", [{**TAINT, "effect": "PreferNoSchedule"}], [], None),
    ("Equal", [TAINT], [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], None),
    ("Equal is the default operator", [TAINT], [{"key": "dedicated", "value": "gpu"}], None),
    ("Equal with another value", [TAINT], [{"key": "dedicated", "value": "cpu"}], UNTOLERATED),
    ("Exists", [TAINT], [{"key": "dedicated", "operator": "Exists"}], None),
    ("other effect", [TAINT], [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}], UNTOLERATED),
    ("empty key with Exists tolerates all", [TAINT], [{"operator": "Exists"}], None),
    ("first untolerated taint is named", [{"key": "a", "effect": "NoSchedule"}, TAINT],
     [{"key": "a", "operator": "Exists"}], UNTOLERATED),
])
def test_taints_and_tolerations(case: str, taints: list[Obj], tolerations: list[Obj],
                                expected: tuple[str, ...] | None) -> None:
    assert reasons(pod(tolerations=tolerations), node(taints=taints)) == expected, case


def test_a_node_that_is_not_ready_carries_the_lifecycle_taint() -> None:
    assert reasons(pod(), node(ready="False")) == ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)
    assert reasons(pod(), node(ready=None)) == ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",)
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}])
    assert reasons(tolerant, node(ready="False")) is None


def test_unschedulable_node_is_checked_first() -> None:
    big = pod(containers=[container(memory="100Gi")])
    assert reasons(big, node(unschedulable=True)) == ("node(s) were unschedulable",)
    toleration = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
    tolerant = pod(tolerations=[toleration])
    assert reasons(tolerant, node(unschedulable=True)) is None


def port(host_port: int, ip: str = "", protocol: str = "") -> Obj:
    return {"containerPort": 80, "hostPort": host_port, **({"hostIP": ip} if ip else {}),
            **({"protocol": protocol} if protocol else {})}


PORT_TAKEN = ("node(s) didn't have free ports for the requested pod ports",)


@pytest.mark.parametrize(("case", "used", "wanted", "expected"), [
    ("same port", port(8080), port(8080), PORT_TAKEN),
    ("other port", port(8080), port(8081), None),
    ("other protocol", port(8080), port(8080, protocol="UDP"), None),
    ("specific address vs all addresses", port(8080, "10.0.0.1"), port(8080), PORT_TAKEN),
    ("all addresses vs specific address", port(8080), port(8080, "10.0.0.1"), PORT_TAKEN),
    ("two specific addresses", port(8080, "10.0.0.1"), port(8080, "10.0.0.2"), None),
    ("container ports without hostPort", {"containerPort": 80}, {"containerPort": 80}, None),
])
def test_host_ports(case: str, used: Obj, wanted: Obj, expected: tuple[str, ...] | None) -> None:
    bound = pod("a", [container(ports=[used])])
    assert reasons(pod(containers=[container(ports=[wanted])]), node(), [bound]) == expected, case


# --- messages ---------------------------------------------------------------------------------

def decide(p: Obj, *infos: NodeInfo) -> str:
    return schedule(p, infos, random.Random(0)).message


def test_fit_error_for_one_node() -> None:
    assert decide(pod(containers=[container(memory="100Gi")]), NodeInfo.of(node())) == (
        "0/1 nodes are available: 1 Insufficient memory. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")


def test_fit_error_mixes_reasons_and_preemption_verdicts() -> None:
    big = pod(containers=[container(memory="100Gi")])
    infos = [NodeInfo.of(node("a")), NodeInfo.of(node("b")), NodeInfo.of(node("c", taints=[TAINT]))]
    assert decide(big, *infos) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient memory. "
        "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod.")


def test_fit_error_sorts_the_histogram_as_strings() -> None:
    infos = [NodeInfo.of(node(f"n{i}", labels={"x": "y"} if i < 10 else {})) for i in range(12)]
    message = decide(pod(nodeSelector={"x": "z"}, containers=[container(memory="100Gi")]), *infos)
    assert message.startswith("0/12 nodes are available: 12 node(s) didn't match Pod's node affinity/selector. "
                              "preemption: 0/12 nodes are available: 12 Preemption is not helpful for scheduling.")
    infos[0] = NodeInfo.of(node("n0", labels={"x": "z"}))
    message = decide(pod(nodeSelector={"x": "z"}, containers=[container(memory="100Gi")]), *infos)
    assert message.startswith("0/12 nodes are available: 1 Insufficient memory, 11 node(s) didn't match")


def test_preemption_policy_never() -> None:
    p = pod(containers=[container(cpu="8")], preemptionPolicy="Never")
    assert decide(p, NodeInfo.of(node())) == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.")


def test_no_nodes() -> None:
    assert decide(pod()) == NO_NODES
    assert decide(pod(), NodeInfo("ghost")) == NO_NODES  # pods bound to a node we have not seen


# --- scores -----------------------------------------------------------------------------------

def test_least_allocated_prefers_the_emptier_node() -> None:
    busy = NodeInfo.of(node("busy"), [pod("a", [container(cpu="1", memory="2Gi")])])
    idle = NodeInfo.of(node("idle"))
    p = pod(containers=[container(cpu="500m", memory="1Gi")])
    scores = score_nodes(p, PodUsage.of(p), [busy, idle])
    # least allocated: idle (2000-500)*100//2000 = 75 for cpu and memory, busy 25; balanced: 100
    # for both (equal fractions); no PreferNoSchedule taint anywhere: 100 * weight 3 each
    assert scores == {"busy": 25 + 100 + 300, "idle": 75 + 100 + 300}
    assert schedule(p, [busy, idle], random.Random(0)).node == "idle"


def test_ties_are_broken_at_random() -> None:
    infos = [NodeInfo.of(node("a")), NodeInfo.of(node("b"))]
    picked = {schedule(pod(), infos, random.Random(seed)).node for seed in range(20)}
    assert picked == {"a", "b"}


def test_prefer_no_schedule_taints_and_preferred_affinity_steer() -> None:
    soft = NodeInfo.of(node("soft", taints=[{**TAINT, "effect": "PreferNoSchedule"}]))
    plain = NodeInfo.of(node("plain"))
    assert {schedule(pod(), [soft, plain], random.Random(s)).node for s in range(10)} == {"plain"}
    preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [expr("disk", "In", "ssd")]}}]}}
    ssd = NodeInfo.of(node("ssd", labels={"disk": "ssd"}))
    assert {schedule(pod(affinity=preferred), [plain, ssd], random.Random(s)).node for s in range(10)} == {"ssd"}


# --- status, cache, ownership -----------------------------------------------------------------

def test_unschedulable_condition_is_written_once_per_message() -> None:
    p = pod()
    condition = unschedulable_condition(p, "m1", "T1")
    assert condition == {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                         "lastTransitionTime": "T1", "reason": "Unschedulable", "message": "m1"}
    p["status"]["conditions"] = [condition]
    assert unschedulable_condition(p, "m1", "T2") is None
    assert unschedulable_condition(p, "m2", "T2")["lastTransitionTime"] == "T1"  # type: ignore[index]


def test_cache_tracks_bound_pods_and_relevant_node_changes() -> None:
    cache = ClusterCache()
    assert cache.set_node(node("a"))
    beat = node("a")
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "later"
    assert not cache.set_node(beat)  # a heartbeat changes nothing the scheduler reads
    assert cache.set_node(node("a", memory="8Gi"))
    cache.assume("u1", "a", PodUsage.of(pod(containers=[container(memory="1Gi")])))
    assert cache.nodes["a"].requested["memory"] == GI and "u1" in cache.assumed
    cache.add_pod("u1", "a", PodUsage.of(pod(containers=[container(memory="1Gi")])))
    assert "u1" not in cache.assumed and cache.nodes["a"].requested["memory"] == GI
    assert cache.remove_pod("u1") and cache.nodes["a"].requested["memory"] == 0
    assert not cache.remove_pod("u1")


def test_wants_scheduling() -> None:
    assert wants_scheduling(pod())
    assert not wants_scheduling(pod(nodeName="n1"))
    assert not wants_scheduling(pod(schedulerName="other"))
    assert not wants_scheduling(pod(schedulingGates=[{"name": "g"}]))
    gone = pod()
    gone["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert not wants_scheduling(gone)


# --- the controller against a fake client ------------------------------------------------------

class FakeClient:
    """Records writes (the scheduler makes no reads on its decision path); fails with ``error``."""

    def __init__(self, error: ApiError | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.error = error

    async def create(self, url: str, obj: Obj) -> Obj:
        self.calls.append(("POST", url, obj))
        if self.error is not None:
            raise self.error
        return {}

    async def patch(self, url: str, body: Any, content_type: str = "") -> Obj:
        self.calls.append(("PATCH", url, body))
        return {}


async def test_sync_binds_and_assumes_then_reports_the_next_pod_unschedulable() -> None:
    client = FakeClient()
    scheduler = SchedulerController(client, random.Random(0))  # type: ignore[arg-type]
    await scheduler._on_node("ADDED", node("a", memory="4Gi"))
    for name in ("first", "second"):
        await scheduler._on_pod("ADDED", pod(name, [container(memory="3Gi")]))
    await scheduler.sync("default/first")
    await scheduler.sync("default/second")
    bind, status = client.calls
    assert bind == ("POST", "/api/v1/namespaces/default/pods/first/binding",
                    {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "first"},
                     "target": {"apiVersion": "v1", "kind": "Node", "name": "a"}})
    assert status[:2] == ("PATCH", "/api/v1/namespaces/default/pods/second/status")
    assert status[2]["status"]["conditions"][0]["message"].startswith("0/1 nodes are available: 1 Insufficient memory.")
    assert scheduler.unschedulable == {"default/second"}
    await scheduler._on_pod("DELETED", {**pod("first", [container(memory="3Gi")]), "spec": {
        "nodeName": "a", "containers": [container(memory="3Gi")]}})
    assert scheduler.cache.nodes["a"].requested["memory"] == 0


@pytest.mark.parametrize(("code", "retried"), [(500, True), (404, False)])
async def test_a_failed_binding_is_forgotten_and_retried_unless_the_pod_is_gone(code: int, retried: bool) -> None:
    scheduler = SchedulerController(FakeClient(ApiError(code, "x", "y")), random.Random(0))  # type: ignore[arg-type]
    await scheduler._on_node("ADDED", node("a"))
    await scheduler._on_pod("ADDED", pod("p", [container(memory="1Gi")]))
    if retried:
        with pytest.raises(ApiError):
            await scheduler.sync("default/p")
    else:
        await scheduler.sync("default/p")
    assert ("default/p" in scheduler.pending) == retried
    assert not scheduler.cache.assumed and scheduler.cache.nodes["a"].requested["memory"] == 0
