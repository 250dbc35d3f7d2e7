"""The eviction manager: du-like measurement, local storage limits with the kubelet's messages, node
pressure with injected observations (the machine is never starved), the kubelet's ranking, and the
pressure conditions on the Node (pkg/kubelet/eviction, nodestatus/setters.go)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tinykube.node import eviction as ev
from tinykube.node import launch, podstatus
from tinykube.node.eviction import (
    Candidate, ContainerUsage, Eviction, EvictionConfig, EvictionManager, Observations, PodUsage, Thresholds,
)
from tinykube.node.registration import Registration
from tinykube.node.runtime import cgroups
from tinykube.node.runtime.cgroups import Hierarchy

MI = 1 << 20
GI = 1 << 30


def pod(name: str, *containers: dict[str, Any], volumes: list[dict[str, Any]] | None = None,
        priority: int | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers) or [container("main")], "volumes": volumes or []}
    if priority is not None:
        spec["priority"] = priority
    return {"kind": "Pod", "apiVersion": "v1", "spec": spec, "status": {"phase": "Running"},
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "annotations": annotations or {}}}


def container(name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1.36", "resources": {"requests": requests or {}, "limits": limits or {}}}


def usage(memory: int | None = None, volumes: dict[str, int] | None = None, **containers: ContainerUsage) -> PodUsage:
    return PodUsage(containers or {"main": ContainerUsage()}, volumes or {}, memory)


# --- measurement --------------------------------------------------------------------------------

def test_disk_usage_counts_allocated_blocks_hard_links_once_and_not_symlink_targets(tmp_path: Path) -> None:
    root = tmp_path / "upper"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "data").write_bytes(b"x" * (256 * 1024))
    os.link(root / "dir" / "data", root / "twin")
    with open(root / "sparse", "wb") as f:
        f.truncate(64 * MI)  # a hole takes no blocks
    (root / "link").symlink_to(tmp_path)
    (tmp_path / "outside").write_bytes(b"y" * MI)  # only reachable through the symlink
    used = ev.disk_usage(root)
    assert 256 * 1024 <= used < 256 * 1024 + 64 * 1024  # the file once, plus a few directory blocks
    assert ev.disk_usage(tmp_path / "missing") == 0
    assert ev.disk_usage(root / "dir" / "data") == os.stat(root / "dir" / "data").st_blocks * 512


def test_local_volumes_are_disk_backed_empty_dirs_and_config_maps() -> None:
    p = pod("v", volumes=[{"name": "scratch", "emptyDir": {}}, {"name": "ram", "emptyDir": {"medium": "Memory"}},
                          {"name": "conf", "configMap": {"name": "c"}}, {"name": "host", "hostPath": {"path": "/x"}}])
    assert ev.local_volumes(p) == [("emptyDir", "scratch"), ("configMap", "conf")]


def write(directory: Path, **files: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("__", ".")).write_text(text)


def test_meter_reads_layers_logs_volumes_memory_and_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = pod("m", volumes=[{"name": "scratch", "emptyDir": {}}])
    uid, cid = "uid-m", "uid-m-main-0"
    monkeypatch.setattr(launch, "LOG_ROOT", str(tmp_path / "logs"))
    (tmp_path / "layers" / cid / "upper").mkdir(parents=True)
    (tmp_path / "layers" / cid / "upper" / "big").write_bytes(b"z" * MI)
    write(Path(launch.pod_log_dir(p)) / "main", **{"0__log": "x" * 8192})
    write(tmp_path / "vol" / uid / "emptyDir" / "scratch", data="y" * (3 * 8192))
    memory = tmp_path / "memory"
    write(memory, memory__usage_in_bytes=f"{3 * GI}\n", memory__stat=f"total_inactive_file {GI}\n")
    write(memory / f"tinykube/besteffort/pod{uid}", memory__usage_in_bytes="9000\n", memory__stat="total_inactive_file 1000\n")
    write(memory / f"tinykube/besteffort/pod{uid}" / cid, memory__usage_in_bytes="5000\n", memory__stat="\n")
    cpu = tmp_path / "cpu"
    for path in ("", f"tinykube/besteffort/pod{uid}", f"tinykube/besteffort/pod{uid}/{cid}"):
        write(cpu / path, cpuacct__usage="1\n")
    sources = cgroups.stat_sources([Hierarchy(cpu, 1, frozenset({"cpuacct"})), Hierarchy(memory, 1, frozenset({"memory"}))])
    meter = ev.Meter(8 * GI, str(tmp_path), tmp_path / "layers",
                     lambda u, kind, name: tmp_path / "vol" / u / kind / name, sources)

    found = meter.measure([Candidate(p, {"main": cid})])[uid]
    main = found.containers["main"]
    assert MI <= main.rootfs < MI + 16 * 1024 and 8192 <= main.logs < 32 * 1024 and main.memory == 5000
    assert 3 * 8192 <= found.volumes["scratch"] < 6 * 8192 and found.memory == 8000
    assert found.disk == main.rootfs + main.logs + found.volumes["scratch"]
    obs = meter.observe()
    assert (obs.memory_available, obs.memory_capacity) == (6 * GI, 8 * GI)  # capacity less the working set
    fs = os.statvfs(tmp_path)
    assert obs.nodefs_capacity == fs.f_blocks * fs.f_frsize and 0 < obs.nodefs_available <= obs.nodefs_capacity


# --- local storage limits -----------------------------------------------------------------------

def test_empty_dir_over_its_size_limit() -> None:
    p = pod("e", volumes=[{"name": "cache", "emptyDir": {"sizeLimit": "5Mi"}}])
    assert ev.storage_violation(p, usage(volumes={"cache": 5 * MI})) is None  # at the limit is fine
    assert ev.storage_violation(p, usage(volumes={"cache": 5 * MI + 4096})) == \
        'Usage of EmptyDir volume "cache" exceeds the limit "5Mi". '


def test_a_single_container_over_its_limit_is_the_pods_total_that_upstream_reports() -> None:
    p = pod("a", container("main", limits={"ephemeral-storage": "10Mi"}))
    assert ev.storage_violation(p, usage(main=ContainerUsage(rootfs=9 * MI, logs=MI))) is None
    assert ev.storage_violation(p, usage(main=ContainerUsage(rootfs=30 * MI))) == \
        "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. "


def test_volumes_count_towards_the_pod_total() -> None:
    p = pod("a", container("main", limits={"ephemeral-storage": "10Mi"}), volumes=[{"name": "s", "emptyDir": {}}])
    assert ev.storage_violation(p, usage(volumes={"s": 8 * MI}, main=ContainerUsage(rootfs=3 * MI))) == \
        "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. "


def test_one_container_over_its_own_limit_within_the_pods_total() -> None:
    p = pod("c", container("small", limits={"ephemeral-storage": "10Mi"}),
            container("big", limits={"ephemeral-storage": "100Mi"}))
    found = usage(small=ContainerUsage(rootfs=15 * MI, logs=MI), big=ContainerUsage())
    assert ev.storage_violation(p, found) == 'Container small exceeded its local ephemeral storage limit "10Mi". '


def test_the_empty_dir_limit_is_checked_first() -> None:
    p = pod("f", container("main", limits={"ephemeral-storage": "1Mi"}),
            volumes=[{"name": "cache", "emptyDir": {"sizeLimit": "1Mi"}}])
    assert ev.storage_violation(p, usage(volumes={"cache": 2 * MI})).startswith("Usage of EmptyDir volume")


@pytest.mark.parametrize(("limits", "expected"), [
    (["10Mi", "5Mi"], (15 * MI, "15Mi")), (["10M"], (10_000_000, "10M")), (["1Gi", "500M"], (GI + 500_000_000, "1573741824")),
    ([], None)])
def test_pod_storage_limit_sums_in_the_first_limits_format(limits: list[str], expected: Any) -> None:
    p = pod("l", *[container(f"c{i}", limits={"ephemeral-storage": q}) for i, q in enumerate(limits)])
    assert ev.pod_storage_limit(p) == expected


# --- node pressure: thresholds, ranking, messages ------------------------------------------------

OBS = Observations(memory_available=GI, memory_capacity=8 * GI, nodefs_available=50 * GI, nodefs_capacity=100 * GI)


def test_thresholds_met_memory_first() -> None:
    assert ev.thresholds_met(OBS, Thresholds()) == []
    starved = Observations(50 * MI, 8 * GI, 5 * GI, 100 * GI)
    assert ev.thresholds_met(starved, Thresholds()) == [ev.MEMORY, ev.NODEFS]
    assert ev.threshold_bytes(ev.NODEFS, starved, Thresholds()) == 10737418400  # 10% as float32: 160 bytes more
    assert ev.thresholds_met(OBS, Thresholds(memory_available=2 * GI)) == [ev.MEMORY]  # a test raises the bar


def test_memory_ranking_best_effort_first_then_burstable_over_request_then_priority_then_excess() -> None:
    within = pod("within", container("main", requests={"memory": "100Mi"}))
    over = pod("over", container("main", requests={"memory": "10Mi"}))
    best_effort = pod("best-effort")
    important = pod("important", priority=1000)
    no_stats = pod("no-stats", container("main", requests={"memory": "1Gi"}))
    stats = {"uid-within": usage(memory=50 * MI), "uid-over": usage(memory=200 * MI),
             "uid-best-effort": usage(memory=20 * MI), "uid-important": usage(memory=900 * MI)}
    ranked = ev.rank([within, important, over, best_effort, no_stats], stats, ev.MEMORY)
    assert [p["metadata"]["name"] for p in ranked] == ["no-stats", "over", "best-effort", "important", "within"]


def test_disk_ranking_uses_ephemeral_storage_over_its_request() -> None:
    small = pod("small")
    large = pod("large")
    reserved = pod("reserved", container("main", requests={"ephemeral-storage": "1Gi"}))
    stats = {"uid-small": usage(main=ContainerUsage(rootfs=MI)), "uid-large": usage(volumes={"v": 500 * MI}),
             "uid-reserved": usage(main=ContainerUsage(rootfs=900 * MI))}
    ranked = ev.rank([small, reserved, large], stats, ev.NODEFS)
    assert [p["metadata"]["name"] for p in ranked] == ["large", "small", "reserved"]


def test_pressure_message_names_the_containers_over_their_requests() -> None:
    p = pod("hog", container("app", requests={"memory": "64Mi"}), container("side", requests={"memory": "1Gi"}))
    found = usage(memory=300 * MI, app=ContainerUsage(memory=200 * MI), side=ContainerUsage(memory=100 * MI))
    assert ev.pressure_message(ev.MEMORY, p, found, 100 * MI, 80 * MI + 12345) == (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 83898425. "
        "Container app was using 200Mi, request is 64Mi, has larger consumption of memory. ")
    disk = usage(main=ContainerUsage(rootfs=3 * MI, logs=MI))
    assert ev.pressure_message(ev.NODEFS, pod("d"), disk, 10 * GI, 5 * GI) == (
        "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi. "
        "Container main was using 4Mi, request is 0, has larger consumption of ephemeral-storage. ")


def test_critical_pods_are_static_mirror_or_system_priority() -> None:
    assert not ev.is_critical(pod("plain"))
    assert ev.is_critical(pod("static", annotations={"kubernetes.io/config.source": "file"}))
    assert ev.is_critical(pod("mirror", annotations={"kubernetes.io/config.mirror": "abc"}))
    assert ev.is_critical(pod("system", priority=2_000_000_000))


def test_evicted_status_keeps_its_reason_through_later_status_writes() -> None:
    condition = ev.disruption_condition("The node was low on resource: memory. ", "2025-01-01T00:00:00Z")
    p = pod("gone")
    p["status"] = ev.evicted_status({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
                                    Eviction("The node was low on resource: memory. ", condition=condition))
    assert (p["status"]["phase"], p["status"]["reason"]) == ("Failed", "Evicted")
    observed = podstatus.Observed("main", "busybox:1.36", "terminated", "Error", exit_code=137)
    status = podstatus.pod_status(p, podstatus.PodObservation([observed], sandbox_ready=True), "2025-01-01T00:00:01Z")
    assert (status["phase"], status["reason"], status["message"]) == \
        ("Failed", "Evicted", "The node was low on resource: memory. ")
    types = [c["type"] for c in status["conditions"]]
    assert types[0] == "DisruptionTarget" and types.count("DisruptionTarget") == 1
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodFailed")


# --- the manager, with a fake host ------------------------------------------------------------

class FakeHost:
    def __init__(self, obs: Observations, stats: dict[str, PodUsage]):
        self.obs = obs
        self.stats = stats

    def observe(self) -> Observations:
        return self.obs

    def measure(self, candidates: Sequence[Candidate]) -> dict[str, PodUsage]:
        return {c.pod["metadata"]["uid"]: self.stats[c.pod["metadata"]["uid"]]
                for c in candidates if c.pod["metadata"]["uid"] in self.stats}


class FakeNode:
    def __init__(self) -> None:
        self.pressure: frozenset[str] = frozenset()

    async def set_pressure(self, pressure: frozenset[str]) -> list[str]:
        changed, self.pressure = sorted(self.pressure ^ pressure), pressure
        return [f"{kind}={kind in pressure}" for kind in changed]


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def record(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((ref["name"], type_, reason, message))


class Harness:
    def __init__(self, pods: list[dict[str, Any]], host: FakeHost, thresholds: Thresholds = Thresholds()):
        self.pods, self.host, self.node, self.recorder = pods, host, FakeNode(), FakeRecorder()
        self.evicted: list[tuple[str, Eviction]] = []
        self.now = 1000.0
        config = EvictionConfig(interval=0.01, transition_period=300.0, thresholds=thresholds)
        self.manager = EvictionManager(config, host, self.candidates, self.evict, self.node, self.recorder,  # type: ignore[arg-type]
                                       "node-1", clock=lambda: self.now)

    def candidates(self) -> list[Candidate]:
        gone = {uid for uid, _ in self.evicted}
        return [Candidate(p, {"main": "x"}) for p in self.pods if p["metadata"]["uid"] not in gone]

    async def evict(self, uid: str, eviction: Eviction) -> None:
        self.evicted.append((uid, eviction))


async def test_storage_violators_are_all_evicted_in_one_pass_without_a_condition() -> None:
    limited = [pod(f"p{i}", container("main", limits={"ephemeral-storage": "10Mi"})) for i in range(3)]
    critical = pod("crit", container("main", limits={"ephemeral-storage": "10Mi"}), priority=2_000_000_000)
    big = usage(main=ContainerUsage(rootfs=30 * MI))
    h = Harness([*limited, critical], FakeHost(OBS, {"uid-p0": big, "uid-p1": usage(), "uid-p2": big, "uid-crit": big}))
    assert await h.manager.synchronize() == ["uid-p0", "uid-p2"]
    assert all(e.condition is None and e.grace_seconds == 1 for _, e in h.evicted)
    assert ("p0", "Warning", "Evicted", "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. ") \
        in h.recorder.events
    assert h.node.pressure == frozenset()


async def test_memory_pressure_sets_the_condition_and_evicts_one_pod_per_pass() -> None:
    burstable = pod("burstable", container("main", requests={"memory": "1Gi"}))
    best_effort = [pod("be-small"), pod("be-large")]
    stats = {"uid-burstable": usage(memory=512 * MI), "uid-be-small": usage(memory=10 * MI),
             "uid-be-large": usage(memory=300 * MI, main=ContainerUsage(memory=300 * MI))}
    # nothing is starved: a threshold above the capacity makes every pass see pressure
    h = Harness([burstable, *best_effort], FakeHost(OBS, stats), Thresholds(memory_available=9 * GI))
    assert await h.manager.synchronize() == ["uid-be-large"]
    assert h.node.pressure == {"MemoryPressure"}
    uid, eviction = h.evicted[0]
    assert eviction.message == ("The node was low on resource: memory. Threshold quantity: 9Gi, available: 1Gi. "
                                "Container main was using 300Mi, request is 0, has larger consumption of memory. ")
    assert eviction.condition is not None and eviction.condition["type"] == "DisruptionTarget"
    assert eviction.condition["reason"] == "TerminationByKubelet" and eviction.grace_seconds == 1
    assert ("node-1", "Normal", "MemoryPressure=True", "Node node-1 status is now: MemoryPressure=True") in h.recorder.events
    assert ("node-1", "Warning", "EvictionThresholdMet", "Attempting to reclaim memory") in h.recorder.events
    assert await h.manager.synchronize() == ["uid-be-small"]
    assert await h.manager.synchronize() == ["uid-burstable"]  # within its request: last


async def test_pressure_outlives_its_last_sighting_by_the_transition_period() -> None:
    h = Harness([pod("critical", priority=2_000_000_000)], FakeHost(Observations(GI, 8 * GI, GI, 100 * GI), {}))
    assert await h.manager.synchronize() == []  # a critical pod is never evicted
    assert h.node.pressure == {"DiskPressure"}
    h.host.obs = OBS
    h.now += 299
    await h.manager.synchronize()
    assert h.node.pressure == {"DiskPressure"}
    h.now += 2
    await h.manager.synchronize()
    assert h.node.pressure == frozenset()
    assert [e[2] for e in h.recorder.events if e[0] == "node-1"] == \
        ["DiskPressure=True", "EvictionThresholdMet", "DiskPressure=False"]


async def test_run_survives_a_failed_pass() -> None:
    class Broken(FakeHost):
        def observe(self) -> Observations:
            raise OSError("statvfs failed")
    h = Harness([], Broken(OBS, {}))
    task = asyncio.create_task(h.manager.run())
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- the Node's conditions ----------------------------------------------------------------------

class FakeClient:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(body)
        return {"status": body["status"]}


async def test_registration_posts_pressure_changes_only_and_keeps_other_transition_times() -> None:
    client = FakeClient()
    registration = Registration(client, "node-1", None, 10250)  # type: ignore[arg-type]
    old = "2024-01-01T00:00:00Z"
    registration.node = {"status": {"conditions": [
        {"type": t, "status": s, "lastTransitionTime": old, "lastHeartbeatTime": old}
        for t, s in (("MemoryPressure", "False"), ("DiskPressure", "False"), ("PIDPressure", "False"), ("Ready", "True"))]}}
    assert await registration.set_pressure(frozenset({"DiskPressure"})) == ["NodeHasDiskPressure"]
    assert await registration.set_pressure(frozenset({"DiskPressure"})) == []
    assert len(client.patches) == 1
    conds = {c["type"]: c for c in client.patches[0]["status"]["conditions"]}
    assert list(conds) == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    disk = conds["DiskPressure"]
    assert (disk["status"], disk["reason"], disk["message"]) == ("True", "KubeletHasDiskPressure", "kubelet has disk pressure")
    assert disk["lastTransitionTime"] != old and conds["Ready"]["lastTransitionTime"] == old
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["lastHeartbeatTime"] != old
    assert await registration.set_pressure(frozenset({"MemoryPressure"})) == \
        ["NodeHasInsufficientMemory", "NodeHasNoDiskPressure"]
