"""The scheduler: binds every pending pod to a node that can run it, as kube-scheduler 1.32 does.

Plan, then act.  :func:`schedule` is pure: it runs the default profile's filters in upstream's
order (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit), scores
the nodes left (NodeResourcesFit least-allocated, BalancedAllocation, TaintToleration,
NodeAffinity, with their default weights), and picks the best, ties broken at random.  When no
node fits it returns the text of upstream's ``FitError`` with DefaultPreemption's suffix, which
users read in ``kubectl describe pod``.

:class:`SchedulerController` acts on it.  One watch of every non-terminated pod feeds both the
queue of pending pods and the cache of what bound pods use on each node (kube-scheduler's
single pod informer, split by ``spec.nodeName``); one watch feeds the nodes.  A decision is
assumed in the cache before the binding call returns, so the next decision already counts it.
Unschedulable pods are retried when a node appears or changes in a way that matters, when a
bound pod goes away, and on a timer (upstream flushes them after 5 min).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aiohttp

from tinykube.api import resourcelist
from tinykube.api.errors import ApiError
from tinykube.api.quantity import milli_value, value
from tinykube.api.registry import lookup
from tinykube.api.resourcelist import Amount
from tinykube.api.selectors import Requirement
from tinykube.client.clock import now as _now
from tinykube.client.events import EventRecorder, Source, reference
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
assert PODS is not None and NODES is not None

DEFAULT_SCHEDULER = "default-scheduler"
UNSCHEDULABLE_RETRY = 30.0  # seconds between retries of every unschedulable pod (upstream: 5 min)
WORKERS = 8  # pods bound concurrently; decisions stay one at a time (no await inside one)
PRIME_RETRY = 1.0  # seconds between attempts to load the cluster before the first decision
MAX_NODE_SCORE = 100  # framework.MaxNodeScore
DEFAULT_MILLI_CPU = 100  # schedutil.DefaultMilliCPURequest: a container without a cpu request, when scoring
DEFAULT_MEMORY = 200 * 1024 * 1024  # schedutil.DefaultMemoryRequest (bytes), likewise
STRATEGIC = "application/strategic-merge-patch+json"
ACTIVE_PODS = {"fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"}  # a finished pod frees its node

NO_NODES = "no nodes available to schedule pods"  # schedule_one.go ErrNoNodesAvailable
UNSCHEDULABLE = "node(s) were unschedulable"
AFFINITY = "node(s) didn't match Pod's node affinity/selector"
PORTS = "node(s) didn't have free ports for the requested pod ports"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NOT_ELIGIBLE = "not eligible due to preemptionPolicy=Never."
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

Obj = dict[str, Any]
Resources = dict[str, int]  # cpu in millicores, everything else in units (bytes, count)
HostPort = tuple[str, str, int]  # (hostIP, protocol, hostPort) after sanitising defaults


# --- what a pod asks for (component-helpers/resource PodRequests) ------------------------------

def _is_scalar(name: str) -> bool:
    """``schedutil.IsScalarResourceName``: hugepages, attachable volumes, extended and prefixed native."""
    if name.startswith(("hugepages-", "attachable-volumes-")):
        return True
    return "/" in name and not name.startswith("requests.")


NON_ZERO_DEFAULTS = {"cpu": Amount.of(Fraction(DEFAULT_MILLI_CPU, 1000)), "memory": Amount.of(DEFAULT_MEMORY)}


def _as_resources(quantities: dict[str, Any]) -> Resources:
    """``framework.Resource.Add``: cpu as millicores, the rest rounded up; unknown names dropped."""
    out: Resources = {}
    for name, q in quantities.items():
        if name == "cpu":
            out[name] = milli_value(q)
        elif name in ("memory", "ephemeral-storage", "pods") or _is_scalar(name):
            out[name] = value(q)
    return out


def pod_requests(pod: Obj, non_zero: bool = False) -> Resources:
    """What the pod reserves on its node; ``non_zero`` counts missing cpu/memory as 100m/200Mi (scoring)."""
    defaults = NON_ZERO_DEFAULTS if non_zero else None
    requests = _as_resources({name: a.value for name, a in resourcelist.pod_requests(pod, defaults).items()})
    requests.pop("pods", None)
    return requests


def host_ports(pod: Obj) -> tuple[HostPort, ...]:
    """The app containers' host ports, with hostIP 0.0.0.0 and protocol TCP by default (NodePorts)."""
    ports = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if (port.get("hostPort") or 0) > 0:
                ports.append((port.get("hostIP") or "0.0.0.0", port.get("protocol") or "TCP", port["hostPort"]))
    return tuple(ports)


