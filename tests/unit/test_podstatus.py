"""Pod status generation matches what a 1.32 kubelet writes (kubelet_pods.go getPhase, status/generate.go)."""

from __future__ import annotations

from typing import Any

import pytest

from tinykube.node.podstatus import Observed, PodObservation, phase, pod_status, transition_times

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:00:05Z"
RUNNING_ID = "runc://uid-app-0"


def spec(*names: str, policy: str = "Always", **extra: Any) -> dict[str, Any]:
    return {"restartPolicy": policy, "containers": [{"name": n, "image": "busybox"} for n in names], **extra}


def running(name: str = "app", **kw: Any) -> Observed:
    return Observed(name, "busybox", "running", "", started_at=T0, container_id=RUNNING_ID,
                    image_id="docker.io/library/busybox@sha256:abc", ready=True, **kw)


def exited(name: str = "app", code: int = 0, **kw: Any) -> Observed:
    return Observed(name, "busybox", "terminated", "Completed" if code == 0 else "Error", exit_code=code,
                    started_at=T0, finished_at=T1, container_id=RUNNING_ID, **kw)


def waiting(name: str = "app", reason: str = "ContainerCreating", **kw: Any) -> Observed:
    return Observed(name, "busybox", "waiting", reason, **kw)


LAST = {"exitCode": 1, "reason": "Error", "startedAt": T0, "finishedAt": T1, "containerID": RUNNING_ID}


def crashlooping(name: str = "app") -> Observed:
    return waiting(name, "CrashLoopBackOff", message="back-off 10s restarting failed container=app pod=p_default(u)",
                   restart_count=1, last_terminated=LAST)


# --- phase (getPhase) -----------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "observed", "expected"), [
    ("Always", [waiting()], "Pending"),
    ("Always", [running(), waiting("b")], "Pending"),          # any container still waiting without lastState
    ("Always", [running(), running("b")], "Running"),
    ("Always", [running(), exited("b")], "Running"),
    ("Always", [running()], "Pending"),                          # "b" unknown: no status yet
    ("Never", [exited(), exited("b")], "Succeeded"),
    ("OnFailure", [exited(), exited("b")], "Succeeded"),
    ("Never", [exited(), exited("b", 2)], "Failed"),
    ("OnFailure", [exited(), exited("b", 2)], "Running"),        # restarting the failed one
    ("Always", [exited(), exited("b")], "Running"),             # everything is restarted
    ("Always", [crashlooping(), crashlooping("b")], "Running"),  # waiting with a lastState counts as stopped
    ("OnFailure", [crashlooping(), exited("b")], "Running"),
])
def test_phase(policy: str, observed: list[Observed], expected: str) -> None:
    assert phase(spec("app", "b", policy=policy), observed) == expected


def test_a_terminal_phase_is_never_left() -> None:
    pod = {"spec": spec("app", policy="OnFailure"), "status": {"phase": "Succeeded"}}
    assert pod_status(pod, PodObservation([waiting()]), T1)["phase"] == "Succeeded"


# --- conditions -----------------------------------------------------------------------------


def status_of(observed: list[Observed], names: tuple[str, ...] = ("app",), policy: str = "Always",
              current: dict[str, Any] | None = None, **obs: Any) -> dict[str, Any]:
    pod = {"spec": spec(*names, policy=policy), "status": current or {}}
    return pod_status(pod, PodObservation(observed, **obs), T1)


def by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_conditions_in_kubelet_order_with_their_shape() -> None:
    status = status_of([running()], sandbox_ready=True)
    assert [c["type"] for c in status["conditions"]] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    for cond in status["conditions"]:
        assert cond == {"type": cond["type"], "status": "True", "lastProbeTime": None, "lastTransitionTime": T1}


