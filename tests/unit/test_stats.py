"""Resource metrics: cgroup accounting from fixture trees, rates and windows, the node summary and
/metrics/resource, metrics.k8s.io objects and quantities, discovery, and the API request metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from tinykube.apiserver import discovery, resourcemetrics
from tinykube.apiserver.instrumentation import RequestMetrics, request_labels
from tinykube.node import stats
from tinykube.node.runtime import cgroups
from tinykube.node.runtime.cgroups import Hierarchy, StatSources, Usage

UID = "1f6c1b1e-0000-4000-8000-000000000001"
CID = f"{UID}-main-0"


def write(directory: Path, **files: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("__", ".")).write_text(text)


def v1_tree(tmp_path: Path) -> StatSources:
    """A hybrid host: v1 cpuacct and memory hierarchies, one besteffort pod with one container."""
    cpu, memory = tmp_path / "cpuacct", tmp_path / "memory"
    write(cpu, cpuacct__usage="5000000000\n")
    write(memory, memory__usage_in_bytes="900000\n", memory__stat="cache 1\ntotal_inactive_file 100000\n")
    pod = f"tinykube/besteffort/pod{UID}"
    write(cpu / pod, cpuacct__usage="3000\n")
    write(cpu / pod / CID, cpuacct__usage="2000\n")
    write(memory / pod, memory__usage_in_bytes="8192\n", memory__stat="inactive_file 0\ntotal_inactive_file 4096\n")
    write(memory / pod / CID, memory__usage_in_bytes="4096\n", memory__stat="total_inactive_file 8192\n")
    found = [Hierarchy(tmp_path / "unified", 2, frozenset()), Hierarchy(cpu, 1, frozenset({"cpuacct"})),
             Hierarchy(memory, 1, frozenset({"memory"}))]
    return cgroups.stat_sources(found)


def test_v1_readings_are_cumulative_cpu_and_working_set(tmp_path: Path) -> None:
    sources = v1_tree(tmp_path)
    assert sources.cpu.path.name == "cpuacct" and sources.memory.path.name == "memory"
    assert cgroups.pod_usages(sources) == {(UID, ""): Usage(3000, 8192, 4096), (UID, CID): Usage(2000, 4096, 0)}
    assert cgroups.node_usage(sources) == Usage(5_000_000_000, 900000, 800000)


def test_v2_readings_and_a_root_without_memory_current(tmp_path: Path) -> None:
    root = tmp_path / "unified"
    write(root, cpu__stat="usage_usec 7\nuser_usec 5\n")
    pod = root / f"tinykube/pod{UID}"  # guaranteed: right below /tinykube
    write(pod, cpu__stat="usage_usec 3\n", memory__current="10000\n", memory__stat="inactive_file 2000\nfile 3000\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemFree:         400 kB\nInactive(file):  100 kB\n")
    sources = cgroups.stat_sources([Hierarchy(root, 2, frozenset({"cpu", "memory"}))])
    assert cgroups.pod_usages(sources) == {(UID, ""): Usage(3000, 10000, 8000)}
    assert cgroups.node_usage(sources, meminfo) == Usage(7000, 600 * 1024, 500 * 1024)


def test_a_vanished_cgroup_reads_as_none(tmp_path: Path) -> None:
    assert cgroups.read_usage("/tinykube/gone", v1_tree(tmp_path)) is None


def test_working_set_never_goes_negative() -> None:
    assert cgroups.working_set(100, {"total_inactive_file": 500}, 1) == 0
    assert cgroups.working_set(100, {"inactive_file": 40, "total_inactive_file": 99}, 2) == 60


def sample(at: float, node_cpu: int, cgroups_: dict[tuple[str, str], Usage]) -> stats.Sample:
    return stats.Sample(1_700_000_000 + at, at, Usage(node_cpu, 2048, 1024), cgroups_)


POD = stats.PodTarget("default", "web", UID, (stats.ContainerTarget("main", CID, "2023-11-14T22:13:20.5Z"),
                                              stats.ContainerTarget("new", "new-0")))


def test_summary_rates_come_from_two_samples() -> None:
    before = sample(0.0, 0, {(UID, ""): Usage(0, 0, 0), (UID, CID): Usage(1_000_000_000, 0, 0)})
    after = sample(10.0, 20_000_000_000, {(UID, ""): Usage(5, 8192, 4096), (UID, CID): Usage(1_500_000_000, 8192, 4096),
                                          (UID, "new-0"): Usage(1, 1, 1)})
    body = stats.summary("node-1", [POD], before, after)
    assert body["window"] == "10s"
    assert body["node"]["cpu"] == {"time": "2023-11-14T22:13:30Z", "usageNanoCores": 2_000_000_000,
                                   "usageCoreNanoSeconds": 20_000_000_000}
    [pod] = body["pods"]
    assert pod["podRef"] == {"name": "web", "namespace": "default", "uid": UID}
    [main] = pod["containers"]  # "new" has one reading only: no rate yet
    assert main["cpu"]["usageNanoCores"] == 50_000_000 and main["memory"]["workingSetBytes"] == 4096
    assert main["startTime"] == "2023-11-14T22:13:20Z"


def test_a_pod_without_two_readings_is_left_out() -> None:
    only_now = sample(10.0, 0, {(UID, ""): Usage(1, 1, 1), (UID, CID): Usage(1, 1, 1)})
    assert stats.summary("node-1", [POD], sample(0.0, 0, {}), only_now)["pods"] == []


def test_cpu_rate_and_go_durations() -> None:
    assert stats.cpu_rate(100, 50, 1.0) == 0  # a reset counter is no negative usage
    assert stats.cpu_rate(0, 10, 0.0) == 0
    assert stats.cpu_rate(0, 3_000_000_000, 2.0) == 1_500_000_000
    cases = {10.0: "10s", 10.0024: "10.002s", 1.5: "1.5s", 0.25: "250ms", 0.0: "0s", 75.0: "1m15s", 3600.0: "1h0m0s"}
    assert {s: stats.go_duration(s) for s in cases} == cases


async def test_the_first_pair_waits_one_first_window() -> None:
    readings: list[float] = []

    def read() -> stats.Sample:
        readings.append(time.monotonic())
        return sample(readings[-1], 0, {})

    sampler = stats.Sampler(read, interval=3600, first_window=0.05)
    first, second = await sampler.pair()
    assert len(readings) == 2 and second.monotonic - first.monotonic >= 0.05
    assert await sampler.pair() == (first, second)  # no new reading until the next round
    task = asyncio.create_task(sampler.run())
    await asyncio.sleep(0.01)
    task.cancel()
    assert (await sampler.pair())[0] is second and len(readings) == 3


def test_resource_metrics_text_has_the_kubelet_names() -> None:
    now = sample(10.0, 2_500_000_000, {(UID, ""): Usage(4_000_000_000, 8192, 4096), (UID, CID): Usage(1, 2, 3)})
    text = stats.resource_metrics([POD], now).decode()
    ts = "1700000010000"
    assert f"node_cpu_usage_seconds_total 2.5 {ts}\n" in text
    assert f'container_memory_working_set_bytes{{container="main",namespace="default",pod="web"}} 3.0 {ts}\n' in text
    assert f'pod_cpu_usage_seconds_total{{namespace="default",pod="web"}} 4.0 {ts}\n' in text
    assert 'container_start_time_seconds{container="main",namespace="default",pod="web"} 1.7000000005e+09\n' in text
    assert "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes\n" in text
    assert "# TYPE container_cpu_usage_seconds_total counter\n" in text and "resource_scrape_error 0.0\n" in text
    assert "new-0" not in text and '"new"' not in text  # no reading, no sample


def test_quantities_as_metrics_server_formats_them() -> None:
    assert [resourcemetrics.cpu_quantity(n) for n in (1523417, 2_000_000, 0, 12_345_000)] == ["1523417n", "2m", "0", "12345u"]
    sizes = (7436 * 1024, 1024 * 1024, 0, 1536, 15000)
    assert [resourcemetrics.memory_quantity(n) for n in sizes] == ["7436Ki", "1Mi", "0", "1536", "15k"]


def test_pod_metrics_from_summaries_match_by_uid() -> None:
    entry = {"podRef": {"name": "web", "namespace": "default", "uid": UID},
             "containers": [{"name": "main", "cpu": {"time": "T", "usageNanoCores": 1523417},
                             "memory": {"workingSetBytes": 7436 * 1024}}],
             "cpu": {"time": "T", "usageNanoCores": 1}, "memory": {"workingSetBytes": 1}}
    summaries = {"node-1": {"node": {}, "pods": [entry], "window": "10.002s"}}
    pod = {"metadata": {"name": "web", "namespace": "default", "uid": UID, "labels": {"app": "web"}}}
    recreated = {"metadata": {"name": "web", "namespace": "default", "uid": "other"}}
    [item] = resourcemetrics.pods_with_metrics([pod, recreated], summaries, "NOW")
    assert item == {"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "NOW", "labels": {"app": "web"}},
                    "timestamp": "T", "window": "10.002s",
                    "containers": [{"name": "main", "usage": {"cpu": "1523417n", "memory": "7436Ki"}}]}


def test_node_metrics() -> None:
    summary = {"node": {"cpu": {"time": "T", "usageNanoCores": 250_000_000}, "memory": {"workingSetBytes": 2 ** 30}},
               "pods": [], "window": "1.001s"}
    node = resourcemetrics.node_metrics({"metadata": {"name": "node-1"}}, summary, "NOW")
    assert node["kind"] == "NodeMetrics" and node["metadata"] == {"name": "node-1", "creationTimestamp": "NOW"}
    assert (node["usage"], node["window"], node["timestamp"]) == ({"cpu": "250m", "memory": "1Gi"}, "1.001s", "T")


def test_discovery_lists_the_metrics_group() -> None:
    groups = orjson.loads(discovery.aggregated(False, "v2"))["items"]
    metrics = next(g for g in groups if g["metadata"].get("name") == "metrics.k8s.io")
    resources = {r["resource"]: r for r in metrics["versions"][0]["resources"]}
    assert resources["pods"]["scope"] == "Namespaced" and resources["nodes"]["scope"] == "Cluster"
    assert resources["pods"]["responseKind"]["kind"] == "PodMetrics" and resources["nodes"]["verbs"] == ["get", "list"]
    legacy = orjson.loads(discovery.legacy_apis())["groups"]
    assert {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"} in [g["preferredVersion"] for g in legacy]
    listed = orjson.loads(discovery.resource_list("metrics.k8s.io/v1beta1") or b"{}")
    assert [(r["name"], r["kind"], r["singularName"]) for r in listed["resources"]] == [
        ("nodes", "NodeMetrics", ""), ("pods", "PodMetrics", "")]


@pytest.mark.parametrize(("method", "path", "query", "content_type", "expected"), [
    ("GET", "/api/v1/namespaces/default/pods", {}, "", ("LIST", "", "v1", "pods", "", "namespace")),
    ("GET", "/api/v1/pods", {"watch": "true"}, "", ("WATCH", "", "v1", "pods", "", "cluster")),
    ("GET", "/api/v1/namespaces/default/pods/web", {}, "", ("GET", "", "v1", "pods", "", "resource")),
    ("POST", "/api/v1/namespaces/default/pods", {}, "", ("POST", "", "v1", "pods", "", "resource")),
    ("PATCH", "/api/v1/namespaces/d/pods/web", {}, "application/apply-patch+yaml", ("APPLY", "", "v1", "pods", "", "resource")),
    ("GET", "/api/v1/namespaces/d/pods/web/log", {}, "", ("CONNECT", "", "v1", "pods", "log", "resource")),
    ("PUT", "/api/v1/namespaces/d/finalize", {}, "", ("PUT", "", "v1", "namespaces", "finalize", "resource")),
    ("GET", "/apis/metrics.k8s.io/v1beta1/nodes", {}, "", ("LIST", "metrics.k8s.io", "v1beta1", "nodes", "", "cluster")),
])
def test_request_labels(method: str, path: str, query: dict[str, str], content_type: str,
                        expected: tuple[str, ...]) -> None:
    labels = request_labels(method, path, query, [], content_type)
    assert labels is not None
    assert tuple(labels[k] for k in ("verb", "group", "version", "resource", "subresource", "scope")) == expected
    assert (labels["component"], labels["dry_run"]) == ("apiserver", "")


def test_uncounted_paths_health_checks_and_dry_run() -> None:
    assert request_labels("GET", "/apis", {}, [], "") is None
    assert request_labels("GET", "/api/v1/nonsense", {}, [], "") is None
    health = request_labels("GET", "/readyz", {}, [], "")
    assert health is not None and (health["subresource"], health["component"], health["verb"]) == ("/readyz", "", "GET")
    created = request_labels("POST", "/api/v1/namespaces/d/configmaps", {}, ["All", "All"], "")
    assert created is not None and created["dry_run"] == "All"


def test_request_metrics_exposition() -> None:
    metrics = RequestMetrics()
    labels = request_labels("GET", "/api/v1/namespaces/default/pods", {}, [], "")
    assert labels is not None
    metrics.observe(labels, 200, 0.03)
    text = metrics.exposition().decode()
    assert ('apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",'
            'scope="namespace",subresource="",verb="LIST",version="v1"} 1.0') in text
    assert 'apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",le="0.05"' in text
    assert "_created" not in text
