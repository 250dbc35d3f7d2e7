"""Recording core/v1 Events the way client-go's event recorder does, off the caller's path.

``record`` returns at once: events are written by a background task, and a repeat of the same
(object, reason, message) within the aggregation window bumps ``count`` and ``lastTimestamp``
of the existing Event instead of creating a new one, as client-go's EventCorrelator does.
Losing an event is acceptable (Kubernetes treats them as best effort); blocking a pod on one is
not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from tinykube.client.clock import now as _now
from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.rest import Client, path

log = logging.getLogger(__name__)

EVENTS = lookup("", "v1", "events")
assert EVENTS is not None
_QUEUE_LIMIT = 1000  # pending events kept at most; more are dropped (best effort, like client-go)


@dataclass(frozen=True)
class Source:
    component: str  # "kubelet", "default-scheduler"
    host: str = ""  # node name, for the kubelet


def reference(obj: dict[str, Any], field_path: str = "") -> dict[str, Any]:
    """An ObjectReference to ``obj`` (``fieldPath`` like ``spec.containers{nginx}``)."""
    meta = obj["metadata"]
    ref = {"kind": obj.get("kind", "Pod"), "namespace": meta.get("namespace", ""), "name": meta["name"],
           "uid": meta.get("uid", ""), "apiVersion": obj.get("apiVersion", "v1"),
           "resourceVersion": meta.get("resourceVersion", "")}
    if field_path:
        ref["fieldPath"] = field_path
    return ref


class EventRecorder:
    """Writes Events for one component in the background."""

    def __init__(self, client: Client, source: Source):
        self.client = client
        self.source = source
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str]] = asyncio.Queue(_QUEUE_LIMIT)
        self._seen: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def record(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an event about ``ref`` (see :func:`reference`); never blocks."""
        try:
            self._queue.put_nowait((ref, type_, reason, message))
        except asyncio.QueueFull:
            log.warning("event queue full; dropping %s %s", reason, message)

    async def _run(self) -> None:
        while True:
            ref, type_, reason, message = await self._queue.get()
            try:
                await self._write(ref, type_, reason, message)
            except (ApiError, OSError) as e:
                log.warning("could not record event %s for %s: %s", reason, ref.get("name"), e)

    async def _write(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        key = (ref.get("uid", ""), ref.get("fieldPath", ""), reason, message)
        namespace = ref.get("namespace") or "default"
        previous = self._seen.get(key)
        if previous is not None:
            previous["count"] += 1
            previous["lastTimestamp"] = _now()
            patch = {"count": previous["count"], "lastTimestamp": previous["lastTimestamp"]}
            try:
                await self.client.patch(path(EVENTS, namespace, previous["metadata"]["name"]), patch)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        event = self._new_event(ref, type_, reason, message)
        await self.client.create(path(EVENTS, namespace), event)
        self._seen[key] = event
        if len(self._seen) > 4096:  # keep the aggregation cache bounded
            self._seen.pop(next(iter(self._seen)))

    def _new_event(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> dict[str, Any]:
        now = _now()
        name = f"{ref['name']}.{time.time_ns():x}"  # as client-go names them: key order is time order
        source: dict[str, Any] = {"component": self.source.component}
        if self.source.host:
            source["host"] = self.source.host
        return {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ref.get("namespace") or "default"},
                "involvedObject": ref, "reason": reason, "message": message, "type": type_,
                "source": source, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "eventTime": None, "reportingComponent": self.source.component,
                "reportingInstance": self.source.host}
