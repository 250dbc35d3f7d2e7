"""The node lifecycle controller: notices nodes that stopped reporting, marks them and their pods,
and taints them, as kube-controller-manager 1.32's node-lifecycle-controller does
(pkg/controller/nodelifecycle/node_lifecycle_controller.go).

A node is alive while its Lease in ``kube-node-lease`` is renewed or its Ready heartbeat moves,
as seen on the controller's own clock (node clocks may be skewed).  Every
``--node-monitor-period`` each node is checked; one silent for longer than
``--node-monitor-grace-period`` (``--node-startup-grace-period`` if it never posted Ready) gets
every condition set ``Unknown`` ("Kubelet stopped posting node status."), a ``NodeNotReady``
event, and its pods ``Ready=False``.  A node that is not Ready is then queued for the
``node.kubernetes.io/unreachable`` NoExecute taint (``not-ready`` when the kubelet itself says
Ready=False), which the taint eviction controller acts on.  The queue is rate-limited per zone,
and it stops entirely while a zone, or the whole cluster, looks disrupted (upstream's guard
against evicting everything when the control plane, not the nodes, lost contact).  When the
node reports again its NoExecute taints go.  Independently, every node change maps the
conditions and ``spec.unschedulable`` to NoSchedule taints (TaintNodesByCondition).

One watch each of Nodes, Leases and Pods feeds this controller and the taint eviction
controller it runs (upstream's shared informers).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.events import EventRecorder, Source, reference
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.controllers.scheduler import NOT_READY_TAINT, UNREACHABLE_TAINT, UNSCHEDULABLE_TAINT
from tinykube.controllers.tainteviction import PodIndex, TaintEvictionController, pod_key
from tinykube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)

NODES = lookup("", "v1", "nodes")
PODS = lookup("", "v1", "pods")
LEASES = lookup("coordination.k8s.io", "v1", "leases")
assert NODES is not None and PODS is not None and LEASES is not None

COMPONENT = "node-controller"
LEASE_NAMESPACE = "kube-node-lease"
NODE_EVICTION_PERIOD = 0.1  # seconds between tries of the NoExecute tainting queues (NodeEvictionPeriod)
HEALTH_RETRIES = 5  # attempts at writing one node's health per pass (NodeHealthUpdateRetry)
HEALTH_RETRY_DELAY = 0.02  # seconds between them (retrySleepTime)
TAINT_RETRIES = 5  # attempts at one taint change that keeps conflicting (UpdateTaintBackoff steps)
TAINT_RETRY_DELAY = 0.05  # seconds before tainting a node without a Ready condition is tried again
EVICTION_RATE = 0.1  # --node-eviction-rate: nodes tainted NoExecute per second in a zone
SECONDARY_EVICTION_RATE = 0.01  # --secondary-node-eviction-rate: in a partially disrupted large zone
LARGE_CLUSTER = 50  # --large-cluster-size-threshold: nodes; smaller zones stop tainting when disrupted
UNHEALTHY_ZONE = 0.55  # --unhealthy-zone-threshold: fraction of not-Ready nodes that disrupts a zone
EXCLUDE_DISRUPTION = "node.kubernetes.io/exclude-disruption"

INITIAL, NORMAL, FULL, PARTIAL = "Initial", "Normal", "FullDisruption", "PartialDisruption"
MONITORED = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")  # NetworkUnavailable is not ours
NOT_READY_EXECUTE = {"key": NOT_READY_TAINT, "effect": "NoExecute"}
UNREACHABLE_EXECUTE = {"key": UNREACHABLE_TAINT, "effect": "NoExecute"}
# nodeConditionToTaintKeyStatusMap: which condition status becomes which NoSchedule taint
CONDITION_TAINTS = {
    "Ready": {"False": NOT_READY_TAINT, "Unknown": UNREACHABLE_TAINT},
    "MemoryPressure": {"True": "node.kubernetes.io/memory-pressure"},
    "DiskPressure": {"True": "node.kubernetes.io/disk-pressure"},
    "NetworkUnavailable": {"True": "node.kubernetes.io/network-unavailable"},
    "PIDPressure": {"True": "node.kubernetes.io/pid-pressure"},
}
CONDITION_TAINT_KEYS = {key for by_status in CONDITION_TAINTS.values() for key in by_status.values()}

Obj = dict[str, Any]
Clock = Callable[[], float]


@dataclass(frozen=True)
class LifecycleConfig:
    """The kube-controller-manager flags of this controller, in seconds (1.32 defaults)."""

    monitor_period: float = 5.0  # --node-monitor-period
    grace_period: float = 40.0  # --node-monitor-grace-period: the 40 s (upstream's until 1.31; 1.32: 50 s)
    startup_grace_period: float = 60.0  # --node-startup-grace-period


# --- small pure helpers ----------------------------------------------------------------------

def stamp(t: float) -> str:
    """``metav1.Time`` for an epoch time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def epoch(text: str | None) -> float | None:
    """An API timestamp (Time or MicroTime) as epoch seconds."""
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def condition(status: Obj | None, kind: str) -> Obj | None:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == kind), None)