def test_unready_containers_are_named_in_spec_order() -> None:
    status = status_of([waiting("zeta"), running("alpha"), waiting("mid")], ("zeta", "alpha", "mid"))
    ready, containers_ready = by_type(status)["Ready"], by_type(status)["ContainersReady"]
    assert ready["status"] == "False"
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [zeta mid]"
    assert {k: v for k, v in containers_ready.items() if k != "type"} == {k: v for k, v in ready.items() if k != "type"}
    assert by_type(status)["PodReadyToStartContainers"]["status"] == "False"
    assert "reason" not in by_type(status)["PodReadyToStartContainers"]
    assert by_type(status)["Initialized"]["status"] == "True"


def test_containers_without_status_are_unknown() -> None:
    ready = by_type(status_of([waiting("a")], ("a", "b")))["Ready"]
    assert ready["message"] == "containers with unknown status: [b], containers with unready status: [a]"


def test_succeeded_pod_is_completed() -> None:
    conds = by_type(status_of([exited()], policy="Never"))
    for kind in ("Ready", "ContainersReady"):
        assert conds[kind]["status"] == "False"
        assert conds[kind]["reason"] == "PodCompleted"
        assert "message" not in conds[kind]
    assert conds["Initialized"]["status"] == "True"
    assert conds["Initialized"]["reason"] == "PodCompleted"


def test_failed_pod_says_pod_failed() -> None:
    status = status_of([exited(code=1)], policy="Never")
    assert status["phase"] == "Failed"
    conds = by_type(status)
    assert (conds["Ready"]["reason"], conds["ContainersReady"]["reason"]) == ("PodFailed", "PodFailed")
    assert "message" not in conds["Ready"]
    assert conds["Initialized"]["status"] == "True"
    assert "reason" not in conds["Initialized"]


def test_last_transition_time_is_kept_while_the_status_holds() -> None:
    first = status_of([waiting()])
    later = pod_status({"spec": spec("app"), "status": first},
                       PodObservation([running()], conditions_time=transition_times(first)), "2024-05-01T10:01:00Z")
    conds = by_type(later)
    assert conds["Initialized"]["lastTransitionTime"] == T1       # True before and after
    assert conds["Ready"]["lastTransitionTime"] == "2024-05-01T10:01:00Z"  # False → True
    assert conds["Ready"]["status"] == "True"


def test_pod_scheduled_keeps_the_schedulers_time_and_is_added_when_bound_directly() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": T0}
    current = {"conditions": [scheduled]}
    status = status_of([running()], current=current, conditions_time=transition_times(current))
    assert by_type(status)["PodScheduled"] == scheduled
    assert by_type(status_of([running()]))["PodScheduled"]["status"] == "True"


def test_conditions_the_kubelet_does_not_own_are_kept_first() -> None:
    gate = {"type": "example.com/gate", "status": "True", "lastProbeTime": None, "lastTransitionTime": T0}
    old_ready = {"type": "Ready", "status": "False", "lastProbeTime": None, "lastTransitionTime": T0}
    status = status_of([running()], current={"conditions": [old_ready, gate]})
    assert status["conditions"][0] == gate
    assert [c["type"] for c in status["conditions"]].count("Ready") == 1


# --- container statuses -----------------------------------------------------------------------


def test_running_container_status() -> None:
    [cs] = status_of([running()])["containerStatuses"]
    assert cs == {"name": "app", "state": {"running": {"startedAt": T0}}, "lastState": {}, "ready": True,
                  "restartCount": 0, "image": "busybox", "imageID": "docker.io/library/busybox@sha256:abc",
                  "started": True, "containerID": RUNNING_ID}


def test_waiting_container_status_has_no_container_id_but_an_image_id() -> None:
    [cs] = status_of([waiting(reason="ErrImagePull", message="pull failed")])["containerStatuses"]
    assert cs["state"] == {"waiting": {"reason": "ErrImagePull", "message": "pull failed"}}
    assert (cs["ready"], cs["started"], cs["imageID"], cs["lastState"]) == (False, False, "", {})
    assert "containerID" not in cs


