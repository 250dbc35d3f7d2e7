"""The namespace controller: empties a terminating namespace, then lets it go.

A namespace being deleted carries the ``kubernetes`` finalizer in ``spec.finalizers``.  This
controller deletes every namespaced object in it (each through the API, so pods terminate
gracefully), and once nothing is left calls ``/finalize`` with no finalizers, which removes the
namespace (pkg/controller/namespace/deletion/namespaced_resources_deleter.go).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.registry import RESOURCES, ResourceType, lookup
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.controllers.workqueue import WorkQueue

NAMESPACES = lookup("", "v1", "namespaces")
assert NAMESPACES is not None
RECHECK = 1.0  # seconds between checks while objects are still terminating


def _namespaced_types() -> list[ResourceType]:
    """One resource per storage prefix (events.k8s.io events are the core events)."""
    seen: set[str] = set()
    out = []
    for rt in RESOURCES:
        if rt.namespaced and rt.prefix not in seen and "deletecollection" in rt.verbs:
            seen.add(rt.prefix)
            out.append(rt)
    return out


class NamespaceController:
    def __init__(self, client: Client):
        self.client = client
        self.queue = WorkQueue(self.sync, "namespace")

    async def run(self) -> None:
        await asyncio.gather(list_and_watch(self.client, path(NAMESPACES), self._on_event), self.queue.run())

    async def _on_event(self, kind: str, ns: dict[str, Any]) -> None:
        if kind != "DELETED" and ns["metadata"].get("deletionTimestamp"):
            self.queue.add(ns["metadata"]["name"])

    async def sync(self, name: str) -> None:
        try:
            ns = await self.client.get(path(NAMESPACES, name=name))
        except ApiError as e:
            if e.code == 404:
                return
            raise
        if not ns["metadata"].get("deletionTimestamp"):
            return
        if await self._remaining(name):
            self.queue.add_after(name, RECHECK)
            return
        ns["spec"]["finalizers"] = [f for f in ns["spec"].get("finalizers", []) if f != "kubernetes"]
        await self.client.update(path(NAMESPACES, name=name, subresource="finalize"), ns)

    async def _remaining(self, namespace: str) -> int:
        """Delete what is left in the namespace; how many objects still exist."""
        left = 0
        for rt in _namespaced_types():
            listed = await self.client.get(path(rt, namespace))
            if listed["items"]:
                left += len(listed["items"])
                await self.client.delete(path(rt, namespace))
        return left
