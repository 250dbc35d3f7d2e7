"""Two nodes, each in a network namespace "host" of its own, on a three-member etcd and two API servers.

The test builds the hosts: a bridge ``tkhosts0`` in the root namespace holding 192.168.77.1 (the
API servers bind there), and per node a netns ``tkhN`` whose ``eth0`` (a veth into the bridge)
has 192.168.77.N.  Each agent runs in its host through ``nsenter --net`` (not ``ip netns exec``,
whose private mount namespace would hide the agent's mounts from teardown), with its own data
dir, run dir, cgroup root and CNI bridge; its pod bridge, service proxy tables, DNS address and
routes then live in its host.  The agents cannot reach the test registry on the root
namespace's loopback, so their images are pulled into their data dirs beforehand.

Checked with the real kubectl: the tutorial's pod-1 (nginx) on node A is reached by pod-2 on
node B through its pod IP (host-gw routes between the hosts) and through a Service's name
(node B's DNS and proxy rules); ``kubectl exec``, ``logs`` and ``port-forward`` go through each
pod's own agent.  A host whose link is cut goes Unknown after the default 40 s; its pod that tolerates the
unreachable taint for 10 s shows STATUS ``Unknown`` within a minute, the others stay; when the
link returns the node is Ready, the evicted pod is torn down and stays gone, and the pod that
stayed is Ready again without a restart.  ``kubectl drain`` then empties node B through the
Eviction API.  The servers run the node lifecycle controller with
its defaults, as a user's would.  Teardown removes pods,
agents (by PID), leftovers, namespaces, veths, the bridge and the cgroup roots, also after a
failure.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import EXAMPLES, REPO, TINYKUBE, Cluster, eventually, free_port, status_column, stop_process
from tests.e2e.nodes import NO_UPSTREAM, containers, of_pod, remove_leftovers, wait_torn_down
from tests.e2e.test_streams import Forward
from tests.etcd import etcd_cluster, requires_etcd
from tests.hoststate import HostSnapshot, host_lock
from tests.registry import LocalRegistry, requires_registry
from tinykube.node.runtime import cgroups

pytestmark = [pytest.mark.slow, requires_etcd, requires_registry]

HOSTS_BRIDGE = "tkhosts0"
SUBNET = "192.168.77"
SERVER_IP = f"{SUBNET}.1"
GRACE = 40  # the default --node-monitor-grace-period, seconds
UNREACHABLE = "node.kubernetes.io/unreachable"
IMAGES = ("nginx:1.14.2", "myapp:1.0")


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class HostCluster(Cluster):
    """A ``tinykube server`` listening on the hosts' bridge address instead of loopback."""

    address: str = SERVER_IP

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"


@dataclass
class Host:
    """Network namespace ``tkhN`` with 192.168.77.N on a veth into the hosts' bridge, and its node agent."""

    index: int
    base: Path
    kubelet_port: int = field(default_factory=free_port)
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tk-", dir="/run")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def netns(self) -> str:
        return f"tkh{self.index}"

    @property
    def veth(self) -> str:
        """The root namespace's end: cutting it takes the host off the network."""
        return f"tkh{self.index}-link"

    @property
    def ip(self) -> str:
        return f"{SUBNET}.{self.index + 1}"

    @property
    def node_name(self) -> str:
        return f"node-{'ab'[self.index - 1]}"

    @property
    def data_dir(self) -> Path:
        return self.base / self.node_name

    def create(self) -> None:
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        sh("ip", "link", "set", self.veth, "master", HOSTS_BRIDGE, "up")
        for command in (("ip", "addr", "add", f"{self.ip}/24", "dev", "eth0"), ("ip", "link", "set", "eth0", "up"),
                        ("ip", "link", "set", "lo", "up"), ("sysctl", "-qw", "net.ipv4.ip_forward=1")):
            sh("nsenter", f"--net=/run/netns/{self.netns}", *command)

    def start(self, server: Cluster) -> None:
        token = (server.data_dir / "token").read_text().strip()
        log = open(self.base / f"{self.node_name}.log", "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", *TINYKUBE, "node", "--server", server.url, "--token", token,
             "--node-name", self.node_name, "--node-ip", self.ip, "--data-dir", str(self.data_dir),
             "--run-dir", str(self.run_dir), "--bridge", f"tkh{self.index}br0", "--cgroup-root", self.netns,
             "--kubelet-port", str(self.kubelet_port), "--dns-upstream", NO_UPSTREAM],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self) -> None:
        stop_process(self.proc)

    def remove(self, uids: set[str]) -> None:
        """Everything the host held: leftovers of its runtime, its namespace (and with it the veth), its cgroups."""
        remove_leftovers(self.run_dir, self.data_dir, uids)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        remove_cgroup_root(self.netns)


