"""ResourceQuota admission: a write that would take a namespace past a quota is refused, else charged.

As ``plugin/pkg/admission/resourcequota`` (v1.32): the namespace's quotas that track what the
object costs (``api.quota``'s evaluators: pods, services, claims, ``count/<resource>``) are checked
against ``status.hard``, and the usage is added to ``status.used`` of each quota in the same
admission step by a compare-and-swap write of the ResourceQuota; on a conflict the quotas that
failed are read again and checked again, three times at most (then the conflict is the answer).
Writes in one namespace are evaluated one at a time, as upstream's per-namespace work queue does;
the compare-and-swap keeps several API servers honest.  Refusals are 403s with upstream's words:
``pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2``.

Deleting an object gives nothing back here: the ResourceQuota controller recounts.  An object that
was charged but never stored (a dry run, or a create the store refused) is refunded by
:meth:`QuotaAdmission.release`, where upstream would leave the quota over-counted until the
controller's next full resync.  Upstream skips subresource writes; the hook cannot see the
subresource, so updates that leave the spec unchanged (status and metadata writes) are skipped.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from tinykube.api import quota
from tinykube.api.errors import ApiError, forbidden
from tinykube.api.registry import ResourceType, lookup
from tinykube.api.resourcelist import mask, parse_list, render, subtract_non_negative
from tinykube.apiserver.limitranger import ListInNamespace

Obj = dict[str, Any]
UpdateStatus = Callable[[Obj], Awaitable[Obj]]
"""Compare-and-swap write of a quota (at its ``metadata.resourceVersion``); raises a 409 ApiError on conflict."""
Clock = Callable[[], datetime.datetime]

RESOURCE_QUOTAS = lookup("", "v1", "resourcequotas")
assert RESOURCE_QUOTAS is not None
RETRIES = 3  # checkQuotas(..., 3)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class QuotaAdmission:
    """The admission hook and its release hook (see :class:`~tinykube.apiserver.storage.Storage`)."""

    def __init__(self, list_in_namespace: ListInNamespace, update_status: UpdateStatus, clock: Clock = _utc_now):
        self._list = list_in_namespace
        self._update = update_status
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, namespace: str) -> asyncio.Lock:
        return self._locks.setdefault(namespace, asyncio.Lock())

    async def admit(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Check the write against every quota of its namespace and charge them; 403 when one says no."""
        evaluator = quota.evaluator_for(rt)
        if evaluator is None or not evaluator.handles(obj, old):
            return
        if old is not None and obj.get("spec") == old.get("spec"):
            return
        namespace = obj["metadata"]["namespace"]
        async with self._lock(namespace):
            quotas = await self._list(RESOURCE_QUOTAS, namespace)
            for attempt in range(RETRIES + 1):
                failed = await self._write(_checked(rt, quotas, evaluator, obj, old, self._clock()))
                if not failed:
                    return
                if attempt == RETRIES:
                    raise failed[-1][1]
                names = {q["metadata"]["name"] for q, _ in failed}
                quotas = [q for q in await self._list(RESOURCE_QUOTAS, namespace) if q["metadata"]["name"] in names]

    async def _write(self, changed: list[Obj]) -> list[tuple[Obj, ApiError]]:
        """Write every charged quota; the ones that lost a race, with their conflict."""
        failed = []
        for charged_quota in changed:
            try:
                await self._update(charged_quota)
            except ApiError as e:
                if e.code != 409:
                    raise
                failed.append((charged_quota, e))
        return failed

    async def release(self, rt: ResourceType, obj: Obj) -> None:
        """Refund an object that was charged on create but never stored (it has no resourceVersion)."""
        evaluator = quota.evaluator_for(rt)
        if evaluator is None or (obj.get("metadata") or {}).get("resourceVersion"):
            return
        namespace = obj["metadata"]["namespace"]
        usage = evaluator.usage(obj, self._clock())
        async with self._lock(namespace):
            for _ in range(RETRIES + 1):
                quotas = await self._list(RESOURCE_QUOTAS, namespace)
                refunds = [q for q in (_refunded(q, evaluator, obj, usage) for q in quotas) if q is not None]
                if not await self._write(refunds):
                    return


def _checked(rt: ResourceType, quotas: list[Obj], evaluator: quota.ObjectCount, obj: Obj, old: Obj | None,
             now: datetime.datetime) -> list[Obj]:
    """The quotas charged for the write, or a 403 ``<resource> "<name>" is forbidden: <reason>``."""
    try:
        return quota.check_request(quotas, evaluator, obj, old, now) if quotas else []
    except quota.Refused as refused:
        name = obj["metadata"].get("name", "")
        qualified = f"{rt.resource}.{rt.group}" if rt.group else rt.resource
        raise forbidden(f'{qualified} "{name}" is forbidden: {refused}', rt.resource, name, rt.group) from None


def _refunded(resource_quota: Obj, evaluator: quota.ObjectCount, obj: Obj, usage: dict[str, Any]) -> Obj | None:
    """The quota with ``usage`` taken off ``status.used``, or None when it does not track the object."""
    if not quota.matches(evaluator, resource_quota, obj):
        return None
    status = resource_quota.get("status") or {}
    used = parse_list(status.get("used"))
    refund = mask(usage, used)
    if not refund:
        return None
    left = {**used, **subtract_non_negative(mask(used, refund), refund)}
    return {**resource_quota, "status": {**status, "used": render(left)}}
