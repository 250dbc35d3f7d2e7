"""The scheduler against a real server, seen through kubectl: placement, Pending with upstream's
reasons, retry when a node joins, taints, and the events ``kubectl describe pod`` prints.

Nodes are plain API objects here (no node agent); the scheduler is the one `tinykube server` runs.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.slow

WAIT = 20.0  # seconds any single expectation may take to come true


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A control plane of this module's own (nodes are cluster-wide), with two Ready nodes.

    The shared ``ns`` fixture (conftest) makes its namespaces on this cluster: it overrides ``cluster``.
    """
    c = Cluster(tmp_path_factory.mktemp("scheduler") / "data")
    c.start()
    try:
        add_node(c, "n1", labels={"disk": "ssd"})
        add_node(c, "n2", labels={"disk": "hdd"})
        yield c
    finally:
        c.stop()


def add_node(cluster: Cluster, name: str, labels: dict[str, str] | None = None, memory: str = "4Gi",
             taints: list[dict[str, str]] | None = None) -> None:
    """Create a node, then report it Ready with room, through /status as a kubelet would."""
    node: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}
    if taints:
        node["spec"] = {"taints": taints}
    cluster.kubectl("create", "-f", "-", input=json.dumps(node))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    room = {"cpu": "2", "memory": memory, "pods": "110"}
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": now, "lastTransitionTime": now}
    status = {"status": {"capacity": room, "allocatable": room, "conditions": [ready]}}
    cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def create_pod(cluster: Cluster, ns: str, name: str, memory: str = "64Mi", **spec: Any) -> None:
    container = {"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "100m", "memory": memory}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [container], **spec}}
    cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(pod))


def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something truthy (tests may poll; the scheduler does not)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def unschedulable_because(cluster: Cluster, ns: str, pod: str, message: str) -> None:
    """Wait for PodScheduled=False/Unschedulable with ``message`` (the watches of pods and nodes are
    separate streams, so an earlier verdict may be written first and then corrected)."""
    def seen() -> bool:
        c = scheduled_condition(cluster, ns, pod)
        return (c.get("status"), c.get("reason"), c.get("message")) == ("False", "Unschedulable", message)
    eventually(seen, f"{pod} to be unschedulable with {message!r}; last {scheduled_condition(cluster, ns, pod)}")


def node_of(cluster: Cluster, ns: str, pod: str) -> str:
    return cluster.kubectl("-n", ns, "get", "pod", pod, "-o", "jsonpath={.spec.nodeName}").stdout


def scheduled_condition(cluster: Cluster, ns: str, pod: str) -> dict[str, Any]:
    out = cluster.kubectl("-n", ns, "get", "pod", pod, "-o", "json").stdout
    conditions = json.loads(out).get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "PodScheduled"), {})


def describe_shows(cluster: Cluster, ns: str, pod: str, pattern: str) -> str:
    """Wait until ``kubectl describe pod`` prints a line matching ``pattern`` (events are written
    off the scheduler's critical path); return that line."""
    def line() -> str:
        out = cluster.kubectl("-n", ns, "describe", "pod", pod).stdout
        return next((ln for ln in out.splitlines() if re.search(pattern, ln)), "")
    return str(eventually(line, f"describe pod {pod} to show {pattern!r}"))


def test_node_selector_picks_the_labelled_node_and_describe_shows_scheduled(cluster: Cluster, ns: str) -> None:
    create_pod(cluster, ns, "on-ssd", nodeSelector={"disk": "ssd"})
    assert eventually(lambda: node_of(cluster, ns, "on-ssd"), "a node") == "n1"
    assert scheduled_condition(cluster, ns, "on-ssd")["status"] == "True"
    line = describe_shows(cluster, ns, "on-ssd", r"\bScheduled\b")
    assert line.split()[:2] == ["Normal", "Scheduled"], line
    assert re.search(rf"default-scheduler\s+Successfully assigned {ns}/on-ssd to n1$", line), line


def test_too_big_pod_stays_pending_until_a_big_enough_node_joins(cluster: Cluster, ns: str) -> None:
    create_pod(cluster, ns, "huge", memory="100Gi")
    message = ("0/2 nodes are available: 2 Insufficient memory. "
               "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.")
    unschedulable_because(cluster, ns, "huge", message)
    line = describe_shows(cluster, ns, "huge", "FailedScheduling")
    assert line.split()[:2] == ["Warning", "FailedScheduling"] and line.endswith(f"default-scheduler  {message}"), line
    row = cluster.kubectl("-n", ns, "get", "pod", "huge").stdout.splitlines()[1]
    assert row.split()[:3] == ["huge", "0/1", "Pending"], row

    cluster.kubectl("label", "node", "n2", "retry=now")  # a relevant node change: retried, same verdict
    line = describe_shows(cluster, ns, "huge", r"FailedScheduling\s+\S+ \(x2 over")
    assert line.endswith(message), line
    try:
        add_node(cluster, "big", memory="200Gi")
        assert eventually(lambda: node_of(cluster, ns, "huge"), "the pod to be bound") == "big"
        describe_shows(cluster, ns, "huge", f"Successfully assigned {ns}/huge to big")
    finally:
        cluster.kubectl("delete", "node", "big", check=False)


def test_tainted_node_is_avoided_unless_tolerated(cluster: Cluster, ns: str) -> None:
    try:
        taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
        add_node(cluster, "gpu", labels={"role": "gpu"}, taints=[taint])
        create_pod(cluster, ns, "intolerant", nodeSelector={"role": "gpu"})
        unschedulable_because(cluster, ns, "intolerant", (
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
            "2 node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."))
        create_pod(cluster, ns, "tolerant", nodeSelector={"role": "gpu"},
                   tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
        assert eventually(lambda: node_of(cluster, ns, "tolerant"), "a node") == "gpu"
        assert node_of(cluster, ns, "intolerant") == ""
    finally:
        cluster.kubectl("delete", "node", "gpu", check=False)


def test_a_burst_fills_nodes_without_overcommitting(cluster: Cluster, ns: str) -> None:
    """Three 1.5Gi pods per 4Gi node fit only twice each: the cache counts what it just bound."""
    for i in range(5):
        create_pod(cluster, ns, f"burst-{i}", memory="1536Mi")
    def placed() -> dict[str, str] | None:
        nodes = {f"burst-{i}": node_of(cluster, ns, f"burst-{i}") for i in range(5)}
        return nodes if sum(1 for n in nodes.values() if n) == 4 else None
    nodes = eventually(placed, "four pods to be bound")
    assert sorted(n for n in nodes.values() if n) == ["n1", "n1", "n2", "n2"]
    pending = next(p for p, n in nodes.items() if not n)
    unschedulable_because(cluster, ns, pending, "0/2 nodes are available: 2 Insufficient memory. "
                          "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.")
    bound = next(p for p, n in nodes.items() if n)
    cluster.kubectl("-n", ns, "delete", "pod", bound, "--grace-period=0", "--force")  # no kubelet to wait for
    assert eventually(lambda: node_of(cluster, ns, pending), "the freed room to be used")
