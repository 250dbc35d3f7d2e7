"""gRPC probes and shareProcessNamespace on real containers: `tinykube up`, the real kubectl, runc, a local registry.

The gRPC server is a real one: grpcio (Debian's python3-grpcio) in the ``grpc-health`` test image
of ``hack/build-test-images``.  Traffic goes only to 127.0.0.1 and to pod IPs tinykube made.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, eventually
from tests.e2e.nodes import node_cluster_fixture
from tests.registry import LocalRegistry, requires_registry
from tinykube.node.runtime import pidns

pytestmark = [pytest.mark.slow, requires_registry]

GRPC_IMAGE = "grpc-health:1.0"
PORT = 5000

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[Cluster]:
    yield from node_cluster_fixture(tmp_path_factory.mktemp("node"), registry)


def pod(node: Cluster, name: str) -> Obj:
    return json.loads(node.kubectl("get", "pod", name, "-o", "json").stdout)


def apply(node: Cluster, doc: Obj) -> None:
    node.kubectl("apply", "-f", "-", input=json.dumps(doc))


def events(node: Cluster, name: str) -> list[Obj]:
    listed = node.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    return list(json.loads(listed)["items"])


def grpc_pod(name: str, services: list[str], **probes: Obj) -> Obj:
    """One grpc-health container on :data:`PORT` (``services``: ``NAME=STATUS``) with ``probes``."""
    container = {"name": "health", "image": GRPC_IMAGE, "args": [str(PORT), *services],
                 "ports": [{"containerPort": PORT, "name": "grpc"}], **probes}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}}


def busybox_pair(name: str, share: bool) -> Obj:
    """Two busybox containers, ``a`` and ``b``, each sleeping with a recognisable argument."""
    containers = [{"name": c, "image": "busybox:1.36", "command": ["sleep", arg]} for c, arg in (("a", "3601"),
                                                                                                  ("b", "3602"))]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "shareProcessNamespace": share, "containers": containers}}


def processes(node: Cluster, name: str, container: str) -> dict[int, str]:
    """PID → command line, as container ``container``'s busybox ``ps`` sees them, itself left out ({} while
    exec fails)."""
    out = node.kubectl("exec", name, "-c", container, "--", "ps", "-o", "pid,args", check=False).stdout
    rows = (line.strip().split(None, 1) for line in out.splitlines()[1:] if line.strip())
    return {int(row[0]): row[1] for row in rows if len(row) == 2 and row[1] != "ps -o pid,args"}


def test_grpc_readiness_probe_makes_the_pod_ready(node: Cluster) -> None:
    probe = {"grpc": {"port": PORT, "service": "ready"}, "periodSeconds": 1}
    apply(node, grpc_pod("grpc-ready", ["ready=SERVING"], readinessProbe=probe))
    node.kubectl("wait", "--for=condition=Ready", "pod/grpc-ready", "--timeout=90s")
    status = pod(node, "grpc-ready")["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0
    logs = node.kubectl("logs", "grpc-ready").stdout
    assert "serving grpc.health.v1.Health on :5000" in logs, logs
    node.kubectl("delete", "pod", "grpc-ready")


def test_grpc_liveness_probe_restarts_a_not_serving_container(node: Cluster) -> None:
    probe = {"grpc": {"port": PORT, "service": "sick"}, "initialDelaySeconds": 2, "periodSeconds": 1,
             "failureThreshold": 2}
    apply(node, grpc_pod("grpc-sick", ["sick=NOT_SERVING"], livenessProbe=probe))
    eventually(lambda: pod(node, "grpc-sick")["status"]["containerStatuses"][0]["restartCount"] >= 1,
               "a liveness restart", timeout=90)
    seen = events(node, "grpc-sick")
    unhealthy = [e for e in seen if e["reason"] == "Unhealthy"]
    assert unhealthy and unhealthy[0]["type"] == "Warning", seen
    assert 'Liveness probe failed: service unhealthy (responded with "NOT_SERVING")' in {e["message"] for e in unhealthy}
    killing = {e["message"] for e in seen if e["reason"] == "Killing"}
    assert "Container health failed liveness probe, will be restarted" in killing, killing
    node.kubectl("delete", "pod", "grpc-sick")


def test_shared_process_namespace_shows_the_other_containers_processes(node: Cluster) -> None:
    apply(node, busybox_pair("shared", share=True))
    apply(node, busybox_pair("apart", share=False))
    node.kubectl("wait", "--for=condition=Ready", "pod/shared", "pod/apart", "--timeout=60s")

    shared = processes(node, "shared", "b")
    assert shared.get(1) == "catatonit -P", shared  # the infra, as the pause process upstream
    assert "sleep 3601" in shared.values() and "sleep 3602" in shared.values(), shared
    apart = processes(node, "apart", "b")
    assert apart.get(1) == "sleep 3602" and "sleep 3601" not in apart.values(), apart

    members = pidns.members(sandbox_dir(node, "shared") / "pid")  # host PIDs: the infra and both sleeps
    node.stop(signal.SIGKILL)  # the infra, like conmon, outlives the agent; the new one adopts the pod
    node.start()
    assert pidns.members(sandbox_dir(node, "shared") / "pid") == members
    eventually(lambda: processes(node, "shared", "b") == shared, "the same processes after the restart")

    sibling = next(pid for pid, args in shared.items() if args == "sleep 3601")
    node.kubectl("exec", "shared", "-c", "b", "--", "kill", str(sibling))  # b may signal a: one namespace
    eventually(lambda: restarts(node, "shared") == {"a": 1, "b": 0}, "a restarted, b untouched")
    assert "sleep 3601" in processes(node, "shared", "b").values()
    node.kubectl("delete", "pod", "shared", "apart")
    eventually(lambda: not [pid for pid in members if alive(pid)], "the infra gone with the sandbox")


def sandbox_dir(node: Cluster, name: str) -> Path:
    run_dir = Path(node.extra_args[node.extra_args.index("--run-dir") + 1])
    return run_dir / "sandboxes" / pod(node, name)["metadata"]["uid"]


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for the host's init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def restarts(node: Cluster, name: str) -> dict[str, int]:
    return {c["name"]: c["restartCount"] for c in pod(node, name)["status"]["containerStatuses"]
            if "running" in c["state"]}
