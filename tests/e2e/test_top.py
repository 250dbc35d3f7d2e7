"""`kubectl top` against real containers: metrics.k8s.io from the node's cgroups, and the API's /metrics."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster, eventually
from tests.e2e.nodes import node_cluster_fixture
from tests.registry import LocalRegistry, requires_registry

pytestmark = [pytest.mark.slow, requires_registry]

WAIT = 30.0  # seconds from a pod's start until `kubectl top` must show it
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[Cluster]:
    yield from node_cluster_fixture(tmp_path_factory.mktemp("top"), registry)


def start_pod(node: Cluster, name: str, script: str, restart: str = "Always") -> float:
    """Create a busybox pod running ``script``; returns when it was created (monotonic)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": "top", "app": name}},
           "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}}
    node.kubectl("apply", "-f", "-", input=json.dumps(pod))
    return time.monotonic()


def rows(node: Cluster, *args: str) -> dict[str, list[str]]:
    """``kubectl top ARGS`` as {first column: the other columns}; {} while there are no metrics."""
    result = node.kubectl("top", *args, "--no-headers", check=False)
    return {cols[0]: cols[1:] for cols in (line.split() for line in result.stdout.splitlines()) if cols}


def mib(text: str) -> float:
    assert text.endswith("Mi"), text
    return float(text[:-2])


def millicores(text: str) -> int:
    assert text.endswith("m"), text
    return int(text[:-1])


def test_top_pod_shows_memory_of_a_pod_holding_100_mib(node: Cluster) -> None:
    # dd's one 100 MiB block stays resident while the pipe to sleep (which never reads) is full
    started = start_pod(node, "hog", "dd if=/dev/zero bs=100M count=1 | sleep 3600")
    found = eventually(lambda: rows(node, "pod", "hog").get("hog"), "metrics of hog", started + WAIT - time.monotonic(), 0.5)
    cpu, memory = found
    assert millicores(cpu) < 500 and 95 <= mib(memory) <= 115, found
    containers = eventually(lambda: rows(node, "pod", "--containers", "-l", "app=hog").get("hog"), "containers", started + WAIT - time.monotonic(), 0.5)
    assert containers[0] == "main" and 95 <= mib(containers[2]) <= 115, containers


def test_top_pod_shows_cpu_of_a_busy_pod(node: Cluster) -> None:
    started = start_pod(node, "burner", "while :; do :; done")
    cpu, memory = eventually(lambda: rows(node, "pod", "-l", "test=top").get("burner"), "metrics of burner", started + WAIT - time.monotonic(), 0.5)
    assert millicores(cpu) >= 200 and mib(memory) < 10
    listed = json.loads(node.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/pods").stdout)
    [item] = [i for i in listed["items"] if i["metadata"]["name"] == "burner"]
    assert item["kind"] == "PodMetrics" and item["metadata"]["labels"]["app"] == "burner"
    assert item["window"].endswith("s") and item["containers"][0]["usage"]["cpu"].endswith(("n", "u", "m"))


def test_a_pod_without_metrics_is_not_found(node: Cluster) -> None:
    start_pod(node, "done", "true", restart="Never")
    node.kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/done", "--timeout=60s")
    result = node.kubectl("top", "pod", "done", check=False)
    assert result.returncode != 0
    assert 'podmetrics.metrics.k8s.io "default/done" not found' in result.stderr, result.stderr
    assert "done" not in rows(node, "pod")


def test_top_node(node: Cluster) -> None:
    found = eventually(lambda: rows(node, "node").get("node-1"), "metrics of node-1", WAIT, 0.5)
    cpu, cpu_percent, memory, memory_percent = found
    assert millicores(cpu) > 0 and cpu_percent.endswith("%") and mib(memory) > 10 and memory_percent.endswith("%")


def test_api_metrics_count_requests_and_need_credentials(node: Cluster) -> None:
    node.kubectl("get", "pods")
    text = node.kubectl("get", "--raw", "/metrics").stdout
    assert "# TYPE apiserver_request_total counter" in text
    assert 'resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"' in text
    assert "apiserver_request_duration_seconds_bucket{" in text
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{node.url}/metrics", context=ctx, timeout=5)
    assert refused.value.code == 401
