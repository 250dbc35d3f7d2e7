"""What tinykube changes on the host, put back after a test session that started from a clean host.

The CNI bridge plugin turns on ip_forward and creates its bridge; portmap creates ``nat`` tables
that its DEL leaves; the kubelet-style QoS parent cgroups stay after the last pod; a node killed
without an orderly stop leaves the cluster DNS address on lo; the agent's ``unreachable`` routes for
the cluster CIDRs stay after it stops (they keep cluster traffic on the host), and route_localnet
stays on if the proxy was not cleaned up.  A snapshot
taken first lets teardown remove only what the session itself created.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tinykube.node.runtime import cgroups

HOST_LOCK = "/run/tinykube-e2e-node.lock"  # held by whatever changes the host's network while it runs
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
CLUSTER_DNS = "10.43.0.10"  # the cluster DNS address a node puts on lo
CLUSTER_CIDRS = ("10.42.0.0/16", "10.43.0.0/16")
ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")  # the proxy sets it for localhost NodePorts


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """One user of the host's network at a time: a node cluster (its bridge, DNS address on lo,
    proxy tables and service route) and the runtime tests (which reset the cluster CIDRs' routes)
    would undo each other's changes; a second test session waits for the first."""
    with open(HOST_LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {HOST_LOCK}: another session uses the host's network", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def nat_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line.split()[1] for line in out.splitlines() if line.split()[2:] == ["nat"]}


def has_dns_address() -> bool:
    out = subprocess.run(["ip", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True).stdout
    return f"{CLUSTER_DNS}/32" in out


def cluster_routes() -> set[str]:
    """The main table's routes for the cluster CIDRs (the agent's ``unreachable`` ones, the proxy's ``dev lo``)."""
    out = subprocess.run(["ip", "-4", "route", "show", "table", "main"], capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if any(cidr in line for cidr in CLUSTER_CIDRS)}


def qos_parents() -> set[Path]:
    return {h.path / cgroups.TOP for h in cgroups.hierarchies() if (h.path / cgroups.TOP).is_dir()}


@dataclass
class HostSnapshot:
    """The host before the session: restore() undoes only what came after."""

    bridges: tuple[str, ...]
    forward: str = field(default_factory=lambda: IP_FORWARD.read_text())
    had_bridges: set[str] = field(default_factory=set)
    had_tables: set[str] = field(default_factory=nat_tables)
    had_qos: set[Path] = field(default_factory=qos_parents)
    had_dns: bool = field(default_factory=has_dns_address)
    had_routes: set[str] = field(default_factory=cluster_routes)
    localnet: str = field(default_factory=lambda: ROUTE_LOCALNET.read_text())

    def __post_init__(self) -> None:
        self.had_bridges = {b for b in self.bridges if link_exists(b)}

    def restore(self) -> None:
        for bridge in set(self.bridges) - self.had_bridges:
            if link_exists(bridge):
                subprocess.run(["ip", "link", "del", bridge], check=False)
        IP_FORWARD.write_text(self.forward)
        for family in nat_tables() - self.had_tables:
            subprocess.run(["nft", "delete", "table", family, "nat"], check=False)
        if not self.had_dns and has_dns_address():  # a node killed before its orderly stop leaves it
            subprocess.run(["ip", "addr", "del", f"{CLUSTER_DNS}/32", "dev", "lo"], check=False)
        for route in cluster_routes() - self.had_routes:  # the agent's safety routes outlive its stop
            subprocess.run(["ip", "route", "del", *route.split()], check=False)
        for route in self.had_routes - cluster_routes():  # the proxy replaced the service CIDR's
            subprocess.run(["ip", "route", "replace", *route.split()], check=False)
        ROUTE_LOCALNET.write_text(self.localnet)
        for path in qos_parents() - self.had_qos:
            for d in (path / "burstable", path / "besteffort", path):
                with contextlib.suppress(OSError):  # still in use by someone else: leave it
                    d.rmdir()