def taints_of(node: Obj) -> list[Obj]:
    return list((node.get("spec") or {}).get("taints") or [])


def same_taint(a: Obj, b: Obj) -> bool:
    """``Taint.MatchTaint``: key and effect."""
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def has_taint(node: Obj, taint: Obj) -> bool:
    return any(same_taint(t, taint) for t in taints_of(node))


def swapped_taints(taints: list[Obj], add: list[Obj], remove: list[Obj], added_at: str) -> list[Obj]:
    """``AddOrUpdateTaint`` for each of ``add`` (stamped ``timeAdded``, replacing a match in place),
    then ``RemoveTaint`` of each of ``remove``."""
    out = [dict(t) for t in taints]
    for taint in add:
        fresh = {**taint, "timeAdded": added_at}
        at = next((i for i, t in enumerate(out) if same_taint(t, fresh)), None)
        if at is None:
            out.append(fresh)
        elif out[at] != fresh:
            out[at] = fresh
    return [t for t in out if not any(same_taint(t, r) for r in remove)]


def condition_taints(node: Obj) -> list[Obj]:
    """The NoSchedule taints the node's conditions and ``spec.unschedulable`` call for."""
    wanted = []
    for cond in (node.get("status") or {}).get("conditions") or []:
        key = CONDITION_TAINTS.get(cond.get("type", ""), {}).get(cond.get("status", ""))
        if key:
            wanted.append({"key": key, "effect": "NoSchedule"})
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"})
    return wanted


def no_schedule_changes(node: Obj) -> tuple[list[Obj], list[Obj]]:
    """``doNoScheduleTaintingPass``: (taints to add, taints to remove) among the controller's own."""
    wanted = condition_taints(node)
    ours = [t for t in taints_of(node) if t.get("effect") == "NoSchedule"
            and (t.get("key") == UNSCHEDULABLE_TAINT or t.get("key") in CONDITION_TAINT_KEYS)]
    add = [t for t in wanted if not any(same_taint(t, o) for o in ours)]
    remove = [o for o in ours if not any(same_taint(o, t) for t in wanted)]
    return add, remove


def zone_key(node: Obj) -> str:
    """``topology.GetZoneKey``: region and zone (beta labels first), empty without either."""
    labels = node["metadata"].get("labels") or {}
    zone = labels.get("failure-domain.beta.kubernetes.io/zone", labels.get("topology.kubernetes.io/zone", ""))
    region = labels.get("failure-domain.beta.kubernetes.io/region", labels.get("topology.kubernetes.io/region", ""))
    return f"{region}:\x00:{zone}" if region or zone else ""


def zone_state(readies: list[Obj | None]) -> str:
    """``ComputeZoneState``: fully disrupted with no Ready node, partially with many not Ready."""
    ready = sum(1 for c in readies if c is not None and c.get("status") == "True")
    not_ready = len(readies) - ready
    if ready == 0 and not_ready > 0:
        return FULL
    if not_ready > 2 and not_ready / len(readies) >= UNHEALTHY_ZONE:
        return PARTIAL
    return NORMAL


