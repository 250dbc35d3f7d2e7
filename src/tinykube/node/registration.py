"""Node registration and heartbeats: the Node object, its status, and its Lease.

The agent registers its Node once (create, or adopt an existing one of the same name), posts
conditions when they change, and renews ``kube-node-lease/<node>`` every 10 s, as the kubelet
does since NodeLease: the Lease is the cheap heartbeat, the status carries the facts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.quantity import canonical
from tinykube.api.registry import lookup
from tinykube.client.clock import micro_now as _micro_now, now
from tinykube.client.rest import Client, path
from tinykube.node.host import MAX_PODS, HostFacts

log = logging.getLogger(__name__)

NODES = lookup("", "v1", "nodes")
LEASES = lookup("coordination.k8s.io", "v1", "leases")
assert NODES is not None and LEASES is not None

LEASE_DURATION = 40  # seconds: the kubelet's default nodeLeaseDurationSeconds
RENEW_INTERVAL = 10.0  # seconds between Lease renewals (a quarter of the duration, as upstream)
STATUS_INTERVAL = 300.0  # seconds: the status is re-posted at least this often (nodeStatusReportFrequency)
KUBELET_VERSION = "v1.32.4+tinykube"
EVICTION_MEMORY_BYTES = 100 * 1024 * 1024  # the kubelet's default hard eviction memory.available<100Mi
# nodefs.available<10%, as the float32 the kubelet parses "10%" into (hence 0.10000000149...)
EVICTION_NODEFS_FRACTION = 0.10000000149011612


def binary_si(n: int) -> str:
    """A byte count as a BinarySI ``Quantity`` serializes (``16Gi``, ``16279124Ki``, ``56403987978``)."""
    return canonical(f"{n // 1024}Ki") if n % 1024 == 0 else canonical(str(n))


def _resources(facts: HostFacts, memory: int, storage: int) -> dict[str, str]:
    """A resource list in the order Go's JSON encoder writes a map: sorted by name."""
    pages = {f"hugepages-{binary_si(size)}": binary_si(size * count) for size, count in facts.hugepages}
    out = {"cpu": str(facts.cpus), "ephemeral-storage": binary_si(storage), "memory": binary_si(memory),
           "pods": str(MAX_PODS)} | pages
    return dict(sorted(out.items()))


def capacity(facts: HostFacts) -> dict[str, str]:
    """What cAdvisor reports: cores, MemTotal, the root filesystem, huge pages, and --max-pods."""
    return _resources(facts, facts.memory_bytes, facts.storage_bytes)


def allocatable(facts: HostFacts) -> dict[str, str]:
    """Capacity less the default hard eviction thresholds (no kube- or system-reserved).

    Reserved huge pages are memory the pods cannot have, so they come off allocatable memory.
    """
    pages = sum(size * count for size, count in facts.hugepages)
    memory = max(0, facts.memory_bytes - EVICTION_MEMORY_BYTES - pages)
    storage = facts.storage_bytes - int(facts.storage_bytes * EVICTION_NODEFS_FRACTION)
    return _resources(facts, memory, storage)


def conditions(stamp: str, ready: bool = True) -> list[dict[str, Any]]:
    """The four conditions the kubelet posts, with its reasons and messages."""
    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {"type": kind, "status": status, "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
                "reason": reason, "message": message}
    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", "True", "KubeletReady", "kubelet is posting ready status") if ready else
        cond("Ready", "False", "KubeletNotReady", "container runtime status check may not have completed yet"),
    ]


def node_object(name: str, facts: HostFacts, kubelet_port: int) -> dict[str, Any]:
    """The Node a fresh agent registers (status is written through /status afterwards)."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name,
                         "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                         "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": facts.architecture,
                "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": facts.architecture,
                "node-role.kubernetes.io/control-plane": "true"}},
            "spec": {}}


def node_status(name: str, facts: HostFacts, kubelet_port: int, stamp: str) -> dict[str, Any]:
    """The status the kubelet's setters produce (addresses, nodeInfo, daemonEndpoints, conditions)."""
    return {"capacity": capacity(facts), "allocatable": allocatable(facts), "conditions": conditions(stamp),
            "addresses": [{"type": "InternalIP", "address": facts.internal_ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {"machineID": facts.machine_id, "systemUUID": facts.system_uuid, "bootID": facts.boot_id,
                         "kernelVersion": facts.kernel,
                         "osImage": facts.os_image, "containerRuntimeVersion": facts.runtime_version,
                         "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                         "operatingSystem": "linux", "architecture": facts.architecture}}


class Registration:
    """Keeps this node's Node and Lease alive."""

    def __init__(self, client: Client, name: str, facts: HostFacts, kubelet_port: int):
        self.client = client
        self.name = name
        self.facts = facts
        self.kubelet_port = kubelet_port
        self.node: dict[str, Any] = {}

    async def register(self) -> dict[str, Any]:
        """Create (or adopt) the Node and post a fresh Ready status; returns the Node."""
        try:
            await self.client.create(path(NODES) + "?fieldManager=kubelet", node_object(self.name, self.facts, self.kubelet_port))
        except ApiError as e:
            if e.code != 409:
                raise
        status = node_status(self.name, self.facts, self.kubelet_port, now())
        self.node = await self.client.patch(path(NODES, name=self.name, subresource="status"), {"status": status})
        return self.node

    async def wait_for_pod_cidr(self) -> str:
        """The node's podCIDR, once the node-IPAM controller has assigned it."""
        while True:
            node = await self.client.get(path(NODES, name=self.name))
            if node["spec"].get("podCIDR"):
                self.node = node
                return str(node["spec"]["podCIDR"])
            await asyncio.sleep(0.05)

    async def heartbeat(self) -> None:
        """Renew the Lease forever; re-post the status every STATUS_INTERVAL."""
        last_status = asyncio.get_running_loop().time()
        while True:
            try:
                await self._renew_lease()
                if asyncio.get_running_loop().time() - last_status > STATUS_INTERVAL:
                    await self.register()
                    last_status = asyncio.get_running_loop().time()
            except (ApiError, OSError) as e:
                log.warning("node heartbeat failed: %s", e)
            await asyncio.sleep(RENEW_INTERVAL)

    async def _renew_lease(self) -> None:
        url = path(LEASES, "kube-node-lease", self.name)
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": _micro_now()}
        try:
            await self.client.patch(url, {"spec": spec})
        except ApiError as e:
            if e.code != 404:
                raise
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": self.name, "namespace": "kube-node-lease",
                                  "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                                                       "uid": self.node.get("metadata", {}).get("uid", "")}]},
                     "spec": spec}
            await self.client.create(path(LEASES, "kube-node-lease"), lease)
