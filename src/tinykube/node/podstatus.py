"""Pod status as a pure function of the spec and what the runtime observed (kubelet status/generate.go).

The pod worker gathers one :class:`Observed` per container; ``pod_status`` turns them into the
``status`` the API shows: phase (``getPhase``), conditions, and container statuses with
waiting/running/terminated states, restart counts and last states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass
class Observed:
    """What the node knows about one container right now."""

    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    exit_code: int = 0
    signal: int = 0
    started_at: str = ""
    finished_at: str = ""
    container_id: str = ""
    image_id: str = ""
    restart_count: int = 0
    last_terminated: Obj | None = None  # the previous run's "terminated" state
    ready: bool = False


@dataclass
class PodObservation:
    containers: list[Observed]
    pod_ip: str = ""
    host_ip: str = ""
    start_time: str = ""
    sandbox_ready: bool = False
    conditions_time: dict[str, str] = field(default_factory=dict)
    init_containers: list[Observed] = field(default_factory=list)
    initialized: bool = True


def container_state(o: Observed) -> Obj:
    """The one-of ``state`` object; empty optional fields are left out as the kubelet's omitempty does."""
    if o.state == "running":
        return {"running": {"startedAt": o.started_at}}
    if o.state == "terminated":
        term: Obj = {"exitCode": o.exit_code, "reason": o.reason, "startedAt": o.started_at or None,
                     "finishedAt": o.finished_at or None, "containerID": o.container_id or None}
        if o.message:
            term["message"] = o.message
        if o.signal:
            term["signal"] = o.signal
        return {"terminated": {k: v for k, v in term.items() if v is not None}}
    waiting: Obj = {"reason": o.reason}
    if o.message:
        waiting["message"] = o.message
    return {"waiting": waiting}


def container_status(o: Observed) -> Obj:
    """``lastState`` is always present (``{}`` before a restart), as are ``imageID`` and ``started``."""
    status: Obj = {"name": o.name, "state": container_state(o),
                   "lastState": {"terminated": o.last_terminated} if o.last_terminated else {},
                   "ready": o.ready, "restartCount": o.restart_count, "image": o.image,
                   "imageID": o.image_id, "started": o.state == "running"}
    if o.container_id:
        status["containerID"] = o.container_id
    return status


def init_phase(spec: Obj, inits: list[Observed], initialized: bool) -> str | None:
    """Pending while init containers run; Failed when one failed and the pod never restarts."""
    if initialized:
        return None
    never = spec.get("restartPolicy", "Always") == "Never"
    if never and any(o.state == "terminated" and o.exit_code != 0 for o in inits):
        return "Failed"
    return "Pending"


def phase(spec: Obj, observed: list[Observed]) -> str:
    """``getPhase`` for app containers once the pod is initialized."""
    running = waiting = stopped = succeeded = unknown = 0
    by_name = {o.name: o for o in observed}
    for container in spec.get("containers", []):
        o = by_name.get(container["name"])
        if o is None:
            unknown += 1
        elif o.state == "running":
            running += 1
        elif o.state == "terminated":
            stopped += 1
            succeeded += o.exit_code == 0
        elif o.last_terminated is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        policy = spec.get("restartPolicy", "Always")
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
TERMINAL_PHASES = ("Succeeded", "Failed")


def _condition(kind: str, ok: bool, stamp: str, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None, "lastTransitionTime": stamp}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _readiness(spec: Obj, obs: PodObservation, pod_phase: str) -> tuple[bool, str, str]:
    """(ready, reason, message) shared by Ready and ContainersReady (``GenerateContainersReadyCondition``).

    A terminal pod is never ready: its containers may still be stopping, so the kubelet says
    PodCompleted or PodFailed instead of naming containers.
    """
    if pod_phase == "Failed":
        return False, "PodFailed", ""
    by_name = {o.name: o for o in obs.init_containers + obs.containers}
    names = [c["name"] for c in _sidecars(spec) + spec.get("containers", [])]
    unknown = [n for n in names if n not in by_name]
    if pod_phase == "Succeeded" and not unknown:
        return False, "PodCompleted", ""
    unready = [n for n in names if n in by_name and not by_name[n].ready]
    messages = [f"containers with {kind} status: [{' '.join(group)}]"
                for kind, group in (("unknown", unknown), ("unready", unready)) if group]
    if messages:
        return False, "ContainersNotReady", ", ".join(messages)
    return True, "", ""


def _sidecars(spec: Obj) -> list[Obj]:
    """Restartable init containers (``restartPolicy: Always``), which run beside the app containers."""
    return [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]


def _init_done(container: Obj, o: Observed) -> bool:
    """A sidecar counts once started, a regular init container once it exited 0 (``isInitContainerInitialized``)."""
    if container.get("restartPolicy") == "Always":
        return o.state == "running"
    return o.state == "terminated" and o.exit_code == 0


