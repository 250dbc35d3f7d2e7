"""REST storage: create, update and delete of any kind, on top of the Store protocol.

A write reads as kube-apiserver's generic registry does: decode (structural pass) → prepare
(server-owned fields) → default → mutating admission → validate → admit → managedFields → store;
a failure at any step raises an :class:`ApiError` and nothing is stored.  Store errors are
translated here, once.  Deletion honours preconditions, finalizers and the graceful deletion of
pods bound to a node.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tinykube.client.clock import now as now_rfc3339
from tinykube.api import apply, conversion, defaults, structural, validation
from tinykube.api.errors import STALE_OBJECT, already_exists, bad_request, conflict, forbidden, invalid, not_found
from tinykube.api.registry import ResourceType, lookup
from tinykube.apiserver import strategy
from tinykube.apiserver.cache import ObjectCache
from tinykube.store.base import KeyExists, KeyNotFound, RevisionMismatch, Store

NAMESPACES = lookup("", "v1", "namespaces")
assert NAMESPACES is not None

Admission = Callable[[ResourceType, dict[str, Any], "dict[str, Any] | None"], Awaitable["list[str] | None"]]
"""(resource, new object, old object or None) → warnings for the client; raises ApiError to refuse."""
Release = Callable[[ResourceType, dict[str, Any]], Awaitable[None]]


@dataclass
class WriteOptions:
    """Query options shared by create, update, patch and delete."""

    manager: str = ""
    dry_run: bool = False
    field_validation: str = "Strict"
    subresource: str = ""
    applied: bool = False  # server-side apply already computed managedFields
    warnings: list[str] = field(default_factory=list)


class Storage:
    """Every write to the store goes through here."""

    def __init__(self, store: Store, admission: list[Admission] | None = None, release: list[Release] | None = None,
                 namespaces: ObjectCache | None = None, mutating: list[Admission] | None = None, event_ttl: int = 0):
        self.store = store
        self._event_ttl = event_ttl  # Events expire (kube-apiserver's --event-ttl); 0: kept forever
        self._mutating = mutating or []  # mutating admission: after defaulting, before validation
        self._admission = admission or []
        self._release = release or []
        self._namespaces = namespaces or ObjectCache(store, NAMESPACES)  # NamespaceLifecycle's lister (unstarted: live reads)

    # --- reads ---------------------------------------------------------------------------

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> tuple[dict[str, Any], int]:
        """The object and its revision, or 404."""
        kv = await self.store.get(rt.key(namespace, name))
        if kv is None:
            raise not_found(rt.resource, name, rt.group)
        return conversion.decoded(rt, kv.value, kv.mod_revision), kv.mod_revision

    async def get_bytes(self, rt: ResourceType, namespace: str | None, name: str) -> bytes:
        kv = await self.store.get(rt.key(namespace, name))
        if kv is None:
            raise not_found(rt.resource, name, rt.group)
        return conversion.served(rt, kv.value, kv.mod_revision)

    async def list_objects(self, rt: ResourceType, namespace: str | None) -> list[dict[str, Any]]:
        """Every object of ``rt`` in ``namespace``, read live (admission's lookups)."""
        listed = await self.store.list(rt.list_prefix(namespace))
        return [conversion.decoded(rt, kv.value, kv.mod_revision) for kv in listed.items]

    # --- decode --------------------------------------------------------------------------

    def decode(self, rt: ResourceType, obj: dict[str, Any], opts: WriteOptions) -> None:
        """The structural pass: type errors → 400; unknown fields dropped, refused or warned."""
        result = structural.normalize(obj, rt.definition)
        strict = opts.field_validation == "Strict"
        failure = structural.decode_failure(rt.kind, rt.group_version, result, strict)
        if failure is not None:
            raise failure
        if opts.field_validation == "Warn":
            opts.warnings.extend(structural.warnings(result))

    # --- create --------------------------------------------------------------------------

    async def create(self, rt: ResourceType, obj: dict[str, Any], namespace: str | None, opts: WriteOptions) -> dict[str, Any]:
        """Create ``obj`` (already decoded); returns it as stored, with its resourceVersion."""
        now = now_rfc3339()
        strategy.prepare_create(rt, obj, namespace, now)
        defaults.default(rt, obj)
        for mutate in self._mutating:
            opts.warnings.extend(await mutate(rt, obj, None) or ())
        self._validate(rt, obj, validation.validate_create(rt, obj))
        if rt.namespaced:
            await self._check_namespace(rt, obj)
        for admit in self._admission:
            opts.warnings.extend(await admit(rt, obj, None) or ())
        if not opts.applied:
            apply.record_update(None, obj, opts.manager, rt.group_version, now, rt.definition, opts.subresource)
        key = rt.key(namespace, obj["metadata"]["name"])
        if opts.dry_run:  # DryRunnableStorage.Create: nothing stored, but a taken name still conflicts
            await self._release_quietly(rt, obj)
            if await self.store.get(key) is not None:
                raise already_exists(rt.resource, obj["metadata"]["name"], rt.group)
            return obj
        try:
            revision = await self.store.create(key, conversion.stored(rt, obj), self._ttl(rt))
        except KeyExists:
            await self._release_quietly(rt, obj)
            raise already_exists(rt.resource, obj["metadata"]["name"], rt.group) from None
        except BaseException:
            await self._release_quietly(rt, obj)
            raise
        obj["metadata"]["resourceVersion"] = str(revision)
        return obj

    def _ttl(self, rt: ResourceType) -> int:
        """Seconds ``rt``'s objects live after a write: Events (core/v1 and events.k8s.io share the
        ``events`` resource and its keys) expire as kube-apiserver's event REST storage makes them."""
        return self._event_ttl if rt.resource == "events" else 0

    async def _check_namespace(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """NamespaceLifecycle admission: the namespace must exist and not be terminating."""
        namespace = obj["metadata"]["namespace"]
        ns = await self._namespaces.fetch(None, namespace)
        if ns is None:
            raise not_found("namespaces", namespace)
        if ns.get("status", {}).get("phase") == "Terminating":
            raise forbidden(f'{_qualified(rt)} "{obj["metadata"]["name"]}" is forbidden: unable to create new content in '
                            f"namespace {namespace} because it is being terminated", rt.resource,
                            obj["metadata"]["name"], rt.group)

    def _validate(self, rt: ResourceType, obj: dict[str, Any], errors: list[Any]) -> None:
        if errors:
            raise invalid(rt.kind, obj.get("metadata", {}).get("name", ""), errors, rt.group)

    # --- update --------------------------------------------------------------------------

    async def update(self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any], old_revision: int,
                     opts: WriteOptions) -> dict[str, Any]:
        """Replace ``old`` (read at ``old_revision``) by ``new`` with compare-and-swap."""
        name = old["metadata"]["name"]
        wanted = new.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != str(old_revision):
            raise conflict(rt.resource, name, STALE_OBJECT, rt.group)
        new = strategy.prepare_update(rt, new, old, opts.subresource)
        defaults.default(rt, new, old)
        for mutate in self._mutating:
            opts.warnings.extend(await mutate(rt, new, old) or ())
        check = validation.validate_status_update if opts.subresource == "status" else validation.validate_update
        self._validate(rt, new, check(rt, new, old))
        for admit in self._admission:
            opts.warnings.extend(await admit(rt, new, old) or ())
        if _same(new, old):
            return old
        if not opts.applied:
            apply.record_update(old, new, opts.manager, rt.group_version, now_rfc3339(), rt.definition, opts.subresource)
        if opts.dry_run:
            return new
        if _finalized(new):
            return await self._remove(rt, new, old_revision)
        return await self.replace(rt, new, old_revision)

    async def replace(self, rt: ResourceType, new: dict[str, Any], old_revision: int) -> dict[str, Any]:
        """Compare-and-swap write of an object the server itself prepared (no pipeline)."""
        meta = new["metadata"]
        try:
            revision = await self.store.update(rt.key(meta.get("namespace"), meta["name"]), conversion.stored(rt, new),
                                               old_revision, self._ttl(rt))
        except RevisionMismatch:
            raise conflict(rt.resource, meta["name"], STALE_OBJECT, rt.group) from None
        except KeyNotFound:
            raise not_found(rt.resource, meta["name"], rt.group) from None
        meta["resourceVersion"] = str(revision)
        return new

    # --- delete --------------------------------------------------------------------------

    async def delete(self, rt: ResourceType, namespace: str | None, name: str, options: dict[str, Any],
                     dry_run: bool = False) -> dict[str, Any]:
        """Delete now, or mark for deletion (finalizers, graceful pods, namespaces)."""
        obj, revision = await self.get(rt, namespace, name)
        check_preconditions(rt, obj, revision, options.get("preconditions") or {})
        grace = _grace_period(rt, obj, options)
        pending = _blocking_finalizers(rt, obj)
        if dry_run:
            return obj
        if grace > 0 or pending:
            return await self._mark_deleted(rt, obj, revision, grace)
        if rt.kind == "Pod" and obj.get("spec", {}).get("nodeName"):
            # As the generic store: a bound pod deleted with grace 0 is first marked, so its node
            # sees deletionTimestamp and deletionGracePeriodSeconds 0 and kills it at once.
            obj = await self._mark_deleted(rt, obj, revision, 0)
            revision = int(obj["metadata"]["resourceVersion"])
        return await self._remove(rt, obj, revision)

    async def _mark_deleted(self, rt: ResourceType, obj: dict[str, Any], revision: int, grace: int) -> dict[str, Any]:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds", 0) <= grace:
            return obj  # already terminating at least as fast as asked
        marked = copy.deepcopy(obj)
        deadline = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=grace)
        marked["metadata"]["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
        marked["metadata"]["deletionGracePeriodSeconds"] = grace
        if rt.kind == "Namespace":
            marked.setdefault("status", {})["phase"] = "Terminating"
        return await self.replace(rt, marked, revision)

    async def _remove(self, rt: ResourceType, obj: dict[str, Any], revision: int) -> dict[str, Any]:
        meta = obj["metadata"]
        try:
            event = await self.store.delete(rt.key(meta.get("namespace"), meta["name"]), revision)
        except RevisionMismatch:
            raise conflict(rt.resource, meta["name"], STALE_OBJECT, rt.group) from None
        except KeyNotFound:
            raise not_found(rt.resource, meta["name"], rt.group) from None
        await self._release_quietly(rt, obj)
        return conversion.decoded(rt, event.value, event.revision)

    async def _release_quietly(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        for release in self._release:
            await release(rt, obj)


def _qualified(rt: ResourceType) -> str:
    return f"{rt.resource}.{rt.group}" if rt.group else rt.resource


def _same(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """True when an update changes nothing a client can see (then nothing is written)."""
    strip = ("resourceVersion", "managedFields")
    a = {k: v for k, v in new.get("metadata", {}).items() if k not in strip}
    b = {k: v for k, v in old.get("metadata", {}).items() if k not in strip}
    return a == b and {k: v for k, v in new.items() if k != "metadata"} == {k: v for k, v in old.items() if k != "metadata"}


def _finalized(obj: dict[str, Any]) -> bool:
    """A deleted object whose last finalizer was just removed is removed for real."""
    meta = obj.get("metadata", {})
    if not meta.get("deletionTimestamp") or meta.get("finalizers"):
        return False
    if obj.get("kind") == "Namespace":
        return not obj.get("spec", {}).get("finalizers")
    return obj.get("kind") != "Pod" or not obj.get("spec", {}).get("nodeName")


def _blocking_finalizers(rt: ResourceType, obj: dict[str, Any]) -> bool:
    if obj["metadata"].get("finalizers"):
        return True
    return rt.kind == "Namespace" and bool(obj.get("spec", {}).get("finalizers"))


def _grace_period(rt: ResourceType, obj: dict[str, Any], options: dict[str, Any]) -> int:
    """Seconds of graceful termination: only pods running on a node get any (pod strategy)."""
    if rt.kind != "Pod":
        return 0
    if not obj.get("spec", {}).get("nodeName") or obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    grace = options.get("gracePeriodSeconds")
    if grace is None:
        grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
    return max(int(grace), 0)


def check_preconditions(rt: ResourceType, obj: dict[str, Any], revision: int, pre: dict[str, Any]) -> None:
    name = obj["metadata"]["name"]
    if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
        raise conflict(rt.resource, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                       f"UID in object meta: {obj['metadata']['uid']}", rt.group)
    if pre.get("resourceVersion") and pre["resourceVersion"] != str(revision):
        raise conflict(rt.resource, name, f"Precondition failed: ResourceVersion in precondition: "
                       f"{pre['resourceVersion']}, ResourceVersion in object meta: {revision}", rt.group)


def delete_options(body: Any, query: Any) -> dict[str, Any]:
    """DeleteOptions from the body (kubectl) or the query string (client libraries)."""
    options: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    if "gracePeriodSeconds" in query:
        try:
            options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
        except ValueError:
            raise bad_request("invalid gracePeriodSeconds") from None
    return options