def zone_rate(state: str, size: int) -> float:
    """``setLimiterInZone``: the tainting rate a zone in ``state`` gets."""
    if state == PARTIAL:
        return SECONDARY_EVICTION_RATE if size > LARGE_CLUSTER else 0.0
    return EVICTION_RATE


def pod_not_ready(pod: Obj, at: str) -> Obj | None:
    """``MarkPodsNotReady`` for one pod: a copy with Ready=False, or None when it is not Ready=True-ish."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    for i, cond in enumerate(conditions):
        if cond.get("type") != "Ready":
            continue
        if cond.get("status") == "False":
            return None
        fresh = copy.deepcopy(pod)
        fresh["status"]["conditions"][i] = {**cond, "status": "False", "lastTransitionTime": at}
        return fresh
    return None


def mark_unknown(node: Obj, at: str) -> None:
    """Set every monitored condition Unknown in place: "stopped posting", or "never posted" for a
    condition the kubelet never wrote (its heartbeat then is the node's creation)."""
    conditions = node.setdefault("status", {}).setdefault("conditions", [])
    for kind in MONITORED:
        cond = condition(node["status"], kind)
        if cond is None:
            conditions.append({"type": kind, "status": "Unknown", "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                               "lastTransitionTime": at, "reason": "NodeStatusNeverUpdated",
                               "message": "Kubelet never posted node status."})
        elif cond.get("status") != "Unknown":
            cond.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                        lastTransitionTime=at)


# --- the rate-limited tainting queue ----------------------------------------------------------

@dataclass
class TokenBucket:
    """client-go's token bucket with burst 1 (full when made); a rate of 0 never accepts."""

    qps: float
    clock: Clock
    tokens: float = 1.0
    last: float | None = None

    def try_accept(self) -> bool:
        if self.qps <= 0:
            return False
        now = self.clock()
        if self.last is not None:
            self.tokens = min(1.0, self.tokens + (now - self.last) * self.qps)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class TaintQueue:
    """``RateLimitedTimedQueue``: nodes awaiting their NoExecute taint, one zone's worth.  A node is
    taken once: after its taint is set it stays known (and is not re-queued) until ``remove``."""

    def __init__(self, qps: float, clock: Clock):
        self.clock = clock
        self.bucket = TokenBucket(qps, clock)
        self.due: dict[str, float] = {}  # node -> when to try it
        self.known: set[str] = set()  # queued or done

    def add(self, name: str) -> bool:
        if name in self.known:
            return False
        self.known.add(name)
        self.due[name] = self.clock()
        return True

    def remove(self, name: str) -> bool:
        self.due.pop(name, None)
        if name not in self.known:
            return False
        self.known.discard(name)
        return True

    def pending(self) -> bool:
        """Whether a try could do anything (something queued, and a rate to do it at)."""
        return bool(self.due) and self.bucket.qps > 0

    def set_rate(self, qps: float) -> None:
        """``SwapLimiter``: a new bucket, drained when the old one was (burst 1)."""
        if qps == self.bucket.qps:
            return
        fresh = TokenBucket(qps, self.clock)
        if qps > 0 and not self.bucket.try_accept():
            fresh.try_accept()
        self.bucket = fresh

    async def try_all(self, action: Callable[[str], Awaitable[float | None]]) -> None:
        """``Try``: act on due nodes, earliest first, while the rate allows; ``action`` returns
        None when done, or the seconds after which to try that node again."""
        while self.due:
            name, at = min(self.due.items(), key=lambda item: item[1])
            if not self.bucket.try_accept():
                return
            now = self.clock()
            if now < at:
                return
            retry = await action(name)
            if retry is None:
                self.due.pop(name, None)
            elif name in self.due:
                self.due[name] = now + retry


