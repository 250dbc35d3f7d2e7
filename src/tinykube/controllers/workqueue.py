"""A keyed work queue: each key is synced by one worker at a time, duplicates coalesce.

Event handlers only ``add`` a key; ``run`` calls ``sync(key)`` for each, and re-queues a key
whose sync failed after a back-off that doubles per failure (capped), as client-go's
rate-limited queue does.  A key added while it is being synced is synced again afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

BASE_DELAY = 0.05  # seconds before the first retry of a failed key
MAX_DELAY = 30.0  # seconds: the retry back-off never grows past this


class WorkQueue:
    """Deduplicating queue of string keys with per-key retry back-off."""

    def __init__(self, sync: Callable[[str], Awaitable[None]], name: str):
        self._sync = sync
        self._name = name
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._failures: dict[str, int] = {}

    def add(self, key: str) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def run(self, workers: int = 1) -> None:
        await asyncio.gather(*(self._worker() for _ in range(workers)))

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await self._sync(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                count = self._failures[key] = self._failures.get(key, 0) + 1
                log.warning("%s: sync of %s failed (%d)", self._name, key, count, exc_info=True)
                self.add_after(key, min(BASE_DELAY * 2 ** count, MAX_DELAY))
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
