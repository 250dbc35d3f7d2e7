"""The ResourceQuota controller: ``status.hard`` follows ``spec.hard``, ``status.used`` is recounted.

As ``pkg/controller/resourcequota`` (v1.32).  A quota is synced when it appears, when its
``spec.hard`` changes, when an object it tracks stops costing what it did (deleted, a pod reaching
a terminal phase, a service changing type, a claim growing: the quota monitor's replenishment),
and every :data:`RESYNC_PERIOD` seconds.  A sync counts the namespace's objects afresh through the
API (``api.quota.calculate_usage``) and writes ``/status`` only when something changed.

Creates are not recounted here: the admission plugin charged them already, and a recount racing
with a charge whose object is not stored yet would lower ``used`` for a moment (upstream has the
same rule for the same reason).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

from tinykube.api import quota
from tinykube.api.errors import ApiError
from tinykube.api.registry import RESOURCES, lookup
from tinykube.api.resourcelist import ResourceList, equal, parse_list
from tinykube.client.rest import Client, Handler, list_and_watch, path
from tinykube.controllers.workqueue import WorkQueue

Obj = dict[str, Any]
Clock = Callable[[], datetime.datetime]
RESOURCE_QUOTAS = lookup("", "v1", "resourcequotas")
assert RESOURCE_QUOTAS is not None
RESYNC_PERIOD = 300.0  # seconds: --resource-quota-sync-period
WORKERS = 5  # --concurrent-resource-quota-syncs
_TYPES = {(rt.group, rt.resource): rt for rt in RESOURCES}


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _key(obj: Obj) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def needs_sync(quota_obj: Obj, before: Obj | None) -> bool:
    """``addQuota``/``updateQuota``: a new quota, or one whose ``spec.hard`` changed or is not in its status yet.

    Status-only changes (admission's charges, this controller's writes) are not reasons.
    """
    hard = parse_list((quota_obj.get("spec") or {}).get("hard"))
    if before is None or not equal(hard, parse_list((before.get("spec") or {}).get("hard"))):
        return True
    return not equal(hard, parse_list((quota_obj.get("status") or {}).get("hard")))


class ResourceQuotaController:
    """Keeps every ResourceQuota's status current."""

    def __init__(self, client: Client, clock: Clock = _utc_now, resync: float = RESYNC_PERIOD):
        self.client = client
        self.clock = clock
        self.resync = resync
        self.queue = WorkQueue(self.sync, "resourcequota")
        self.quotas: dict[str, dict[str, Obj]] = {}  # namespace → name → quota, from the watch
        self.usage: dict[tuple[str, str, str, str], ResourceList] = {}  # (group, resource, ns, name) → last usage

    async def run(self) -> None:
        watched = [(_TYPES[gr], ev) for gr, ev in quota.EVALUATORS.items() if gr != ("", "resourcequotas")]
        await asyncio.gather(
            list_and_watch(self.client, path(RESOURCE_QUOTAS), self._on_quota),
            *(list_and_watch(self.client, path(rt), self._watcher(ev)) for rt, ev in watched),
            self.queue.run(WORKERS), self._resync_periodically())

    def _watcher(self, evaluator: quota.ObjectCount) -> Handler:
        async def handle(kind: str, obj: Obj) -> None:
            self.on_object(evaluator, kind, obj)
        return handle

    async def _on_quota(self, kind: str, obj: Obj) -> None:
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        self.on_object(quota.EVALUATORS[("", "resourcequotas")], kind, obj)
        known = self.quotas.setdefault(namespace, {})
        before = known.pop(name, None)
        if kind == "DELETED":
            return
        known[name] = obj
        if needs_sync(obj, before):
            self.queue.add(_key(obj))

    def on_object(self, evaluator: quota.ObjectCount, kind: str, obj: Obj) -> None:
        """Replenishment: when what an object costs goes down or changes, recount the quotas tracking it."""
        meta = obj["metadata"]
        key = (*evaluator.group_resource, meta["namespace"], meta["name"])
        before = self.usage.pop(key, None)
        if not self.quotas.get(meta["namespace"]):
            return  # nothing to replenish; a quota created later counts afresh in its first sync
        if kind != "DELETED":
            self.usage[key] = now = evaluator.usage(obj, self.clock())
            if before is None or equal(before, now):
                return  # created (admission charged it) or unchanged
        for quota_obj in self.quotas.get(meta["namespace"], {}).values():
            if evaluator.matching_resources((quota_obj.get("status") or {}).get("hard") or {}):
                self.queue.add(_key(quota_obj))

    async def _resync_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            for known in self.quotas.values():
                for quota_obj in known.values():
                    self.queue.add(_key(quota_obj))

    async def sync(self, key: str) -> None:
        """``syncResourceQuota``: recount and write the status if it changed."""
        namespace, name = key.split("/", 1)
        current = await self.client.get_or_none(path(RESOURCE_QUOTAS, namespace, name))
        if current is None:
            return
        objects = {}
        for evaluator in quota.tracked(current):
            listed = await self.client.get(path(_TYPES[evaluator.group_resource], namespace))
            objects[evaluator.group_resource] = listed.get("items") or []
        status = quota.synced_status(current, quota.calculate_usage(current, objects, self.clock()))
        if status is None:
            return
        try:
            await self.client.update(path(RESOURCE_QUOTAS, namespace, name, "status"), {**current, "status": status})
        except ApiError as e:
            if e.code != 404:
                raise  # a conflict is retried by the queue with a fresh read
