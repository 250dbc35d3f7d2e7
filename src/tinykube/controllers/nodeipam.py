"""The node-IPAM controller: gives each Node a /24 of the cluster CIDR as its podCIDR.

As kube-controller-manager's range allocator does (``--allocate-node-cidrs``): the lowest /24
not used by another Node, written once to ``spec.podCIDR`` and ``spec.podCIDRs``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from tinykube.api.registry import lookup
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.controllers.workqueue import WorkQueue

NODES = lookup("", "v1", "nodes")
assert NODES is not None
CLUSTER_CIDR = "10.42.0.0/16"
NODE_MASK = 24


def next_free(cluster_cidr: str, used: set[str], prefix: int = NODE_MASK) -> str:
    """The first /prefix subnet of the cluster CIDR not in ``used``."""
    for subnet in ipaddress.ip_network(cluster_cidr).subnets(new_prefix=prefix):
        if str(subnet) not in used:
            return str(subnet)
    raise RuntimeError(f"cluster CIDR {cluster_cidr} is exhausted")


def first_gateway(cluster_cidr: str = CLUSTER_CIDR) -> str:
    """The pod-network gateway of the first node's range: the host address by which pods reach a
    ``tinykube up`` whose API listens on loopback (its node is the first to register)."""
    return str(ipaddress.ip_network(next_free(cluster_cidr, set())).network_address + 1)


class NodeIpamController:
    def __init__(self, client: Client, cluster_cidr: str = CLUSTER_CIDR):
        self.client = client
        self.cluster_cidr = cluster_cidr
        self.nodes: dict[str, dict[str, Any]] = {}
        self.queue = WorkQueue(self.sync, "nodeipam")

    async def run(self) -> None:
        await asyncio.gather(list_and_watch(self.client, path(NODES), self._on_event), self.queue.run())

    async def _on_event(self, kind: str, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        if kind == "DELETED":
            self.nodes.pop(name, None)
            return
        self.nodes[name] = node
        if not node.get("spec", {}).get("podCIDR"):
            self.queue.add(name)

    async def sync(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None or node.get("spec", {}).get("podCIDR"):
            return
        used = {n["spec"]["podCIDR"] for n in self.nodes.values() if n.get("spec", {}).get("podCIDR")}
        cidr = next_free(self.cluster_cidr, used)
        patch = {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}  # one allocator: no need to pin the version
        self.nodes[name] = await self.client.patch(path(NODES, name=name), patch)
