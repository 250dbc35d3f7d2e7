"""The CRUD handlers: thin translations between HTTP and :class:`Storage`.

Each handler reads the request (resource, body, options), calls storage, and encodes the
answer: JSON from stored bytes, or a server-side Table when kubectl asks ``as=Table``.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

import orjson
from aiohttp import web

from tinykube.api import apply, objects, patch, tables
from tinykube.api.errors import ApiError, bad_request, conflict, unsupported_media_type
from tinykube.api.selectors import parse_field_selector, parse_label_selector
from tinykube.apiserver import strategy
from tinykube.apiserver.listing import Filter, Page, list_page
from tinykube.apiserver.requests import (RequestInfo, check_kind, json_response, media_type, object_response,
                                         parse, query_flag, query_int, read_body, read_object, wants_table)
from tinykube.apiserver.storage import Storage, WriteOptions, check_preconditions, delete_options, now_rfc3339

_PATCH_RETRIES = 5  # unconditional patches re-read and retry on a conflict, as the apiserver does
_FIELD_VALIDATION = ("Strict", "Warn", "Ignore")
_SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
_EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")


def write_options(request: web.Request, info: RequestInfo) -> WriteOptions:
    """Query options of a write: fieldManager (or the User-Agent's product), dryRun, fieldValidation."""
    dry_run = request.query.getall("dryRun", [])
    if any(v != "All" for v in dry_run):
        raise bad_request(f'Invalid dryRun value "{dry_run[0]}": supported values: "All"')
    validation = request.query.get("fieldValidation") or "Warn"
    if validation not in _FIELD_VALIDATION:
        raise bad_request(f'fieldValidation must be one of "Ignore", "Warn", or "Strict", got "{validation}"')
    manager = request.query.get("fieldManager") or request.headers.get("User-Agent", "unknown").split("/")[0]
    return WriteOptions(manager=manager, dry_run=bool(dry_run), field_validation=validation, subresource=info.subresource)


def filter_from(request: web.Request, info: RequestInfo) -> Filter:
    labels = request.query.get("labelSelector")
    fields = request.query.get("fieldSelector")
    return Filter(parse_label_selector(labels) if labels else None,
                  parse_field_selector(fields, info.rt) if fields else None)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _include_object(request: web.Request) -> str:
    return request.query.get("includeObject") or "Metadata"


def table_response(request: web.Request, info: RequestInfo, objs: list[dict[str, Any]], revision: str,
                   continue_token: str = "") -> web.Response:
    body = tables.table(info.rt, objs, _now(), _include_object(request), revision, continue_token)
    return object_response(body)


async def get(request: web.Request, storage: Storage, info: RequestInfo) -> web.Response:
    """GET one object (JSON from stored bytes, or a one-row Table)."""
    raw = await storage.get_bytes(info.rt, info.namespace, info.name)
    if wants_table(request):
        obj = orjson.loads(raw)
        return table_response(request, info, [obj], obj["metadata"]["resourceVersion"])
    return json_response(raw)


async def list_(request: web.Request, storage: Storage, info: RequestInfo) -> web.Response:
    """LIST a collection, optionally filtered and paged."""
    page: Page = await list_page(storage.store, info.rt, info.namespace, filter_from(request, info),
                                 query_int(request, "limit") or 0, request.query.get("continue", ""))
    if wants_table(request):
        return table_response(request, info, [i.decoded() for i in page.items], str(page.revision), page.continue_token)
    body = objects.list_body(info.rt.group_version, info.rt.list_kind, page.revision, [i.raw for i in page.items],
                             page.continue_token)
    return json_response(body)


async def create(request: web.Request, storage: Storage, info: RequestInfo) -> web.Response:
    """POST a new object into a collection."""
    obj = await read_object(request)
    check_kind(obj, info.rt)
    strategy.check_identity(info.rt, obj, "", info.namespace)
    opts = write_options(request, info)
    storage.decode(info.rt, obj, opts)
    created = await storage.create(info.rt, obj, info.namespace, opts)
    return object_response(created, 201, opts.warnings)


async def update(request: web.Request, storage: Storage, info: RequestInfo) -> web.Response:
    """PUT a whole object (or its /status) with optimistic concurrency."""
    obj = await read_object(request)
    check_kind(obj, info.rt)
    strategy.check_identity(info.rt, obj, info.name, info.namespace)
    opts = write_options(request, info)
    storage.decode(info.rt, obj, opts)
    old, revision = await storage.get(info.rt, info.namespace, info.name)
    updated = await storage.update(info.rt, obj, old, revision, opts)
    return object_response(updated, 200, opts.warnings)


def _patched(rt_definition: str, content_type: str, old: dict[str, Any], body: Any) -> dict[str, Any]:
    if content_type == "application/json-patch+json":
        return patch.json_patch(copy.deepcopy(old), body)
    if content_type == "application/merge-patch+json":
        return patch.merge_patch(copy.deepcopy(old), body)
    if content_type == "application/strategic-merge-patch+json":
        return patch.strategic_merge_patch(copy.deepcopy(old), body, rt_definition)
    raise unsupported_media_type(content_type)


async def patch_(request: web.Request, storage: Storage, info: RequestInfo) -> web.Response:
    """PATCH: JSON, merge, strategic merge, or server-side apply."""
    content_type = media_type(request)
    body = parse(await read_body(request), content_type)
    opts = write_options(request, info)
    if content_type == "application/apply-patch+yaml":
        return await _apply(request, storage, info, body, opts)
    for attempt in range(_PATCH_RETRIES):
        old, revision = await storage.get(info.rt, info.namespace, info.name)
        new = _patched(info.rt.definition, content_type, old, body)
        if not isinstance(new, dict):
            raise bad_request("the patch did not produce an object")
        pinned = isinstance(new.get("metadata"), dict) and new["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]
        if not pinned:
            new.setdefault("metadata", {}).pop("resourceVersion", None)
        storage.decode(info.rt, new, opts)
        try:
            updated = await storage.update(info.rt, new, old, revision, opts)
            return object_response(updated, 200, opts.warnings)
        except ApiError as e:
            if e.code != 409 or pinned or attempt == _PATCH_RETRIES - 1:
                raise
    raise conflict(info.rt.resource, info.name, "too many retries")  # pragma: no cover


async def _apply(request: web.Request, storage: Storage, info: RequestInfo, body: Any, opts: WriteOptions) -> web.Response:
    """Server-side apply: create when absent, else merge and own the applied fields."""
    if not request.query.get("fieldManager"):
        raise bad_request("PATCH, application/apply-patch+yaml: fieldManager is required for apply requests")
    if not isinstance(body, dict):
        raise bad_request("apply patch must be an object")
    check_kind(body, info.rt)
    strategy.check_identity(info.rt, body, info.name, info.namespace)
    opts.applied = True
    force = query_flag(request, "force")
    applied = copy.deepcopy(body)
    storage.decode(info.rt, applied, opts)
    try:
        old, revision = await storage.get(info.rt, info.namespace, info.name)
    except ApiError as e:
        if e.code != 404:
            raise
        new = apply.server_side_apply(None, applied, opts.manager, force, info.rt.group_version, now_rfc3339(),
                                      info.rt.definition)
        new.setdefault("metadata", {})["name"] = info.name
        created = await storage.create(info.rt, new, info.namespace, opts)
        return object_response(created, 201, opts.warnings)
    new = apply.server_side_apply(old, applied, opts.manager, force, info.rt.group_version, now_rfc3339(),
                                  info.rt.definition)
    updated = await storage.update(info.rt, new, old, revision, opts)
    return object_response(updated, 200, opts.warnings)


async def delete(request: web.Request, storage: Storage, info: RequestInfo) -> web.Response:
    """DELETE one object (immediately, or marked when it must terminate gracefully)."""
    raw = await read_body(request)
    body = parse(raw, media_type(request)) if raw.strip() else {}
    options = delete_options(body, request.query)
    dry_run = bool(request.query.getall("dryRun", [])) or bool(options.get("dryRun"))
    deleted = await storage.delete(info.rt, info.namespace, info.name, options, dry_run)
    return object_response(deleted, 200)


async def delete_collection(request: web.Request, storage: Storage, info: RequestInfo) -> web.Response:
    """DELETE a collection: each matching object in turn; answers with the list of what was deleted."""
    raw = await read_body(request)
    options = delete_options(parse(raw, media_type(request)) if raw.strip() else {}, request.query)
    page = await list_page(storage.store, info.rt, info.namespace, filter_from(request, info), 0, "")
    deleted = []
    for item in page.items:
        meta = item.decoded()["metadata"]
        try:
            deleted.append(await storage.delete(info.rt, meta.get("namespace"), meta["name"], options))
        except ApiError as e:
            if e.code != 404:
                raise
    return object_response({"kind": info.rt.list_kind, "apiVersion": info.rt.group_version,
                            "metadata": {"resourceVersion": str(page.revision)}, "items": deleted})


async def bind(request: web.Request, storage: Storage, info: RequestInfo) -> web.Response:
    """POST pods/NAME/binding: set spec.nodeName once, and PodScheduled=True (pod binding REST)."""
    binding = await read_object(request)
    target = (binding.get("target") or {}).get("name")
    if not target:
        raise ApiError(422, "Invalid", "Binding target name is required",
                       {"causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "target.name"}]})
    for attempt in range(_PATCH_RETRIES):
        old, revision = await storage.get(info.rt, info.namespace, info.name)
        if old["spec"].get("nodeName"):
            raise conflict("pods/binding", info.name, f"pod {info.name} is already assigned to node "
                           f'"{old["spec"]["nodeName"]}"')
        if old["metadata"].get("deletionTimestamp"):
            raise conflict("pods/binding", info.name, f"pod {info.name} is being deleted, cannot be assigned to a host")
        new = copy.deepcopy(old)
        new["spec"]["nodeName"] = target
        _set_condition(new, "PodScheduled", "True")
        try:
            await storage.replace(info.rt, new, revision)
            break
        except ApiError as e:
            if e.code != 409 or attempt == _PATCH_RETRIES - 1:
                raise
    return object_response(_SUCCESS, 201)


async def evict(request: web.Request, storage: Storage, info: RequestInfo) -> web.Response:
    """POST pods/NAME/eviction (the Eviction API kubectl drain uses): the pod is marked
    DisruptionTarget=True (EvictionByEvictionAPI) and deleted with the Eviction's deleteOptions.
    No PodDisruptionBudgets are served, so no eviction is refused for one (eviction.go otherwise)."""
    eviction = await read_object(request)
    if eviction.get("apiVersion", "policy/v1") not in _EVICTION_VERSIONS or eviction.get("kind", "Eviction") != "Eviction":
        raise bad_request(f"not a Eviction object: {eviction.get('apiVersion')}, Kind={eviction.get('kind')}")
    if (eviction.get("metadata") or {}).get("name") != info.name:
        raise bad_request("name in URL does not match name in Eviction object")
    options = dict(eviction.get("deleteOptions") or {})
    dry_run = bool(request.query.getall("dryRun", [])) or bool(options.get("dryRun"))
    if not dry_run:
        options = await _mark_disruption_target(storage, info, options)
    await storage.delete(info.rt, info.namespace, info.name, options, dry_run)
    return object_response(_SUCCESS, 201)


async def _mark_disruption_target(storage: Storage, info: RequestInfo, options: dict[str, Any]) -> dict[str, Any]:
    """addConditionAndDeletePod's status update, under the Eviction's preconditions; the options to
    delete with (a resourceVersion precondition moves to the version this update wrote)."""
    for attempt in range(_PATCH_RETRIES):
        old, revision = await storage.get(info.rt, info.namespace, info.name)
        check_preconditions(info.rt, old, revision, options.get("preconditions") or {})
        new = copy.deepcopy(old)
        _set_condition(new, "DisruptionTarget", "True", "EvictionByEvictionAPI", "Eviction API: evicting")
        try:
            written = await storage.replace(info.rt, new, revision)
            break
        except ApiError as e:
            if e.code != 409 or attempt == _PATCH_RETRIES - 1:
                raise
    if (options.get("preconditions") or {}).get("resourceVersion"):
        options = {**options, "preconditions": {**options["preconditions"],
                                                "resourceVersion": written["metadata"]["resourceVersion"]}}
    return options


def _set_condition(pod: dict[str, Any], kind: str, status: str, reason: str = "", message: str = "") -> None:
    """Replace a pod condition whole (podutil.UpdatePodCondition), keeping its transition time if unchanged."""
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    fresh = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": now_rfc3339(),
             **({"reason": reason, "message": message} if reason else {})}
    for index, cond in enumerate(conditions):
        if cond["type"] == kind:
            if cond.get("status") == status:
                fresh["lastTransitionTime"] = cond.get("lastTransitionTime", fresh["lastTransitionTime"])
            conditions[index] = fresh
            return
    conditions.append(fresh)
