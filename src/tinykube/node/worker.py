"""Pod workers: one asyncio task per pod UID drives the runtime toward the pod's spec.

The shape is the kubelet's ``pod_workers.go``: a worker holds only the *latest* pod it was
given (updates coalesce), a kill is sticky, and ``sync`` is level-triggered and idempotent —
it compares what the runtime has with what the spec wants, acts, and writes the status only
when it changed.  Container exits arrive as events from the runtime (never polled); restarts
follow the restart policy with the crash-loop back-off (10 s doubling to 5 min, reset after
10 min of running).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.clock import now
from tinykube.client.events import EventRecorder, reference
from tinykube.client.rest import Client, path
from tinykube.node import hooks, podstatus, security
from tinykube.node.eviction import Eviction, evicted_status
from tinykube.node.launch import Launcher, LaunchError, exit_reason, field_path, termination_message
from tinykube.node.podstatus import Observed, PodObservation
from tinykube.node.probes import Prober
from tinykube.node.volumes import VolumeError, VolumeManager, VolumePath

log = logging.getLogger(__name__)

PODS = lookup("", "v1", "pods")
assert PODS is not None

BACKOFF_START = 10.0  # seconds before the second restart (kubelet's initial crash-loop back-off)
BACKOFF_MAX = 300.0  # seconds: the back-off never grows past five minutes
BACKOFF_RESET = 600.0  # seconds of running after which a container's back-off starts over
APPARMOR_ENABLED = os.path.exists("/sys/kernel/security/apparmor")  # whether Localhost profiles can be applied
VOLUME_RETRY = 2.0  # seconds before a volume that failed to mount (e.g. a missing ConfigMap) is tried again
VOLUME_REFRESH = 60.0  # seconds between refreshes of ConfigMap/Secret/projected volumes (kubelet's sync period)

Obj = dict[str, Any]


@dataclass
class ContainerRecord:
    """What this worker remembers of one container across its restarts."""

    observed: Observed
    runtime_id: str = ""
    attempt: int = -1
    kind: str = "app"  # app | init | sidecar (an init container with restartPolicy Always)
    backoff: float = 0.0  # seconds of the next back-off; 0 = restart at once
    retry_at: float = 0.0  # event-loop time before which no restart happens
    running_since: float = 0.0


@dataclass
class NodeContext:
    """What every pod worker shares."""

    client: Client
    recorder: EventRecorder
    node_name: str
    node_ip: str
    launcher: Launcher
    volumes: VolumeManager
    prober: Prober


@dataclass
class PodWorker:
    """Owns one pod's sandbox and containers on this node."""

    ctx: NodeContext
    uid: str
    pod: Obj | None
    records: dict[str, ContainerRecord] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _killed: bool = False
    _last_status: Obj | None = None
    _last_version: int = 0  # resourceVersion our last status write produced
    _pod_ip: str = ""
    _start_time: str = ""
    _initialized: bool = False  # sticky once every init container is done (as the Initialized condition)
    _volumes: dict[str, VolumePath] | None = None  # set up once per pod
    _refresh_due: bool = False  # re-project ConfigMap/Secret/projected volumes on the next sync
    _rejected: bool = False  # refused by node admission: nothing runs
    _gone: bool = False  # the API object is already deleted: nothing to remove there
    _eviction: Eviction | None = None  # set by the eviction manager: the pod is killed and Failed, never restarted
    _evicted: asyncio.Event = field(default_factory=asyncio.Event)  # the eviction is done (or the worker ended)
    _done: asyncio.Event = field(default_factory=asyncio.Event)

    def update(self, pod: Obj | None, deleted: bool = False) -> None:
        """The latest pod (``deleted``/None: it is gone from the API). Latest wins; a kill stays."""
        if pod is None or deleted or pod["metadata"].get("deletionTimestamp"):
            self._killed = True
        if pod is not None:
            self.pod = pod
        self._gone = self._gone or deleted
        self._wake.set()

    @property
    def active(self) -> bool:
        """Whether the pod may still run here (the kubelet's active pods: the ones eviction considers)."""
        phase = ((self.pod or {}).get("status") or {}).get("phase")
        return (self.pod is not None and not (self._killed or self._rejected) and self._eviction is None
                and phase not in podstatus.TERMINAL_PHASES)

    async def evict(self, eviction: Eviction) -> None:
        """The eviction manager's kill; returns once the containers are gone and Failed is written."""
        self._eviction = self._eviction or eviction
        self._wake.set()
        await self._evicted.wait()

    def refresh_volumes(self) -> None:
        """A ConfigMap or Secret the pod mounts changed: re-project its volumes on the next sync."""
        self._refresh_due = True
        self._wake.set()

    def adopt(self) -> None:
        """Take over what the runtime still runs for this pod (after an agent restart); no duplicates."""
        ip, statuses = self.ctx.launcher.adopt(self.uid, self._on_exit)
        self._pod_ip = ip
        latest: dict[str, Any] = {}
        for status in statuses:
            attempt = int(status.id.rsplit("-", 1)[1])
            if status.name not in latest or attempt > int(latest[status.name].id.rsplit("-", 1)[1]):
                latest[status.name] = status
        for name, status in latest.items():
            attempt = int(status.id.rsplit("-", 1)[1])
            spec = (self.pod or {}).get("spec", {})
            inits = {c["name"]: c for c in spec.get("initContainers", [])}
            image = next((c["image"] for c in [*inits.values(), *spec.get("containers", [])] if c["name"] == name), "")
            kind = _init_kind(inits[name]) if name in inits else "app"
            record = self.records[name] = ContainerRecord(Observed(name, image), status.id, attempt, kind=kind,
                                                          running_since=time.monotonic())
            running = status.state == "running"
            container = next((c for c in [*inits.values(), *spec.get("containers", [])] if c["name"] == name), None)
            if running and container is not None and self.pod is not None:
                self.ctx.prober.start(self.pod, container, status.id)
            record.observed = Observed(name, image, "running" if running else "terminated",
                                       "" if running else exit_reason(status), exit_code=status.exit_code or 0,
                                       started_at=status.started_at, finished_at=status.finished_at,
                                       container_id=f"runc://{status.id}", restart_count=attempt, ready=running)
        if ip:
            self._start_time = self._start_time or (self.pod or {}).get("status", {}).get("startTime", "")
        self._initialized = any(r.kind == "app" for r in self.records.values())
        status = (self.pod or {}).get("status") or {}
        if status.get("phase") == "Failed" and status.get("reason") == "Evicted":  # evicted before a restart
            self._eviction = Eviction(status.get("message", ""))
            self._evicted.set()

    async def run(self) -> None:
        """Sync on every wake until the pod is terminated and its resources are gone."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._killed:
                    await self._terminate()
                    return
                try:
                    await self._sync()
                except (ApiError, OSError) as e:
                    log.warning("sync of pod %s failed: %s", self.uid, e)
                    asyncio.get_running_loop().call_later(1.0, self._wake.set)
        finally:
            self._evicted.set()
            self._done.set()

    # --- sync -----------------------------------------------------------------------------

    async def _sync(self) -> None:
        pod = self.pod
        assert pod is not None
        if self._eviction is not None:
            await self._evict(pod, self._eviction)
            return
        if self._rejected or await self._reject(pod):
            return
        if self._deadline_passed(pod):
            await self._fail_deadline(pod)
            return
        if not self._pod_ip:
            self._start_time = self._start_time or now()
            self._arm_deadline(pod)
            await self._write_status()  # ContainerCreating is visible while the sandbox is built
            self._pod_ip = await self.ctx.launcher.ensure_sandbox(pod)
        if not await self._ensure_volumes(pod):
            await self._write_status()
            return
        if not self._initialized:
            await self._sync_init(pod)
            if self._initialized and pod["spec"].get("initContainers"):
                await self._write_status()  # PodInitializing: init done, app containers starting
        if self._initialized:
            sidecars = [c for c in pod["spec"].get("initContainers", []) if _init_kind(c) == "sidecar"]
            await asyncio.gather(*(self._sync_container(pod, c, "sidecar") for c in sidecars),
                                 *(self._sync_container(pod, c, "app") for c in pod["spec"]["containers"]))
        await self._write_status()

    async def _evict(self, pod: Obj, eviction: Eviction) -> None:
        """Stop every container within the eviction's grace period, free the pod's disk (containers,
        volumes, logs, as the kubelet removes an evicted pod's content), then write Failed/Evicted."""
        if self._evicted.is_set():
            return
        self._announce_stop(pod)
        await self.ctx.launcher.teardown(self.uid, [r.runtime_id for r in self.records.values() if r.runtime_id],
                                         eviction.grace_seconds)
        await self.ctx.volumes.teardown(self.uid)
        self.pod = {**pod, "status": evicted_status(pod.get("status") or {}, eviction)}
        await self._write_status()
        self._evicted.set()

    def _arm_deadline(self, pod: Obj) -> None:
        """Wake when ``activeDeadlineSeconds`` runs out (counted from the pod's start)."""
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            asyncio.get_running_loop().call_later(float(deadline), self._wake.set)

    def _deadline_passed(self, pod: Obj) -> bool:
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is None or not self._start_time:
            return False
        started = datetime.datetime.strptime(self._start_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        return (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() >= deadline

    async def _fail_deadline(self, pod: Obj) -> None:
        """Kill everything and fail the pod, as the kubelet's active-deadline handler does."""
        message = "Pod was active on the node longer than the specified deadline"
        self._rejected = True
        self.ctx.recorder.record(reference(pod), "Normal", "DeadlineExceeded", message)
        running = [r.runtime_id for r in self.records.values() if r.observed.state == "running"]
        await asyncio.gather(*(self.ctx.launcher.runtime.stop(i, pod["spec"].get("terminationGracePeriodSeconds", 30))
                               for i in running), return_exceptions=True)
        meta = pod["metadata"]
        await self.ctx.client.patch(path(PODS, meta["namespace"], meta["name"], "status"),
                                    {"status": {"phase": "Failed", "reason": "DeadlineExceeded", "message": message}})

    async def _reject(self, pod: Obj) -> bool:
        """The kubelet's admission: a pod this node cannot run fails at once, with the reason."""
        if self._pod_ip or self.records:
            return False
        rejection = security.pod_rejection(pod, APPARMOR_ENABLED)
        if rejection is None:
            return False
        reason, message = rejection
        self._rejected = True
        self.ctx.recorder.record(reference(pod), "Warning", reason, message)
        meta = pod["metadata"]
        await self.ctx.client.patch(path(PODS, meta["namespace"], meta["name"], "status"),
                                    {"status": {"phase": "Failed", "reason": reason, "message": message}})
        return True

    async def _ensure_volumes(self, pod: Obj) -> bool:
        """Every volume set up once; re-projected only when a source changed or the minute tick came
        (tokens age), not on every sync: status wakes on the way to Running cost no API reads."""
        try:
            if self._volumes is None:
                self._volumes = await self.ctx.volumes.setup(pod)
                asyncio.get_running_loop().call_later(VOLUME_REFRESH, self._refresh_tick)
            elif self._refresh_due:
                self._refresh_due = False
                await self.ctx.volumes.refresh(pod)
            return True
        except VolumeError as e:
            self.ctx.recorder.record(reference(pod), "Warning", e.reason, e.message)
            asyncio.get_running_loop().call_later(VOLUME_RETRY, self._wake.set)
            return False

    def _refresh_tick(self) -> None:
        """Re-sync about every minute, as the kubelet's periodic sync does, so projected data stays fresh."""
        if not self._killed:
            self.refresh_volumes()
            asyncio.get_running_loop().call_later(VOLUME_REFRESH, self._refresh_tick)

    async def _sync_init(self, pod: Obj) -> None:
        """Init containers one at a time, each to success; sidecars only to started (KEP-753)."""
        for container in pod["spec"].get("initContainers", []):
            kind = _init_kind(container)
            record = self.records.get(container["name"])
            if record is not None and _init_done(record.observed, kind):
                continue
            if record is not None and self._init_failed(pod, record.observed):
                return
            await self._sync_container(pod, container, kind)
            if not _init_done(self.records[container["name"]].observed, kind):
                return
        self._initialized = True

    def _init_failed(self, pod: Obj, o: Observed) -> bool:
        """With restartPolicy Never a failed init container fails the pod."""
        return pod["spec"].get("restartPolicy", "Always") == "Never" and o.state == "terminated" and o.exit_code != 0

    async def _sync_container(self, pod: Obj, container: Obj, kind: str) -> None:
        name = container["name"]
        record = self.records.setdefault(name, ContainerRecord(Observed(name, container["image"]), kind=kind))
        if record.observed.image != container["image"]:
            await self._replace_image(pod, container, record)
        state = record.observed.state
        if state == "running":
            return
        if record.attempt >= 0 and state == "terminated" and not self._should_restart(pod, record):
            return
        if asyncio.get_running_loop().time() < record.retry_at:
            return
        await self._start(pod, container, record)

    async def _replace_image(self, pod: Obj, container: Obj, record: ContainerRecord) -> None:
        """A new image (the one mutable part of a container): restart with it, skipping any back-off."""
        o = record.observed
        if o.state == "running":
            self.ctx.recorder.record(reference(pod, field_path(pod, o.name)), "Normal", "Killing",
                                     f"Container {o.name} definition changed, will be restarted")
            await self.ctx.launcher.runtime.stop(record.runtime_id, pod["spec"].get("terminationGracePeriodSeconds", 30))
        record.observed = Observed(o.name, container["image"], "waiting", "ContainerCreating",
                                   restart_count=o.restart_count, last_terminated=o.last_terminated)
        record.retry_at = 0.0
        record.backoff = 0.0

    def _container(self, name: str) -> Obj | None:
        spec = (self.pod or {}).get("spec", {})
        return next((c for c in spec.get("initContainers", []) + spec.get("containers", []) if c["name"] == name), None)

    def _should_restart(self, pod: Obj, record: ContainerRecord) -> bool:
        """Sidecars always restart; init containers rerun only after a failure, and not with Never."""
        policy = pod["spec"].get("restartPolicy", "Always")
        failed = record.observed.exit_code != 0
        if record.kind == "sidecar":
            return True
        if record.kind == "init":
            return failed and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and failed)

    async def _start(self, pod: Obj, container: Obj, record: ContainerRecord) -> None:
        """Start the next attempt of a container (pulling its image first)."""
        previous = record.observed
        attempt = record.attempt + 1
        try:
            started = await self.ctx.launcher.start_container(pod, container, attempt, self._on_exit, self._volumes or {})
        except LaunchError as e:
            record.observed = Observed(previous.name, previous.image, "waiting", e.reason, e.message,
                                       restart_count=previous.restart_count, last_terminated=previous.last_terminated)
            self._schedule_retry(record, e.retry_after)
            return
        record.attempt = attempt
        record.runtime_id = started.runtime_id
        record.running_since = time.monotonic()
        last = _terminated(previous) if previous.state == "terminated" else previous.last_terminated
        record.observed = Observed(previous.name, previous.image, "running", "", started_at=started.started_at,
                                   container_id=f"runc://{started.runtime_id}", image_id=started.image_id,
                                   restart_count=attempt, last_terminated=last)
        record.observed.image = started.image
        self.ctx.prober.start(pod, container, started.runtime_id)
        await self._post_start(pod, container, record)

    async def _post_start(self, pod: Obj, container: Obj, record: ContainerRecord) -> None:
        """Run postStart; a failure kills the container, which then restarts per policy."""
        result = await hooks.post_start(pod, container, record.runtime_id, self.ctx.launcher.runtime.exec, self._pod_ip)
        ref = reference(pod, field_path(pod, container["name"]))
        if result.fallback:
            self.ctx.recorder.record(reference(pod), "Warning", "LifecycleHTTPFallback", result.fallback)
        if result.message:
            self.ctx.recorder.record(ref, "Warning", "FailedPostStartHook", result.message)
            self.ctx.recorder.record(ref, "Normal", "Killing", "FailedPostStartHook")
            await self.ctx.launcher.runtime.stop(record.runtime_id, pod["spec"].get("terminationGracePeriodSeconds", 30))

    def probe_result(self, runtime_id: str, kind: str, ok: bool) -> None:
        """Prober report: readiness changes rewrite the status; a failed liveness/startup probe restarts."""
        record = next((r for r in self.records.values() if r.runtime_id == runtime_id), None)
        if record is None or self.pod is None:
            return
        if kind in ("liveness", "startup") and not ok:
            asyncio.get_running_loop().create_task(self._kill_unhealthy(record, kind))
        self._wake.set()

    async def _kill_unhealthy(self, record: ContainerRecord, kind: str) -> None:
        pod = self.pod
        assert pod is not None
        name = record.observed.name
        self.ctx.recorder.record(reference(pod, field_path(pod, name)), "Normal", "Killing",
                                 f"Container {name} failed {kind} probe, will be restarted")
        container = next((c for c in pod["spec"]["containers"] if c["name"] == name), {})
        grace = (container.get(f"{kind}Probe") or {}).get("terminationGracePeriodSeconds")
        await self.ctx.launcher.runtime.stop(record.runtime_id, grace if grace is not None else
                                             pod["spec"].get("terminationGracePeriodSeconds", 30))

    def _schedule_retry(self, record: ContainerRecord, delay: float) -> None:
        """Wake when the back-off ends.  The deadline is on the loop's own clock: uvloop's timers run
        on a cached millisecond clock and may fire before ``time.monotonic()`` reaches the same
        deadline, and a wake that found the back-off not over would be the last one."""
        loop = asyncio.get_running_loop()
        record.retry_at = loop.time() + delay
        loop.call_later(delay, self._wake.set)

    def _on_exit(self, runtime_id: str, exit_code: int, reason: str, started_at: str, finished_at: str) -> None:
        """Runtime event: a container exited.  Decide its back-off and wake the worker."""
        self.ctx.prober.stop(runtime_id)
        for record in self.records.values():
            if record.runtime_id != runtime_id:
                continue
            o = record.observed
            container = self._container(o.name)
            message = termination_message(self.pod, container, record.attempt, exit_code) if self.pod and container else ""
            record.observed = Observed(o.name, o.image, "terminated", reason, message, exit_code=exit_code,
                                       started_at=started_at, finished_at=finished_at, container_id=o.container_id,
                                       image_id=o.image_id, restart_count=o.restart_count,
                                       last_terminated=o.last_terminated)
            self._arm_backoff(record)
        self._wake.set()

    def _arm_backoff(self, record: ContainerRecord) -> None:
        pod = self.pod
        if pod is None or self._eviction is not None or not self._should_restart(pod, record):
            return
        if time.monotonic() - record.running_since > BACKOFF_RESET:
            record.backoff = 0.0
        delay = record.backoff
        record.backoff = min(BACKOFF_MAX, BACKOFF_START if delay == 0 else delay * 2)
        if delay > 0:
            o = record.observed
            message = (f"back-off {int(delay)}s restarting failed container={o.name} "
                       f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}({self.uid})")
            record.observed = Observed(o.name, o.image, "waiting", "CrashLoopBackOff", message,
                                       container_id=o.container_id, image_id=o.image_id,
                                       restart_count=o.restart_count, last_terminated=_terminated(o))
            self.ctx.recorder.record(reference(pod, field_path(pod, o.name)), "Warning", "BackOff",
                                     f"Back-off restarting failed container {o.name} in pod "
                                     f"{pod['metadata']['name']}_{pod['metadata']['namespace']}({self.uid})")
            self._schedule_retry(record, delay)

    # --- status ----------------------------------------------------------------------------

    async def _write_status(self) -> None:
        pod = self.pod
        assert pod is not None
        previous = self._last_status or pod.get("status", {})
        inits = pod["spec"].get("initContainers", [])
        obs = PodObservation([r.observed for r in self._observed(pod, pod["spec"]["containers"])], self._pod_ip,
                             self.ctx.node_ip, self._start_time, bool(self._pod_ip),
                             podstatus.transition_times(previous),
                             [r.observed for r in self._observed(pod, inits)], self._initialized)
        status = podstatus.pod_status(pod, obs, now())
        if status == self._last_status and not self._overwritten(pod, status):
            return
        try:
            updated = await self.ctx.client.patch(path(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], "status"),
                                                  {"status": status}, "application/merge-patch+json")
        except ApiError as e:
            if e.code == 404:
                self.update(None)
                return
            raise
        self._last_status = status
        self._last_version = int((updated.get("metadata") or {}).get("resourceVersion") or 0)
        if not self._killed:
            self.pod = updated

    def _overwritten(self, pod: Obj, status: Obj) -> bool:
        """Whether someone else changed a condition this agent owns since its last write (the node
        lifecycle controller marks the pods of a node it lost touch with not Ready): then the status
        is written again, as the kubelet's status manager reconciles.  Versions older than our own
        write are stale watch events, not news."""
        if int(pod["metadata"].get("resourceVersion") or 0) <= self._last_version:
            return False
        return _owned_conditions(pod.get("status") or {}) != _owned_conditions(status)

    def _observed(self, pod: Obj, containers: list[Obj]) -> list[ContainerRecord]:
        """Records of ``containers`` (readiness from the prober); those not started yet wait."""
        for record in self.records.values():
            if record.observed.state == "running":
                record.observed.ready = self.ctx.prober.ready(record.runtime_id)
        waiting = "PodInitializing" if pod["spec"].get("initContainers") else "ContainerCreating"
        return [self.records.get(c["name"]) or ContainerRecord(Observed(c["name"], c["image"], reason=waiting))
                for c in containers]

    # --- termination ---------------------------------------------------------------------

    async def _terminate(self) -> None:
        """Stop every container (grace period, then SIGKILL), tear down, remove the pod object."""
        pod = self.pod
        grace = 0
        if pod is not None:
            grace = int(pod["metadata"].get("deletionGracePeriodSeconds",
                                            pod["spec"].get("terminationGracePeriodSeconds", 30)))
        running = self._announce_stop(pod)
        if pod is not None and running:
            grace = min(await asyncio.gather(*(self._pre_stop(pod, r, grace) for r in running)))
        await self.ctx.launcher.teardown(self.uid, [r.runtime_id for r in self.records.values() if r.runtime_id], grace)
        await self.ctx.volumes.teardown(self.uid)
        if pod is not None and not self._gone:
            await self._remove_object(pod)

    def _announce_stop(self, pod: Obj | None) -> list[ContainerRecord]:
        """The running containers, their liveness probes stopped and a Killing event each."""
        running = [r for r in self.records.values() if r.observed.state == "running"]
        for record in running:
            self.ctx.prober.stop(record.runtime_id, ("liveness", "startup"))
            if pod is not None:
                self.ctx.recorder.record(reference(pod, field_path(pod, record.observed.name)), "Normal",
                                         "Killing", f"Stopping container {record.observed.name}")
        return running

    async def _pre_stop(self, pod: Obj, record: ContainerRecord, grace: int) -> int:
        """Run a container's preStop hook within the grace period; the grace left for the stop."""
        container = next((c for c in pod["spec"]["containers"] if c["name"] == record.observed.name), None)
        if container is None or not (container.get("lifecycle") or {}).get("preStop"):
            return grace
        left, result = await hooks.pre_stop(pod, container, record.runtime_id, self.ctx.launcher.runtime.exec,
                                            self._pod_ip, grace)
        if result.message:
            self.ctx.recorder.record(reference(pod, field_path(pod, record.observed.name)), "Warning",
                                     "FailedPreStopHook", result.message)
        return int(left)

    async def _remove_object(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.ctx.client.delete(path(PODS, meta["namespace"], meta["name"]),
                                         {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}})
        except ApiError as e:
            if e.code not in (404, 409):
                raise


def _owned_conditions(status: Obj) -> dict[str, str]:
    """type -> status of the conditions the kubelet writes."""
    return {c["type"]: c.get("status", "") for c in status.get("conditions") or []
            if c.get("type") in podstatus.KUBELET_CONDITIONS}


def _init_done(o: Observed, kind: str) -> bool:
    """An init container is done when it succeeded; a sidecar once it runs."""
    return o.state == "running" if kind == "sidecar" else o.state == "terminated" and o.exit_code == 0


def _init_kind(container: Obj) -> str:
    """An init container runs to completion, unless it is a sidecar (restartPolicy Always)."""
    return "sidecar" if container.get("restartPolicy") == "Always" else "init"


def _terminated(o: Observed) -> Obj:
    term: Obj = {"exitCode": o.exit_code, "reason": o.reason, "message": o.message, "startedAt": o.started_at,
                 "finishedAt": o.finished_at, "containerID": o.container_id}
    return {k: v for k, v in term.items() if v not in ("", None)} | {"exitCode": o.exit_code}

