"""host-gw route planning: one route per other node, replaced when it moves, deleted when it goes."""

from __future__ import annotations

from typing import Any

from tinykube.node import routes
from tinykube.node.routes import HostGateway, node_route, parse_routes, plan


def node(name: str, cidr: str | None, ip: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {},
            "status": {"addresses": [{"type": "Hostname", "address": name}]
                       + ([{"type": "InternalIP", "address": ip}] if ip else [])}}


def test_node_route_needs_cidr_and_internal_ip() -> None:
    assert node_route(node("b", "10.42.2.0/24", "192.168.77.3")) == ("10.42.2.0/24", "192.168.77.3")
    assert node_route(node("b", None, "192.168.77.3")) is None
    assert node_route(node("b", "10.42.2.0/24", None)) is None


def test_plan_replaces_changed_and_deletes_gone() -> None:
    desired = {"10.42.2.0/24": "192.168.77.3", "10.42.3.0/24": "192.168.77.4"}
    present = {"10.42.2.0/24": "192.168.77.3", "10.42.3.0/24": "192.168.77.9", "10.42.4.0/24": "192.168.77.5"}
    assert plan(desired, present) == (["route replace 10.42.3.0/24 via 192.168.77.4 proto 77"],
                                      ["route del 10.42.4.0/24 proto 77"])
    assert plan(desired, desired) == ([], [])


def test_parse_routes_reads_ip_json() -> None:
    text = '[{"dst":"10.42.2.0/24","gateway":"192.168.77.3","dev":"eth0","protocol":"77","flags":[]}]'
    assert parse_routes(text) == {"10.42.2.0/24": "192.168.77.3"}
    assert parse_routes("") == {}


async def test_gateway_skips_itself_and_syncs_only_on_change(monkeypatch: Any) -> None:
    batches: list[list[str]] = []
    table: dict[str, str] = {}

    async def present() -> dict[str, str]:
        return dict(table)

    async def batch(commands: list[str]) -> None:
        batches.append(commands)
        table.clear()
        table.update(gw.wanted.values())  # what the commands make of the table

    monkeypatch.setattr(routes, "_present", present)
    monkeypatch.setattr(routes, "_batch", batch)
    gw = HostGateway(None, "a")  # type: ignore[arg-type]
    await gw.on_node("ADDED", node("a", "10.42.1.0/24", "192.168.77.2"))
    await gw.on_node("ADDED", node("b", "10.42.2.0/24", "192.168.77.3"))
    await gw.on_node("MODIFIED", node("b", "10.42.2.0/24", "192.168.77.3"))  # a heartbeat: nothing to do
    await gw.on_node("DELETED", node("b", "10.42.2.0/24", "192.168.77.3"))
    assert batches == [["route replace 10.42.2.0/24 via 192.168.77.3 proto 77"], ["route del 10.42.2.0/24 proto 77"]]


async def test_first_list_removes_routes_of_nodes_gone_meanwhile(monkeypatch: Any) -> None:
    batches: list[list[str]] = []

    class Listing:
        async def get(self, url: str) -> dict[str, Any]:
            return {"items": [node("a", "10.42.1.0/24", "192.168.77.2"), node("c", "10.42.3.0/24", "192.168.77.4")]}

    async def present() -> dict[str, str]:
        return {"10.42.2.0/24": "192.168.77.3", "10.42.3.0/24": "192.168.77.4"}  # b is gone, c is kept

    async def batch(commands: list[str]) -> None:
        batches.append(commands)

    async def no_watch(*args: Any) -> None:
        return None

    monkeypatch.setattr(routes, "_present", present)
    monkeypatch.setattr(routes, "_batch", batch)
    monkeypatch.setattr(routes, "list_and_watch", no_watch)
    await HostGateway(Listing(), "a").run()  # type: ignore[arg-type]
    assert batches == [["route del 10.42.2.0/24 proto 77"]]
