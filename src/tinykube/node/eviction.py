"""The eviction manager: evicts the pods that outgrow their local storage, and those a node short of
memory or disk cannot keep (kubelet ``pkg/kubelet/eviction``).

One pass every :attr:`EvictionConfig.interval` seconds (the kubelet's housekeeping is 10 s):

1. observe the node: ``memory.available`` (capacity less the root cgroup's working set) and
   ``nodefs.available`` (statvfs of the agent's data dir); compare them with the hard thresholds
   (``memory.available<100Mi``, ``nodefs.available<10%``) and post MemoryPressure/DiskPressure,
   which stay true for the transition period (5 min) after the last pass that saw the pressure;
2. measure each active pod's ephemeral storage: every container's writable layer (the overlay's
   upper dir) and logs, and the pod's disk-backed emptyDir and configMap volumes, by walking the
   directories as ``du -sx`` counts (allocated blocks, hard links once, one filesystem).  A
   memory-medium emptyDir is a tmpfs charged to the pod's memory cgroup: memory limits bound it;
3. evict every pod over an emptyDir ``sizeLimit``, over its containers' summed ephemeral-storage
   limit, or with a container over its own limit (``localStorageEviction``, in that order);
4. if no pod was evicted for its storage and a threshold is met, rank the pods as the kubelet does
   (``rankMemoryPressure``/``rankDiskPressureFunc``) and evict the first one that is not critical:
   one pod per pass.

An eviction is a kill with the immediate grace period, then phase Failed, reason Evicted, the
message, and for node pressure a DisruptionTarget condition; the Pod object stays until deleted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tinykube.api import resourcelist
from tinykube.api.errors import ApiError
from tinykube.api.formats import go_quote
from tinykube.api.quantity import canonical, value
from tinykube.client.clock import now
from tinykube.client.events import EventRecorder, reference
from tinykube.node import security
from tinykube.node.launch import pod_log_dir
from tinykube.node.registration import EVICTION_MEMORY_BYTES, EVICTION_NODEFS_FRACTION, binary_si
from tinykube.node.runtime import cgroups
from tinykube.node.runtime.cgroups import StatSources, Usage

log = logging.getLogger(__name__)

Obj = dict[str, Any]

REASON = "Evicted"
INTERVAL = 10.0  # seconds between passes (the kubelet's evictionMonitoringPeriod)
TRANSITION_PERIOD = 300.0  # seconds a pressure condition outlives its last sighting (--eviction-pressure-transition-period)
IMMEDIATE_GRACE = 1  # seconds: immediateEvictionGracePeriodSeconds, for hard thresholds and storage limits
EVICT_TIMEOUT = 30.0  # seconds the manager waits for an evicted pod to stop (podCleanupTimeout)
MEMORY, NODEFS = "memory.available", "nodefs.available"  # the signals watched, memory first (byEvictionPriority)
_CONDITION = {MEMORY: "MemoryPressure", NODEFS: "DiskPressure"}
_STORAGE = "ephemeral-storage"
_RESOURCE = {MEMORY: "memory", NODEFS: _STORAGE}
_CONFIG_SOURCE = "kubernetes.io/config.source"
_MIRROR = "kubernetes.io/config.mirror"


# --- configuration and observations ------------------------------------------------------------

@dataclass(frozen=True)
class Thresholds:
    """The hard eviction thresholds (``--eviction-hard``); a test raises them to simulate pressure."""

    memory_available: int = EVICTION_MEMORY_BYTES  # bytes
    nodefs_available: float = EVICTION_NODEFS_FRACTION  # fraction of the filesystem's capacity


@dataclass(frozen=True)
class EvictionConfig:
    """How often the manager looks, how long pressure lingers, and what counts as pressure."""

    interval: float = INTERVAL
    transition_period: float = TRANSITION_PERIOD
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class Observations:
    """The node's signals in bytes, with the capacity each is part of."""

    memory_available: int
    memory_capacity: int
    nodefs_available: int
    nodefs_capacity: int


