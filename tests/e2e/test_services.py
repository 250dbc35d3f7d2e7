"""Services and cluster DNS with real pods: the tutorial's init-demo finds myservice and mydb.

Traffic goes only to pod IPs, service IPs of this tinykube and 127.0.0.1; names outside the
cluster are forwarded to loopback's discard port (the node is started with --dns-upstream).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster, eventually, status_column
from tests.e2e.nodes import NO_UPSTREAM, node_cluster_fixture
from tests.e2e.test_pods import busybox_pod, fetch, pod
from tests.registry import LocalRegistry, requires_registry

pytestmark = [pytest.mark.slow, requires_registry]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[Cluster]:
    yield from node_cluster_fixture(tmp_path_factory.mktemp("services"), registry)


def test_tutorial_init_demo_completes_once_services_exist(node: Cluster) -> None:
    node.kubectl("apply", "-f", "init-demo.yaml")
    eventually(lambda: "waiting for myservice" in node.kubectl("logs", "init-demo", "-c", "init-myservice",
                                                               check=False).stdout, "waiting for myservice")
    assert status_column(node, "init-demo") == "Init:0/2"
    node.kubectl("create", "service", "clusterip", "myservice", "--tcp=80:9376")
    eventually(lambda: status_column(node, "init-demo") == "Init:1/2", "Init:1/2")
    node.kubectl("create", "service", "clusterip", "mydb", "--tcp=80:9377")
    eventually(lambda: status_column(node, "init-demo") == "Running", "Running")
    node.kubectl("delete", "pod", "init-demo", "--grace-period=1")
    node.kubectl("delete", "service", "myservice", "mydb")


def test_service_by_name_cluster_ip_and_node_port(node: Cluster) -> None:
    node.kubectl("apply", "-f", "pod-1-and-pod-2.yaml")  # pod-2's myapp:1.0 is busybox's httpd on 8080
    node.kubectl("wait", "--for=condition=Ready", "pod/pod-1", "pod/pod-2", "--timeout=60s")
    node.kubectl("create", "service", "nodeport", "frontend", "--tcp=80:80", "--node-port=30081")
    node.kubectl("patch", "service", "frontend", "--type=merge", "-p", '{"spec":{"selector":{"app":"frontend"}}}')
    eventually(lambda: pod(node, "pod-1")["status"]["podIP"] in node.kubectl("get", "endpoints", "frontend").stdout,
               "the endpoint")
    for url in ("http://frontend.default.svc.cluster.local", "http://frontend"):
        page = node.kubectl("exec", "pod-2", "--", "wget", "-qO-", url).stdout
        assert "Welcome to nginx!" in page, (url, page)
    cluster_ip = node.kubectl("get", "service", "frontend", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert eventually(lambda: b"Welcome to nginx!" in fetch(f"http://{cluster_ip}/"), "the ClusterIP from the host")
    assert eventually(lambda: b"Welcome to nginx!" in fetch("http://127.0.0.1:30081/"), "the NodePort on 127.0.0.1")
    node.kubectl("delete", "service", "frontend")
    eventually(lambda: not fetch(f"http://{cluster_ip}/"), "the rules gone", timeout=5)
    node.kubectl("delete", "pod", "pod-1", "pod-2", "--grace-period=1")


DNSUTILS = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dnsutils", "namespace": "default"},
            "spec": {"containers": [{"name": "dnsutils", "image": "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3",
                                     "command": ["sleep", "infinity"], "imagePullPolicy": "IfNotPresent"}],
                     "restartPolicy": "Always", "terminationGracePeriodSeconds": 1}}  # Kubernetes' "Debugging DNS Resolution"


def test_debugging_dns_resolution_as_kubernetes_docs_do(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=json.dumps(DNSUTILS))
    node.kubectl("wait", "--for=condition=Ready", "pod/dnsutils", "--timeout=60s")
    answer = node.kubectl("exec", "-i", "dnsutils", "--", "nslookup", "kubernetes.default").stdout
    assert "Server:\t\t10.43.0.10" in answer and "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.43.0.1" in answer, answer
    resolv = node.kubectl("exec", "dnsutils", "--", "cat", "/etc/resolv.conf").stdout.splitlines()
    assert resolv == ["search default.svc.cluster.local svc.cluster.local cluster.local", "nameserver 10.43.0.10",
                      "options ndots:5"], resolv
    node.kubectl("delete", "pod", "dnsutils")


def test_dns_records(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod(
        "resolver", "nslookup kubernetes.default.svc.cluster.local; nslookup nosuch.default.svc.cluster.local; "
                    "sleep 3600"))
    out = eventually(lambda: (lambda o: o if "NXDOMAIN" in o or "can't find" in o else "")(
        node.kubectl("logs", "resolver", check=False).stdout), "nslookup output")
    assert "10.43.0.1" in out, out
    node.kubectl("delete", "pod", "resolver", "--grace-period=1")


def test_pods_reach_the_api_through_the_kubernetes_service(node: Cluster) -> None:
    endpoints = json.loads(node.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)["subsets"]
    assert endpoints == [{"addresses": [{"ip": "10.42.0.1"}], "ports": [{"name": "https", "port": node.port,
                                                                          "protocol": "TCP"}]}], endpoints
    dns = node.kubectl("get", "service", "kube-dns", "-n", "kube-system", "--no-headers").stdout.split()
    assert dns[1:4] == ["ClusterIP", "10.43.0.10", "<none>"] and dns[4] == "53/UDP,53/TCP,9153/TCP", dns
    node.kubectl("create", "service", "clusterip", "myservice", "--tcp=80:9376")
    # Debian's busybox wget falls back from a missing openssl to its own TLS with a broken pipe
    # (it writes the request in clear), so the pod proves the connection and the host the TLS.
    node.kubectl("apply", "-f", "-", input=busybox_pod("in-cluster", (
        "env | sort; nc -w 3 kubernetes.default.svc 443 -e true && echo connected; sleep 3600")))
    out = eventually(lambda: (lambda o: o if "connected" in o else "")(
        node.kubectl("logs", "in-cluster", check=False).stdout), "a connection to kubernetes.default.svc:443")
    assert "default" in node.kubectl("--server", "https://10.43.0.1", "get", "namespaces").stdout  # TLS, verified
    service_ip = node.kubectl("get", "service", "myservice", "-o", "jsonpath={.spec.clusterIP}").stdout
    for line in ("KUBERNETES_SERVICE_HOST=10.43.0.1", "KUBERNETES_SERVICE_PORT=443",
                 f"MYSERVICE_SERVICE_HOST={service_ip}", f"MYSERVICE_PORT=tcp://{service_ip}:80",
                 f"MYSERVICE_PORT_80_TCP_ADDR={service_ip}", "MYSERVICE_SERVICE_PORT_80_9376=80"):
        assert line in out.splitlines(), (line, out)
    node.kubectl("delete", "pod", "in-cluster", "--grace-period=1")
    node.kubectl("delete", "service", "myservice")


def _backend(name: str) -> str:
    manifest = json.loads(busybox_pod(name, "mkdir -p /www; hostname > /www/index.html; touch /tmp/ready; "
                                            "httpd -f -p 80 -h /www"))
    manifest["metadata"]["labels"] = {"app": "be"}
    manifest["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["test", "-f", "/tmp/ready"]},
                                                           "periodSeconds": 1, "failureThreshold": 1}
    return json.dumps(manifest)


def test_traffic_spreads_and_follows_readiness(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=_backend("be-0"))
    node.kubectl("apply", "-f", "-", input=_backend("be-1"))
    node.kubectl("wait", "--for=condition=Ready", "pod/be-0", "pod/be-1", "--timeout=60s")
    node.kubectl("create", "service", "clusterip", "be", "--tcp=80:80")
    ip = node.kubectl("get", "service", "be", "-o", "jsonpath={.spec.clusterIP}").stdout
    eventually(lambda: fetch(f"http://{ip}/"), "the service to answer")
    seen = {fetch(f"http://{ip}/").strip() for _ in range(100)}
    assert seen == {b"be-0", b"be-1"}, seen
    node.kubectl("exec", "be-1", "--", "rm", "/tmp/ready")
    started = time.monotonic()
    eventually(lambda: all(fetch(f"http://{ip}/").strip() == b"be-0" for _ in range(20)), "be-1 out of rotation",
               timeout=10)
    print(f"be-1 out of rotation {time.monotonic() - started:.2f} s after its readiness probe began failing")
    node.kubectl("delete", "service", "be")
    node.kubectl("delete", "pod", "be-0", "be-1", "--grace-period=1")


class _Upstream:
    """A DNS server on the node's configured upstream (127.0.0.1:9) answering one outside name."""

    def __init__(self) -> None:
        import socket
        import threading

        from dnslib import QTYPE, RR, A, DNSRecord  # type: ignore[import-untyped]

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        host, port = NO_UPSTREAM.split(":")
        self.sock.bind((host, int(port)))

        def serve() -> None:
            while True:
                try:
                    data, peer = self.sock.recvfrom(4096)
                except OSError:
                    return
                request = DNSRecord.parse(data)
                reply = request.reply()
                if str(request.q.qname) == "outside.example." and request.q.qtype == QTYPE.A:
                    reply.add_answer(RR("outside.example.", QTYPE.A, rdata=A("192.0.2.123"), ttl=5))
                self.sock.sendto(reply.pack(), peer)
        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.sock.close()


