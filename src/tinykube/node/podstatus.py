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


def container_state(o: Observed) -> Obj:
    if o.state == "running":
        return {"running": {"startedAt": o.started_at}}
    if o.state == "terminated":
        term: Obj = {"exitCode": o.exit_code, "reason": o.reason, "startedAt": o.started_at or None,
                     "finishedAt": o.finished_at or None, "containerID": o.container_id}
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
    status: Obj = {"name": o.name, "state": container_state(o),
                   "lastState": {"terminated": o.last_terminated} if o.last_terminated else {},
                   "ready": o.ready, "restartCount": o.restart_count, "image": o.image,
                   "imageID": o.image_id, "started": o.state == "running"}
    if o.container_id:
        status["containerID"] = o.container_id
    return status


def phase(spec: Obj, observed: list[Observed]) -> str:
    """``getPhase`` for app containers (no init containers yet)."""
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


def _condition(kind: str, ok: bool, stamp: str, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None, "lastTransitionTime": stamp}
    if not ok and reason:
        cond["reason"] = reason
    if not ok and message:
        cond["message"] = message
    return cond


def conditions(spec: Obj, obs: PodObservation, pod_phase: str, scheduled: Obj | None, stamp: str) -> list[Obj]:
    """PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled (kubelet order)."""
    unready = [o.name for o in obs.containers if not o.ready]
    done = pod_phase in ("Succeeded", "Failed")
    reason = "PodCompleted" if done else "ContainersNotReady"
    message = "" if done else f"containers with unready status: [{' '.join(unready)}]"
    ready = not unready and not done
    out = [
        _condition("PodReadyToStartContainers", obs.sandbox_ready, stamp),
        _condition("Initialized", True, stamp, "PodCompleted" if done else ""),
        _condition("Ready", ready, stamp, reason, message),
        _condition("ContainersReady", ready, stamp, reason, message),
    ]
    if scheduled is not None:
        out.append(scheduled)
    return [_keep_transition(c, obs.conditions_time) for c in out]


def _keep_transition(cond: Obj, previous: dict[str, str]) -> Obj:
    """A condition keeps its lastTransitionTime while its status does not change."""
    key = f"{cond['type']}={cond['status']}"
    if key in previous:
        cond["lastTransitionTime"] = previous[key]
    return cond


def pod_status(pod: Obj, obs: PodObservation, stamp: str) -> Obj:
    """The full ``status`` to write for ``pod``."""
    spec = pod["spec"]
    current = pod.get("status", {})
    scheduled = next((c for c in current.get("conditions", []) if c.get("type") == "PodScheduled"), None)
    pod_phase = phase(spec, obs.containers)
    status: Obj = {"phase": pod_phase, "conditions": conditions(spec, obs, pod_phase, scheduled, stamp)}
    if obs.host_ip:
        status["hostIP"] = obs.host_ip
        status["hostIPs"] = [{"ip": obs.host_ip}]
    if obs.pod_ip:
        status["podIP"] = obs.pod_ip
        status["podIPs"] = [{"ip": obs.pod_ip}]
    if obs.start_time:
        status["startTime"] = obs.start_time
    by_name = {o.name: o for o in obs.containers}
    status["containerStatuses"] = [container_status(by_name[c["name"]]) for c in spec.get("containers", [])
                                   if c["name"] in by_name]
    if current.get("qosClass"):
        status["qosClass"] = current["qosClass"]
    return status


def transition_times(status: Obj) -> dict[str, str]:
    """``type=status`` → lastTransitionTime of the conditions in a written status."""
    return {f"{c['type']}={c['status']}": c.get("lastTransitionTime", "") for c in status.get("conditions", [])}
