"""Two API servers on one three-member etcd: one cluster, its controllers elected once, failover.

Two ``tinykube server`` processes with data dirs of their own share the store.  Checked with
the real kubectl: both serve the same CA (one kubeconfig works against both); a write through
one is seen by a watch on the other; each controller Lease has one holder; the ``kubernetes``
Endpoints list both servers' advertised addresses; SIGKILL of the Leases' holder hands them and
the controllers (a new namespace gets its ServiceAccount, a pod is scheduled) to the other
server within the lease duration, and its address leaves the Endpoints; no write acknowledged
before the kill is lost; and after SIGKILL of one etcd member, reads and writes through the
survivor go on.
No node agent is involved.  Every process is ended by PID, whatever happens.
"""

from __future__ import annotations

import datetime
import json
import queue
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, eventually
from tests.etcd import EtcdCluster, etcd_cluster, requires_etcd

pytestmark = [pytest.mark.slow, requires_etcd]

LEASES = ("kube-controller-manager", "kube-scheduler")
ADDRESSES = ("192.0.2.1", "192.0.2.2")  # advertised (TEST-NET, listened on with IP_FREEBIND): the kubernetes Endpoints
LEASE_DURATION = 15.0  # seconds: the controllers' --leader-elect-lease-duration
TAKEOVER_SLACK = 0.5  # seconds beyond the lease duration for the survivor's read and write of the Lease
EFFECT_SLACK = 2.0  # seconds beyond that for freshly started controllers to act, seen through polling kubectl


@dataclass
class HA:
    etcd: EtcdCluster
    servers: list[Cluster]


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[HA]:
    with etcd_cluster(3) as etcd:
        store = "etcd://" + ",".join(etcd.endpoints)
        servers = [Cluster(tmp_path / name / "data", extra_args=("--store", store, "--advertise-address", address))
                   for name, address in zip("ab", ADDRESSES)]
        try:
            for server in servers:
                server.data_dir.parent.mkdir(parents=True)
                server.start()
            yield HA(etcd, servers)
        finally:
            for server in servers:
                server.stop()


def _json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def _holders(cluster: Cluster) -> dict[str, dict[str, Any]]:
    leases = _json(cluster, "get", "leases", "-n", "kube-system")["items"]
    return {lease["metadata"]["name"]: lease["spec"] for lease in leases if lease["metadata"]["name"] in LEASES}


def _log(server: Cluster) -> str:
    return (server.data_dir.parent / f"server-{server.port}.log").read_text()


def _owner(servers: list[Cluster], identity: str) -> Cluster:
    """The server whose log says it campaigns as ``identity``."""
    return next(s for s in servers if f" as {identity}..." in _log(s))


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines, read by a thread so that a test can wait for one with a timeout."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in stdout], daemon=True).start()
    return lines


