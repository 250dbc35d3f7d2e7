"""Node registration and heartbeats: the Node object, its status, and its Lease.

The agent registers its Node once (create, or adopt an existing one of the same name), posts
conditions when they change, and renews ``kube-node-lease/<node>`` every 10 s, as the kubelet
does since NodeLease: the Lease is the cheap heartbeat, the status carries the facts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import aiohttp

from tinykube.api.errors import ApiError
from tinykube.api.quantity import DECIMAL_SI, QuantityError, canonical, format_quantity, parse_quantity, value
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
    """A byte count as a BinarySI ``Quantity`` serializes (``16Gi``, ``16279124Ki``, ``56403987978``).

    Under 1024 it is written as DecimalSI (``1k``); other non-multiples of 1024 stay plain digits.
    """
    if -1024 < n < 1024:
        return canonical(str(n))
    return canonical(f"{n // 1024}Ki") if n % 1024 == 0 else str(n)


def _resources(facts: HostFacts, memory: int, storage: int, cpu: Fraction | None = None) -> dict[str, str]:
    """A resource list in the order Go's JSON encoder writes a map: sorted by name."""
    pages = {f"hugepages-{binary_si(size)}": binary_si(size * count) for size, count in facts.hugepages}
    cores = str(facts.cpus) if cpu is None else format_quantity(cpu, DECIMAL_SI)
    out = {"cpu": cores, "ephemeral-storage": binary_si(storage), "memory": binary_si(memory),
           "pods": str(MAX_PODS)} | pages
    return dict(sorted(out.items()))


def capacity(facts: HostFacts) -> dict[str, str]:
    """What cAdvisor reports: cores, MemTotal, the root filesystem, huge pages, and --max-pods."""
    return _resources(facts, facts.memory_bytes, facts.storage_bytes)


RESERVABLE = ("cpu", "memory", "ephemeral-storage", "pid")


def parse_reserved(text: str) -> dict[str, Fraction]:
    """``--system-reserved``/``--kube-reserved`` (``cpu=500m,memory=512Mi``), as the kubelet's
    ``parseResourceList`` reads them; ValueError with its message otherwise."""
    out: dict[str, Fraction] = {}
    for pair in filter(None, text.split(",")):
        name, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"malformed pair, expect string=string: {pair}")
        if name.strip() not in RESERVABLE:
            raise ValueError(f'cannot reserve "{name.strip()}" resource')
        try:
            amount = parse_quantity(raw.strip())
        except QuantityError as e:
            raise ValueError(f'failed to parse quantity "{raw.strip()}" for "{name.strip()}" resource: {e}') from None
        if amount < 0:
            raise ValueError(f'resource quantity for "{name.strip()}" cannot be negative: {raw.strip()}')
        out[name.strip()] = amount
    return out


def reservation(*reserved: Mapping[str, Fraction]) -> dict[str, Fraction]:
    """System- and kube-reserved summed per resource (``GetNodeAllocatableReservation`` before evictions)."""
    out: dict[str, Fraction] = {}
    for amounts in reserved:
        for name, amount in amounts.items():
            out[name] = out.get(name, Fraction(0)) + amount
    return out


def allocatable(facts: HostFacts, reserved: Mapping[str, Fraction] | None = None) -> dict[str, str]:
    """Capacity less ``reserved`` (system- plus kube-reserved) and the default hard eviction
    thresholds, never below zero, as the kubelet's node allocatable; ``pid`` is not in capacity.

    Reserved huge pages are memory the pods cannot have, so they come off allocatable memory.
    """
    reserved = reserved or {}
    pages = sum(size * count for size, count in facts.hugepages)
    memory = max(0, facts.memory_bytes - value(reserved.get("memory", Fraction(0))) - EVICTION_MEMORY_BYTES - pages)
    storage = max(0, facts.storage_bytes - value(reserved.get("ephemeral-storage", Fraction(0)))
                  - int(facts.storage_bytes * EVICTION_NODEFS_FRACTION))
    cpu = max(Fraction(0), facts.cpus - reserved["cpu"]) if "cpu" in reserved else None
    return _resources(facts, memory, storage, cpu)


# The pressure conditions (nodestatus setters): type -> ((reason, message, event) when True, ... when False).
PRESSURE = {
    "MemoryPressure": (("KubeletHasInsufficientMemory", "kubelet has insufficient memory available",
                        "NodeHasInsufficientMemory"),
                       ("KubeletHasSufficientMemory", "kubelet has sufficient memory available",
                        "NodeHasSufficientMemory")),
    "DiskPressure": (("KubeletHasDiskPressure", "kubelet has disk pressure", "NodeHasDiskPressure"),
                     ("KubeletHasNoDiskPressure", "kubelet has no disk pressure", "NodeHasNoDiskPressure")),
    "PIDPressure": (("KubeletHasInsufficientPID", "kubelet has insufficient PID available", "NodeHasInsufficientPID"),
                    ("KubeletHasSufficientPID", "kubelet has sufficient PID available", "NodeHasSufficientPID")),
}