@dataclass(frozen=True)
class ContainerUsage:
    """One container's writable layer and logs on disk, and its memory working set (None: no cgroup)."""

    rootfs: int = 0
    logs: int = 0
    memory: int | None = None

    @property
    def disk(self) -> int:
        return self.rootfs + self.logs


@dataclass(frozen=True)
class PodUsage:
    """A pod's containers, its local ephemeral volumes (bytes by volume name) and its cgroup's working set."""

    containers: dict[str, ContainerUsage]
    volumes: dict[str, int] = field(default_factory=dict)
    memory: int | None = None

    @property
    def disk(self) -> int:
        """Ephemeral storage in use: writable layers, logs and local volumes (the summary's ``ephemeral-storage``)."""
        return sum(c.disk for c in self.containers.values()) + sum(self.volumes.values())


@dataclass(frozen=True)
class Candidate:
    """An active pod, with the runtime id of each container's latest attempt."""

    pod: Obj
    containers: dict[str, str]


@dataclass(frozen=True)
class Eviction:
    """What a pod worker is told: the status message, the grace period, the condition to add (if any)."""

    message: str
    grace_seconds: int = IMMEDIATE_GRACE
    condition: Obj | None = None


def uid(pod: Obj) -> str:
    return str(pod["metadata"]["uid"])


# --- measurement (blocking I/O: run it in a thread) ---------------------------------------------

def disk_usage(root: Path | str) -> int:
    """Bytes of disk the tree at ``root`` takes, as ``du -sx`` counts them; 0 when it does not exist.

    A walk with ``os.scandir`` (no subprocess): allocated blocks, so sparse files count what they
    hold; a hard-linked file once; nothing on another filesystem (a tmpfs mounted inside).
    """
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        return 0
    total, seen = top.st_blocks * 512, set[int]()
    pending = [str(root)] if stat.S_ISDIR(top.st_mode) else []
    while pending:
        for path, info in _entries(pending.pop()):
            if info.st_dev != top.st_dev or info.st_ino in seen:
                continue
            if info.st_nlink > 1:
                seen.add(info.st_ino)
            total += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                pending.append(path)
    return total


def _entries(directory: str) -> list[tuple[str, os.stat_result]]:
    """A directory's entries with their lstat; what vanished meanwhile (a container writing) is skipped."""
    out = []
    try:
        with os.scandir(directory) as found:
            for entry in found:
                try:
                    out.append((entry.path, entry.stat(follow_symlinks=False)))
                except OSError:
                    continue
    except OSError:
        pass
    return out


def local_volumes(pod: Obj) -> list[tuple[str, str]]:
    """(plugin, name) of the volumes kept on the node's disk (``IsLocalEphemeralVolume``)."""
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        empty_dir = volume.get("emptyDir")
        if empty_dir is not None and not (empty_dir or {}).get("medium"):
            out.append(("emptyDir", volume["name"]))
        elif volume.get("configMap") is not None:
            out.append(("configMap", volume["name"]))
    return out


