"""Node lifecycle and taint eviction against an in-memory API and a fake clock: a silent node goes
Unknown and gets tainted, its pods go not Ready and are deleted when their toleration runs out,
a disrupted cluster taints nothing, and the agent notices when its status was overwritten."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from tinykube.api.errors import ApiError
from tinykube.cli.main import parser
from tinykube.controllers.nodelifecycle import (
    LifecycleConfig,
    NodeLifecycleController,
    TaintQueue,
    no_schedule_changes,
    stamp,
    swapped_taints,
    zone_state,
)
from tinykube.controllers.tainteviction import (
    TaintEvictionController,
    PodIndex,
    matching_tolerations,
    toleration_time,
)
from tinykube.node.registration import Registration
from tinykube.node.worker import PodWorker

Obj = dict[str, Any]
T0 = 1_700_000_000.0
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Recorder:
    """Stands in for EventRecorder: keeps (kind, name, type, reason, message)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, str]] = []

    def record(self, ref: Obj, type_: str, reason: str, message: str) -> None:
        self.events.append((ref["kind"], ref["name"], type_, reason, message))

    def reasons(self) -> list[str]:
        return [e[3] for e in self.events]


def _merge(target: Obj, patch: Obj, strategic: bool) -> None:
    """JSON merge patch, or strategic merge for ``conditions`` (merged by type)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, strategic)
        elif strategic and key == "conditions":
            by_type = {c["type"]: c for c in target.get(key) or []}
            by_type.update({c["type"]: c for c in value})
            target[key] = list(by_type.values())
        else:
            target[key] = copy.deepcopy(value)


class FakeApi:
    """Objects by URL (``/status`` shares its object), with resourceVersion conflicts; writes logged."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.writes: list[tuple[str, str, Any]] = []
        self.version = 1

    def put(self, url: str, obj: Obj) -> Obj:
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[url] = obj
        return copy.deepcopy(obj)

    def _object(self, url: str) -> Obj:
        base = url.removesuffix("/status")
        if base not in self.objects:
            raise ApiError(404, "NotFound", f"{base} not found")
        return self.objects[base]

    async def get(self, url: str, params: Any = None) -> Obj:
        return copy.deepcopy(self._object(url))

    async def update(self, url: str, obj: Obj) -> Obj:
        self.writes.append(("PUT", url, copy.deepcopy(obj)))
        if obj["metadata"].get("resourceVersion") != self._object(url)["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self.put(url.removesuffix("/status"), obj)

    async def patch(self, url: str, body: Obj, content_type: str = "application/merge-patch+json") -> Obj:
        self.writes.append(("PATCH", url, copy.deepcopy(body)))
        current = copy.deepcopy(self._object(url))
        wanted = body.get("metadata", {})
        if wanted.get("resourceVersion", current["metadata"]["resourceVersion"]) != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        _merge(current, body, content_type.startswith("application/strategic"))
        return self.put(url.removesuffix("/status"), current)

    async def delete(self, url: str, options: Obj | None = None) -> Obj:
        self.writes.append(("DELETE", url, options))
        obj = self._object(url)
        obj["metadata"]["deletionTimestamp"] = "2023-11-14T22:13:20Z"
        return copy.deepcopy(obj)

    def urls(self, verb: str) -> list[str]:
        return [url for v, url, _ in self.writes if v == verb]


def make_node(name: str, ready: str | None = "True", heartbeat: str = "2023-11-14T22:00:00Z") -> Obj:
    conditions = [] if ready is None else [
        {"type": kind, "status": status, "lastHeartbeatTime": heartbeat, "lastTransitionTime": heartbeat,
         "reason": "Kubelet", "message": "kubelet says"}
        for kind, status in (("MemoryPressure", "False"), ("DiskPressure", "False"), ("PIDPressure", "False"),
                             ("Ready", ready))]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": stamp(T0)},
            "spec": {}, "status": {"conditions": conditions}}


def make_pod(name: str, node: str = "n1", tolerations: list[Obj] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}], "tolerations": tolerations or []},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp(T0)}]}}