@dataclass(frozen=True)
class PodUsage:
    """What one pod takes from a node, computed once per pod (the PreFilter state)."""

    requests: Resources
    non_zero: Resources
    ports: tuple[HostPort, ...]

    @classmethod
    def of(cls, pod: Obj) -> PodUsage:
        return cls(pod_requests(pod), pod_requests(pod, non_zero=True), host_ports(pod))


# --- a node and what is bound to it (framework.NodeInfo) -------------------------------------

def _ready_status(node: Obj) -> str:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status") or "Unknown")
    return "Unknown"


def node_taints(node: Obj) -> list[Obj]:
    """``spec.taints`` plus the NoSchedule taint the node lifecycle controller keeps on a node that
    is not Ready (not-ready when False, unreachable when Unknown or never reported).

    Filtering on these taints rather than on the condition keeps upstream's message and lets a pod
    that tolerates them (a DaemonSet's) still land.
    """
    taints = list((node.get("spec") or {}).get("taints") or [])
    implied = {"True": None, "False": NOT_READY_TAINT}.get(_ready_status(node), UNREACHABLE_TAINT)
    if implied and not any(t.get("key") == implied and t.get("effect") == "NoSchedule" for t in taints):
        taints.append({"key": implied, "effect": "NoSchedule"})
    return taints


@dataclass
class NodeInfo:
    """One node (``None`` until its object is seen) and the sums of the pods bound to it."""

    name: str
    node: Obj | None = None
    allocatable: Resources = field(default_factory=dict)
    taints: list[Obj] = field(default_factory=list)
    pods: dict[str, PodUsage] = field(default_factory=dict)
    requested: Counter[str] = field(default_factory=Counter)
    non_zero: Counter[str] = field(default_factory=Counter)
    ports: Counter[HostPort] = field(default_factory=Counter)

    @classmethod
    def of(cls, node: Obj, pods: Iterable[Obj] = ()) -> NodeInfo:
        info = cls(node["metadata"]["name"])
        info.set_node(node)
        for pod in pods:
            info.add(pod["metadata"]["uid"], PodUsage.of(pod))
        return info

    def set_node(self, node: Obj) -> bool:
        """Take a new version of the node; whether anything a filter or score reads changed."""
        before = self._inputs()
        self.node = node
        self.allocatable = _as_resources((node.get("status") or {}).get("allocatable") or {})
        self.taints = node_taints(node)
        return self._inputs() != before

    def _inputs(self) -> tuple[Any, ...]:
        if self.node is None:
            return ()
        return (self.node["metadata"].get("labels"), self.taints, self.allocatable,
                (self.node.get("spec") or {}).get("unschedulable"))

    def add(self, uid: str, usage: PodUsage) -> None:
        self.remove(uid)
        self.pods[uid] = usage
        self.requested.update(usage.requests)
        self.non_zero.update(usage.non_zero)
        self.ports.update(usage.ports)

    def remove(self, uid: str) -> bool:
        usage = self.pods.pop(uid, None)
        if usage is None:
            return False
        self.requested.subtract(usage.requests)
        self.non_zero.subtract(usage.non_zero)
        self.ports.subtract(usage.ports)
        return True

    @property
    def labels(self) -> dict[str, str]:
        return (self.node or {}).get("metadata", {}).get("labels") or {}


# --- filters, in the default profile's order --------------------------------------------------