class Meter:
    """Reads the node's signals and the pods' usage from this host."""

    def __init__(self, memory_capacity: int, nodefs: str, layers: Path,
                 volume_dir: Callable[[str, str, str], Path], sources: StatSources | None = None):
        self.memory_capacity = memory_capacity  # bytes: the Node's capacity
        self.nodefs = nodefs  # a path on the filesystem that holds node state (the kubelet's root dir)
        self.layers = layers  # <layers>/<container id>/upper is a container's writable layer
        self.volume_dir = volume_dir  # (pod uid, plugin, volume name) -> its directory
        self._sources = sources

    @property
    def sources(self) -> StatSources:
        if self._sources is None:
            self._sources = cgroups.host_stat_sources()
        return self._sources

    def observe(self) -> Observations:
        """``memory.available`` = capacity - the root cgroup's working set; ``nodefs.available`` from statvfs."""
        node = cgroups.node_usage(self.sources)
        fs = os.statvfs(self.nodefs)
        return Observations(self.memory_capacity - node.working_set_bytes, self.memory_capacity,
                            fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize)

    def measure(self, candidates: Sequence[Candidate]) -> dict[str, PodUsage]:
        """Every candidate's usage, by pod UID."""
        memory = cgroups.pod_usages(self.sources)
        return {uid(c.pod): self._pod(c, memory) for c in candidates}

    def _pod(self, candidate: Candidate, memory: Mapping[tuple[str, str], Usage]) -> PodUsage:
        pod_uid, logs = uid(candidate.pod), pod_log_dir(candidate.pod)
        containers = {name: ContainerUsage(disk_usage(self.layers / runtime_id / "upper"),
                                           disk_usage(os.path.join(logs, name)),
                                           _working_set(memory.get((pod_uid, runtime_id))))
                      for name, runtime_id in candidate.containers.items()}
        volumes = {name: disk_usage(self.volume_dir(pod_uid, plugin, name))
                   for plugin, name in local_volumes(candidate.pod)}
        return PodUsage(containers, volumes, _working_set(memory.get((pod_uid, ""))))


def _working_set(usage: Usage | None) -> int | None:
    return usage.working_set_bytes if usage is not None else None


# --- local storage limits ----------------------------------------------------------------------

def storage_violation(pod: Obj, usage: PodUsage) -> str | None:
    """The eviction message of a pod over a local storage limit (``localStorageEviction``), else None."""
    return _empty_dir_violation(pod, usage) or _pod_violation(pod, usage) or _container_violation(pod, usage)


def _empty_dir_violation(pod: Obj, usage: PodUsage) -> str | None:
    """``emptyDirLimitEviction``: a volume using more than its positive ``sizeLimit``."""
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        limit = (volume.get("emptyDir") or {}).get("sizeLimit")
        used = usage.volumes.get(volume["name"])
        if limit is not None and used is not None and value(limit) > 0 and used > value(limit):
            return f"Usage of EmptyDir volume {go_quote(volume['name'])} exceeds the limit {go_quote(canonical(limit))}. "
    return None


def pod_storage_limit(pod: Obj) -> tuple[int, str] | None:
    """``PodLimits`` of ephemeral-storage as (bytes, the quantity as Go prints the sum); None when
    no container sets one."""
    amount = resourcelist.pod_limits(pod).get(_STORAGE)
    return None if amount is None else (value(amount.value), str(amount))


def _pod_violation(pod: Obj, usage: PodUsage) -> str | None:
    """``podEphemeralStorageLimitEviction``: the pod's whole ephemeral usage over its containers' limits."""
    limit = pod_storage_limit(pod)
    if limit is None or usage.disk <= limit[0]:
        return None
    return f"Pod ephemeral local storage usage exceeds the total limit of containers {limit[1]}. "


def _container_violation(pod: Obj, usage: PodUsage) -> str | None:
    """``containerEphemeralStorageLimitEviction``: a regular container's layer and logs over its own limit."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        limit = ((container.get("resources") or {}).get("limits") or {}).get(_STORAGE)
        used = usage.containers.get(container["name"])
        if limit is not None and value(limit) != 0 and used is not None and used.disk > value(limit):
            return (f"Container {container['name']} exceeded its local ephemeral storage limit "
                    f"{go_quote(canonical(limit))}. ")
    return None


# --- node pressure -----------------------------------------------------------------------------

def threshold_bytes(signal: str, obs: Observations, thresholds: Thresholds) -> int:
    """``GetThresholdQuantity``: a quantity as is, a percentage of the signal's capacity truncated."""
    if signal == MEMORY:
        return thresholds.memory_available
    return int(obs.nodefs_capacity * thresholds.nodefs_available)


def available_bytes(signal: str, obs: Observations) -> int:
    return obs.memory_available if signal == MEMORY else obs.nodefs_available


