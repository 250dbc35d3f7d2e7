"""The taint eviction controller: deletes the pods a node's NoExecute taints say must go, as
kube-controller-manager 1.32's taint-eviction-controller does (pkg/controller/tainteviction).

A pod on a node with a NoExecute taint it does not tolerate is deleted at once.  When every such
taint is tolerated, the shortest ``tolerationSeconds`` among the matching tolerations (counted
from when the controller saw the taint, or the pod) decides when; a matching toleration without
seconds keeps the pod forever.  Removing the taint, or a pod update that tolerates it forever,
cancels the timer ("Cancelling deletion of Pod").  Each pod is deleted once: a fired timer stays
in the table until the pod is gone, as upstream's TimedWorkerQueue keeps it.

Before the deletion the pod gets the ``DisruptionTarget`` condition (``DeletionByTaintManager``).
On a node that stopped reporting (the unreachable taint) it also gets ``status.reason: NodeLost``
("Node X which was running pod Y is unresponsive"), the reason kubectl turns into STATUS
``Unknown`` while the deletion waits: a bound pod's deletion is graceful, so it stays until its
node agent confirms it (or someone force-deletes it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.events import EventRecorder, Source
from tinykube.client.rest import Client, path
from tinykube.controllers.scheduler import UNREACHABLE_TAINT, tolerates

log = logging.getLogger(__name__)

PODS = lookup("", "v1", "pods")
assert PODS is not None

COMPONENT = "taint-eviction-controller"  # the event source since the controller runs on its own (1.29+)
RETRIES = 5  # attempts at marking and deleting one pod (upstream's retries)
RETRY_DELAY = 0.01  # seconds between them
STRATEGIC = "application/strategic-merge-patch+json"
NODE_LOST = "NodeLost"  # util/node NodeUnreachablePodReason
NODE_LOST_MESSAGE = "Node {node} which was running pod {pod} is unresponsive"  # NodeUnreachablePodMessage
DISRUPTION_REASON = "DeletionByTaintManager"
DISRUPTION_MESSAGE = "Taint manager: deleting due to NoExecute taint"

Obj = dict[str, Any]


def pod_key(pod: Obj) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _node_name(pod: Obj | None) -> str:
    return str(((pod or {}).get("spec") or {}).get("nodeName") or "")


def _tolerations(pod: Obj | None) -> list[Obj]:
    return list(((pod or {}).get("spec") or {}).get("tolerations") or [])


class PodIndex:
    """Bound pods by key and by node (the pod informer with its ``spec.nodeName`` index), shared by
    the node lifecycle and taint eviction controllers so one watch feeds both."""

    def __init__(self) -> None:
        self._pods: dict[str, Obj] = {}
        self._by_node: dict[str, set[str]] = {}

    def get(self, key: str) -> Obj | None:
        return self._pods.get(key)

    def on(self, node: str) -> list[Obj]:
        return [self._pods[key] for key in sorted(self._by_node.get(node, ()))]

    def apply(self, kind: str, pod: Obj) -> Obj | None:
        """Take a watch event; the version it replaces (None for a new pod)."""
        key = pod_key(pod)
        old = self._pods.pop(key, None)
        if old is not None:
            self._by_node.get(_node_name(old), set()).discard(key)
        if kind != "DELETED" and _node_name(pod):
            self._pods[key] = pod
            self._by_node.setdefault(_node_name(pod), set()).add(key)
        return old


def no_execute_taints(node: Obj | None) -> list[Obj]:
    return [t for t in ((node or {}).get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]


def matching_tolerations(taints: list[Obj], tolerations: list[Obj]) -> list[Obj] | None:
    """``GetMatchingTolerations``: the first toleration of each taint; None when one taint has none."""
    used = []
    for taint in taints:
        match = next((t for t in tolerations if tolerates(t, taint)), None)
        if match is None:
            return None
        used.append(match)
    return used


def toleration_time(used: list[Obj]) -> float | None:
    """``getMinTolerationTime``: seconds the pod may stay; None for ever; 0 when any says <= 0."""
    if not used:
        return 0.0
    seconds = [t["tolerationSeconds"] for t in used if t.get("tolerationSeconds") is not None]
    return float(max(0, min(seconds))) if seconds else None


def updated_condition(old: Obj | None, wanted: Obj, stamp: str) -> Obj | None:
    """``UpdatePodCondition``: the condition to write (its transition time kept while the status
    stays), or None when nothing would change."""
    fresh = {**wanted, "lastProbeTime": None, "lastTransitionTime": stamp}
    if old is None:
        return fresh
    if old.get("status") == fresh["status"]:
        fresh["lastTransitionTime"] = old.get("lastTransitionTime")
    same = all(old.get(k) == fresh.get(k) for k in ("status", "reason", "message", "lastProbeTime", "lastTransitionTime"))
    return None if same else fresh


def disruption_patch(pod: Obj, node: str, taints: list[Obj], stamp: str) -> Obj | None:
    """The status patch written before the deletion: DisruptionTarget, and NodeLost when the node is
    unreachable; None when the pod already says so."""
    status = pod.get("status") or {}
    old = next((c for c in status.get("conditions") or [] if c.get("type") == "DisruptionTarget"), None)
    wanted = {"type": "DisruptionTarget", "status": "True", "reason": DISRUPTION_REASON, "message": DISRUPTION_MESSAGE}
    fresh: Obj = {}
    condition = updated_condition(old, wanted, stamp)
    if condition is not None:
        fresh["conditions"] = [condition]
    lost = any(t.get("key") == UNREACHABLE_TAINT for t in taints)
    if lost and status.get("reason") != NODE_LOST:
        fresh |= {"reason": NODE_LOST, "message": NODE_LOST_MESSAGE.format(node=node, pod=pod["metadata"]["name"])}
    return {"metadata": {"uid": pod["metadata"]["uid"]}, "status": fresh} if fresh else None


@dataclass(frozen=True)
class Work:
    """One pod's pending deletion: when it was first scheduled, when it fires, on which node."""

    created: float
    fire_at: float
    node: str


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _pod_ref(key: str) -> Obj:
    """The reference upstream's events carry: no uid, since only the key is known when they fire."""
    namespace, name = key.split("/", 1)
    return {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": namespace}


class TaintEvictionController:
    """Per-pod deletion timers driven by node taints and pod tolerations.

    It has no watches of its own: the node lifecycle controller calls :meth:`node_updated` and
    :meth:`pod_updated` with the old and new object of each event, as shared informers would.
    """

    def __init__(self, client: Client, pods: PodIndex, clock: Callable[[], float] = time.time):
        self.client = client
        self.pods = pods
        self.clock = clock
        self.events = EventRecorder(client, Source(COMPONENT))
        self.tainted: dict[str, list[Obj]] = {}  # node -> its NoExecute taints
        self.work: dict[str, Work | None] = {}  # pod key -> pending deletion (None: fired, not to repeat)
        self._changed = asyncio.Event()

    async def run(self) -> None:
        """Fire every deletion when it falls due."""
        self.events.start()
        try:
            while True:
                await self.fire_due()
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), self._next_delay())
                except TimeoutError:
                    pass
        finally:
            await self.events.stop()

    def _next_delay(self) -> float | None:
        pending = [w.fire_at for w in self.work.values() if w is not None]
        return max(0.0, min(pending) - self.clock()) if pending else None

    def node_updated(self, old: Obj | None, new: Obj | None) -> None:
        """``NodeUpdated`` + ``handleNodeUpdate``: re-plan every pod of a node whose NoExecute taints changed."""
        taints = no_execute_taints(new)
        if old is not None and new is not None and no_execute_taints(old) == taints:
            return
        name = (new or old or {})["metadata"]["name"]
        if new is None or not taints:
            self.tainted.pop(name, None)
        else:
            self.tainted[name] = taints
        if new is None:
            return
        pods = self.pods.on(name)
        now = self.clock()
        for pod in pods:
            if taints:
                self._plan(pod_key(pod), name, _tolerations(pod), taints, now)
            else:
                self._cancel(pod_key(pod))

    def pod_updated(self, old: Obj | None, new: Obj | None) -> None:
        """``PodUpdated`` + ``handlePodUpdate``: a new, moved or re-tolerating pod is re-planned; a
        deleted one loses its timer."""
        if (old is not None and new is not None and _tolerations(old) == _tolerations(new)
                and _node_name(old) == _node_name(new)):
            return
        key = pod_key(new or old or {})
        if new is None:
            self._cancel(key)
            return
        taints = self.tainted.get(_node_name(new))
        if taints:
            self._plan(key, _node_name(new), _tolerations(new), taints, self.clock())

    def _plan(self, key: str, node: str, tolerations: list[Obj], taints: list[Obj], now: float) -> None:
        """``processPodOnNode``: delete now, at the end of the shortest toleration, or never."""
        used = matching_tolerations(taints, tolerations)
        if used is None:
            self._cancel(key)
            self._add(key, Work(now, now, node))
            return
        seconds = toleration_time(used)
        if seconds is None:
            self._cancel(key)
            return
        created, fire_at = now, now + seconds
        scheduled = self.work.get(key)
        if scheduled is not None:
            created = scheduled.created
            if created + seconds < fire_at:
                return  # the timer already running fires sooner: keep it
            self._cancel(key)
        self._add(key, Work(created, fire_at, node))

    def _add(self, key: str, work: Work) -> None:
        if key not in self.work:  # a fired deletion is not repeated until cancelled
            self.work[key] = work
            self._changed.set()

    def _cancel(self, key: str) -> None:
        if self.work.pop(key, None) is not None:
            self.events.record(_pod_ref(key), "Normal", "TaintManagerEviction", f"Cancelling deletion of Pod {key}")

    async def fire_due(self) -> None:
        """Delete every pod whose time is up (each once)."""
        now = self.clock()
        due = [(key, w) for key, w in self.work.items() if w is not None and w.fire_at <= now]
        for key, _ in due:
            self.work[key] = None
        await asyncio.gather(*(self._evict(key, w.node) for key, w in due))

    async def _evict(self, key: str, node: str) -> None:
        """``deletePodHandler``: the event, then status and delete with a few retries; a pod that
        cannot be deleted is forgotten, so its next update plans it again."""
        self.events.record(_pod_ref(key), "Normal", "TaintManagerEviction", f"Marking for deletion Pod {key}")
        namespace, name = key.split("/", 1)
        error: Exception | None = None
        for _ in range(RETRIES):
            try:
                await self._mark_and_delete(namespace, name, node)
                return
            except ApiError as e:
                if e.code == 404:
                    return
                error: Exception = e
            except (aiohttp.ClientError, OSError) as e:
                error = e
            await asyncio.sleep(RETRY_DELAY)
        log.warning("taint eviction of pod %s failed: %s", key, error)
        self.work.pop(key, None)

    async def _mark_and_delete(self, namespace: str, name: str, node: str) -> None:
        pod = await self.client.get(path(PODS, namespace, name))
        patch = disruption_patch(pod, node, self.tainted.get(node, []), _stamp(self.clock()))
        if patch is not None:
            await self.client.patch(path(PODS, namespace, name, "status"), patch, STRATEGIC)
        await self.client.delete(path(PODS, namespace, name))
