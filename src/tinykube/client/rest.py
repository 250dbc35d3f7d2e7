"""The async REST client every tinykube component uses to reach the API server.

It speaks the same HTTPS API as kubectl (no back doors), so a controller or node agent runs
the same whether it shares the server's process or lives on another machine.  Failures come
back as :class:`ApiError` built from the server's ``Status``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from tinykube.api.errors import ApiError
from tinykube.api.registry import ResourceType

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 300  # seconds a watch request asks for before it is renewed


@dataclass(frozen=True)
class Credentials:
    """Where the server is and how to prove who we are (bearer token or client certificate)."""

    server: str
    ca_file: str
    token: str = ""
    cert_file: str = ""
    key_file: str = ""

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def path(rt: ResourceType, namespace: str | None = None, name: str = "", subresource: str = "") -> str:
    """The URL path of a collection, object or subresource."""
    base = "/api/v1" if not rt.group else f"/apis/{rt.group}/{rt.version}"
    if rt.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{rt.resource}"
    if name:
        base += f"/{name}"
    if subresource:
        base += f"/{subresource}"
    return base


class Client:
    """A connection pool to one API server."""

    def __init__(self, creds: Credentials, user_agent: str = "tinykube"):
        self._creds = creds
        headers = {"User-Agent": f"{user_agent}/v1.32.4", "Accept": "application/json"}
        if creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        self._headers = headers
        self._session = self._new_session()
        self.shared: Follower | None = None  # set by informers.share_watches: one watch per resource
        self._streams: set[aiohttp.StreamReader] = set()  # the bodies of the watches now open

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            base_url=self._creds.server, headers=self._headers, json_serialize=lambda o: orjson.dumps(o).decode(),
            connector=aiohttp.TCPConnector(ssl=self._creds.ssl_context(), limit=64))

    async def close(self) -> None:
        await self._session.close()

    async def reset(self, why: str) -> None:
        """Drop every connection, watches included, and carry on with new ones (and the credentials'
        files as they are now): the kubelet's closeAllConns after a failed heartbeat or a renewed
        certificate.  A watch whose connection died silently (a cut link, a server host gone) would
        otherwise wait for TCP to give up, many minutes later; now it fails with ``why``, and its
        informer loop lists again once the server answers."""
        old, self._session = self._session, self._new_session()
        for stream in self._streams:  # aiohttp tells a request waiting for its headers, not an open body
            stream.set_exception(aiohttp.ClientConnectionError(f"connection dropped: {why}"))
        if old.connector is not None:
            await old.connector.close(abort_ssl=True)  # no TLS goodbye: the peer may never answer it
        await old.close()

    async def request(self, method: str, url: str, body: Any = None, params: dict[str, str] | None = None,
                      content_type: str = "application/json") -> Any:
        data = orjson.dumps(body) if body is not None else None
        async with self._session.request(method, url, data=data, params=params,
                                         headers={"Content-Type": content_type}) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise _error(resp.status, raw)
            return orjson.loads(raw) if raw else None

    async def get(self, url: str, params: dict[str, str] | None = None) -> Any:
        return await self.request("GET", url, params=params)

    async def get_or_none(self, url: str, params: dict[str, str] | None = None) -> Any:
        """The object at ``url``, or None when it does not exist (404)."""
        try:
            return await self.get(url, params)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def create(self, url: str, obj: dict[str, Any]) -> Any:
        return await self.request("POST", url, obj)

    async def update(self, url: str, obj: dict[str, Any]) -> Any:
        return await self.request("PUT", url, obj)

    async def patch(self, url: str, body: Any, content_type: str = "application/merge-patch+json") -> Any:
        return await self.request("PATCH", url, body, content_type=content_type)

    async def delete(self, url: str, options: dict[str, Any] | None = None) -> Any:
        return await self.request("DELETE", url, options or {})

    async def watch(self, url: str, resource_version: str, params: dict[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """One watch request's events; ends when the server closes the stream."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(WATCH_TIMEOUT), **(params or {})}
        async with self._session.get(url, params=query, timeout=aiohttp.ClientTimeout(total=None)) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.read())
            self._streams.add(resp.content)
            try:
                async for line in resp.content:
                    if line.strip():
                        yield orjson.loads(line)
            finally:
                self._streams.discard(resp.content)