def remove_cgroup_root(name: str) -> None:
    """The host's pod cgroup tree, deepest first (its pods are gone by now)."""
    for h in cgroups.hierarchies():
        top = h.path / name
        if top.is_dir():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                with contextlib.suppress(OSError):
                    d.rmdir()


def pull_images(registry: LocalRegistry, data_dir: Path) -> None:
    """From the root namespace, where the registry's loopback address is reachable."""
    registry.mirror_registries(data_dir / "registries")
    for image in IMAGES:
        subprocess.run([*TINYKUBE, "image", "pull", "--data-dir", str(data_dir), image], check=True,
                       capture_output=True, cwd=REPO)


@dataclass
class MultiNode:
    servers: list[HostCluster]
    hosts: list[Host]


def _start(base: Path, registry: LocalRegistry, store: str, servers: list[HostCluster], hosts: list[Host]) -> None:
    sh("ip", "link", "add", HOSTS_BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{SERVER_IP}/24", "dev", HOSTS_BRIDGE)
    sh("ip", "link", "set", HOSTS_BRIDGE, "up")
    for name in "xy":
        (base / name).mkdir()
        servers.append(HostCluster(base / name / "data", extra_args=(
            "--store", store, "--bind", SERVER_IP)))
        servers[-1].start()
    for index in (1, 2):
        hosts.append(Host(index, base))
        pull_images(registry, hosts[-1].data_dir)
        hosts[-1].create()
        hosts[-1].start(servers[index - 1])  # one node per API server


def restart_dead_agents(hosts: list[Host], server: Cluster) -> None:
    """An agent a failed test left dead is started again, so it tears its pods down in order."""
    dead = [h for h in hosts if h.proc is not None and h.proc.poll() is not None]
    for host in dead:
        host.start(server)
    if dead:
        time.sleep(2.0)  # registered and listing its pods before they are deleted


def _stop(servers: list[HostCluster], hosts: list[Host]) -> None:
    """Pods deleted while the agents run (so they tear them down), then everything else by PID and name."""
    uids: set[str] = set()
    live = next((s for s in servers if s.proc is not None and s.proc.poll() is None), None)
    try:
        if live is not None and hosts:
            restart_dead_agents(hosts, live)
            listed = live.kubectl("get", "pods", "-A", "-o", "jsonpath={.items[*].metadata.uid}", check=False)
            uids = set(listed.stdout.split())
            live.kubectl("delete", "pods", "--all", "-A", "--grace-period=0", "--force", "--timeout=60s", check=False)
            for host in hosts:
                wait_torn_down(host.run_dir)
    finally:
        for host in hosts:
            host.stop()
        for server in servers:
            server.stop()
        for host in hosts:
            host.remove(uids)
        subprocess.run(["ip", "link", "del", HOSTS_BRIDGE], capture_output=True)


@pytest.fixture(scope="module")
def multinode(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[MultiNode]:
    """Under the node host lock: the hosts' DNS address and proxy tables are per namespace, but a
    session in the root namespace shares ip_forward and the QoS cgroup parents with them."""
    base = tmp_path_factory.mktemp("multinode")
    with host_lock(), etcd_cluster(3) as etcd:
        snapshot = HostSnapshot((HOSTS_BRIDGE,))
        servers: list[HostCluster] = []
        hosts: list[Host] = []
        try:
            _start(base, registry, "etcd://" + ",".join(etcd.endpoints), servers, hosts)
            yield MultiNode(servers, hosts)
        finally:
            _stop(servers, hosts)
            snapshot.restore()


def ready(cluster: Cluster, node: str) -> str:
    out = cluster.kubectl("get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                          check=False)
    return out.stdout.strip()


def apply_tutorial_pods(cluster: Cluster, placement: dict[str, str]) -> None:
    """examples/pod-1-and-pod-2.yaml, each pod bound to its node by ``nodeName``."""
    docs = list(yaml.safe_load_all((EXAMPLES / "pod-1-and-pod-2.yaml").read_text()))
    for doc in docs:
        doc["spec"]["nodeName"] = placement[doc["metadata"]["name"]]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def test_pods_on_two_hosts_reach_each_other_and_a_cut_host_goes_unknown(multinode: MultiNode) -> None:
    kubectl, (a, b) = multinode.servers[1], multinode.hosts
    for host in (a, b):
        eventually(lambda: ready(kubectl, host.node_name) == "True", f"{host.node_name} Ready", 60)
    apply_tutorial_pods(kubectl, {"pod-1": a.node_name, "pod-2": b.node_name})
    kubectl.kubectl("wait", "--for=condition=Ready", "pod/pod-1", "pod/pod-2", "--timeout=60s")
    pods = {p["metadata"]["name"]: p for p in json.loads(kubectl.kubectl("get", "pods", "-o", "json").stdout)["items"]}
    ip1 = pods["pod-1"]["status"]["podIP"]
    assert pods["pod-1"]["spec"]["nodeName"] == a.node_name and pods["pod-2"]["spec"]["nodeName"] == b.node_name
    assert ip1.rsplit(".", 1)[0] != pods["pod-2"]["status"]["podIP"].rsplit(".", 1)[0]  # each node its own /24

    page = kubectl.kubectl("exec", "pod-2", "--", "wget", "-qO-", f"http://{ip1}").stdout
    assert "Welcome to nginx!" in page
    assert "GET / HTTP/1.1" in kubectl.kubectl("logs", "pod-1").stdout
    forward = Forward(kubectl, "pod-1", 80, {})  # the API server on node A's agent, as logs and exec
    try:
        assert b"Welcome to nginx!" in forward.get()
    finally:
        forward.stop()

    kubectl.kubectl("create", "service", "clusterip", "frontend", "--tcp=80:80")  # selects app=frontend: pod-1
    by_name = ("exec", "pod-2", "--", "wget", "-qO-", "http://frontend")  # node B's DNS and proxy, to node A's pod
    eventually(lambda: "Welcome to nginx!" in kubectl.kubectl(*by_name, check=False, timeout=10).stdout,
               "the Service by name from the other node")

    cut_link_and_restore(kubectl, a, b)
    drain(kubectl, b)


def evictable(node: str) -> dict[str, object]:
    """A pod of node ``node`` tolerating its unreachable taint for 10 s (as the issue asks)."""
    toleration = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evicted"},
            "spec": {"nodeName": node, "tolerations": [toleration], "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "web", "image": "myapp:1.0"}]}}


def cut_link_and_restore(kubectl: Cluster, a: Host, b: Host) -> None:
    """Node B off the network: Unknown, its 10 s pod evicted (STATUS Unknown within a minute), pod-2
    kept; back on it: Ready, the evicted pod torn down and gone for good, pod-2 Ready and unrestarted."""
    kubectl.kubectl("apply", "-f", "-", input=json.dumps(evictable(b.node_name)))
    kubectl.kubectl("wait", "--for=condition=Ready", "pod/evicted", "--timeout=60s")
    uid = get_pod(kubectl, "evicted")["metadata"]["uid"]
    sh("ip", "link", "set", b.veth, "down")
    cut = time.monotonic()
    try:
        eventually(lambda: ready(kubectl, b.node_name) == "Unknown", f"{b.node_name} Unknown", GRACE + 15)
        assert ready(kubectl, a.node_name) == "True"
        eventually(lambda: status_column(kubectl, "evicted") == "Unknown", "evicted to show STATUS Unknown",
                   60 - (time.monotonic() - cut))
        assert get_pod(kubectl, "evicted")["status"]["reason"] == "NodeLost"
        assert status_column(kubectl, "pod-2") == "Running"  # 300 s of toleration (DefaultTolerationSeconds)
        assert not get_pod(kubectl, "pod-2")["metadata"].get("deletionTimestamp")
    finally:
        sh("ip", "link", "set", b.veth, "up")
    eventually(lambda: ready(kubectl, b.node_name) == "True", f"{b.node_name} Ready again", 60)
    eventually(lambda: not get_pod(kubectl, "evicted", check=False), "the evicted pod removed by its node", 60)
    eventually(lambda: not of_pod(containers(b.run_dir), uid), "its containers torn down", 30)
    eventually(lambda: pod_ready(get_pod(kubectl, "pod-2")), "pod-2 Ready again", 30)
    assert get_pod(kubectl, "pod-2")["status"]["containerStatuses"][0]["restartCount"] == 0
    time.sleep(2)
    names = kubectl.kubectl("get", "pods", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert names == ["pod-1", "pod-2"]  # nothing owns the evicted pod: it does not come back


def drain(kubectl: Cluster, b: Host) -> None:
    """``kubectl drain`` cordons node B and evicts pod-2 through the Eviction API; its node ends it."""
    uid = get_pod(kubectl, "pod-2")["metadata"]["uid"]
    done = kubectl.kubectl("drain", b.node_name, "--force", "--grace-period=1", "--timeout=60s")
    out = done.stdout + done.stderr
    for line in (f"node/{b.node_name} cordoned", "evicting pod default/pod-2", "pod/pod-2 evicted",
                 f"node/{b.node_name} drained"):
        assert line in out, out
    assert not get_pod(kubectl, "pod-2", check=False)
    eventually(lambda: not of_pod(containers(b.run_dir), uid), "pod-2's containers torn down", 30)
    node = json.loads(kubectl.kubectl("get", "node", b.node_name, "-o", "json").stdout)
    assert node["spec"]["unschedulable"] is True
    kubectl.kubectl("uncordon", b.node_name)


def get_pod(kubectl: Cluster, name: str, check: bool = True) -> dict[str, Any]:
    done = kubectl.kubectl("get", "pod", name, "-o", "json", check=check)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
