"""A node agent killed with SIGKILL: its Node goes Unknown and is tainted, its pods go not Ready and
are evicted as their tolerations say (STATUS ``Unknown`` while the deletion waits for the node),
and when the agent comes back it tears down what was evicted and adopts the rest, duplicating
nothing.  ``tinykube server`` and ``tinykube node`` run as separate processes; the controller's
periods are shortened by its flags so that the test takes well under a minute.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, eventually, status_column
from tests.e2e.nodes import NodeProcess, containers, of_pod, split_node_cluster_fixture
from tests.registry import LocalRegistry, requires_registry

pytestmark = [pytest.mark.slow, requires_registry]

GRACE = 15  # --node-monitor-grace-period, seconds: above the agent's 10 s Lease renewal
TOLERATION = 10  # tolerationSeconds of the pod that is to be evicted
UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[tuple[Cluster, NodeProcess]]:
    yield from split_node_cluster_fixture(tmp_path_factory.mktemp("lifecycle"), registry,
                                          ("--node-monitor-grace-period", f"{GRACE}s", "--node-monitor-period", "1s"))


def get(cluster: Cluster, *what: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", *what, "-o", "json").stdout)  # type: ignore[no-any-return]


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == "Ready"), {})


def ready(cluster: Cluster, *what: str) -> str:
    """The Ready condition's status of an object; "" while it does not exist."""
    out = cluster.kubectl("get", *what, "-o", "json", check=False).stdout
    return str(ready_condition(json.loads(out)).get("status", "")) if out else ""


def gone(cluster: Cluster, pod: str) -> bool:
    return "NotFound" in cluster.kubectl("get", "pod", pod, check=False).stderr