# --- the controller ----------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeHealth:
    """What the controller last saw of a node (``nodeHealthData``), timed on its own clock."""

    probe: float  # when the node last showed life
    ready_transition: float
    status: Obj
    lease_renewed: float | None = None


class NodeLifecycleController:
    """Node health from heartbeats, node taints from health, pod readiness from node health."""

    def __init__(self, client: Client, config: LifecycleConfig = LifecycleConfig(), clock: Clock = time.time):
        self.client = client
        self.config = config
        self.clock = clock
        self.events = EventRecorder(client, Source(COMPONENT))
        self.pods = PodIndex()
        self.taint_eviction = TaintEvictionController(client, self.pods, clock)
        self.nodes: dict[str, Obj] = {}
        self.leases: dict[str, Obj] = {}
        self.health: dict[str, NodeHealth] = {}
        self.known: set[str] = set()  # nodes announced with RegisteredNode (knownNodeSet)
        self.retry: set[str] = set()  # nodes whose pods still need marking not ready (nodesToRetry)
        self.zone_states: dict[str, str] = {}
        self.tainters: dict[str, TaintQueue] = {}
        self.node_queue = WorkQueue(self.no_schedule_pass, "nodelifecycle-nodes")
        self.pod_queue = WorkQueue(self.process_pod, "nodelifecycle-pods")
        self._tainting = asyncio.Event()

    async def run(self) -> None:
        self.events.start()
        try:
            await asyncio.gather(
                list_and_watch(self.client, path(NODES), self.on_node),
                list_and_watch(self.client, path(LEASES, LEASE_NAMESPACE), self.on_lease),
                list_and_watch(self.client, path(PODS), self.on_pod),
                self.node_queue.run(8), self.pod_queue.run(4), self.taint_eviction.run(),
                self._monitor_periodically(), self._taint_while_queued())
        finally:
            await self.events.stop()

    async def _monitor_periodically(self) -> None:
        """Every monitor period; the first after one period, so the watches have listed first.  A
        failed pass is logged and the next one tries again (the API may be restarting)."""
        while True:
            await asyncio.sleep(self.config.monitor_period)
            try:
                await self.monitor_node_health()
            except (ApiError, aiohttp.ClientError, OSError) as e:
                log.warning("monitoring node health: %s", e)

    async def _taint_while_queued(self) -> None:
        while True:
            await self._tainting.wait()
            await self.no_execute_tainting_pass()
            if not any(q.pending() for q in self.tainters.values()):
                self._tainting.clear()
            await asyncio.sleep(NODE_EVICTION_PERIOD)

    # --- watch events (the informers' handlers) ---------------------------------------------

    async def on_node(self, kind: str, node: Obj) -> None:
        """Cache it, show it to the taint eviction controller, queue its NoSchedule pass."""
        name = node["metadata"]["name"]
        old = self.nodes.get(name)
        if kind == "DELETED":
            self.nodes.pop(name, None)
            self.health.pop(name, None)
            self.retry.discard(name)
            self.taint_eviction.node_updated(old or node, None)
            return
        self.nodes[name] = node
        self.taint_eviction.node_updated(old, node)
        self.node_queue.add(name)

    async def on_lease(self, kind: str, lease: Obj) -> None:
        if kind == "DELETED":
            self.leases.pop(lease["metadata"]["name"], None)
        else:
            self.leases[lease["metadata"]["name"]] = lease

    async def on_pod(self, kind: str, pod: Obj) -> None:
        """Index it by node; a pod newly bound is checked against its node's health (``podUpdated``)."""
        old = self.pods.apply(kind, pod)
        new = self.pods.get(pod_key(pod))
        if old is None and new is None:
            return  # not bound to a node: neither controller's business
        self.taint_eviction.pod_updated(old, new)
        node = ((new or {}).get("spec") or {}).get("nodeName")
        if node and (old is None or (old.get("spec") or {}).get("nodeName") != node):
            self.pod_queue.add(pod_key(pod))

    # --- NoSchedule taints, per node change ---------------------------------------------------

    async def no_schedule_pass(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        add, remove = no_schedule_changes(node)
        if (add or remove) and not await self.swap_taints(node, add, remove):
            raise RuntimeError(f"could not swap the NoSchedule taints of node {name}")

    async def swap_taints(self, node: Obj, add: list[Obj], remove: list[Obj]) -> bool:
        """``SwapNodeControllerTaint``: one patch of ``spec.taints`` on the latest node, retried on
        conflicts; nothing is written when nothing would change."""
        name = node["metadata"]["name"]
        if not add and not any(has_taint(node, t) for t in remove):
            return True
        for _ in range(TAINT_RETRIES):
            try:
                latest = await self.client.get(path(NODES, name=name))
                taints = swapped_taints(taints_of(latest), add, remove, stamp(self.clock()))
                if taints == taints_of(latest):
                    return True
                body = {"metadata": {"resourceVersion": latest["metadata"]["resourceVersion"]},
                        "spec": {"taints": taints or None}}
                await self.client.patch(path(NODES, name=name), body)
                return True
            except ApiError as e:
                if e.code != 409:
                    log.warning("cannot change the taints of node %s: %s", name, e)
                    return False
            except (aiohttp.ClientError, OSError) as e:
                log.warning("cannot change the taints of node %s: %s", name, e)
                return False
        return False

    # --- pods of a node that is not Ready ------------------------------------------------------

    async def process_pod(self, key: str) -> None:
        """``processPod``: a pod newly bound to a node known not to be Ready is marked not Ready."""
        pod = self.pods.get(key)
        if pod is None:
            return
        node = pod["spec"]["nodeName"]
        health = self.health.get(node)
        ready = condition(health.status, "Ready") if health else None
        if node in self.nodes and ready is not None and ready.get("status") != "True":
            if not await self.mark_pods_not_ready([pod], node):
                raise RuntimeError(f"could not mark pod {key} not ready")

    async def mark_pods_not_ready(self, pods: list[Obj], node: str) -> bool:
        """Ready=False on each pod that says otherwise, with a NodeNotReady event; whether all went."""
        ok = True
        for pod in pods:
            fresh = pod_not_ready(pod, stamp(self.clock())) if pod["spec"].get("nodeName") == node else None
            if fresh is None:
                continue
            meta = pod["metadata"]
            try:
                await self.client.update(path(PODS, meta["namespace"], meta["name"], "status"), fresh)
            except (ApiError, aiohttp.ClientError, OSError) as e:
                if not isinstance(e, ApiError) or e.code != 404:
                    log.info("cannot mark pod %s/%s not ready: %s", meta["namespace"], meta["name"], e)
                    ok = False
                continue
            self.events.record(reference(pod), "Warning", "NodeNotReady", "Node is not ready")
        return ok

    # --- the health monitor ----------------------------------------------------------------------

    async def monitor_node_health(self) -> None:
        """``monitorNodeHealth``: one pass over every node, then the zones' disruption states."""
        nodes = list(self.nodes.values())
        for node in self._classify(nodes):
            await self.mark_reachable(node)
        zones: dict[str, list[Obj | None]] = {}
        await asyncio.gather(*(self._monitor_node(node, zones) for node in nodes))
        await self._handle_disruption(zones, nodes)

    def _classify(self, nodes: list[Obj]) -> list[Obj]:
        """Announce new nodes (RegisteredNode) and gone ones (RemovingNode); the new ones."""
        added = []
        for node in nodes:
            self._zone_queue(node)
            name = node["metadata"]["name"]
            if name not in self.known:
                self._node_event(node, "RegisteredNode", f"Node {name} event: Registered Node {name} in Controller")
                self.known.add(name)
                added.append(node)
        for name in self.known - {n["metadata"]["name"] for n in nodes}:
            self._node_event({"metadata": {"name": name}}, "RemovingNode",
                             f"Node {name} event: Removing Node {name} from Controller")
            self.known.discard(name)
        return added

    def _zone_queue(self, node: Obj) -> TaintQueue:
        """``addPodEvictorForNewZone``: each zone its own tainting queue and state."""
        zone = zone_key(node)
        if zone not in self.tainters:
            self.tainters[zone] = TaintQueue(EVICTION_RATE, self.clock)
            self.zone_states[zone] = INITIAL
        return self.tainters[zone]

    def _node_event(self, node: Obj, reason: str, message: str) -> None:
        meta = node["metadata"]
        ref = {"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta.get("uid", "")}
        self.events.record(ref, "Normal", reason, message)

    async def _monitor_node(self, node: Obj, zones: dict[str, list[Obj | None]]) -> None:
        """``updateNodeFunc``: health, zone bookkeeping, taints, and pods when Ready was lost."""
        result = await self._update_health(node)
        if result is None:
            return
        node, observed, current = result
        name = node["metadata"]["name"]
        if EXCLUDE_DISRUPTION not in (node["metadata"].get("labels") or {}):
            zones.setdefault(zone_key(node), []).append(current)
        if current is None:
            self.retry.discard(name)
            return
        await self._taint_for_health(node, observed)
        lost = current.get("status") != "True" and observed.get("status") == "True"
        if lost:
            self._node_event(node, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        if lost or (name in self.retry and observed.get("status") != "True"):
            if not await self.mark_pods_not_ready(self.pods.on(name), name):
                self.retry.add(name)
                return
        self.retry.discard(name)

    async def _update_health(self, node: Obj) -> tuple[Obj, Obj, Obj | None] | None:
        """``tryUpdateNodeHealth`` with its retries (each on the node read afresh); None on failure."""
        name = node["metadata"]["name"]
        for _ in range(HEALTH_RETRIES):
            try:
                observed, current = await self.try_update_node_health(node)
                return node, observed, current
            except (ApiError, aiohttp.ClientError, OSError) as e:
                log.info("updating the health of node %s: %s", name, e)
            await asyncio.sleep(HEALTH_RETRY_DELAY)
            try:
                node = await self.client.get(path(NODES, name=name))
            except (ApiError, aiohttp.ClientError, OSError):
                return None
        return None

    async def try_update_node_health(self, node: Obj) -> tuple[Obj, Obj | None]:
        """(Ready as observed, Ready now): a node silent past its grace period is written Unknown."""
        name = node["metadata"]["name"]
        now = self.clock()
        current = condition(node.get("status"), "Ready")
        if current is None:
            created = node["metadata"].get("creationTimestamp")
            observed = {"type": "Ready", "status": "Unknown", "lastHeartbeatTime": created, "lastTransitionTime": created}
            grace = self.config.startup_grace_period
        else:
            observed = dict(current)
            grace = self.config.grace_period
        health = self._observe(node, self.health.get(name), now)
        self.health[name] = health
        if now <= health.probe + grace:
            return observed, current
        fresh = copy.deepcopy(node)
        mark_unknown(fresh, stamp(now))
        current = condition(fresh["status"], "Ready")
        if current != observed:
            await self.client.update(path(NODES, name=name, subresource="status"), fresh)
            self.health[name] = replace(health, ready_transition=now, status=fresh["status"])
        return observed, current

    def _observe(self, node: Obj, saved: NodeHealth | None, now: float) -> NodeHealth:
        """The node's health after this look: the probe time moves when the Ready heartbeat or the
        Lease's renewTime did (a first sight counts as one)."""
        status = node.get("status") or {}
        current = condition(status, "Ready")
        before = condition(saved.status, "Ready") if saved else None
        if current is None:
            created = epoch(node["metadata"].get("creationTimestamp")) or now
            health = replace(saved, status=status) if saved else NodeHealth(created, created, status)
        elif saved is None or before is None:
            health = NodeHealth(now, now, status, saved.lease_renewed if saved else None)
        elif before.get("lastHeartbeatTime") != current.get("lastHeartbeatTime"):
            moved = before.get("lastTransitionTime") != current.get("lastTransitionTime")
            health = NodeHealth(now, now if moved else saved.ready_transition, status, saved.lease_renewed)
        else:
            health = saved
        renewed = epoch(((self.leases.get(node["metadata"]["name"]) or {}).get("spec") or {}).get("renewTime"))
        if renewed is not None and (health.lease_renewed is None or health.lease_renewed < renewed):
            health = replace(health, probe=now, lease_renewed=renewed)
        return health

    # --- NoExecute taints ----------------------------------------------------------------------

    async def _taint_for_health(self, node: Obj, observed: Obj) -> None:
        """``processTaintBaseEviction``: queue the taint matching Ready (swap at once when the
        opposite one is already there), or clear both when Ready is True."""
        status = observed.get("status")
        if status == "True":
            await self.mark_reachable(node)
            return
        if status not in ("False", "Unknown"):
            return
        wanted, opposite = ((NOT_READY_EXECUTE, UNREACHABLE_EXECUTE) if status == "False"
                            else (UNREACHABLE_EXECUTE, NOT_READY_EXECUTE))
        if has_taint(node, opposite):
            await self.swap_taints(node, [wanted], [opposite])
            return
        queue = self._zone_queue(node)
        if not has_taint(node, wanted):
            queue.remove(node["metadata"]["name"])
        if queue.add(node["metadata"]["name"]):
            self._tainting.set()

    async def mark_reachable(self, node: Obj) -> None:
        """``markNodeAsReachable``: both NoExecute taints off, and out of the tainting queue."""
        if await self.swap_taints(node, [], [UNREACHABLE_EXECUTE, NOT_READY_EXECUTE]):
            self._zone_queue(node).remove(node["metadata"]["name"])

    async def no_execute_tainting_pass(self) -> None:
        """``doNoExecuteTaintingPass``: each zone's queue, at its rate."""
        for queue in list(self.tainters.values()):
            await queue.try_all(self._taint_node)

    async def _taint_node(self, name: str) -> float | None:
        """Taint a queued node as its Ready condition says now; None when done."""
        node = self.nodes.get(name)
        if node is None:
            return None
        ready = condition(node.get("status"), "Ready")
        if ready is None:
            return TAINT_RETRY_DELAY
        if ready.get("status") == "False":
            wanted, opposite = NOT_READY_EXECUTE, UNREACHABLE_EXECUTE
        elif ready.get("status") == "Unknown":
            wanted, opposite = UNREACHABLE_EXECUTE, NOT_READY_EXECUTE
        else:
            return None  # Ready again meanwhile
        return None if await self.swap_taints(node, [wanted], [opposite]) else 0.0

    # --- disruption ------------------------------------------------------------------------------

    async def _handle_disruption(self, zones: dict[str, list[Obj | None]], nodes: list[Obj]) -> None:
        """``handleDisruption``: when every zone is fully disrupted, stop tainting and untaint all;
        when that ends, restart every node's grace period; else each zone's rate follows its state."""
        new_states = {zone: zone_state(readies) for zone, readies in zones.items()}
        for zone in zones:
            self.zone_states.setdefault(zone, INITIAL)
        for zone in [z for z in self.zone_states if z not in zones]:
            del self.zone_states[zone]
        all_are = all(state == FULL for state in new_states.values())
        all_were = all(state == FULL for state in self.zone_states.values())
        if all_are and all_were:
            return
        if all_are:
            log.info("all nodes are not Ready: entering master disruption mode")
            for node in nodes:
                await self.mark_reachable(node)
            for zone in self.zone_states:
                self.tainters[zone].set_rate(0.0)
                self.zone_states[zone] = FULL
            return
        if all_were:
            log.info("some nodes are Ready: exiting master disruption mode")
            now = self.clock()
            for name, health in self.health.items():
                self.health[name] = replace(health, probe=now, ready_transition=now)
        for zone, state in list(self.zone_states.items()):
            if all_were or state != new_states[zone]:
                self.tainters[zone].set_rate(zone_rate(new_states[zone], len(zones[zone])))
                self.zone_states[zone] = new_states[zone]
                self._tainting.set()
