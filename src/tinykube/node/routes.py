"""Routes to the other nodes' pods: ``<podCIDR> via <InternalIP>`` for every other node (flannel host-gw).

Each node's pods live on its own /24 of the cluster CIDR; a packet for another node's pod is
sent straight to that node's address, which forwards it onto its bridge.  The routes are more
specific than the ``unreachable`` cluster route, so addresses of nodes without a route stay
refused.  They carry a protocol number of their own, so the agent finds the ones it made
before a restart and removes those of nodes that are gone meanwhile; an orderly stop keeps
them (as flannel does), so pods keep talking while the agent is away.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any

import aiohttp

from tinykube.api.errors import ApiError
from tinykube.client.rest import Client, list_and_watch
from tinykube.node.runtime import proc

log = logging.getLogger(__name__)

NODES = "/api/v1/nodes"
PROTO = "77"  # rtnetlink protocol marking tinykube's host-gw routes (unassigned in /etc/iproute2/rt_protos)
Routes = dict[str, str]  # destination CIDR -> gateway


class RouteError(Exception):
    """``ip`` refused a route change."""


def node_route(node: dict[str, Any]) -> tuple[str, str] | None:
    """``(podCIDR, InternalIP)`` of a node, None until it has both."""
    cidr = node.get("spec", {}).get("podCIDR")
    addresses = node.get("status", {}).get("addresses") or []
    internal = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), None)
    if not cidr or not internal:
        return None
    return str(ipaddress.ip_network(cidr, strict=False)), internal


def plan(desired: Routes, present: Routes) -> tuple[list[str], list[str]]:
    """The ``ip -batch`` commands that turn ``present`` into ``desired``: replacements, then deletions."""
    replace = [f"route replace {cidr} via {via} proto {PROTO}"
               for cidr, via in sorted(desired.items()) if present.get(cidr) != via]
    delete = [f"route del {cidr} proto {PROTO}" for cidr in sorted(present.keys() - desired.keys())]
    return replace, delete


def parse_routes(text: str) -> Routes:
    """``ip -j route show proto 77`` output as destination -> gateway."""
    return {r["dst"]: r["gateway"] for r in json.loads(text or "[]") if "gateway" in r and "/" in r["dst"]}


class HostGateway:
    """Keeps one route per other node in this (network namespace's) main table."""

    def __init__(self, client: Client, node_name: str):
        self.client = client
        self.node_name = node_name
        self.wanted: dict[str, tuple[str, str]] = {}  # node name -> (podCIDR, InternalIP), other nodes only

    async def run(self) -> None:
        """One full sync from a list first, so routes of nodes deleted while the agent was away go;
        without that list (the API unreachable) the watch's first change syncs them instead."""
        try:
            for node in (await self.client.get(NODES))["items"]:
                self._want(node["metadata"]["name"], node_route(node))
            await self.sync()
        except (ApiError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
            log.warning("host-gw routes: listing nodes: %s", e)
        await list_and_watch(self.client, NODES, self.on_node)

    async def on_node(self, kind: str, node: dict[str, Any]) -> None:
        if self._want(node["metadata"]["name"], None if kind == "DELETED" else node_route(node)):
            await self.sync()

    def _want(self, name: str, route: tuple[str, str] | None) -> bool:
        """Record a node's route (None: it has none); whether anything changed."""
        if name == self.node_name:
            return False
        before = self.wanted.pop(name, None)
        if route is not None:
            self.wanted[name] = route
        return before != route

    async def sync(self) -> None:
        """Bring the table to the wanted routes; a failure is logged and retried on the next change."""
        try:
            replace, delete = plan(dict(self.wanted.values()), await _present())
            if replace or delete:
                await _batch(replace + delete)
        except RouteError as e:
            log.warning("host-gw routes: %s", e)


async def _present() -> Routes:
    done = await proc.run("ip", "-j", "route", "show", "proto", PROTO)
    if done.returncode != 0:
        raise RouteError(done.stderr.decode(errors="replace").strip())
    return parse_routes(done.stdout.decode())


async def _batch(commands: list[str]) -> None:
    log.info("host-gw routes: %s", "; ".join(commands))
    done = await proc.run("ip", "-batch", "-", input="".join(c + "\n" for c in commands).encode())
    if done.returncode != 0:
        raise RouteError(done.stderr.decode(errors="replace").strip())
