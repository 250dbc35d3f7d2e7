"""The service proxy's rules carry real traffic: two network namespaces made for the test.

``client`` plays the node (the rules live there, with the ``unreachable`` service route the
agent installs); ``server`` plays its pods, 10.42.252.2 and .3, each answering on TCP 8080 and
UDP 5353 with "<its address> <the peer's address>", so a reply tells which endpoint answered
and whether the connection was masqueraded.  A veth pair joins them; ``server`` routes via
``client``, so its connections to a ClusterIP take the prerouting (pod) path.  Nothing is
applied to the host's own namespace, and teardown deletes both namespaces even on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tinykube.node.proxy import ServiceProxy, ruleset

pytestmark = pytest.mark.slow

NODE, POD1, POD2 = "10.42.252.1", "10.42.252.2", "10.42.252.3"
CLUSTER_IP = "10.43.252.1"
Json = dict[str, Any]

SERVER = """
import socket, sys, threading
def tcp(ip):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((ip, 8080)); s.listen(64)
    while True:
        c, peer = s.accept(); c.sendall(f"{ip} {peer[0]}".encode()); c.close()
def udp(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((ip, 5353))
    while True:
        _, peer = s.recvfrom(100); s.sendto(f"{ip} {peer[0]}".encode(), peer)
for ip in sys.argv[1:]:
    for serve in (tcp, udp):
        threading.Thread(target=serve, args=(ip,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENT = """
import json, socket, sys
proto, ip, bind = sys.argv[1], sys.argv[2], sys.argv[5]
port, count, timeout = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[6])
results = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(timeout)
    if bind:
        s.bind((bind, 0))
    try:
        s.connect((ip, port))
        if proto == "udp":
            s.send(b"hi")
        results.append(s.recv(100).decode())
    except OSError as e:
        results.append(type(e).__name__)
    finally:
        s.close()
print(json.dumps(results))
"""


@dataclass
class Namespaces:
    client: str
    server: str

    def run(self, ns: str, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(["ip", "netns", "exec", ns, *args], input=stdin, capture_output=True, text=True)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return result.stdout

    def apply(self, script: str) -> None:
        self.run(self.client, "nft", "-f", "-", stdin=script)

    def connect(self, ip: str, port: int, proto: str = "tcp", count: int = 1, ns: str = "", bind: str = "",
                timeout: float = 2.0) -> list[str]:
        out = self.run(ns or self.client, sys.executable, "-c", CLIENT, proto, ip, str(port), str(count), bind,
                       str(timeout))
        return json.loads(out)  # type: ignore[no-any-return]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    missing = [t for t in ("ip", "nft", "sysctl") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"proxy runtime tests need root and ip, nft, sysctl (missing: {', '.join(missing) or 'root'})")
    tag = f"tkp{os.getpid()}"
    ns = Namespaces(f"{tag}c", f"{tag}s")
    servers: list[subprocess.Popen[str]] = []
    try:
        _wire(ns)
        servers.append(_start_server(ns))
        yield ns
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        for name in (ns.client, ns.server):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert tag not in listed


def _wire(ns: Namespaces) -> None:
    """The veth pair, addresses, routes; the client forwards and has the agent's unreachable route."""
    _ip("netns", "add", ns.client)
    _ip("netns", "add", ns.server)
    _ip("-n", ns.client, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", ns.server)
    for name, addrs in ((ns.client, [NODE]), (ns.server, [POD1, POD2])):
        for addr in addrs:
            _ip("-n", name, "addr", "add", f"{addr}/24", "dev", "veth0")
        _ip("-n", name, "link", "set", "veth0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", ns.server, "route", "add", "default", "via", NODE)
    _ip("-n", ns.client, "route", "add", "unreachable", "10.43.0.0/16")
    ns.run(ns.client, "sysctl", "-qw", "net.ipv4.ip_forward=1")


def _start_server(ns: Namespaces) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns.server, sys.executable, "-u", "-c", SERVER, POD1, POD2],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
async def node(namespaces: Namespaces) -> Namespaces:
    """The client namespace prepared as the proxy prepares a host (service route, route_localnet)."""
    await ServiceProxy(None, [], netns=namespaces.client).prepare_host()  # type: ignore[arg-type]
    return namespaces


def service(ports: list[Json], name: str = "web", cluster_ip: str = CLUSTER_IP, **spec: Any) -> Json:
    return {"metadata": {"namespace": "default", "name": name, "resourceVersion": "1"},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "ports": ports, **spec}}


def endpoints(ips: list[str], ports: list[Json], name: str = "web") -> Json:
    return {"metadata": {"namespace": "default", "name": name, "resourceVersion": "1"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": ports}] if ips else []}


HTTP = {"name": "http", "port": 80, "protocol": "TCP"}
HTTP_EP = {"name": "http", "port": 8080, "protocol": "TCP"}


def test_host_reaches_a_cluster_ip(node: Namespaces) -> None:
    node.apply(ruleset([service([HTTP])], [endpoints([POD1], [HTTP_EP])], [NODE]))
    assert node.connect(CLUSTER_IP, 80) == [f"{POD1} {NODE}"]


def test_udp_cluster_ip(node: Namespaces) -> None:
    dns = {"name": "dns", "port": 53, "protocol": "UDP"}
    node.apply(ruleset([service([dns])], [endpoints([POD2], [{**dns, "port": 5353}])], [NODE]))
    assert node.connect(CLUSTER_IP, 53, "udp") == [f"{POD2} {NODE}"]


def test_refused_without_endpoints_or_on_undefined_ports(node: Namespaces) -> None:
    dns = {"name": "dns", "port": 53, "protocol": "UDP"}
    node.apply(ruleset([service([HTTP, dns])], [], [NODE]))
    started = time.monotonic()
    assert node.connect(CLUSTER_IP, 80) == ["ConnectionRefusedError"]
    assert node.connect(CLUSTER_IP, 53, "udp", ns=node.server) == ["ConnectionRefusedError"]  # ICMP, to a pod
    assert node.connect(CLUSTER_IP, 80, ns=node.server) == ["ConnectionRefusedError"]
    assert node.connect(CLUSTER_IP, 81) == ["ConnectionRefusedError"]  # allocated IP, undefined port
    assert time.monotonic() - started < 1.5  # rejected, not timed out
    assert node.connect("10.43.252.99", 80, timeout=0.3) == ["TimeoutError"]  # unallocated: dropped


def test_nodeport_on_the_node_ip_and_on_localhost(node: Namespaces) -> None:
    svc = service([{**HTTP, "nodePort": 30080}], type="NodePort")
    node.apply(ruleset([svc], [endpoints([POD1], [HTTP_EP])], [NODE]))
    assert node.connect(NODE, 30080) == [f"{POD1} {NODE}"]
    assert node.connect("127.0.0.1", 30080) == [f"{POD1} {NODE}"]  # masqueraded away from 127.0.0.1
    node.apply(ruleset([svc], [], [NODE]))
    assert node.connect("127.0.0.1", 30080) == node.connect(NODE, 30080) == ["ConnectionRefusedError"]


def test_pod_reaches_itself_through_its_service(node: Namespaces) -> None:
    node.apply(ruleset([service([HTTP])], [endpoints([POD1], [HTTP_EP])], [NODE]))
    # prerouting path, DNAT back to the sender: only masquerading brings the reply back to the node
    assert node.connect(CLUSTER_IP, 80, ns=node.server, bind=POD1) == [f"{POD1} {NODE}"]


def test_client_ip_affinity_sticks_to_one_endpoint(node: Namespaces) -> None:
    eps = [endpoints([POD1, POD2], [HTTP_EP])]
    node.apply(ruleset([service([HTTP])], eps, [NODE]))
    assert {r.split()[0] for r in node.connect(CLUSTER_IP, 80, count=24)} == {POD1, POD2}
    node.apply(ruleset([service([HTTP], sessionAffinity="ClientIP")], eps, [NODE]))
    assert len({r.split()[0] for r in node.connect(CLUSTER_IP, 80, count=24)}) == 1


class FakeClient:
    """The two calls ``list_and_watch`` makes: a list, then a watch fed from a queue per URL."""

    shared = None  # watches are not shared (client/informers.py)

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[Json]] = {}

    def queue(self, url: str) -> asyncio.Queue[Json]:
        return self.queues.setdefault(url, asyncio.Queue())

    async def get(self, url: str, params: dict[str, str] | None = None) -> Json:
        return {"metadata": {"resourceVersion": "1"}, "items": []}

    async def watch(self, url: str, resource_version: str, params: dict[str, str] | None = None) -> AsyncIterator[Json]:
        while True:
            yield await self.queue(url).get()

    def send(self, kind: str, obj: Json) -> None:
        resource = "services" if "spec" in obj else "endpoints"
        self.queue(f"/api/v1/{resource}").put_nowait({"type": kind, "object": obj})


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_service_proxy_follows_the_api_and_cleans_up(namespaces: Namespaces) -> None:
    ns, client = namespaces, FakeClient()
    localnet = ns.run(ns.client, "sysctl", "-n", "net.ipv4.conf.all.route_localnet")
    proxy = ServiceProxy(client, [NODE], netns=ns.client)  # type: ignore[arg-type]
    task = asyncio.create_task(proxy.run())
    try:
        client.send("ADDED", service([HTTP], sessionAffinity="ClientIP"))
        client.send("ADDED", endpoints([POD1, POD2], [HTTP_EP]))
        await eventually(lambda: ns.connect(CLUSTER_IP, 80, timeout=0.5)[0].startswith("10.42.252."))
        [first] = {r.split()[0] for r in ns.connect(CLUSTER_IP, 80, count=3)}
        client.send("ADDED", service([HTTP], name="other", cluster_ip="10.43.252.2"))  # an unrelated sync
        await eventually(lambda: "10.43.252.2" in ns.run(ns.client, "nft", "list", "set", "ip", "tinykube",
                                                          "cluster-ips"))
        assert {r.split()[0] for r in ns.connect(CLUSTER_IP, 80, count=6)} == {first}  # affinity kept
        client.send("DELETED", endpoints([POD1, POD2], [HTTP_EP]))
        await eventually(lambda: ns.connect(CLUSTER_IP, 80, timeout=0.5) == ["ConnectionRefusedError"])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await proxy.cleanup()
    assert "tinykube" not in ns.run(ns.client, "nft", "list", "tables")
    assert ns.run(ns.client, "ip", "route", "show", "10.43.0.0/16").split()[0] == "unreachable"
    assert ns.run(ns.client, "sysctl", "-n", "net.ipv4.conf.all.route_localnet") == localnet