def micro_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextlib.contextmanager
def healthy_node(cluster: Cluster, name: str) -> Iterator[None]:
    """A cordoned node without an agent whose Lease the test renews.  With every node silent the
    controller (as upstream) assumes the control plane lost contact and taints nothing NoExecute,
    so losing node-1 must not be losing every node."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"unschedulable": True}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(node))
    now = micro_now()[:19] + "Z"
    posted = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
              "lastHeartbeatTime": now, "lastTransitionTime": now}
    cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"conditions": [posted]}}))
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": name, "namespace": "kube-node-lease"},
             "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(lease))
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(2.0):
            cluster.kubectl("-n", "kube-node-lease", "patch", "lease", name, "--type=merge", "-p",
                            json.dumps({"spec": {"renewTime": micro_now()}}), check=False)
    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()


def sleeper(name: str, toleration: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": "node-1"}, "terminationGracePeriodSeconds": 1,
                     "tolerations": [toleration],
                     "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}


def start_pods(cluster: Cluster) -> dict[str, str]:
    """``evicted`` tolerates the unreachable taint for 10 s, ``stays`` and ``forced`` for ever (the
    latter is force-deleted while the agent is away); name -> uid."""
    timed = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": TOLERATION}
    forever = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    items = [sleeper("evicted", timed), sleeper("stays", forever), sleeper("forced", forever)]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/evicted", "pod/stays", "pod/forced", "--timeout=60s")
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in get(cluster, "pods")["items"]}


def event_messages(cluster: Cluster, name: str) -> list[str]:
    listed = get(cluster, "events", "-A", "--field-selector", f"involvedObject.name={name}")
    return [f"{e['reason']}: {e['message']}" for e in listed["items"]]


def test_a_killed_agent_loses_its_node_and_comes_back_to_reconcile(split: tuple[Cluster, NodeProcess]) -> None:
    cluster, agent = split
    eventually(lambda: ready(cluster, "node", "node-1") == "True", "node-1 Ready", 60)
    with healthy_node(cluster, "node-2"):
        uids = start_pods(cluster)
        before = containers(agent.run_dir)
        killed = time.monotonic()
        agent.kill()
        cluster.kubectl("delete", "pod", "forced", "--grace-period=0", "--force")
        check_node_lost(cluster)
        check_eviction(cluster, killed)
        after_kill = containers(agent.run_dir)
        for name in ("evicted", "forced"):
            assert set(of_pod(after_kill, uids[name]).values()) == {"running"}  # containers outlive their agent
        assert of_pod(after_kill, uids["stays"]) == of_pod(before, uids["stays"])
        agent.start()
        check_node_back(cluster)
        eventually(lambda: gone(cluster, "evicted"), "the evicted pod removed by its returning node")
        for name in ("evicted", "forced"):
            eventually(lambda: not of_pod(containers(agent.run_dir), uids[name]), f"{name}'s containers torn down")
        check_adopted(cluster, agent, uids["stays"], of_pod(before, uids["stays"]))


def check_node_lost(cluster: Cluster) -> None:
    """Unknown within the grace period (plus a monitor period), then the NoExecute taint."""
    eventually(lambda: ready(cluster, "node", "node-1") == "Unknown", "node-1 Unknown", GRACE + 10)
    condition = ready_condition(get(cluster, "node", "node-1"))
    assert (condition["reason"], condition["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    assert cluster.kubectl("get", "node", "node-1", "--no-headers").stdout.split()[1] == "NotReady"
    describe = describe_showing(cluster, f"{UNREACHABLE}:NoExecute")
    assert f"{UNREACHABLE}:NoSchedule" in describe, describe
    assert "NodeNotReady" in describe and "Node node-1 status is now: NodeNotReady" in describe, describe


def describe_showing(cluster: Cluster, text: str) -> str:
    """``kubectl describe node node-1`` once it shows ``text``."""
    def shown() -> str:
        out = cluster.kubectl("describe", "node", "node-1").stdout
        return out if text in out else ""
    return str(eventually(shown, f"describe node to show {text}", 10))


def check_eviction(cluster: Cluster, killed: float) -> None:
    """``evicted`` shows Unknown once its 10 s are up (within a minute of the kill); ``stays`` stays."""
    eventually(lambda: status_column(cluster, "evicted") == "Unknown", "evicted to show STATUS Unknown",
               60 - (time.monotonic() - killed))
    pod = get(cluster, "pod", "evicted")
    assert pod["metadata"].get("deletionTimestamp")
    assert (pod["status"]["reason"], pod["status"]["message"]) == (
        "NodeLost", "Node node-1 which was running pod evicted is unresponsive")
    disruption = next(c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (disruption["reason"], disruption["message"]) == ("DeletionByTaintManager",
                                                             "Taint manager: deleting due to NoExecute taint")
    taint = next(t for t in get(cluster, "node", "node-1")["spec"]["taints"]
                 if (t["key"], t["effect"]) == (UNREACHABLE, "NoExecute"))
    waited = _seconds(disruption["lastTransitionTime"]) - _seconds(taint["timeAdded"])
    assert TOLERATION <= waited <= TOLERATION + 3, (taint, disruption)
    assert ready_condition(pod)["status"] == "False"
    eventually(lambda: "TaintManagerEviction: Marking for deletion Pod default/evicted" in event_messages(cluster, "evicted"),
               "the TaintManagerEviction event")
    assert "NodeNotReady: Node is not ready" in event_messages(cluster, "evicted")
    other = get(cluster, "pod", "stays")
    assert not other["metadata"].get("deletionTimestamp") and ready_condition(other)["status"] == "False"
    assert status_column(cluster, "stays") == "Running"


def check_node_back(cluster: Cluster) -> None:
    eventually(lambda: ready(cluster, "node", "node-1") == "True", "node-1 Ready again")
    eventually(lambda: not get(cluster, "node", "node-1")["spec"].get("taints"), "node-1's taints removed")


def check_adopted(cluster: Cluster, agent: NodeProcess, uid: str, before: dict[str, str]) -> None:
    """The pod that stayed reports Ready again from the same container: nothing restarted or doubled."""
    eventually(lambda: ready(cluster, "pod", "stays") == "True", "stays Ready again")
    pod = get(cluster, "pod", "stays")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert of_pod(containers(agent.run_dir), uid) == before
    assert [p["metadata"]["name"] for p in get(cluster, "pods")["items"]] == ["stays"]
    time.sleep(2)
    assert gone(cluster, "evicted")  # nothing owns it: it does not come back


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