def _error(status: int, raw: bytes) -> ApiError:
    try:
        body = orjson.loads(raw)
        return ApiError(body.get("code", status), body.get("reason", ""), body.get("message", ""), body.get("details"))
    except orjson.JSONDecodeError:
        return ApiError(status, "Unknown", raw.decode(errors="replace")[:200])


Handler = Callable[[str, dict[str, Any]], Awaitable[None]]
RawHandler = Callable[[str, dict[str, Any], bytes], Awaitable[None]]  # also given the object's JSON


class Follower(Protocol):
    """What :func:`list_and_watch` hands its work to when a client shares its watches."""

    async def follow(self, url: str, handler: Handler, params: dict[str, str] | None) -> None: ...


async def list_and_watch(client: Client, url: str, handler: Handler, params: dict[str, str] | None = None,
                         retry_delay: float = 1.0) -> None:
    """Deliver every object as ADDED, then every change, forever (the informer loop).

    list → watch from the list's resourceVersion → remember the last version seen (bookmarks
    included) → on 410 Expired or a broken stream, list again.  Handlers must be idempotent:
    after a relist they see objects again.  A client that shares its watches
    (:func:`tinykube.client.informers.share_watches`) runs one such loop per resource for all
    its handlers, as client-go's shared informers do.
    """
    if client.shared is not None:
        await client.shared.follow(url, handler, params)
    else:
        async def deliver(kind: str, obj: dict[str, Any], raw: bytes) -> None:
            await handler(kind, obj)
        await informer_loop(client, url, deliver, params, retry_delay)


ObjectKey = tuple[str, str]  # (namespace, name)
Known = dict[ObjectKey, bytes]  # key -> JSON of the state last delivered


def object_key(obj: dict[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


async def informer_loop(client: Client, url: str, deliver: RawHandler, params: dict[str, str] | None = None,
                        retry_delay: float = 1.0, known: Known | None = None) -> None:
    """:func:`list_and_watch`'s loop.  ``known`` holds what has been delivered, updated just after
    each delivery: a relist then delivers DELETED (with the last state seen) for every object that
    went while the watch was down, as client-go's Replace does, so no handler keeps a ghost.
    ``deliver`` also gets the JSON kept for the object, taken before any handler could change it."""
    known = {} if known is None else known
    while True:
        try:
            listed = await client.get(url, params)
            version = listed["metadata"]["resourceVersion"]
            await _replace(known, listed.get("items", []), deliver)
            while True:
                async for event in client.watch(url, version, params):
                    if event["type"] == "ERROR":
                        raise ApiError(410, "Expired", "watch expired")
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        raw = orjson.dumps(obj)
                        await deliver(event["type"], obj, raw)
                        _remember(known, event["type"], object_key(obj), raw)
        except asyncio.CancelledError:
            raise
        except (ApiError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
            log.warning("list/watch of %s: %s; retrying", url, e)
            await asyncio.sleep(retry_delay)


async def _replace(known: Known, items: list[dict[str, Any]], deliver: RawHandler) -> None:
    """Deliver a list: every item as ADDED, then DELETED for what ``known`` has and the list lacks."""
    gone = dict(known)
    for obj in items:
        key, raw = object_key(obj), orjson.dumps(obj)
        gone.pop(key, None)
        await deliver("ADDED", obj, raw)
        known[key] = raw
    for key, raw in gone.items():
        await deliver("DELETED", orjson.loads(raw), raw)
        known.pop(key, None)


def _remember(known: Known, kind: str, key: ObjectKey, raw: bytes) -> None:
    if kind == "DELETED":
        known.pop(key, None)
    else:
        known[key] = raw