@dataclass(frozen=True)
class Rejection:
    """A filter's ``Status``: its reasons, and whether evicting pods could ever help
    (``Unschedulable``) or not (``UnschedulableAndUnresolvable``)."""

    reasons: tuple[str, ...]
    resolvable: bool = False


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """``Toleration.ToleratesTaint``: empty effect and empty key (with Exists) match anything."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def _tolerated(pod: Obj, taint: Obj) -> bool:
    return any(tolerates(t, taint) for t in (pod.get("spec") or {}).get("tolerations") or [])


def _node_unschedulable(pod: Obj, usage: PodUsage, info: NodeInfo) -> Rejection | None:
    if not (info.node or {}).get("spec", {}).get("unschedulable"):
        return None
    if _tolerated(pod, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}):
        return None
    return Rejection((UNSCHEDULABLE,))


def _taint_toleration(pod: Obj, usage: PodUsage, info: NodeInfo) -> Rejection | None:
    """The first NoSchedule/NoExecute taint the pod does not tolerate (FindMatchingUntoleratedTaint)."""
    for taint in info.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(pod, taint):
            return Rejection((f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}",))
    return None


_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!", "Gt": "gt", "Lt": "lt"}


def _requirement_matches(req: Obj, labels: dict[str, str]) -> bool:
    operator = _OPERATORS.get(req.get("operator", ""))
    if operator is None:
        return False
    try:
        return Requirement(req.get("key", ""), operator, tuple(req.get("values") or ())).matches(labels)
    except (ValueError, IndexError):  # Gt/Lt without an integer: NodeSelectorRequirementsAsSelector fails
        return False


def term_matches(term: Obj, info: NodeInfo) -> bool:
    """A NodeSelectorTerm: all its expressions (labels) and fields (metadata.name); an empty term matches nothing."""
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False
    by_name = {"metadata.name": info.name}
    return (all(_requirement_matches(r, info.labels) for r in expressions)
            and all(_requirement_matches(r, by_name) for r in fields))


def _node_affinity(pod: Obj, usage: PodUsage, info: NodeInfo) -> Rejection | None:
    """``nodeSelector`` and every required term list (``GetRequiredNodeAffinity``)."""
    spec = pod.get("spec") or {}
    labels = info.labels
    selector_ok = all(labels.get(k) == v for k, v in (spec.get("nodeSelector") or {}).items())
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    terms_ok = required is None or any(term_matches(t, info) for t in required.get("nodeSelectorTerms") or [])
    return None if selector_ok and terms_ok else Rejection((AFFINITY,))


def _port_conflicts(wanted: HostPort, used: Counter[HostPort]) -> bool:
    """``HostPortInfo.CheckConflict``: 0.0.0.0 conflicts with every address on that protocol/port."""
    ip, protocol, port = wanted
    taken = [u for u, count in used.items() if count > 0 and u[1:] == (protocol, port)]
    return any(ip == "0.0.0.0" or u[0] in ("0.0.0.0", ip) for u in taken)


def _node_ports(pod: Obj, usage: PodUsage, info: NodeInfo) -> Rejection | None:
    if any(_port_conflicts(p, info.ports) for p in usage.ports):
        return Rejection((PORTS,), resolvable=True)
    return None


def insufficient(usage: PodUsage, info: NodeInfo) -> list[str]:
    """``fitsRequest``: pods, cpu, memory, ephemeral-storage, then scalar resources, each reported."""
    reasons = []
    if len(info.pods) + 1 > info.allocatable.get("pods", 0):
        reasons.append("Too many pods")
    wanted = usage.requests
    ordered = ["cpu", "memory", "ephemeral-storage"] + sorted(n for n in wanted if _is_scalar(n))
    for name in ordered:
        want = wanted.get(name, 0)
        if want > 0 and want > info.allocatable.get(name, 0) - info.requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


def _resources_fit(pod: Obj, usage: PodUsage, info: NodeInfo) -> Rejection | None:
    reasons = insufficient(usage, info)
    return Rejection(tuple(reasons), resolvable=True) if reasons else None


Filter = Callable[[Obj, PodUsage, NodeInfo], Rejection | None]
FILTERS: tuple[Filter, ...] = (_node_unschedulable, _taint_toleration, _node_affinity, _node_ports, _resources_fit)


def filter_node(pod: Obj, usage: PodUsage, info: NodeInfo) -> Rejection | None:
    """The first filter that rejects the node, as ``RunFilterPlugins`` stops at the first failure."""
    for check in FILTERS:
        rejection = check(pod, usage, info)
        if rejection is not None:
            return rejection
    return None


# --- scores ----------------------------------------------------------------------------------

def _least_allocated(pod: Obj, usage: PodUsage, info: NodeInfo) -> int:
    """LeastAllocated over cpu and memory (weight 1 each), counting missing requests as defaults."""
    scores = []
    for name in ("cpu", "memory"):
        capacity = info.allocatable.get(name, 0)
        if capacity == 0:
            continue
        requested = info.non_zero.get(name, 0) + usage.non_zero.get(name, 0)
        scores.append(0 if requested > capacity else (capacity - requested) * MAX_NODE_SCORE // capacity)
    return sum(scores) // len(scores) if scores else 0


def _balanced_allocation(pod: Obj, usage: PodUsage, info: NodeInfo) -> int:
    """How evenly cpu and memory would be used, (1 - std of the two fractions) * 100, on the
    actual requests (upstream skips best-effort pods only from 1.33)."""
    fractions = []
    for name in ("cpu", "memory"):
        capacity = info.allocatable.get(name, 0)
        if capacity:
            fractions.append(min((info.requested.get(name, 0) + usage.requests.get(name, 0)) / capacity, 1.0))
    if len(fractions) < 2:
        return MAX_NODE_SCORE
    return int((1 - abs(fractions[0] - fractions[1]) / 2) * MAX_NODE_SCORE)


def _intolerable_preferences(pod: Obj, usage: PodUsage, info: NodeInfo) -> int:
    """PreferNoSchedule taints not tolerated (by tolerations with that effect or none)."""
    tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or []
                   if t.get("effect") in (None, "", "PreferNoSchedule")]
    return sum(1 for taint in info.taints if taint.get("effect") == "PreferNoSchedule"
               and not any(tolerates(t, taint) for t in tolerations))


def _preferred_affinity(pod: Obj, usage: PodUsage, info: NodeInfo) -> int:
    """Sum of the weights of the preferred node affinity terms the node matches."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    terms = affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    return sum(t.get("weight", 0) for t in terms if term_matches(t.get("preference") or {}, info))