def conditions(stamp: str, ready: bool = True, pressure: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The four conditions the kubelet posts, with its reasons and messages; ``pressure`` names the true ones."""
    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {"type": kind, "status": status, "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
                "reason": reason, "message": message}

    def pressure_cond(kind: str) -> dict[str, Any]:
        reason, message, _ = PRESSURE[kind][0 if kind in pressure else 1]
        return cond(kind, "True" if kind in pressure else "False", reason, message)
    return [
        *(pressure_cond(kind) for kind in PRESSURE),
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


def node_status(name: str, facts: HostFacts, kubelet_port: int, stamp: str,
                pressure: frozenset[str] = frozenset(), reserved: Mapping[str, Fraction] | None = None) -> dict[str, Any]:
    """The status the kubelet's setters produce (addresses, nodeInfo, daemonEndpoints, conditions)."""
    return {"capacity": capacity(facts), "allocatable": allocatable(facts, reserved),
            "conditions": conditions(stamp, pressure=pressure),
            "addresses": [{"type": "InternalIP", "address": facts.internal_ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {"machineID": facts.machine_id, "systemUUID": facts.system_uuid, "bootID": facts.boot_id,
                         "kernelVersion": facts.kernel,
                         "osImage": facts.os_image, "containerRuntimeVersion": facts.runtime_version,
                         "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                         "operatingSystem": "linux", "architecture": facts.architecture}}


class Registration:
    """Keeps this node's Node and Lease alive."""

    def __init__(self, client: Client, name: str, facts: HostFacts, kubelet_port: int,
                 reserved: Mapping[str, Fraction] | None = None):
        self.client = client
        self.name = name
        self.facts = facts
        self.kubelet_port = kubelet_port
        self.reserved = dict(reserved or {})  # --system-reserved plus --kube-reserved
        self.node: dict[str, Any] = {}
        self.pressure: frozenset[str] = frozenset()  # the pressure conditions now true (the eviction manager's)

    async def register(self) -> dict[str, Any]:
        """Create (or adopt) the Node and post a fresh Ready status; returns the Node."""
        try:
            await self.client.create(path(NODES) + "?fieldManager=kubelet", node_object(self.name, self.facts, self.kubelet_port))
        except ApiError as e:
            if e.code != 409:
                raise
        status = node_status(self.name, self.facts, self.kubelet_port, now(), self.pressure, self.reserved)
        self.node = await self.client.patch(path(NODES, name=self.name, subresource="status"), {"status": status})
        return self.node

    async def set_pressure(self, pressure: frozenset[str]) -> list[str]:
        """Post the pressure conditions when they change; the node event reasons of the changes.

        Conditions that did not change keep their transition times, as the kubelet's setters do.
        """
        changed = self.pressure ^ pressure
        if not changed:
            return []
        stamp = now()
        old = {c["type"]: c for c in self.node.get("status", {}).get("conditions", [])}
        fresh = [c if c["type"] in changed else {**old.get(c["type"], c), "lastHeartbeatTime": stamp}
                 for c in conditions(stamp, pressure=pressure)]
        self.node = await self.client.patch(path(NODES, name=self.name, subresource="status"),
                                            {"status": {"conditions": fresh}})
        self.pressure = pressure  # only once posted: a failed patch is tried again by the next pass
        return [PRESSURE[kind][0 if kind in pressure else 1][2] for kind in PRESSURE if kind in changed]

    async def wait_for_pod_cidr(self) -> str:
        """The node's podCIDR, once the node-IPAM controller has assigned it."""
        while True:
            node = await self.client.get(path(NODES, name=self.name))
            if node["spec"].get("podCIDR"):
                self.node = node
                return str(node["spec"]["podCIDR"])
            await asyncio.sleep(0.05)

    async def heartbeat(self) -> None:
        """Renew the Lease forever; re-post the status every STATUS_INTERVAL, or at once when the
        Node no longer says what this agent reports.  Each round has RENEW_INTERVAL to finish (the
        kubelet's heartbeat client timeout); a failed one drops the client's connections."""
        last_status = asyncio.get_running_loop().time()
        while True:
            try:
                async with asyncio.timeout(RENEW_INTERVAL):
                    await self._renew_lease()
                    if asyncio.get_running_loop().time() - last_status > STATUS_INTERVAL or await self._status_lost():
                        await self.register()
                        last_status = asyncio.get_running_loop().time()
            except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as e:
                log.warning("node heartbeat failed: %r; dropping every connection to the API server", e)
                await self.client.reset("the node's heartbeat failed")
            await asyncio.sleep(RENEW_INTERVAL)

    async def _status_lost(self) -> bool:
        """Whether the Node's conditions differ from ours: the node lifecycle controller wrote them
        Unknown while it did not hear from us.  The kubelet compares with the Node it reads every
        status period and posts again at once, so Ready returns as soon as the Lease does."""
        node = await self.client.get(path(NODES, name=self.name))
        ours = {c["type"]: c["status"] for c in conditions(now(), pressure=self.pressure)}
        theirs = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
        return any(theirs.get(kind) != status for kind, status in ours.items())

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