def test_dns_headless_srv_forwarding_and_removal(node: Cluster) -> None:
    upstream = _Upstream()
    try:
        node.kubectl("apply", "-f", "-", input=_backend("hl-0"))
        node.kubectl("wait", "--for=condition=Ready", "pod/hl-0", "--timeout=60s")
        pod_ip = pod(node, "hl-0")["status"]["podIP"]
        headless = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hl"},
                    "spec": {"clusterIP": "None", "selector": {"app": "be"}, "ports": [{"name": "http", "port": 80}]}}
        node.kubectl("apply", "-f", "-", input=json.dumps(headless))
        script = ("sleep 2; nslookup hl.default.svc.cluster.local; "
                  "nslookup -type=srv _http._tcp.hl.default.svc.cluster.local; nslookup outside.example; sleep 3600")
        node.kubectl("apply", "-f", "-", input=busybox_pod("asker", script))
        out = eventually(lambda: (lambda o: o if "outside.example" in o and "192.0.2.123" in o else "")(
            node.kubectl("logs", "asker", check=False).stdout), "the three lookups")
        assert f"Address: {pod_ip}" in out, out
        assert "_http._tcp.hl.default.svc.cluster.local" in out and "service = " in out, out
        node.kubectl("delete", "service", "hl")
        node.kubectl("exec", "asker", "--", "sh", "-c", "sleep 2; nslookup hl.default.svc.cluster.local > /tmp/gone 2>&1; "
                                                        "cat /tmp/gone", check=False)
        gone = node.kubectl("exec", "asker", "--", "cat", "/tmp/gone").stdout
        assert "NXDOMAIN" in gone or "can't find" in gone, gone
    finally:
        upstream.close()
        node.kubectl("delete", "pod", "asker", "hl-0", "--grace-period=1", check=False)
