"""``tinykube up`` with a real node agent, for the tests that run real containers; or, to kill and
restart the agent alone, ``tinykube server`` and a separate ``tinykube node`` process.

Each node gets its own data dir, a short run dir (conmon's socket paths must fit 108 bytes), its
own bridge and kubelet port, and the local test registry as its docker.io mirror.  Teardown
deletes every pod through the API while the agent still runs (so the agent tears them down),
stops the process by PID, and then removes anything a crash could have left: runc containers
and conmon processes of its runc root, sandbox pins and mounts, the bridge, pod cgroups.
"""

from __future__ import annotations

import os
import shutil
import signal
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.cluster import REPO, TINYKUBE, Cluster, eventually, free_port, stop_process
from tests.hoststate import HostSnapshot, host_lock
from tests.registry import LocalRegistry
from tinykube.node.runtime import cgroups, mounts

BRIDGE = "tke2e0"
NO_UPSTREAM = "127.0.0.1:9"  # names outside the cluster are forwarded to loopback's discard port: never off the host


def start_node_cluster(base: Path, registry: LocalRegistry, extra_args: tuple[str, ...] = ()) -> tuple[Cluster, Path]:
    data = base / "data"
    registry.mirror_registries(data / "registries")
    run_dir = Path(tempfile.mkdtemp(prefix="tk-", dir="/run"))
    cluster = Cluster(data, command="up", extra_args=(
        "--run-dir", str(run_dir), "--bridge", BRIDGE, "--kubelet-port", str(free_port()), "--node-name", "node-1",
        "--dns-upstream", NO_UPSTREAM, *extra_args))
    cluster.start()
    # the agent registers once TLS bootstrap got it a certificate: tests start with the node Ready
    ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    eventually(lambda: cluster.kubectl("get", "node", "node-1", "-o", ready, check=False).stdout == "True", "node-1 Ready")
    return cluster, run_dir


@dataclass
class NodeProcess:
    """A ``tinykube node`` joined to a separate server, killed and restarted by PID."""

    cluster: Cluster
    data_dir: Path
    run_dir: Path
    name: str = "node-1"
    kubelet_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        token = (self.cluster.data_dir / "token").read_text().strip()
        log = open(self.data_dir.parent / f"node-{self.kubelet_port}.log", "ab")
        self.proc = subprocess.Popen(
            [*TINYKUBE, "node", "--server", self.cluster.url, "--token", token, "--data-dir", str(self.data_dir),
             "--run-dir", str(self.run_dir), "--bridge", BRIDGE, "--kubelet-port", str(self.kubelet_port),
             "--node-name", self.name, "--dns-upstream", NO_UPSTREAM], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no orderly stop, so the containers, proxy rules and DNS address stay behind."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc)


def stop_node_cluster(cluster: Cluster, run_dir: Path, agent: NodeProcess | None = None) -> None:
    """Everything goes, even after a failed test or a crashed agent."""
    uids: set[str] = set()
    try:
        if cluster.proc is not None and cluster.proc.poll() is None:
            listed = cluster.kubectl("get", "pods", "-A", "-o", "jsonpath={.items[*].metadata.uid}", check=False)
            uids = set(listed.stdout.split())
            cluster.kubectl("delete", "pods", "--all", "-A", "--grace-period=0", "--force", "--timeout=60s", check=False)
            wait_torn_down(run_dir)
    finally:
        if agent is not None:
            agent.stop()
        cluster.stop()
        remove_leftovers(run_dir, agent.data_dir if agent is not None else cluster.data_dir, uids)


def _sandboxes(run_dir: Path) -> set[str]:
    sandboxes = run_dir / "sandboxes"
    return {d.name for d in sandboxes.iterdir() if d.is_dir()} if sandboxes.exists() else set()


def wait_torn_down(run_dir: Path, timeout: float = 20.0) -> None:
    """A forced delete returns at once; give the agent time to tear the pods down before it stops."""
    deadline = time.monotonic() + timeout
    while _sandboxes(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)


def remove_leftovers(run_dir: Path, data_dir: Path, uids: set[str]) -> None:
    ours = _sandboxes(run_dir) | uids
    runc_root = run_dir / "runc"
    if runc_root.exists():
        listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True)
        for cid in listed.stdout.split():
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid], capture_output=True)
    for pidfile in (run_dir / "containers").glob("*/conmon.pid") if (run_dir / "containers").exists() else []:
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass
    for line in reversed(Path("/proc/mounts").read_text().splitlines()):
        target = line.split()[1]
        if target.startswith((str(run_dir) + "/", str(data_dir) + "/")):
            mounts.unmount(Path(target))
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    for pod in cgroups.list_pod_cgroups():
        if pod.uid in ours:
            cgroups.remove_pod_cgroup(pod.uid)
    for uid in ours:
        for log_dir in Path("/var/log/pods").glob(f"*_{uid}"):
            shutil.rmtree(log_dir, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)


def node_cluster_fixture(base: Path, registry: LocalRegistry) -> Iterator[Cluster]:
    """One node cluster at a time on this host: two test sessions would share the bridge, the DNS
    address on lo and the proxy's tables, so a second session waits for the first."""
    with host_lock():
        snapshot = HostSnapshot((BRIDGE,))
        cluster, run_dir = start_node_cluster(base, registry)
        try:
            yield cluster
        finally:
            stop_node_cluster(cluster, run_dir)
            snapshot.restore()


def split_node_cluster_fixture(base: Path, registry: LocalRegistry,
                               server_args: tuple[str, ...] = ()) -> Iterator[tuple[Cluster, NodeProcess]]:
    """``tinykube server`` plus a ``tinykube node`` process, under the same host lock and teardown as
    :func:`node_cluster_fixture`.  An agent a failed test left dead is started again first, so it
    tears its pods down and removes its proxy rules in an orderly stop."""
    with host_lock():
        snapshot = HostSnapshot((BRIDGE,))
        cluster = Cluster(base / "server", extra_args=server_args)
        agent = NodeProcess(cluster, base / "node", Path(tempfile.mkdtemp(prefix="tk-", dir="/run")))
        registry.mirror_registries(agent.data_dir / "registries")
        try:
            cluster.start()
            agent.start()
            yield cluster, agent
        finally:
            if cluster.proc is not None and cluster.proc.poll() is None and not agent.alive():
                agent.start()
                time.sleep(2.0)  # registered and listing its pods before they are deleted
            stop_node_cluster(cluster, agent.run_dir, agent)
            snapshot.restore()


def containers(run_dir: Path) -> dict[str, str]:
    """The agent's runc containers (``<pod uid>-<name>-<attempt>``) and their states."""
    out = subprocess.run(["runc", "--root", str(run_dir / "runc"), "list", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return {c["id"]: c["status"] for c in json.loads(out or "null") or []}


def of_pod(listed: dict[str, str], uid: str) -> dict[str, str]:
    return {cid: state for cid, state in listed.items() if cid.startswith(uid)}