def test_terminated_container_status() -> None:
    [cs] = status_of([exited(code=3)], policy="Never")["containerStatuses"]
    assert cs["state"] == {"terminated": {"exitCode": 3, "reason": "Error", "startedAt": T0, "finishedAt": T1,
                                          "containerID": RUNNING_ID}}
    assert (cs["ready"], cs["started"]) == (False, False)


def test_crash_loop_status_carries_the_last_termination() -> None:
    [cs] = status_of([crashlooping()])["containerStatuses"]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"] == {"terminated": LAST}
    assert cs["restartCount"] == 1


def test_container_statuses_are_sorted_by_name() -> None:
    names = [cs["name"] for cs in status_of([running("web"), running("app")], ("web", "app"))["containerStatuses"]]
    assert names == ["app", "web"]


def test_volume_mounts_are_reported() -> None:
    pod_spec = spec("app")
    pod_spec["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"},
        {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}]
    [cs] = pod_status({"spec": pod_spec}, PodObservation([running()]), T1)["containerStatuses"]
    assert cs["volumeMounts"] == [
        {"name": "data", "mountPath": "/data"},
        {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
         "readOnly": True, "recursiveReadOnly": "Disabled"}]


def test_pod_level_fields() -> None:
    status = status_of([running()], current={"qosClass": "BestEffort"}, pod_ip="10.42.0.5", host_ip="192.0.2.1",
                       start_time=T0)
    assert status["podIP"] == "10.42.0.5" and status["podIPs"] == [{"ip": "10.42.0.5"}]
    assert status["hostIP"] == "192.0.2.1" and status["hostIPs"] == [{"ip": "192.0.2.1"}]
    assert (status["startTime"], status["qosClass"]) == (T0, "BestEffort")
    assert "podIP" not in status_of([waiting()])


# --- init containers ----------------------------------------------------------------------------


def init_pod(policy: str = "Always") -> dict[str, Any]:
    return {"spec": spec("app", policy=policy, initContainers=[{"name": "setup", "image": "busybox"}])}


def test_running_init_container_keeps_the_pod_pending() -> None:
    obs = PodObservation([waiting(reason="PodInitializing")], init_containers=[running("setup")], initialized=False)
    status = pod_status(init_pod(), obs, T1)
    assert status["phase"] == "Pending"
    initialized = by_type(status)["Initialized"]
    assert (initialized["status"], initialized["reason"]) == ("False", "ContainersNotInitialized")
    assert initialized["message"] == "containers with incomplete status: [setup]"
    [init] = status["initContainerStatuses"]
    assert (init["name"], init["ready"], init["started"]) == ("setup", False, True)


def test_completed_init_container_is_ready() -> None:
    obs = PodObservation([running()], init_containers=[exited("setup")], initialized=True)
    status = pod_status(init_pod(), obs, T1)
    assert status["phase"] == "Running"
    assert status["initContainerStatuses"][0]["ready"] is True
    assert by_type(status)["Initialized"]["status"] == "True"


def test_failed_init_container_fails_a_never_restarting_pod() -> None:
    obs = PodObservation([waiting(reason="PodInitializing")], init_containers=[exited("setup", 1)], initialized=False)
    assert pod_status(init_pod("Never"), obs, T1)["phase"] == "Failed"


def test_a_sidecar_counts_for_readiness_and_keeps_its_own_ready() -> None:
    pod = {"spec": spec("app", initContainers=[{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}])}
    obs = PodObservation([running()], init_containers=[crashlooping("proxy")], initialized=True)
    status = pod_status(pod, obs, T1)
    assert by_type(status)["ContainersReady"]["message"] == "containers with unready status: [proxy]"
    assert status["initContainerStatuses"][0]["ready"] is False
    obs = PodObservation([running()], init_containers=[running("proxy")], initialized=True)
    status = pod_status(pod, obs, T1)
    assert by_type(status)["Ready"]["status"] == "True"
    assert status["initContainerStatuses"][0]["ready"] is True
