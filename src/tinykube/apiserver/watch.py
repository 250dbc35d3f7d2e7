"""WATCH: a long-lived chunked stream of ADDED / MODIFIED / DELETED events.

Starts after the requested resourceVersion (or, without one, with a synthetic ADDED for every
current object), replays history the store still keeps, answers an ERROR event with 410
Expired when it does not, sends BOOKMARKs when asked, and applies selectors to events: an object
that stops matching is reported DELETED, one that starts matching ADDED (as the watch cache
does).  Without selectors, stored bytes are spliced into the event without decoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import ClientConnectionResetError, web

from tinykube.api import conversion, tables
from tinykube.api.registry import ResourceType
from tinykube.api.errors import expired
from tinykube.apiserver.listing import Filter, list_page
from tinykube.apiserver.requests import RequestInfo, query_flag, query_int, wants_table
from tinykube.apiserver.rest import _include_object, _now, filter_from
from tinykube.store.base import Compacted, Event, Store

BOOKMARK_INTERVAL = 5.0  # seconds between BOOKMARKs when allowed: cheap, and keeps clients' RVs fresh
DEFAULT_TIMEOUT = 1800.0  # seconds: watches without timeoutSeconds stay open 30 min, as upstream's minimum


class _Encoder:
    """Turns (type, object bytes) into one line of the stream: JSON objects or one-row Tables."""

    def __init__(self, request: web.Request, info: RequestInfo):
        self.info = info
        self.table = wants_table(request)
        self.include = _include_object(request)
        self.first = True

    def line(self, kind: str, raw: bytes, obj: dict[str, Any] | None = None) -> bytes:
        if not self.table:
            return b'{"type":"%s","object":' % kind.encode() + raw + b"}\n"
        obj = obj if obj is not None else orjson.loads(raw)
        table = tables.table(self.info.rt, [obj], _now(), self.include, obj["metadata"].get("resourceVersion", ""))
        if not self.first:
            table["columnDefinitions"] = None
        self.first = False
        return orjson.dumps({"type": kind, "object": table}) + b"\n"


def _classify(rt: ResourceType, event: Event, flt: Filter) -> tuple[str, bytes, dict[str, Any] | None] | None:
    """The watch event type for a store event under a filter, with the served object."""
    raw = conversion.served(rt, event.value, event.revision)
    if event.type == "DELETE":
        if flt.empty:
            return "DELETED", raw, None
        obj = orjson.loads(raw)
        return ("DELETED", raw, obj) if flt.matches(obj) else None
    if flt.empty:
        return ("ADDED" if event.created else "MODIFIED"), raw, None
    obj = orjson.loads(raw)
    now = flt.matches(obj)
    before = event.prev_value is not None and flt.matches(conversion.decoded(rt, event.prev_value, 0))
    if now:
        return ("MODIFIED" if before else "ADDED"), raw, obj
    return ("DELETED", raw, obj) if before else None


async def serve(request: web.Request, store: Store, info: RequestInfo) -> web.StreamResponse:
    """Run one watch until the client leaves, the timeout passes or the server stops."""
    flt = filter_from(request, info)
    encoder = _Encoder(request, info)
    timeout = query_int(request, "timeoutSeconds") or DEFAULT_TIMEOUT
    bookmarks = query_flag(request, "allowWatchBookmarks")
    response = web.StreamResponse(headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    await response.prepare(request)
    start = request.query.get("resourceVersion", "")
    if start in ("", "0"):
        page = await list_page(store, info.rt, info.namespace, flt, 0, "")
        for item in page.items:
            await response.write(encoder.line("ADDED", item.raw, item.obj))
        revision = page.revision
    else:
        revision = int(start) if start.isdigit() else 0
    events = store.watch(info.rt.list_prefix(info.namespace), revision)
    try:
        await _stream(response, events, flt, encoder, info, revision, timeout, bookmarks)
    except (ConnectionResetError, ClientConnectionResetError):
        pass  # the client went away: nothing to answer
    except Compacted as e:
        # the oldest resourceVersion still watchable (the watch cache's "oldest - 1")
        status = expired(f"too old resource version: {e.requested} ({e.compacted})").status()
        await response.write(orjson.dumps({"type": "ERROR", "object": status}) + b"\n")
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
    return response


async def _stream(response: web.StreamResponse, events: AsyncIterator[Event], flt: Filter, encoder: _Encoder,
                  info: RequestInfo, revision: int, timeout: float, bookmarks: bool) -> None:
    deadline = time.monotonic() + timeout
    iterator = events.__aiter__()
    pending: asyncio.Task[Event] | None = None
    try:
        while (left := deadline - time.monotonic()) > 0:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=min(left, BOOKMARK_INTERVAL))
            if not done:
                if bookmarks:
                    await response.write(_bookmark(info, revision))
                continue
            event = pending.result()
            pending = None
            revision = event.revision
            classified = _classify(info.rt, event, flt)
            if classified is not None:
                await response.write(encoder.line(*classified))
    except StopAsyncIteration:
        return
    finally:
        if pending is not None:
            pending.cancel()


def _bookmark(info: RequestInfo, revision: int) -> bytes:
    obj = {"kind": info.rt.kind, "apiVersion": info.rt.group_version, "metadata": {"resourceVersion": str(revision)}}
    return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"
