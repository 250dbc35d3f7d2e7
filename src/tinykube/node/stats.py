"""Resource usage of this node and its pods: the kubelet's summary API and ``/metrics/resource``.

CPU usage is a rate, so it needs two readings: a :class:`Sampler` reads every cgroup every
:data:`INTERVAL` seconds (one sleep per round, never a busy loop) and keeps the last two
readings; the rate is the CPU time between them over the time between them (the window).
Before the first round has a successor, a reader waits for a second reading
:data:`FIRST_WINDOW` after the first, so ``kubectl top`` works right after the agent starts.
Memory is the working set of the latest reading.  The summary is shaped as the kubelet's
``/stats/summary`` (``statsapi.Summary``) plus the window, which metrics-server would compute
itself from two scrapes; ``/metrics/resource`` carries the kubelet's cumulative metrics.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tinykube.node.runtime.cgroups import StatSources, Usage, node_usage, pod_usages

INTERVAL = 10.0  # seconds between readings (the kubelet's cAdvisor housekeeping is 10-15 s)
FIRST_WINDOW = 1.0  # seconds between the first two readings
NANO = 1_000_000_000

Obj = dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """Every cgroup read at one instant."""

    taken: float  # wall clock, seconds: what timestamps show
    monotonic: float  # what windows are measured with (immune to clock steps)
    node: Usage
    cgroups: dict[tuple[str, str], Usage]  # (pod UID, "" or container id) -> reading


@dataclass(frozen=True)
class ContainerTarget:
    """A running container: its name in the pod, its runtime id (its cgroup) and when it started."""

    name: str
    runtime_id: str
    started_at: str = ""  # RFC 3339, as the runtime reports it; "" when unknown


@dataclass(frozen=True)
class PodTarget:
    """A pod this node runs, named as the API names it."""

    namespace: str
    name: str
    uid: str
    containers: tuple[ContainerTarget, ...]


def read_sample(sources: StatSources) -> Sample:
    """Read the node and every pod and container cgroup now (blocking file reads: run it in a thread)."""
    return Sample(time.time(), time.monotonic(), node_usage(sources), pod_usages(sources))


class Sampler:
    """The latest two samples; :meth:`run` refreshes them, readers never wait longer than the first window."""

    def __init__(self, read: Callable[[], Sample], interval: float = INTERVAL, first_window: float = FIRST_WINDOW):
        self._read = read
        self._interval = interval
        self._first_window = first_window
        self._previous: Sample | None = None
        self._latest: Sample | None = None
        self._lock = asyncio.Lock()  # one reading at a time: concurrent first readers share it

    async def run(self) -> None:
        """Sample every interval until cancelled."""
        while True:
            async with self._lock:
                await self._sample()
            await asyncio.sleep(self._interval)

    async def latest(self) -> Sample:
        """The newest sample (read now if there is none yet)."""
        async with self._lock:
            if self._latest is None:
                await self._sample()
            assert self._latest is not None
            return self._latest

    async def pair(self) -> tuple[Sample, Sample]:
        """(previous, latest): the first time, a second reading is taken one first window after the first."""
        first = await self.latest()
        async with self._lock:
            if self._previous is None:
                await asyncio.sleep(max(0.0, first.monotonic + self._first_window - time.monotonic()))
                await self._sample()
            assert self._previous is not None and self._latest is not None
            return self._previous, self._latest

    async def _sample(self) -> None:
        sample = await asyncio.to_thread(self._read)
        self._previous, self._latest = self._latest, sample


def cpu_rate(previous_ns: int, latest_ns: int, window: float) -> int:
    """Nanocores over the window (metrics-server's ``cpuUsageOverTime``); never negative."""
    if window <= 0:
        return 0
    return max(0, int((latest_ns - previous_ns) / window))


def go_duration(seconds: float) -> str:
    """A window as Go's ``time.Duration.String()``, to the millisecond: ``10.002s``, ``1m0.5s``, ``500ms``."""
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, frac = divmod(rest, 1000)
    text = f"{secs}.{frac:03d}".rstrip("0").rstrip(".")
    prefix = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return f"{prefix}{text}s"


def rfc3339(epoch: float) -> str:
    """``metav1.Time`` serialization: whole seconds, UTC."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds allowed)."""
    return datetime.datetime.fromisoformat(text).timestamp()


def _usage_stats(previous: Usage, latest: Usage, taken: float, window: float) -> Obj:
    """``cpu`` and ``memory`` as ``statsapi.CPUStats`` and ``MemoryStats``."""
    when = rfc3339(taken)
    return {"cpu": {"time": when, "usageNanoCores": cpu_rate(previous.cpu_ns, latest.cpu_ns, window),
                    "usageCoreNanoSeconds": latest.cpu_ns},
            "memory": {"time": when, "usageBytes": latest.memory_bytes, "workingSetBytes": latest.working_set_bytes}}


def _pod_summary(pod: PodTarget, previous: Sample, latest: Sample, window: float) -> Obj | None:
    """A pod's ``statsapi.PodStats``: only containers read in both samples have a rate; none, no pod."""
    def both(key: tuple[str, str]) -> tuple[Usage, Usage] | None:
        before, now = previous.cgroups.get(key), latest.cgroups.get(key)
        return (before, now) if before is not None and now is not None else None

    containers = []
    for c in pod.containers:
        pair = both((pod.uid, c.runtime_id))
        if pair is not None:
            entry = {"name": c.name, **_usage_stats(*pair, latest.taken, window)}
            if c.started_at:
                entry["startTime"] = rfc3339(epoch(c.started_at))
            containers.append(entry)
    pod_pair = both((pod.uid, ""))
    if not containers or pod_pair is None:
        return None
    return {"podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "containers": containers, **_usage_stats(*pod_pair, latest.taken, window)}


def summary(node_name: str, pods: list[PodTarget], previous: Sample, latest: Sample) -> Obj:
    """The kubelet's ``/stats/summary`` (CPU and memory only) plus ``window``, the time between the samples."""
    window = latest.monotonic - previous.monotonic
    found = (_pod_summary(p, previous, latest, window) for p in pods)
    return {"node": {"nodeName": node_name, **_usage_stats(previous.node, latest.node, latest.taken, window)},
            "pods": [p for p in found if p is not None], "window": go_duration(window)}


# ---- /metrics/resource ----------------------------------------------------------------------

_CONTAINER = ["container", "pod", "namespace"]
_POD = ["pod", "namespace"]
# name (counters without "_total", which the library appends): kind, help text, labels
_COUNTER, _GAUGE = CounterMetricFamily, GaugeMetricFamily
_FAMILIES: dict[str, tuple[type[CounterMetricFamily | GaugeMetricFamily], str, list[str]]] = {
    "node_cpu_usage_seconds": (_COUNTER, "Cumulative cpu time consumed by the node in core-seconds", []),
    "node_memory_working_set_bytes": (_GAUGE, "Current working set of the node in bytes", []),
    "container_start_time_seconds": (_GAUGE, "Start time of the container since unix epoch in seconds", _CONTAINER),
    "container_cpu_usage_seconds": (_COUNTER, "Cumulative cpu time consumed by the container in core-seconds",
                                    _CONTAINER),
    "container_memory_working_set_bytes": (_GAUGE, "Current working set of the container in bytes", _CONTAINER),
    "pod_cpu_usage_seconds": (_COUNTER, "Cumulative cpu time consumed by the pod in core-seconds", _POD),
    "pod_memory_working_set_bytes": (_GAUGE, "Current working set of the pod in bytes", _POD),
    "resource_scrape_error": (_GAUGE, "1 if there was an error while getting container metrics, 0 otherwise", []),
}


Families = dict[str, CounterMetricFamily | GaugeMetricFamily]


class _ResourceCollector:
    """The kubelet's resource metrics collector (``pkg/kubelet/metrics/collectors/resource_metrics.go``) of one sample.

    Help texts carry component-base's ``[STABLE]`` prefix; samples carry the reading's timestamp.
    """

    def __init__(self, pods: list[PodTarget], sample: Sample):
        self.pods = pods
        self.sample = sample

    def collect(self) -> list[Metric]:
        families: Families = {name: kind(name, f"[STABLE] {text}", labels=labels)
                              for name, (kind, text, labels) in _FAMILIES.items()}
        taken = self.sample.taken
        _add_usage(families, "node", [], self.sample.node, taken)
        for pod in self.pods:
            for c in pod.containers:
                labels = [c.name, pod.name, pod.namespace]
                if c.started_at:
                    families["container_start_time_seconds"].add_metric(labels, epoch(c.started_at))
                _add_usage(families, "container", labels, self.sample.cgroups.get((pod.uid, c.runtime_id)), taken)
            _add_usage(families, "pod", [pod.name, pod.namespace], self.sample.cgroups.get((pod.uid, "")), taken)
        families["resource_scrape_error"].add_metric([], 0)
        return sorted(families.values(), key=lambda m: m.name)  # as the Go client gathers them


def _add_usage(families: Families, prefix: str, labels: list[str], usage: Usage | None, taken: float) -> None:
    """The CPU and memory samples of the node, a pod or a container; none without a reading."""
    if usage is not None:
        families[f"{prefix}_cpu_usage_seconds"].add_metric(labels, usage.cpu_ns / NANO, timestamp=taken)
        families[f"{prefix}_memory_working_set_bytes"].add_metric(labels, usage.working_set_bytes, timestamp=taken)


def resource_metrics(pods: list[PodTarget], sample: Sample) -> bytes:
    """``/metrics/resource`` in the Prometheus text format, with the kubelet's names, labels and timestamps."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ResourceCollector(pods, sample))
    return generate_latest(registry)


class NodeStats:
    """What the stats endpoints serve: the sampler's readings of the pods the agent runs right now."""

    def __init__(self, node_name: str, sampler: Sampler, pods: Callable[[], list[PodTarget]]):
        self.node_name = node_name
        self.sampler = sampler
        self.pods = pods

    async def summary(self) -> Obj:
        previous, latest = await self.sampler.pair()
        return summary(self.node_name, self.pods(), previous, latest)

    async def resource_metrics(self) -> bytes:
        return resource_metrics(self.pods(), await self.sampler.latest())