def thresholds_met(obs: Observations, thresholds: Thresholds) -> list[str]:
    """The signals below their threshold, memory first (the order they are reclaimed in)."""
    return [s for s in (MEMORY, NODEFS) if available_bytes(s, obs) < threshold_bytes(s, obs, thresholds)]


def is_critical(pod: Obj) -> bool:
    """``IsCriticalPod``: static and mirror pods, and system-critical priorities, are never evicted."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    static = annotations.get(_CONFIG_SOURCE, "api") != "api" or _MIRROR in annotations
    return static or (spec.get("priority") or 0) >= security.SYSTEM_CRITICAL_PRIORITY


def _used(signal: str, usage: PodUsage) -> int:
    """A pod's use of the signal's resource: its working set (0 when unread) or its ephemeral storage."""
    return (usage.memory or 0) if signal == MEMORY else usage.disk


def rank(pods: Sequence[Obj], usage: Mapping[str, PodUsage], signal: str) -> list[Obj]:
    """``rankMemoryPressure``/``rankDiskPressureFunc``: who goes first under pressure on ``signal``.

    Pods without stats first; then those using more than they request (so BestEffort pods,
    which request nothing, before Burstable pods within their requests); then lower priority;
    then the largest use above the request.
    """
    resource = _RESOURCE[signal]

    def key(pod: Obj) -> tuple[int, int, int, int]:
        priority = int((pod.get("spec") or {}).get("priority") or 0)
        found = usage.get(uid(pod))
        if found is None:
            return (0, 0, priority, 0)
        used, request = _used(signal, found), security.pod_total(pod, "requests", resource)
        return (1, 0 if used > request else 1, priority, request - used)
    return sorted(pods, key=key)


def pressure_message(signal: str, pod: Obj, usage: PodUsage | None, threshold: int, available: int) -> str:
    """``evictionMessage``: the starved resource, the threshold, and every container using more than it requests."""
    resource = _RESOURCE[signal]
    message = (f"The node was low on resource: {resource}. "
               f"Threshold quantity: {binary_si(threshold)}, available: {binary_si(available)}. ")
    if usage is None:
        return message
    spec = pod.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        found = usage.containers.get(container["name"])
        used = None if found is None else (found.memory if signal == MEMORY else found.disk)
        request = ((container.get("resources") or {}).get("requests") or {}).get(resource)
        if used is not None and used > (value(request) if request is not None else 0):
            message += (f"Container {container['name']} was using {binary_si(used)}, request is "
                        f"{canonical(request) if request is not None else '0'}, has larger consumption of {resource}. ")
    return message


def disruption_condition(message: str, stamp: str) -> Obj:
    """The DisruptionTarget condition a pressure eviction adds (``PodReasonTerminationByKubelet``)."""
    return {"type": "DisruptionTarget", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp,
            "reason": "TerminationByKubelet", "message": message}


def evicted_status(status: Obj, eviction: Eviction) -> Obj:
    """The status an eviction leaves: Failed, Evicted, the message; its condition replaces one of its type."""
    conditions = list(status.get("conditions") or [])
    if eviction.condition is not None:
        conditions = [c for c in conditions if c.get("type") != eviction.condition["type"]] + [eviction.condition]
    return {**status, "phase": "Failed", "reason": REASON, "message": eviction.message, "conditions": conditions}


# --- the manager -------------------------------------------------------------------------------

class Host(Protocol):
    """What the manager reads (a :class:`Meter`, or a fake in tests)."""

    def observe(self) -> Observations: ...

    def measure(self, candidates: Sequence[Candidate]) -> dict[str, PodUsage]: ...


class NodeConditions(Protocol):
    """Where the pressure conditions are posted (the node's :class:`Registration`)."""

    async def set_pressure(self, pressure: frozenset[str]) -> list[str]: ...


class EvictionManager:
    """Runs the passes; ``pods`` lists the active pods, ``evict`` kills one (returning once it is stopped)."""

    def __init__(self, config: EvictionConfig, host: Host, pods: Callable[[], list[Candidate]],
                 evict: Callable[[str, Eviction], Awaitable[None]], node: NodeConditions, recorder: EventRecorder,
                 node_name: str, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.host = host
        self.pods = pods
        self.evict = evict
        self.node = node
        self.recorder = recorder
        self.node_ref = {"kind": "Node", "name": node_name, "uid": node_name}  # the kubelet's nodeRef
        self.clock = clock
        self._seen: dict[str, float] = {}  # pressure condition -> when a pass last saw it

    async def run(self) -> None:
        """A pass every interval, until cancelled; a failed pass is logged and the next one tries again."""
        while True:
            try:
                await self.synchronize()
            except (ApiError, OSError, ValueError) as e:  # ValueError: a quantity the API should have refused
                log.warning("eviction pass failed: %s", e)
            await asyncio.sleep(self.config.interval)

    async def synchronize(self) -> list[str]:
        """One pass (``synchronize``); the UIDs of the pods it evicted."""
        obs = await asyncio.to_thread(self.host.observe)
        met = thresholds_met(obs, self.config.thresholds)
        await self._post_conditions(met)
        candidates = self.pods()
        usage = await asyncio.to_thread(self.host.measure, candidates)
        evicted = [uid(c.pod) for c in candidates if await self._evict_for_storage(c.pod, usage.get(uid(c.pod)))]
        if evicted or not met:
            return evicted
        return await self._reclaim(met[0], obs, candidates, usage)

    async def _post_conditions(self, met: list[str]) -> None:
        """Pressure conditions stay for the transition period after they were last seen; changes are node events."""
        at = self.clock()
        self._seen.update({_CONDITION[signal]: at for signal in met})
        pressure = frozenset(c for c, seen in self._seen.items() if at - seen < self.config.transition_period)
        for reason in await self.node.set_pressure(pressure):
            self.recorder.record(self.node_ref, "Normal", reason, f"Node {self.node_ref['name']} status is now: {reason}")

    async def _evict_for_storage(self, pod: Obj, usage: PodUsage | None) -> bool:
        message = storage_violation(pod, usage) if usage is not None else None
        return message is not None and await self._evict(pod, Eviction(message))

    async def _reclaim(self, signal: str, obs: Observations, candidates: list[Candidate],
                       usage: Mapping[str, PodUsage]) -> list[str]:
        """Evict the first evictable pod in the ranking for ``signal``'s resource."""
        resource = _RESOURCE[signal]
        self.recorder.record(self.node_ref, "Warning", "EvictionThresholdMet", f"Attempting to reclaim {resource}")
        threshold, available = threshold_bytes(signal, obs, self.config.thresholds), available_bytes(signal, obs)
        for pod in rank([c.pod for c in candidates], usage, signal):
            message = pressure_message(signal, pod, usage.get(uid(pod)), threshold, available)
            if await self._evict(pod, Eviction(message, IMMEDIATE_GRACE, disruption_condition(message, now()))):
                return [uid(pod)]
        if candidates:
            log.info("eviction thresholds met for %s, but no pod could be evicted", resource)
        return []

    async def _evict(self, pod: Obj, eviction: Eviction) -> bool:
        """``evictPod``: the event, then the kill (waited for); critical pods are refused."""
        if is_critical(pod):
            log.error("cannot evict critical pod %s/%s", pod["metadata"].get("namespace"), pod["metadata"]["name"])
            return False
        self.recorder.record(reference(pod), "Warning", REASON, eviction.message)
        log.info("evicting pod %s/%s: %s", pod["metadata"].get("namespace"), pod["metadata"]["name"], eviction.message)
        try:
            await asyncio.wait_for(self.evict(uid(pod), eviction), EVICT_TIMEOUT)
        except TimeoutError:
            log.warning("pod %s did not stop within %.0f s of its eviction", uid(pod), EVICT_TIMEOUT)
        return True
