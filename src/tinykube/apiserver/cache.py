"""Watch-fed copies of a few resources, for admission lookups that would otherwise read the store.

Admission plugins in kube-apiserver read namespaces, service accounts, limit ranges and quotas
through informer listers (a cache kept by a watch), not from etcd: every pod create would
otherwise cost several extra reads.  :class:`ObjectCache` is that lister for one resource.  Like
upstream's plugins, callers fall back to a live read on a miss (:meth:`ObjectCache.fetch`), so an
object created a moment ago is never reported missing; a cached object can be a few milliseconds
old, exactly as with an informer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from tinykube.api.registry import ResourceType
from tinykube.store.base import Compacted, Event, Store

log = logging.getLogger(__name__)

Obj = dict[str, Any]
RELIST_DELAY = 0.5  # seconds before listing again after a watch failed


class ObjectCache:
    """Every object of one resource, by namespace and name, kept current by a store watch."""

    def __init__(self, store: Store, rt: ResourceType):
        self.store = store
        self.rt = rt
        self._objects: dict[str, dict[str, Obj]] = {}  # namespace ("" when cluster-scoped) → name → object
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """List once (so lookups are answered at once), then follow the watch in the background."""
        revision = await self._relist()
        self._task = asyncio.create_task(self._follow(revision))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def get(self, namespace: str | None, name: str) -> Obj | None:
        """The cached object, or None (which may only mean the watch has not delivered it yet)."""
        return self._objects.get(namespace or "", {}).get(name)

    def list(self, namespace: str | None) -> list[Obj]:
        """The cached objects of one namespace (or all of a cluster-scoped resource)."""
        return list(self._objects.get(namespace or "", {}).values())

    async def fetch(self, namespace: str | None, name: str) -> Obj | None:
        """:meth:`get`, with a live read on a miss (upstream's lister-then-client lookups)."""
        cached = self.get(namespace, name)
        if cached is not None:
            return cached
        kv = await self.store.get(self.rt.key(namespace, name))
        return orjson.loads(kv.value) if kv is not None else None

    async def _relist(self) -> int:
        listed = await self.store.list(self.rt.list_prefix(None))
        objects: dict[str, dict[str, Obj]] = {}
        for kv in listed.items:
            obj = orjson.loads(kv.value)
            meta = obj["metadata"]
            objects.setdefault(meta.get("namespace", ""), {})[meta["name"]] = obj
        self._objects = objects
        return listed.revision

    async def _follow(self, revision: int) -> None:
        """Apply every change; after a compaction or a store error, list again and resume."""
        while True:
            try:
                async for event in self.store.watch(self.rt.list_prefix(None), revision):
                    self._apply(event)
                    revision = event.revision
            except asyncio.CancelledError:
                raise
            except Compacted:
                revision = await self._relist()
            except Exception as e:  # the store went away for a moment: start over
                log.warning("cache of %s: watch failed (%s); listing again", self.rt.resource, e)
                await asyncio.sleep(RELIST_DELAY)
                revision = await self._relist()

    def _apply(self, event: Event) -> None:
        obj = orjson.loads(event.value)
        meta = obj["metadata"]
        names = self._objects.setdefault(meta.get("namespace", ""), {})
        if event.type == "DELETE":
            names.pop(meta["name"], None)
        else:
            names[meta["name"]] = obj
