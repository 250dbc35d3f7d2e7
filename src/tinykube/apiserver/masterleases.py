"""Which API servers are alive: each one's address under ``/masterleases/``, renewed every 10 s.

kube-apiserver's lease endpoint reconciler (``pkg/controlplane/reconcilers/lease.go``): every
API server keeps the key ``/masterleases/<ip>`` in the store, refreshed every reconcile interval
with a TTL a little longer, and the ``kubernetes`` Endpoints list the addresses whose keys are
alive.  The Store protocol has no TTLs, so each value carries its renewal time: a reader skips
(and removes) leases older than the TTL.  That compares the reader's clock with the writer's,
so skew between hosts only shifts how long a dead server stays listed.  The keys are outside
``/registry/``, so no API client ever sees them, as upstream's.  A server without an address
to publish (bound to loopback) keeps no lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson

from tinykube.store.base import KeyNotFound, RevisionMismatch, Store, StoreError

log = logging.getLogger(__name__)

PREFIX = "/masterleases/"
TTL = 15.0  # seconds a lease lives unrenewed (kube-apiserver's master endpoint TTL)
INTERVAL = 10.0  # seconds between renewals (its --endpoint-reconciler interval)


class MasterLeases:
    """This server's lease (``ip``, None for none) and everyone's live addresses."""

    def __init__(self, store: Store, ip: str | None, ttl: float = TTL, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ip = ip
        self.ttl = ttl
        self.clock = clock

    async def renew(self) -> None:
        """Write our lease with the current time (``UpdateLease``)."""
        if self.ip is None:
            return
        key, value = PREFIX + self.ip, orjson.dumps({"ip": self.ip, "renewTime": self.clock()})
        try:
            await self.store.update(key, value, 0)
        except KeyNotFound:
            await self.store.create(key, value)

    async def live(self) -> list[str]:
        """The addresses of unexpired leases, sorted (``ListLeases``); expired ones are removed."""
        now, ips = self.clock(), []
        for kv in (await self.store.list(PREFIX)).items:
            lease = orjson.loads(kv.value)
            if lease["renewTime"] + self.ttl > now:
                ips.append(str(lease["ip"]))
                continue
            try:
                await self.store.delete(kv.key, kv.mod_revision)  # unless renewed meanwhile
            except (KeyNotFound, RevisionMismatch):
                pass
        return sorted(ips)

    async def remove(self) -> None:
        """Drop our lease (``RemoveLease``, on a clean stop), so the others stop listing us at once."""
        if self.ip is None:
            return
        try:
            await self.store.delete(PREFIX + self.ip)
        except KeyNotFound:
            pass

    async def run(self, interval: float = INTERVAL) -> None:
        """Renew forever; a failed renewal is logged and tried again next interval."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except StoreError as e:
                log.warning("could not renew the lease of API server %s: %s", self.ip, e)


@asynccontextmanager
async def registered(store: Store, ip: str | None) -> AsyncIterator[MasterLeases]:
    """Our lease kept while the block runs, removed when it ends."""
    leases = MasterLeases(store, ip)
    await leases.renew()
    renewing = asyncio.create_task(leases.run(), name="tinykube-masterleases")
    try:
        yield leases
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
        try:
            await leases.remove()
        except StoreError as e:
            log.warning("could not remove the lease of API server %s: %s", ip, e)
