"""Shared watches: one list-and-watch per resource for every controller of a process.

kube-controller-manager runs its controllers on shared informers, so that a pod change reaches
the endpoints, quota, node lifecycle and taint eviction controllers through one watch.  Our
controllers each call :func:`~tinykube.client.rest.list_and_watch`; on a client passed to
:func:`share_watches` those calls join one :class:`SharedWatch` per (URL, parameters) instead of
opening their own.  Every watch event otherwise costs the API server and the client its TLS
record, chunk parsing and JSON decoding once per controller: about a third of the CPU a pod
create costs, measured with bench/api.py.

Each handler gets its own decoded copy of every object (handlers keep and change what they are
given), and a handler that joins late is first given every current object as ADDED, from the
raw JSON the watch keeps, exactly as if it had listed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from tinykube.client.rest import Client, Handler, Known, informer_loop

Key = tuple[str, tuple[tuple[str, str], ...]]


def share_watches(client: Client) -> None:
    """Make every :func:`list_and_watch` on ``client`` share one watch per resource."""
    client.shared = SharedWatches(client)


class SharedWatches:
    """The client's shared watches, by URL and query parameters."""

    def __init__(self, client: Client):
        self.client = client
        self._watches: dict[Key, SharedWatch] = {}

    async def follow(self, url: str, handler: Handler, params: dict[str, str] | None) -> None:
        """Deliver the watch's events to ``handler`` until cancelled (or the watch fails)."""
        key = (url, tuple(sorted((params or {}).items())))
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = SharedWatch(self.client, url, params)
        try:
            await watch.follow(handler)
        finally:
            if not watch.handlers:
                self._watches.pop(key, None)


@dataclass
class SharedWatch:
    """One informer loop fanning out to its handlers; the loop keeps the raw objects it delivered."""

    client: Client
    url: str
    params: dict[str, str] | None
    handlers: list[Handler] = field(default_factory=list)
    objects: Known = field(default_factory=dict)  # updated by the loop right after each delivery
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _task: asyncio.Task[None] | None = None

    async def follow(self, handler: Handler) -> None:
        async with self._lock:
            for raw in list(self.objects.values()):
                await handler("ADDED", orjson.loads(raw))
            self.handlers.append(handler)
            if self._task is None:
                self._task = asyncio.create_task(informer_loop(self.client, self.url, self._deliver, self.params,
                                                               known=self.objects))
        try:
            await asyncio.shield(self._task)  # a failure of the loop (a handler's bug) reaches every follower
        finally:
            self.handlers.remove(handler)
            if not self.handlers and self._task is not None:
                self._task.cancel()

    async def _deliver(self, kind: str, obj: dict[str, Any], raw: bytes) -> None:
        """To every handler under the lock, the first ``obj`` and the others copies from ``raw``: a
        late joiner either was replayed ``obj`` (the loop has recorded it) or is among ``handlers``
        here, never both nor neither."""
        async with self._lock:
            handlers = list(self.handlers)
            if handlers:
                await handlers[0](kind, obj)
            for handler in handlers[1:]:
                await handler(kind, orjson.loads(raw))