def _initialization(spec: Obj, obs: PodObservation, pod_phase: str) -> tuple[bool, str, str]:
    """(initialized, reason, message) as ``GeneratePodInitializedCondition``."""
    by_name = {o.name: o for o in obs.init_containers}
    inits = spec.get("initContainers") or []
    unknown = [c["name"] for c in inits if c["name"] not in by_name]
    if pod_phase == "Succeeded" and not unknown:
        return True, "PodCompleted", ""
    if obs.initialized:
        return True, "", ""
    incomplete = [c["name"] for c in inits if c["name"] in by_name and not _init_done(c, by_name[c["name"]])]
    messages = [f"containers with {kind} status: [{' '.join(group)}]"
                for kind, group in (("unknown", unknown), ("incomplete", incomplete)) if group]
    if messages:
        return False, "ContainersNotInitialized", ", ".join(messages)
    return True, "", ""


def conditions(spec: Obj, obs: PodObservation, pod_phase: str, others: list[Obj], stamp: str) -> list[Obj]:
    """``others`` (conditions the kubelet does not own), then PodReadyToStartContainers, Initialized,
    Ready, ContainersReady and PodScheduled, in the kubelet's order."""
    ready, reason, message = _readiness(spec, obs, pod_phase)
    initialized, init_reason, init_message = _initialization(spec, obs, pod_phase)
    owned = [
        _condition("PodReadyToStartContainers", obs.sandbox_ready, stamp),
        _condition("Initialized", initialized, stamp, init_reason, init_message),
        _condition("Ready", ready, stamp, reason, message),
        _condition("ContainersReady", ready, stamp, reason, message),
        _condition("PodScheduled", True, stamp),
    ]
    return others + [_keep_transition(c, obs.conditions_time) for c in owned]


def _keep_transition(cond: Obj, previous: dict[str, str]) -> Obj:
    """A condition keeps its lastTransitionTime while its status does not change."""
    key = f"{cond['type']}={cond['status']}"
    if key in previous:
        cond["lastTransitionTime"] = previous[key]
    return cond


def volume_mounts(container: Obj) -> list[Obj]:
    """``containerStatuses[].volumeMounts`` (RecursiveReadOnlyMounts, on by default since 1.31).

    The runtime does not advertise recursive read-only support, so a read-only mount reports
    ``Disabled`` whatever it asked for, as the kubelet does for such a runtime.
    """
    out = []
    for mount in container.get("volumeMounts") or []:
        status: Obj = {"name": mount["name"], "mountPath": mount["mountPath"]}
        if mount.get("readOnly"):
            status |= {"readOnly": True, "recursiveReadOnly": "Disabled"}
        out.append(status)
    return out


def container_statuses(containers: list[Obj], observed: list[Observed]) -> list[Obj]:
    """One status per observed container of ``containers``, in their order."""
    by_name = {o.name: o for o in observed}
    out = []
    for container in containers:
        o = by_name.get(container["name"])
        if o is None:
            continue
        status = container_status(o)
        if mounts := volume_mounts(container):
            status["volumeMounts"] = mounts
        out.append(status)
    return out


def init_container_statuses(spec: Obj, observed: list[Observed]) -> list[Obj]:
    """Init container statuses in spec order; a regular one is ready once it exited 0, never while running."""
    inits = spec.get("initContainers") or []
    statuses = container_statuses(inits, observed)
    specs = {c["name"]: c for c in inits}
    by_name = {o.name: o for o in observed}
    for status in statuses:
        container = specs[status["name"]]
        if container.get("restartPolicy") != "Always":
            status["ready"] = _init_done(container, by_name[status["name"]])
    return statuses


def pod_status(pod: Obj, obs: PodObservation, stamp: str) -> Obj:
    """The full ``status`` to write for ``pod``."""
    spec = pod["spec"]
    current = pod.get("status", {})
    pod_phase = init_phase(spec, obs.init_containers, obs.initialized) or phase(spec, obs.containers)
    if current.get("phase") in TERMINAL_PHASES:
        pod_phase = current["phase"]  # a pod never leaves a terminal phase
    others = [c for c in current.get("conditions", []) if c.get("type") not in KUBELET_CONDITIONS]
    status: Obj = {"phase": pod_phase, "conditions": conditions(spec, obs, pod_phase, others, stamp)}
    if pod_phase == current.get("phase"):  # the reason and message belong to the phase (Evicted, DeadlineExceeded)
        status |= {k: current[k] for k in ("reason", "message") if current.get(k)}
    if obs.host_ip:
        status["hostIP"] = obs.host_ip
        status["hostIPs"] = [{"ip": obs.host_ip}]
    if obs.pod_ip:
        status["podIP"] = obs.pod_ip
        status["podIPs"] = [{"ip": obs.pod_ip}]
    if obs.start_time:
        status["startTime"] = obs.start_time
    if spec.get("initContainers"):
        status["initContainerStatuses"] = init_container_statuses(spec, obs.init_containers)
    # the kubelet sorts app container statuses by name (SortedContainerStatuses)
    status["containerStatuses"] = sorted(container_statuses(spec.get("containers", []), obs.containers),
                                         key=lambda s: s["name"])
    if current.get("qosClass"):
        status["qosClass"] = current["qosClass"]
    return status


def transition_times(status: Obj) -> dict[str, str]:
    """``type=status`` → lastTransitionTime of the conditions in a written status."""
    return {f"{c['type']}={c['status']}": c.get("lastTransitionTime", "") for c in status.get("conditions", [])}
