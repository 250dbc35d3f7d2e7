"""Endpoints and EndpointSlices against a real server: Services, and pods with no containers.

The pods are bound to a Node object no agent serves; their status (IP, readiness) is written
through ``/status`` as a kubelet would, so the controllers ``tinykube server`` runs see them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from tests.e2e.cluster import Cluster, eventually

pytestmark = pytest.mark.slow

WAIT = 20.0
NODE = "endpoints-node"


@pytest.fixture(scope="module")
def core(cluster: Cluster) -> Iterator[client.CoreV1Api]:
    """The API, and a Node in a zone for the pods to be bound to (removed afterwards: the
    server is shared with other test modules)."""
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    api.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=NODE, labels={"topology.kubernetes.io/zone": "zone-a"})))
    try:
        yield api
    finally:
        api.delete_node(NODE)


def make_pod(core: client.CoreV1Api, ns: str, name: str, ip: str, ready: bool = True, **spec: Any) -> None:
    container = client.V1Container(name="web", image="nginx", ports=[client.V1ContainerPort(name="http", container_port=80)])
    core.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "web"}),
        spec=client.V1PodSpec(node_name=NODE, containers=[container], **spec)))
    set_status(core, ns, name, ip, ready)


def set_status(core: client.CoreV1Api, ns: str, name: str, ip: str, ready: bool) -> None:
    status = "True" if ready else "False"
    core.patch_namespaced_pod_status(name, ns, {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": status}, {"type": "ContainersReady", "status": status}]}})


def make_service(cluster: Cluster, ns: str, name: str = "web", headless: bool = False) -> None:
    spec: dict[str, Any] = {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    if headless:
        spec["clusterIP"] = "None"
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"tier": "front"}}, "spec": spec}))


def rows(cluster: Cluster, *args: str) -> list[list[str]]:
    return [line.split() for line in cluster.kubectl("get", *args).stdout.splitlines()]


def test_kubectl_shows_endpoints_and_endpointslices(cluster: Cluster, core: client.CoreV1Api, ns: str) -> None:
    make_service(cluster, ns)
    make_pod(core, ns, "web-b", "10.42.0.6")
    make_pod(core, ns, "web-a", "10.42.0.5")
    endpoints = eventually(lambda: (r := rows(cluster, "endpoints", "-n", ns)) and len(r) > 1
                           and r[1][1] == "10.42.0.5:80,10.42.0.6:80" and r, "endpoints of both pods")
    assert endpoints[0] == ["NAME", "ENDPOINTS", "AGE"] and endpoints[1][0] == "web"
    slices = rows(cluster, "endpointslices", "-n", ns)
    assert slices[0] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert slices[1][0].startswith("web-") and slices[1][1:3] == ["IPv4", "80"]
    assert sorted(slices[1][3].split(",")) == ["10.42.0.5", "10.42.0.6"]  # a new endpoint is appended to its slice

    stored = json.loads(cluster.kubectl("get", "endpointslices", "-n", ns, "-o", "json").stdout)["items"][0]
    assert stored["metadata"]["labels"] == {"tier": "front", "kubernetes.io/service-name": "web",
                                            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    owner = stored["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Service", "web", True)
    assert stored["endpoints"][0]["zone"] == "zone-a" and stored["endpoints"][0]["nodeName"] == NODE
    assert stored["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]


def test_readiness_flip_reaches_endpoints_within_a_second(cluster: Cluster, core: client.CoreV1Api, ns: str) -> None:
    make_service(cluster, ns)
    make_pod(core, ns, "web-a", "10.42.0.5")
    make_pod(core, ns, "web-b", "10.42.0.6")
    discovery = client.DiscoveryV1Api(core.api_client)
    eventually(lambda: len((core.read_namespaced_endpoints("web", ns).subsets or [{}])[0].addresses or []) == 2,
               "two ready addresses")

    set_status(core, ns, "web-b", "10.42.0.6", ready=False)
    flipped = time.monotonic()
    subset = eventually(lambda: (s := core.read_namespaced_endpoints("web", ns).subsets) and s[0].not_ready_addresses
                        and s[0], "web-b not ready", timeout=1.0)
    elapsed = time.monotonic() - flipped
    assert [a.ip for a in subset.addresses] == ["10.42.0.5"] and [a.ip for a in subset.not_ready_addresses] == ["10.42.0.6"]
    assert elapsed < 1.0

    def conditions() -> dict[str, Any]:
        items = discovery.list_namespaced_endpoint_slice(ns, label_selector="kubernetes.io/service-name=web").items
        return {e.addresses[0]: (e.conditions.ready, e.conditions.serving) for s in items for e in s.endpoints or []}
    eventually(lambda: conditions() == {"10.42.0.5": (True, True), "10.42.0.6": (False, False)}, "slice conditions",
               timeout=1.0)

    set_status(core, ns, "web-b", "10.42.0.6", ready=True)
    eventually(lambda: not core.read_namespaced_endpoints("web", ns).subsets[0].not_ready_addresses, "web-b ready again",
               timeout=1.0)


def test_headless_service_publishes_hostnames(cluster: Cluster, core: client.CoreV1Api, ns: str) -> None:
    make_service(cluster, ns, "db", headless=True)
    make_pod(core, ns, "db-0", "10.42.0.7", hostname="db-0", subdomain="db")
    subset = eventually(lambda: (s := core.read_namespaced_endpoints("db", ns).subsets) and s[0], "db endpoints")
    assert [(a.ip, a.hostname) for a in subset.addresses] == [("10.42.0.7", "db-0")]
    labels = core.read_namespaced_endpoints("db", ns).metadata.labels
    assert labels == {"tier": "front", "service.kubernetes.io/headless": ""}


def test_deleting_the_service_removes_its_endpoints(cluster: Cluster, core: client.CoreV1Api, ns: str) -> None:
    make_service(cluster, ns)
    eventually(lambda: len(rows(cluster, "endpointslices", "-n", ns)) == 2, "the placeholder slice")
    assert rows(cluster, "endpoints", "web", "-n", ns)[1][1] == "<none>"
    assert rows(cluster, "endpointslices", "-n", ns)[1][2:4] == ["<unset>", "<unset>"]
    cluster.kubectl("delete", "service", "web", "-n", ns)
    eventually(lambda: cluster.kubectl("get", "endpoints,endpointslices", "-n", ns, "-o", "name").stdout == "",
               "no endpoints left")


def test_the_kubernetes_service_has_no_loopback_endpoints(cluster: Cluster) -> None:
    endpoints = eventually(lambda: (r := cluster.kubectl("get", "endpoints", "kubernetes", "-n", "default", "-o", "json",
                                                          check=False)).returncode == 0 and json.loads(r.stdout),
                           "the kubernetes Endpoints")
    assert "subsets" not in endpoints  # the server is bound to 127.0.0.1, which Endpoints may not hold
    assert endpoints["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
    endpoint_slice = json.loads(cluster.kubectl("get", "endpointslice", "kubernetes", "-n", "default", "-o", "json").stdout)
    assert endpoint_slice["ports"] == [{"name": "https", "port": cluster.port, "protocol": "TCP"}]