def lease(name: str, renewed: float) -> Obj:
    return {"metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "renewTime": stamp(renewed).replace("Z", ".000000Z")}}


class Cluster:
    """The controller wired to the fake API; watch events are delivered by hand, as the API would."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.api = FakeApi()
        self.ctrl = NodeLifecycleController(self.api, LifecycleConfig(), self.clock)  # type: ignore[arg-type]
        self.events = self.ctrl.events = Recorder()  # type: ignore[assignment]
        self.ctrl.taint_eviction.events = self.events  # type: ignore[assignment]

    async def add_node(self, node: Obj) -> None:
        await self.ctrl.on_node("ADDED", self.api.put(f"/api/v1/nodes/{node['metadata']['name']}", node))

    async def add_pod(self, pod: Obj) -> None:
        meta = pod["metadata"]
        await self.ctrl.on_pod("ADDED", self.api.put(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", pod))

    async def renew(self, name: str) -> None:
        await self.ctrl.on_lease("MODIFIED", lease(name, self.clock()))

    async def sync(self) -> None:
        """Deliver what was written back to the controller (the watch), as MODIFIED events."""
        for url, obj in self.api.objects.items():
            if "/nodes/" in url and self.ctrl.nodes.get(obj["metadata"]["name"]) != obj:
                await self.ctrl.on_node("MODIFIED", copy.deepcopy(obj))
            elif "/pods/" in url:
                await self.ctrl.on_pod("MODIFIED", copy.deepcopy(obj))

    async def pass_(self) -> None:
        """One monitor pass, the watch catching up, and one tainting pass."""
        await self.ctrl.monitor_node_health()
        await self.sync()
        await self.ctrl.no_execute_tainting_pass()
        await self.sync()

    def node(self, name: str) -> Obj:
        return self.api.objects[f"/api/v1/nodes/{name}"]

    def ready(self, name: str) -> Obj:
        return next(c for c in self.node(name)["status"]["conditions"] if c["type"] == "Ready")


async def two_nodes() -> Cluster:
    """n1 (which will go silent) and n2 (kept alive by its lease), so the zone is not fully disrupted."""
    c = Cluster()
    for name in ("n1", "n2"):
        await c.add_node(make_node(name))
        await c.renew(name)
    await c.pass_()
    return c


async def test_a_node_silent_past_the_grace_period_goes_unknown_and_its_pods_not_ready() -> None:
    c = await two_nodes()
    await c.add_pod(make_pod("web"))
    assert ("Node", "n1", "Normal", "RegisteredNode", "Node n1 event: Registered Node n1 in Controller") in c.events.events
    c.clock.advance(39)
    await c.renew("n2")
    await c.pass_()
    assert c.ready("n1")["status"] == "True"
    c.clock.advance(2)
    await c.renew("n2")
    await c.pass_()
    ready = c.ready("n1")
    assert (ready["status"], ready["reason"], ready["message"]) == ("Unknown", "NodeStatusUnknown",
                                                                   "Kubelet stopped posting node status.")
    assert ready["lastHeartbeatTime"] == "2023-11-14T22:00:00Z" and ready["lastTransitionTime"] == stamp(c.clock())
    assert {x["status"] for x in c.node("n1")["status"]["conditions"]} == {"Unknown"}
    assert c.ready("n2")["status"] == "True"
    assert ("Node", "n1", "Normal", "NodeNotReady", "Node n1 status is now: NodeNotReady") in c.events.events
    assert ("Pod", "web", "Warning", "NodeNotReady", "Node is not ready") in c.events.events
    pod_ready = c.api.objects["/api/v1/namespaces/ns/pods/web"]["status"]["conditions"][0]
    assert (pod_ready["status"], pod_ready["lastTransitionTime"]) == ("False", stamp(c.clock()))


async def test_the_unreachable_node_is_tainted_no_execute_and_untainted_when_it_reports_again() -> None:
    c = await two_nodes()
    c.clock.advance(41)
    await c.renew("n2")
    await c.pass_()  # marked Unknown in this pass, tainted in the next (as upstream: observed first)
    assert not c.node("n1")["spec"].get("taints", [])
    c.clock.advance(5)
    await c.renew("n2")
    await c.pass_()
    taints = c.node("n1")["spec"]["taints"]
    assert {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": stamp(c.clock())} in taints
    patches = c.api.urls("PATCH")
    c.clock.advance(5)
    await c.pass_()
    assert c.api.urls("PATCH") == patches  # tainted once, not again on every pass
    back = make_node("n1", heartbeat=stamp(c.clock()))
    back["metadata"]["resourceVersion"] = c.node("n1")["metadata"]["resourceVersion"]
    back["spec"] = c.node("n1")["spec"]
    await c.api.update("/api/v1/nodes/n1/status", back)
    await c.renew("n1")
    await c.sync()
    await c.pass_()
    assert not any(t["effect"] == "NoExecute" for t in c.node("n1")["spec"].get("taints") or [])


async def test_a_node_that_says_not_ready_gets_the_not_ready_taint_instead() -> None:
    c = await two_nodes()
    c.node("n1")["spec"]["taints"] = [dict(UNREACHABLE, timeAdded=stamp(T0))]
    c.node("n1")["status"]["conditions"][-1].update(status="False", lastHeartbeatTime=stamp(T0 + 1))
    await c.sync()
    await c.pass_()
    assert [t["key"] for t in c.node("n1")["spec"]["taints"] if t["effect"] == "NoExecute"] == [NOT_READY["key"]]


async def test_when_every_node_is_silent_nothing_is_tainted_no_execute() -> None:
    c = Cluster()
    await c.add_node(make_node("n1"))
    await c.pass_()
    for _ in range(4):
        c.clock.advance(30)
        await c.pass_()
    assert c.ready("n1")["status"] == "Unknown"
    assert not any(t["effect"] == "NoExecute" for t in c.node("n1")["spec"].get("taints") or [])
    assert c.ctrl.zone_states == {"": "FullDisruption"}


async def test_a_node_that_never_reported_gets_the_startup_grace_and_never_updated_conditions() -> None:
    c = Cluster()
    await c.add_node(make_node("n1", ready=None))
    await c.add_node(make_node("n2"))
    await c.renew("n2")
    await c.pass_()
    c.clock.advance(59)
    await c.renew("n2")
    await c.pass_()
    assert c.node("n1")["status"]["conditions"] == []
    c.clock.advance(2)
    await c.renew("n2")
    await c.pass_()
    ready = c.ready("n1")
    assert (ready["reason"], ready["message"]) == ("NodeStatusNeverUpdated", "Kubelet never posted node status.")
    assert ready["lastHeartbeatTime"] == stamp(T0)


def test_no_schedule_taints_follow_the_conditions_and_cordon_leaving_other_taints_alone() -> None:
    node = make_node("n1", ready="Unknown")
    node["spec"] = {"unschedulable": True, "taints": [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}, {"key": "dedicated", "effect": "NoSchedule"},
        dict(UNREACHABLE)]}
    add, remove = no_schedule_changes(node)
    assert add == [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    assert remove == [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]


def test_swapped_taints_replace_in_place_and_remove_by_key_and_effect() -> None:
    taints = [{"key": "a", "effect": "NoSchedule"}, dict(NOT_READY, timeAdded="old")]
    out = swapped_taints(taints, [UNREACHABLE], [NOT_READY], "now")
    assert out == [{"key": "a", "effect": "NoSchedule"}, dict(UNREACHABLE, timeAdded="now")]


def test_zone_states_as_upstream_computes_them() -> None:
    ready, unknown = {"status": "True"}, {"status": "Unknown"}
    assert zone_state([unknown]) == "FullDisruption"
    assert zone_state([ready, unknown]) == "Normal"
    assert zone_state([ready, unknown, unknown, unknown]) == "PartialDisruption"
    assert zone_state([ready, ready, unknown, unknown, unknown, None, ready, ready]) == "Normal"  # 4/8 < 0.55


async def test_the_taint_queue_takes_a_node_once_and_keeps_to_its_rate() -> None:
    clock = Clock()
    queue = TaintQueue(0.1, clock)
    done: list[str] = []

    async def act(name: str) -> None:
        done.append(name)
    assert queue.add("a") and queue.add("b") and not queue.add("a")
    await queue.try_all(act)
    assert done == ["a"]  # burst 1
    clock.advance(10)
    await queue.try_all(act)
    assert done == ["a", "b"] and not queue.add("a")
    queue.remove("a")
    queue.set_rate(0.0)
    assert queue.add("a") and not queue.pending()


# --- taint eviction ----------------------------------------------------------------------------

class Eviction:
    def __init__(self) -> None:
        self.clock = Clock()
        self.api = FakeApi()
        self.pods = PodIndex()
        self.ctrl = TaintEvictionController(self.api, self.pods, self.clock)  # type: ignore[arg-type]
        self.events = self.ctrl.events = Recorder()  # type: ignore[assignment]

    def add_pod(self, pod: Obj) -> None:
        pod = self.api.put(f"/api/v1/namespaces/ns/pods/{pod['metadata']['name']}", pod)
        self.ctrl.pod_updated(self.pods.apply("ADDED", pod), pod)

    def taint(self, *taints: Obj) -> None:
        old = make_node("n1")
        new = copy.deepcopy(old)
        new["spec"]["taints"] = [dict(t, timeAdded=stamp(self.clock())) for t in taints]
        self.ctrl.node_updated(old, new)


async def test_a_pod_that_does_not_tolerate_the_taint_is_deleted_at_once() -> None:
    e = Eviction()
    e.add_pod(make_pod("web"))
    e.taint({"key": "dedicated", "value": "x", "effect": "NoExecute"})
    await e.ctrl.fire_due()
    assert e.api.urls("DELETE") == ["/api/v1/namespaces/ns/pods/web"]
    status = e.api.objects["/api/v1/namespaces/ns/pods/web"]["status"]
    assert {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint", "lastProbeTime": None,
            "lastTransitionTime": stamp(T0)} in status["conditions"]
    assert "reason" not in status  # a user's taint: the node is fine, nothing is lost
    assert ("Pod", "web", "Normal", "TaintManagerEviction", "Marking for deletion Pod ns/web") in e.events.events


async def test_toleration_seconds_delay_the_deletion_and_the_pod_is_marked_node_lost() -> None:
    e = Eviction()
    e.add_pod(make_pod("web", tolerations=[{"key": UNREACHABLE["key"], "operator": "Exists", "effect": "NoExecute",
                                            "tolerationSeconds": 10}]))
    e.taint(UNREACHABLE)
    e.clock.advance(9)
    await e.ctrl.fire_due()
    assert not e.api.writes
    e.clock.advance(1)
    await e.ctrl.fire_due()
    await e.ctrl.fire_due()
    assert e.api.urls("DELETE") == ["/api/v1/namespaces/ns/pods/web"]  # once
    status = e.api.objects["/api/v1/namespaces/ns/pods/web"]["status"]
    assert (status["reason"], status["message"]) == ("NodeLost", "Node n1 which was running pod web is unresponsive")
    patch = next(body for verb, url, body in e.api.writes if verb == "PATCH")
    assert patch["metadata"] == {"uid": "uid-web"}


async def test_a_forever_toleration_keeps_the_pod_and_removing_the_taint_cancels_with_an_event() -> None:
    e = Eviction()
    e.add_pod(make_pod("forever", tolerations=[{"operator": "Exists"}]))
    e.add_pod(make_pod("timed", tolerations=[{"key": UNREACHABLE["key"], "operator": "Exists", "tolerationSeconds": 60}]))
    e.taint(UNREACHABLE)
    assert set(e.ctrl.work) == {"ns/timed"}
    tainted = make_node("n1")
    tainted["spec"]["taints"] = [dict(UNREACHABLE, timeAdded=stamp(T0))]
    e.ctrl.node_updated(tainted, make_node("n1"))
    e.clock.advance(120)
    await e.ctrl.fire_due()
    assert not e.api.writes
    assert ("Pod", "timed", "Normal", "TaintManagerEviction", "Cancelling deletion of Pod ns/timed") in e.events.events


async def test_a_pod_arriving_on_a_tainted_node_is_planned_from_its_arrival() -> None:
    e = Eviction()
    e.taint(UNREACHABLE)
    e.clock.advance(100)
    e.add_pod(make_pod("late", tolerations=[{"key": UNREACHABLE["key"], "operator": "Exists", "tolerationSeconds": 5}]))
    e.clock.advance(4)
    await e.ctrl.fire_due()
    assert not e.api.writes
    e.clock.advance(1)
    await e.ctrl.fire_due()
    assert e.api.urls("DELETE") == ["/api/v1/namespaces/ns/pods/late"]


def test_the_shortest_matching_toleration_wins_and_none_matching_means_now() -> None:
    tolerations = [{"key": "a", "operator": "Exists", "tolerationSeconds": 30},
                   {"key": "b", "operator": "Exists", "tolerationSeconds": 10}, {"key": "c", "operator": "Exists"}]
    taints = [{"key": k, "effect": "NoExecute"} for k in "abc"]
    assert toleration_time(matching_tolerations(taints, tolerations) or []) == 10
    assert toleration_time(matching_tolerations(taints[2:], tolerations) or []) is None
    assert matching_tolerations([{"key": "d", "effect": "NoExecute"}], tolerations) is None
    assert toleration_time([{"tolerationSeconds": -5}]) == 0


# --- the agent's side, and the flags ---------------------------------------------------------

def test_the_agent_writes_again_when_someone_else_changed_its_conditions() -> None:
    worker = PodWorker(None, "uid-web", None)  # type: ignore[arg-type]
    worker._last_version = 10
    ours = {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DisruptionTarget", "status": "True"}]}
    theirs = make_pod("web")
    theirs["status"]["conditions"][0]["status"] = "False"
    theirs["metadata"]["resourceVersion"] = "12"
    assert worker._overwritten(theirs, ours)
    theirs["metadata"]["resourceVersion"] = "9"  # a stale watch event from before our own write
    assert not worker._overwritten(theirs, ours)
    same = make_pod("web")
    same["metadata"]["resourceVersion"] = "12"
    assert not worker._overwritten(same, ours)


async def test_registration_notices_its_node_status_was_written_unknown() -> None:
    api = FakeApi()
    node = make_node("n1")
    api.put("/api/v1/nodes/n1", node)
    registration = Registration(api, "n1", None, 10250)  # type: ignore[arg-type]
    assert not await registration._status_lost()
    node["status"]["conditions"][-1]["status"] = "Unknown"
    api.put("/api/v1/nodes/n1", node)
    assert await registration._status_lost()


@pytest.mark.parametrize(("text", "seconds"), [("40s", 40.0), ("1m30s", 90.0), ("500ms", 0.5), ("0", 0.0)])
def test_lifecycle_flags_take_go_durations(text: str, seconds: float) -> None:
    args = parser().parse_args(["server", "--node-monitor-grace-period", text])
    assert args.node_monitor_grace_period == seconds
    assert (args.node_monitor_period, args.node_startup_grace_period) == (5.0, 60.0)


def test_a_bad_duration_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["server", "--node-monitor-period", "5"])
    assert 'time: invalid duration "5"' in capsys.readouterr().err


async def test_a_failed_heartbeat_drops_the_agents_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the kubelet's closeAllConns: watches on a silently dead connection must not outlive it."""
    class Unreachable(FakeApi):
        resets = 0

        async def patch(self, url: str, body: Obj, content_type: str = "") -> Obj:
            raise ConnectionError("no route to host")

        async def reset(self, why: str) -> None:
            self.resets += 1

    api = Unreachable()
    monkeypatch.setattr("tinykube.node.registration.RENEW_INTERVAL", 0.01)
    beat = asyncio.create_task(Registration(api, "n1", None, 10250).heartbeat())  # type: ignore[arg-type]
    async with asyncio.timeout(2):
        while api.resets < 2:
            await asyncio.sleep(0.01)
    beat.cancel()
    await asyncio.gather(beat, return_exceptions=True)