def _wait_line(lines: queue.Queue[str], wanted: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            if lines.get(timeout=left) == wanted:
                return
        except queue.Empty:
            break
    raise AssertionError(f"no line {wanted!r} within {timeout:.0f} s")


def _watch_sees_write(writer: Cluster, watcher: Cluster, name: str) -> None:
    """A ConfigMap created through ``writer`` arrives on a ``kubectl get -w`` against ``watcher``."""
    proc = watcher.popen("get", "configmaps", "-n", "default", "-w", "-o", "name")
    try:
        lines = _lines(proc)
        _wait_line(lines, "configmap/kube-root-ca.crt")  # listed: the watch starts from the list's version
        writer.kubectl("create", "configmap", name, "-n", "default", "--from-literal=k=v")
        _wait_line(lines, f"configmap/{name}")
    finally:
        proc.kill()
        proc.wait()


class AckedWriter(threading.Thread):
    """Creates ConfigMaps through one server as fast as it answers, remembering each acknowledged one."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        tls = cluster.data_dir / "tls"
        self.context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        self.context.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
        self.url = f"{cluster.url}/api/v1/namespaces/default/configmaps"
        self.acked: list[str] = []

    def run(self) -> None:
        for i in range(100_000):
            body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"acked-{i}"}})
            request = urllib.request.Request(self.url, body.encode(), {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, context=self.context, timeout=5) as response:
                    assert response.status == 201
            except (urllib.error.URLError, OSError):
                return  # the server is gone
            self.acked.append(f"acked-{i}")


def _add_node(cluster: Cluster, name: str) -> None:
    """A Node object with room and a fresh Ready heartbeat (no agent behind it)."""
    cluster.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    room = {"cpu": "2", "memory": "4Gi", "pods": "110"}
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": now, "lastTransitionTime": now}
    status = {"status": {"capacity": room, "allocatable": room, "conditions": [ready]}}
    cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def _create_through(cluster: Cluster, name: str) -> int:
    """Create a ConfigMap, trying again after a 500; returns how many tries failed.

    A write in flight when etcd's leader dies fails after etcd's request timeout (5 s + two
    election timeouts) with "etcdserver: request timed out", as it does through kube-apiserver:
    whether it was applied is unknown, so neither retries it.  The next write goes through.
    """
    deadline, failures = time.monotonic() + 30, 0
    while True:
        result = cluster.kubectl("create", "configmap", name, "-n", "default", check=False, timeout=30)
        if result.returncode == 0 or "AlreadyExists" in result.stderr:  # AlreadyExists: the failed try was applied
            return failures
        assert "Internal error" in result.stderr and time.monotonic() < deadline, result.stderr
        print(f"write during the etcd failover: {result.stderr.strip()}")
        failures += 1


def _endpoints(cluster: Cluster) -> list[str]:
    """The addresses of the ``kubernetes`` Endpoints (the same as its EndpointSlice's, or [] when they differ)."""
    subsets = _json(cluster, "get", "endpoints", "kubernetes", "-n", "default").get("subsets") or []
    addresses = [a["ip"] for subset in subsets for a in subset.get("addresses") or []]
    endpoint_slice = _json(cluster, "get", "endpointslice", "kubernetes", "-n", "default")
    in_slice = [a for endpoint in endpoint_slice.get("endpoints") or [] for a in endpoint["addresses"]]
    return addresses if in_slice == addresses else []


def _advertised(cluster: Cluster) -> str:
    return cluster.extra_args[cluster.extra_args.index("--advertise-address") + 1]


def _micro_time(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def test_two_servers_are_one_cluster(ha: HA) -> None:
    a, b = ha.servers
    for name in ("tls/ca.crt", "tls/ca.key", "tls/sa.key", "token"):
        assert (a.data_dir / name).read_bytes() == (b.data_dir / name).read_bytes(), name
    assert a.kubectl("--server", b.url, "get", "namespace", "kube-system", "-o", "name").stdout.strip() == \
        "namespace/kube-system"  # A's kubeconfig (CA, admin certificate) against B's serving certificate
    eventually(lambda: a.kubectl("get", "configmap", "kube-root-ca.crt", "-n", "default", check=False).returncode == 0,
               "the root CA ConfigMap in default")
    _watch_sees_write(writer=a, watcher=b, name="from-a")
    _watch_sees_write(writer=b, watcher=a, name="from-b")


def test_controllers_run_once_and_fail_over_when_their_server_dies(ha: HA) -> None:
    holders = eventually(lambda: (found := _holders(ha.servers[1])) and len(found) == 2 and found, "both Leases")
    leader = _owner(ha.servers, holders["kube-controller-manager"]["holderIdentity"])
    survivor = next(s for s in ha.servers if s is not leader)
    messages = [e["message"] for e in _json(survivor, "get", "events", "-n", "kube-system",
                                             "--field-selector", "reason=LeaderElection")["items"]]
    for lease in LEASES:  # one holder each: only its server ever acquired the Lease, the other campaigns
        identity = holders[lease]["holderIdentity"]
        assert f"{identity} became leader" in messages and holders[lease]["leaseDurationSeconds"] == 15
        acquired = [s for s in ha.servers if f"successfully acquired lease kube-system/{lease}" in _log(s)]
        assert acquired == [_owner(ha.servers, identity)]
        assert all(f"attempting to acquire leader lease kube-system/{lease}" in _log(s) for s in ha.servers)

    eventually(lambda: _endpoints(survivor) == sorted(ADDRESSES), "every server in the kubernetes Endpoints")
    writer = AckedWriter(leader)
    writer.start()
    eventually(lambda: len(writer.acked) >= 20, "20 acknowledged writes")
    assert leader.proc is not None
    killed = time.time()
    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait()
    writer.join(10)

    survivor.kubectl("create", "namespace", "after-failover")
    _add_node(survivor, "ha-node")
    survivor.kubectl("run", "ha-pod", "-n", "default", "--image=busybox", "--restart=Never")
    eventually(lambda: survivor.kubectl("get", "serviceaccount", "default", "-n", "after-failover",
                                        check=False).returncode == 0, "the new namespace's ServiceAccount",
               timeout=LEASE_DURATION + 10)
    accounts_after = time.time() - killed
    eventually(lambda: _json(survivor, "get", "pod", "ha-pod", "-n", "default")["spec"].get("nodeName") == "ha-node",
               "the pod scheduled", timeout=LEASE_DURATION + 10)
    scheduled_after = time.time() - killed

    after = _holders(survivor)
    for lease in LEASES:
        spec = after[lease]
        assert _owner(ha.servers, spec["holderIdentity"]) is survivor
        takeover = _micro_time(spec["acquireTime"]) - killed
        assert takeover <= LEASE_DURATION + TAKEOVER_SLACK, (lease, takeover)
        assert spec["leaseTransitions"] == holders[lease]["leaseTransitions"] + (
            1 if holders[lease]["holderIdentity"] != spec["holderIdentity"] else 0)
    print(f"failover: ServiceAccount {accounts_after:.1f} s, pod scheduled {scheduled_after:.1f} s after SIGKILL")
    assert max(accounts_after, scheduled_after) <= LEASE_DURATION + TAKEOVER_SLACK + EFFECT_SLACK

    names = {item["metadata"]["name"] for item in _json(survivor, "get", "configmaps", "-n", "default")["items"]}
    assert writer.acked and set(writer.acked) <= names, sorted(set(writer.acked) - names)
    eventually(lambda: _endpoints(survivor) == [_advertised(survivor)], "the dead server's address dropped from "
               "the kubernetes Endpoints", timeout=2 * LEASE_DURATION)

    ha.etcd.member(ha.etcd.endpoints[0]).kill()  # the member both servers were talking to (and the raft leader)
    assert _create_through(survivor, "after-etcd-loss") <= 1
    assert survivor.kubectl("get", "configmap", "after-etcd-loss", "-n", "default", "-o", "name").stdout.strip() == \
        "configmap/after-etcd-loss"
    renewed = _holders(survivor)["kube-controller-manager"]["renewTime"]
    eventually(lambda: _holders(survivor)["kube-controller-manager"]["renewTime"] != renewed,
               "a Lease renewal after the etcd member died", timeout=10)
    names = {item["metadata"]["name"] for item in _json(survivor, "get", "configmaps", "-n", "default")["items"]}
    assert set(writer.acked) <= names