def _normalize(raw: list[int], reverse: bool) -> list[int]:
    """``helper.DefaultNormalizeScore``: scale to 0..100 by the highest, optionally reversed."""
    top = max(raw, default=0)
    if top == 0:
        return [MAX_NODE_SCORE if reverse else 0 for _ in raw]
    scaled = [MAX_NODE_SCORE * r // top for r in raw]
    return [MAX_NODE_SCORE - s for s in scaled] if reverse else scaled


Scorer = Callable[[Obj, PodUsage, NodeInfo], int]
# (plugin score, weight, normalize reversed or None): the default profile's weights
SCORERS: tuple[tuple[Scorer, int, bool | None], ...] = (
    (_least_allocated, 1, None),
    (_balanced_allocation, 1, None),
    (_intolerable_preferences, 3, True),
    (_preferred_affinity, 2, False),
)


def score_nodes(pod: Obj, usage: PodUsage, infos: list[NodeInfo]) -> dict[str, int]:
    """Weighted sum of every plugin's (normalised) score, per node name."""
    totals = dict.fromkeys((i.name for i in infos), 0)
    for scorer, weight, reverse in SCORERS:
        raw = [scorer(pod, usage, info) for info in infos]
        final = raw if reverse is None else _normalize(raw, reverse)
        for info, score in zip(infos, final):
            totals[info.name] += score * weight
    return totals


# --- the decision and its explanation ---------------------------------------------------------

def _histogram(counts: Counter[str]) -> str:
    """``sortReasonsHistogram``: "N reason" strings sorted as strings, comma separated."""
    return ", ".join(sorted(f"{count} {reason}" for reason, count in counts.items() if count > 0))


def _preemption_message(pod: Obj, total: int, rejections: dict[str, Rejection]) -> str:
    """DefaultPreemption's PostFilter message: no pod is ever evicted here, and nodes whose
    failure eviction could not cure are "not helpful" (upstream's answer without lower-priority pods)."""
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return f"preemption: {NOT_ELIGIBLE}"
    candidates = sum(1 for r in rejections.values() if r.resolvable)
    counts = Counter({NO_VICTIMS: candidates, NOT_HELPFUL: total - candidates})
    return f"preemption: 0/{total} nodes are available: {_histogram(counts)}."


def fit_error(pod: Obj, total: int, rejections: dict[str, Rejection]) -> str:
    """``FitError.Error()``: the per-reason histogram, then the PostFilter message."""
    counts = Counter(reason for r in rejections.values() for reason in r.reasons)
    return f"0/{total} nodes are available: {_histogram(counts)}. {_preemption_message(pod, total, rejections)}"


@dataclass(frozen=True)
class Decision:
    """Where to bind the pod, or (``node`` empty) the message saying why it fits nowhere."""

    node: str = ""
    message: str = ""


def schedule(pod: Obj, infos: Iterable[NodeInfo], rng: random.Random) -> Decision:
    """Filter every known node, score the feasible ones, pick a best one at random."""
    nodes = [info for info in infos if info.node is not None]
    if not nodes:
        return Decision(message=NO_NODES)
    usage = PodUsage.of(pod)
    rejections: dict[str, Rejection] = {}
    feasible = []
    for info in nodes:
        rejection = filter_node(pod, usage, info)
        if rejection is None:
            feasible.append(info)
        else:
            rejections[info.name] = rejection
    if not feasible:
        return Decision(message=fit_error(pod, len(nodes), rejections))
    scores = score_nodes(pod, usage, feasible)
    best = max(scores.values())
    return Decision(node=rng.choice(sorted(name for name, s in scores.items() if s == best)))


def unschedulable_condition(pod: Obj, message: str, now: str) -> Obj | None:
    """The PodScheduled=False condition to write, or ``None`` when the pod already says so
    (``UpdatePodCondition``: the transition time moves only when the status does)."""
    old = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"), {})
    if old.get("status") == "False" and old.get("reason") == "Unschedulable" and old.get("message") == message:
        return None
    since = old.get("lastTransitionTime") if old.get("status") == "False" else now
    return {"type": "PodScheduled", "status": "False", "lastProbeTime": None, "lastTransitionTime": since or now,
            "reason": "Unschedulable", "message": message}


def wants_scheduling(pod: Obj) -> bool:
    """Ours to place: our scheduler name, no node, no scheduling gates, not being deleted."""
    spec = pod.get("spec") or {}
    return (spec.get("schedulerName", DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER and not spec.get("nodeName")
            and not spec.get("schedulingGates") and not pod["metadata"].get("deletionTimestamp"))


# --- the cache and the loop -------------------------------------------------------------------

class ClusterCache:
    """Nodes and the pods bound to them (the scheduler cache), including pods assumed bound
    by a binding call whose result the watch has not shown yet."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.assumed: set[str] = set()
        self._where: dict[str, str] = {}  # pod uid -> node name

    def infos(self) -> list[NodeInfo]:
        return list(self.nodes.values())

    def set_node(self, node: Obj) -> bool:
        name = node["metadata"]["name"]
        return self.nodes.setdefault(name, NodeInfo(name)).set_node(node)

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is not None:
            info.node = None
            if not info.pods:
                del self.nodes[name]

    def add_pod(self, uid: str, node: str, usage: PodUsage) -> None:
        """A bound pod as the watch shows it (confirming an assumption)."""
        self.remove_pod(uid)
        self.nodes.setdefault(node, NodeInfo(node)).add(uid, usage)
        self._where[uid] = node

    def node_of(self, uid: str) -> str | None:
        """Where a pod is (or is assumed to be) bound."""
        return self._where.get(uid)

    def assume(self, uid: str, node: str, usage: PodUsage) -> None:
        self.add_pod(uid, node, usage)
        self.assumed.add(uid)

    def remove_pod(self, uid: str) -> bool:
        """Forget a pod; whether it was holding resources on a node."""
        self.assumed.discard(uid)
        name = self._where.pop(uid, None)
        info = self.nodes.get(name or "")
        if info is None or not info.remove(uid):
            return False
        if info.node is None and not info.pods:
            del self.nodes[info.name]
        return True


def _key(pod: Obj) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _decision_inputs(pod: Obj) -> tuple[Any, ...]:
    """What a pending pod's decision depends on; a status-only change (our own write) leaves it."""
    return pod["metadata"].get("uid"), pod.get("spec")


class SchedulerController:
    """Watches pods and nodes, schedules pending pods, binds them or says why not."""

    def __init__(self, client: Client, rng: random.Random | None = None) -> None:
        self.client = client
        self.rng = rng or random.Random()
        self.cache = ClusterCache()
        self.pending: dict[str, Obj] = {}  # key -> latest pod object awaiting a node
        self.unschedulable: set[str] = set()
        self.queue = WorkQueue(self.sync, "scheduler")
        self.events = EventRecorder(client, Source(DEFAULT_SCHEDULER))

    async def run(self) -> None:
        self.events.start()
        try:
            await self._prime()
            await asyncio.gather(
                list_and_watch(self.client, path(NODES), self._on_node),
                list_and_watch(self.client, path(PODS), self._on_pod, ACTIVE_PODS),
                self.queue.run(WORKERS), self._retry_periodically())
        finally:
            await self.events.stop()

    async def _prime(self) -> None:
        """Load every node and bound pod before the first decision (WaitForCacheSync), so a
        restart neither overcommits a node nor reports pending pods as unschedulable."""
        while True:
            try:
                nodes = await self.client.get(path(NODES))
                pods = await self.client.get(path(PODS), ACTIVE_PODS)
                break
            except (ApiError, aiohttp.ClientError, OSError) as e:
                log.warning("scheduler: cannot load the cluster yet: %s", e)
                await asyncio.sleep(PRIME_RETRY)
        for node in nodes.get("items", []):
            await self._on_node("ADDED", node)
        for pod in pods.get("items", []):
            await self._on_pod("ADDED", pod)

    async def _on_node(self, kind: str, node: Obj) -> None:
        if kind == "DELETED":
            self.cache.remove_node(node["metadata"]["name"])
        elif self.cache.set_node(node):
            self._retry_unschedulable()

    async def _on_pod(self, kind: str, pod: Obj) -> None:
        uid, node = pod["metadata"]["uid"], (pod.get("spec") or {}).get("nodeName")
        if kind == "DELETED":
            self._forget_pending(_key(pod))
            if self.cache.remove_pod(uid):  # deleted or finished: its node has room again
                self._retry_unschedulable()
        elif node:
            self._forget_pending(_key(pod))
            if self.cache.node_of(uid) == node:  # a status change: requests are immutable, keep the usage
                self.cache.assumed.discard(uid)
            else:
                self.cache.add_pod(uid, node, PodUsage.of(pod))
        elif uid in self.cache.assumed:
            return  # an older, unbound view of a pod we have just bound
        elif wants_scheduling(pod):
            self._pending_update(_key(pod), pod)
        else:
            self._forget_pending(_key(pod))

    def _pending_update(self, key: str, pod: Obj) -> None:
        old = self.pending.get(key)
        self.pending[key] = pod
        if key in self.unschedulable and old is not None and _decision_inputs(old) == _decision_inputs(pod):
            return
        self.queue.add(key)

    def _forget_pending(self, key: str) -> None:
        self.pending.pop(key, None)
        self.unschedulable.discard(key)

    def _retry_unschedulable(self) -> None:
        for key in self.unschedulable:
            self.queue.add(key)

    async def _retry_periodically(self) -> None:
        while True:
            await asyncio.sleep(UNSCHEDULABLE_RETRY)
            self._retry_unschedulable()

    async def sync(self, key: str) -> None:
        """Decide for one pending pod from the cache (no API read), then bind or report."""
        pod = self.pending.get(key)
        if pod is None or pod["metadata"]["uid"] in self.cache.assumed:
            return
        decision = schedule(pod, self.cache.infos(), self.rng)
        if decision.node:
            await self._bind(key, pod, decision.node)
        else:
            await self._report_unschedulable(key, pod, decision.message)

    async def _bind(self, key: str, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        self.cache.assume(meta["uid"], node, PodUsage.of(pod))
        self._forget_pending(key)
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"]},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.client.create(path(PODS, meta["namespace"], meta["name"], "binding"), binding)
        except Exception as e:
            if meta["uid"] not in self.cache.assumed:
                return  # the watch has meanwhile shown the pod deleted, or bound by someone else
            self.cache.remove_pod(meta["uid"])
            if isinstance(e, ApiError) and e.code == 404:
                return
            self.pending.setdefault(key, pod)  # retried after the work queue's back-off
            raise
        self.events.record(reference(pod), "Normal", "Scheduled",
                           f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}")

    async def _report_unschedulable(self, key: str, pod: Obj, message: str) -> None:
        meta = pod["metadata"]
        self.unschedulable.add(key)
        self.events.record(reference(pod), "Warning", "FailedScheduling", message)
        condition = unschedulable_condition(pod, message, _now())
        if condition is None:
            return
        try:
            await self.client.patch(path(PODS, meta["namespace"], meta["name"], "status"),
                                    {"status": {"conditions": [condition]}}, STRATEGIC)
        except ApiError as e:
            if e.code != 404:
                raise
