"""Service admission: ClusterIP and NodePort allocation, and their release on delete.

Each allocated address or port is a key in the store (``/registry/ranges/serviceips/10.43.0.7``)
created with create-if-absent, so two API servers on one store can never hand out the same one,
and a crash between allocation and the Service write leaks at most one key (repaired by a later
release of the same address).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from tinykube.api.errors import invalid, invalid_value
from tinykube.api.registry import ResourceType
from tinykube.store.base import KeyExists, Store

SERVICE_CIDR = "10.43.0.0/16"
NODE_PORTS = (30000, 32767)
_IPS = "/registry/ranges/serviceips/"
_PORTS = "/registry/ranges/servicenodeports/"
CLUSTER_DNS_OFFSET = 10  # 10.43.0.10 is the cluster DNS address every pod's resolv.conf names: never handed out
CLUSTER_DNS_IP = str(ipaddress.ip_network(SERVICE_CIDR).network_address + CLUSTER_DNS_OFFSET)  # the kube-dns Service's
_ATTEMPTS = 64  # random probes before a linear scan: the range is rarely dense


class ServiceAllocator:
    """Allocates ClusterIPs from the service CIDR and NodePorts from 30000–32767."""

    def __init__(self, store: Store, cidr: str = SERVICE_CIDR):
        self.store = store
        self.network = ipaddress.ip_network(cidr)

    async def admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Fill spec.clusterIP(s) and node ports of a new Service (defaulting keeps them on update)."""
        if rt.kind != "Service" or old is not None:
            return
        spec = obj.setdefault("spec", {})
        if spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None":
            spec["clusterIP"] = await self._claim_ip(obj, spec.get("clusterIP", ""))
            spec["clusterIPs"] = [spec["clusterIP"]]
        elif spec.get("clusterIP") == "None":
            spec["clusterIPs"] = ["None"]
        if spec.get("type") != "ExternalName":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for index, port in enumerate(spec.get("ports") or []):
                port["nodePort"] = await self._claim_port(obj, index, port.get("nodePort"))

    async def release(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Return a deleted (or never stored) Service's address and ports to the pool."""
        if rt.kind != "Service":
            return
        spec = obj.get("spec", {})
        if spec.get("clusterIP") not in (None, "", "None"):
            await self._free(_IPS + spec["clusterIP"])
        for port in spec.get("ports") or []:
            if port.get("nodePort"):
                await self._free(_PORTS + str(port["nodePort"]))

    async def _free(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except Exception:  # already free: release is idempotent
            pass

    async def _claim_ip(self, obj: dict[str, Any], wanted: str) -> str:
        if wanted:
            try:
                if ipaddress.ip_address(wanted) not in self.network:
                    raise ValueError
            except ValueError:
                raise invalid("Service", obj["metadata"]["name"], [invalid_value(
                    "spec.clusterIPs[0]", wanted, f"failed to allocate IP {wanted}: the provided IP ({wanted}) is not in "
                    f"the valid range. The range of valid IPs is {self.network}")]) from None
            if not await self._claim(_IPS + wanted):
                raise invalid("Service", obj["metadata"]["name"], [invalid_value(
                    "spec.clusterIPs", [wanted], f"failed to allocate IP {wanted}: provided IP is already allocated")])
            return wanted
        hosts = self.network.num_addresses - 2
        for _ in range(_ATTEMPTS):
            offset = random.randint(2, hosts)
            if offset == CLUSTER_DNS_OFFSET:
                continue
            candidate = str(self.network.network_address + offset)  # .1 is the kubernetes Service
            if await self._claim(_IPS + candidate):
                return candidate
        for offset in range(2, hosts + 1):
            if offset == CLUSTER_DNS_OFFSET:
                continue
            candidate = str(self.network.network_address + offset)
            if await self._claim(_IPS + candidate):
                return candidate
        raise invalid("Service", obj["metadata"]["name"], [invalid_value("spec.clusterIPs", None,
                                                                          "failed to allocate IP: range is full")])

    async def _claim_port(self, obj: dict[str, Any], index: int, wanted: int | None) -> int:
        low, high = NODE_PORTS
        if wanted:
            if not await self._claim(_PORTS + str(wanted)):
                raise invalid("Service", obj["metadata"]["name"], [invalid_value(
                    f"spec.ports[{index}].nodePort", wanted, "provided port is already allocated")])
            return wanted
        for _ in range(_ATTEMPTS):
            candidate = random.randint(low, high)
            if await self._claim(_PORTS + str(candidate)):
                return candidate
        for candidate in range(low, high + 1):
            if await self._claim(_PORTS + str(candidate)):
                return candidate
        raise invalid("Service", obj["metadata"]["name"], [invalid_value(f"spec.ports[{index}].nodePort", None,
                                                                          "range is full")])

    async def _claim(self, key: str) -> bool:
        try:
            await self.store.create(key, b"{}")
            return True
        except KeyExists:
            return False
