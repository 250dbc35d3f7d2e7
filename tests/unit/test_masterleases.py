"""API server leases: each server's address listed while it renews, gone once it stops or expires."""

from __future__ import annotations

from tinykube.apiserver.masterleases import PREFIX, MasterLeases, registered
from tinykube.store.sqlite import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_live_addresses_are_those_renewed_within_the_ttl(store: SqliteStore) -> None:
    clock = Clock()
    a, b = MasterLeases(store, "192.0.2.9", clock=clock), MasterLeases(store, "192.0.2.10", clock=clock)
    await a.renew()
    await b.renew()
    assert await a.live() == ["192.0.2.10", "192.0.2.9"]
    clock.t += 10
    await a.renew()
    clock.t += 6  # b last renewed 16 s ago: past the 15 s TTL
    assert await b.live() == ["192.0.2.9"]
    assert [kv.key for kv in (await store.list(PREFIX)).items] == [PREFIX + "192.0.2.9"]  # the expired one removed
    await b.renew()  # b is back
    assert await a.live() == ["192.0.2.10", "192.0.2.9"]


async def test_a_server_without_an_address_keeps_no_lease(store: SqliteStore) -> None:
    leases = MasterLeases(store, None)
    await leases.renew()
    await leases.remove()
    assert await leases.live() == []


async def test_registered_removes_the_lease_when_the_server_stops(store: SqliteStore) -> None:
    other = MasterLeases(store, "192.0.2.10")
    await other.renew()
    async with registered(store, "192.0.2.9") as leases:
        assert await leases.live() == ["192.0.2.10", "192.0.2.9"]
    assert await other.live() == ["192.0.2.10"]
