"""The etcd backend of the :class:`~tinykube.store.base.Store` protocol, for API servers that share one store.

Why it is shaped this way:

* **The protocol is etcd's own model**, so every operation is one etcd v3 request:
  ``resourceVersion`` is the key's mod revision; create is a transaction guarded by
  ``create_revision == 0``; update and delete are guarded by ``mod_revision == expected`` (or
  ``version > 0``: "any live key") and read the key back in the same transaction when the guard
  fails, which is what RevisionMismatch carries; a list is one range read at one revision.
  Reads are linearizable (etcd's default, as kube-apiserver's), so a write acknowledged by one
  API server is visible through every other.
* **aetcd's generated v3 API over our own gRPC channel.**  ``aetcd.Client`` 1.0 opens only
  plaintext channels, drops ``limit``/``revision``/``count_only`` from ranges, loses the
  response header of transactions and compactions, and hides watch progress and headers; its
  ``aetcd.rpc`` stubs have none of these gaps.
* **Failover**: one channel to one endpoint at a time; a connection error moves to the next
  endpoint.  Reads, compactions and watches are retried there; a write is retried only when it
  certainly was not applied (it never reached a member, or the member had no leader), as etcd's
  own client decides.  A replaced channel stays open for a grace period so that calls in flight
  on it can finish.
* **Revisions stay synchronous**: every response header (watch progress included) raises
  ``current_revision()``; ``compacted_revision()`` is what we compacted or were told was
  compacted, found once at start by probing which revisions a range can still read (etcd does
  not report it otherwise).
* **Keys with a TTL are put under a lease**, shared as kube-apiserver's LeaseManager shares
  one: a lease is reused for writes within a window (5% of the TTL, at most
  :data:`LEASE_REUSE_SECONDS`) and granted for TTL + window, so no key expires early; etcd
  deletes the keys when the lease runs out (a DELETE event, as for any delete).
* **History is bounded** like kube-apiserver's: every ``compact_interval`` seconds, compact to
  the current revision minus ``compact_keep``.  Several API servers may all do it; compacting
  what another already compacted is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aetcd import rpc

from tinykube.store.base import (
    Compacted,
    Event,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    RevisionMismatch,
    StoreError,
)

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds for one unary call: a member that stops answering is left
RETRY_TIMEOUT = 15.0  # seconds an operation (or a broken watch) keeps trying the endpoints
RETRY_DELAY = 0.1  # seconds between tries: a leader election takes about one election timeout
CHANNEL_GRACE = REQUEST_TIMEOUT  # seconds a replaced channel lets its calls in flight finish
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),  # a list of every pod can be far above gRPC's 4 MiB
    ("grpc.keepalive_time_ms", 30_000),  # notice a silently dead member under an idle watch
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]
LEASE_REUSE_SECONDS = 60  # kube-apiserver's --lease-reuse-duration-seconds default
LEASE_REUSE_PERCENT = 0.05  # of the TTL, when that is shorter (storagebackend's LeaseReuseDurationPercent)
LEASE_MAX_OBJECTS = 1000  # keys attached to one lease at most (storagebackend's DefaultLeaseMaxObjectCount)
_COMPACTED = "required revision has been compacted"
# A write failing with one of these never reached raft, so trying it again cannot apply it twice.
_NOT_APPLIED = ("failed to connect to all addresses", "etcdserver: no leader")


class EtcdError(StoreError):
    """etcd refused a request or could not be reached in time; the message is etcd's or gRPC's."""


class _RevisionCompacted(EtcdError):
    """A request named a revision that etcd has compacted away."""


# --------------------------------------------------------------------------- keys and values


def _range_end(prefix: bytes) -> bytes:
    """etcd's ``GetPrefixRangeEnd``: the least key above all keys with ``prefix`` (``\\0``: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _retriable(exc: grpc.aio.AioRpcError, idempotent: bool) -> bool:
    """Whether another try (on another endpoint) may succeed without doing anything twice."""
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        return idempotent or any(text in (exc.details() or "") for text in _NOT_APPLIED)
    return idempotent and exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def _is_compacted(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() == grpc.StatusCode.OUT_OF_RANGE and _COMPACTED in (exc.details() or "")


def _guard(key: bytes, expected_revision: int) -> Any:
    """The compare of a compare-and-swap: mod revision ``expected_revision``, or (0) any live key."""
    if expected_revision:
        return rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=expected_revision)
    return rpc.Compare(key=key, target=rpc.Compare.VERSION, result=rpc.Compare.GREATER, version=0)


def _credentials(ca: str, cert: str, key: str) -> grpc.ChannelCredentials:
    """TLS credentials from PEM files; without ``ca`` the system's roots verify the server."""

    def read(path: str) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(read(ca), read(key), read(cert))


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class _Link:
    """A channel to one endpoint and the stubs on it."""

    endpoint: str
    channel: grpc.aio.Channel
    kv: Any
    watch: Any
    lease: Any


class _Endpoints:
    """The link to one etcd member at a time; a failed link is replaced by one to the next member."""

    def __init__(self, endpoints: list[str], credentials: grpc.ChannelCredentials | None) -> None:
        self._endpoints = endpoints
        self._credentials = credentials
        self._index = 0
        self._retired: dict[grpc.aio.Channel, asyncio.Task[None]] = {}
        self.link = self._open(endpoints[0])

    def _open(self, endpoint: str) -> _Link:
        if self._credentials is None:
            channel = grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.secure_channel(endpoint, self._credentials, options=CHANNEL_OPTIONS)
        return _Link(endpoint, channel, rpc.KVStub(channel), rpc.WatchStub(channel), rpc.LeaseStub(channel))

    def failed(self, link: _Link) -> None:
        """Move to the next endpoint, unless another caller already moved away from ``link``.

        With a single endpoint the channel stays: gRPC reconnects it by itself.
        """
        if link is not self.link or len(self._endpoints) == 1:
            return
        self._index = (self._index + 1) % len(self._endpoints)
        self.link = self._open(self._endpoints[self._index])
        logger.info("etcd store: %s failed, using %s", link.endpoint, self.link.endpoint)
        task = asyncio.create_task(link.channel.close(grace=CHANNEL_GRACE), name="tinykube-etcd-retire")
        self._retired[link.channel] = task
        task.add_done_callback(lambda _: self._retired.pop(link.channel, None))

    async def close(self) -> None:
        """Close every channel once the calls in flight on it have finished (or the grace ran out)."""
        channels = [self.link.channel, *self._retired]
        for task in list(self._retired.values()):
            task.cancel()
        await asyncio.gather(*(channel.close(grace=CHANNEL_GRACE) for channel in channels), return_exceptions=True)


# --------------------------------------------------------------------------- leases


class _Leases:
    """kube-apiserver's LeaseManager: one lease for the writes of a short window, not one per key.

    A lease is reused while it outlives the new key's TTL yet not by more than the reuse window
    (so keys expire at most a window late) and holds fewer than LEASE_MAX_OBJECTS keys.
    """

    def __init__(self, grant: Callable[[int], Awaitable[int]], clock: Callable[[], float] = time.monotonic) -> None:
        self._grant = grant
        self._clock = clock
        self._lock = asyncio.Lock()
        self._id = 0
        self._expires = 0.0
        self._attached = 0

    async def lease(self, ttl: int) -> int:
        """The lease id to put a key with ``ttl`` seconds to live under."""
        async with self._lock:
            now = self._clock()
            reuse = min(LEASE_REUSE_SECONDS, int(LEASE_REUSE_PERCENT * ttl))
            self._attached += 1
            valid = now + ttl < self._expires < now + ttl + reuse
            if valid and self._attached <= LEASE_MAX_OBJECTS:
                return self._id
            self._id = await self._grant(ttl + reuse)
            self._expires, self._attached = now + ttl + reuse, 1
            return self._id


# --------------------------------------------------------------------------- the store


class EtcdStore:
    """The Store protocol on an etcd v3 cluster (see the module docstring for the design).

    ``endpoints`` are ``HOST:PORT`` (or ``http://``/``https://HOST:PORT``); TLS is used when any
    is ``https://`` or a CA, certificate or key file is given.  ``prefix`` is put before every key
    in etcd (kube-apiserver's ``--etcd-prefix``), so that several clusters can share one etcd.
    """

    def __init__(
        self,
        endpoints: list[str],
        *,
        ca: str = "",
        cert: str = "",
        key: str = "",
        prefix: str = "",
        compact_interval: float = 300.0,
        compact_keep: int = 10_000,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd store: no endpoints")
        tls = any(e.startswith("https://") for e in endpoints) or bool(ca or cert or key)
        self._targets = [e.split("://", 1)[-1] for e in endpoints]
        self._credentials = _credentials(ca, cert, key) if tls else None
        self._prefix = prefix.encode()
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep
        self._current = 0
        self._compacted = 0
        self._closed = False
        self._links: _Endpoints | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._watches: set[_Watch] = set()  # strong: a watch dropped unclosed still holds a stream
        self._leases = _Leases(self._grant)

    async def start(self) -> None:
        """Connect, learn the current and compacted revisions, start the compactor."""
        self._links = _Endpoints(self._targets, self._credentials)
        try:
            await self._call("Range", rpc.RangeRequest(key=b"\0", count_only=True), idempotent=True)
            self._compacted = await self._find_compacted()
        except BaseException:
            await self._links.close()
            raise
        self._compactor = asyncio.create_task(self._compact_forever(), name="tinykube-etcd-compactor")

    async def close(self) -> None:
        """Stop compacting, end the watches and close the channels (etcd has every acknowledged write)."""
        if self._closed:
            return
        self._closed = True
        if self._compactor is not None:
            self._compactor.cancel()
            await asyncio.gather(self._compactor, return_exceptions=True)
        await asyncio.gather(*(watch.aclose() for watch in list(self._watches)))
        if self._links is not None:
            await self._links.close()

    def current_revision(self) -> int:
        """The newest revision any etcd response has told us about."""
        return self._current

    def compacted_revision(self) -> int:
        return self._compacted

    # keys

    def _key(self, key: str) -> bytes:
        return self._prefix + key.encode()

    def _name(self, key: bytes) -> str:
        return key[len(self._prefix):].decode()

    def _kv(self, kv: Any) -> KeyValue:
        return KeyValue(self._name(kv.key), kv.value, kv.mod_revision, kv.create_revision)

    def _range(self, prefix: str) -> tuple[bytes, bytes]:
        """The etcd range ``[start, end)`` of the keys under ``prefix``."""
        start = self._key(prefix)
        return start or b"\0", _range_end(start)

    # reads

    async def get(self, key: str) -> KeyValue | None:
        response = await self._call("Range", rpc.RangeRequest(key=self._key(key)), idempotent=True)
        return self._kv(response.kvs[0]) if response.kvs else None

    async def list(self, prefix: str, start_after: str = "", limit: int = 0) -> ListResult:
        """One range read: its items and its header's revision agree with each other."""
        start, end = self._range(prefix)
        if start_after:
            start = max(start, self._key(start_after) + b"\0")
        request = rpc.RangeRequest(key=start, range_end=end, limit=limit)
        response = await self._call("Range", request, idempotent=True)
        return ListResult([self._kv(kv) for kv in response.kvs], response.header.revision, response.more)

    async def count(self, prefix: str) -> int:
        start, end = self._range(prefix)
        request = rpc.RangeRequest(key=start, range_end=end, count_only=True)
        return int((await self._call("Range", request, idempotent=True)).count)

    # writes

    async def create(self, key: str, value: bytes, ttl: int = 0) -> int:
        name = self._key(key)
        absent = rpc.Compare(key=name, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
        put = await self._put(name, value, ttl)
        response = await self._call("Txn", rpc.TxnRequest(compare=[absent], success=[put]), idempotent=False)
        if not response.succeeded:
            raise KeyExists(key)
        return int(response.header.revision)

    async def update(self, key: str, value: bytes, expected_revision: int, ttl: int = 0) -> int:
        put = await self._put(self._key(key), value, ttl)
        response = await self._swap(key, expected_revision, put)
        return int(response.header.revision)

    async def _put(self, name: bytes, value: bytes, ttl: int) -> Any:
        """The put of a write; with ``ttl`` > 0 under a lease (without one, a put detaches any old lease)."""
        lease = await self._leases.lease(ttl) if ttl > 0 else 0
        return rpc.RequestOp(request_put=rpc.PutRequest(key=name, value=value, lease=lease))

    async def _grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; granting is safe to retry (an unused lease just runs out)."""
        response = await self._call("LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl), idempotent=True, service="lease")
        return int(response.ID)

    async def delete(self, key: str, expected_revision: int = 0) -> Event:
        remove = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=self._key(key), prev_kv=True))
        response = await self._swap(key, expected_revision, remove)
        last = response.responses[0].response_delete_range.prev_kvs[0].value
        return Event("DELETE", key, last, int(response.header.revision), prev_value=last)

    async def _swap(self, key: str, expected_revision: int, operation: Any) -> Any:
        """Run ``operation`` if the key is live at ``expected_revision``; else raise with its current value."""
        name = self._key(key)
        read = rpc.RequestOp(request_range=rpc.RangeRequest(key=name))
        request = rpc.TxnRequest(compare=[_guard(name, expected_revision)], success=[operation], failure=[read])
        response = await self._call("Txn", request, idempotent=False)
        if response.succeeded:
            return response
        current = response.responses[0].response_range.kvs
        if not current:
            raise KeyNotFound(key)
        raise RevisionMismatch(self._kv(current[0]))

    async def compact(self, revision: int) -> None:
        """Forget history below ``revision`` (clamped to the current revision); etcd keeps live keys.

        Compacting what is already compacted (by us or another API server) is not an error.
        """
        target = min(revision, self._current)
        if target <= self._compacted:
            return
        try:
            await self._call("Compact", rpc.CompactionRequest(revision=target), idempotent=True)
        except _RevisionCompacted:
            pass
        self._saw_compaction(target)

    # calls

    async def _call(self, method: str, request: Any, *, idempotent: bool, service: str = "kv") -> Any:
        """One unary call (KV, or ``service`` "lease"), tried on the next endpoints while that is safe and time allows."""
        if self._closed or self._links is None:
            raise RuntimeError("the store is closed" if self._closed else "the store is not started")
        deadline = asyncio.get_running_loop().time() + RETRY_TIMEOUT
        while True:
            link = self._links.link
            try:
                response = await getattr(getattr(link, service), method)(request, timeout=REQUEST_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                await self._before_retry(exc, link, idempotent, deadline)
                continue
            self._saw_revision(response.header.revision)
            return response

    async def _before_retry(self, exc: grpc.aio.AioRpcError, link: _Link, idempotent: bool, deadline: float) -> None:
        """Move on to the next endpoint and pause, or raise ``exc`` as an EtcdError if that would be wrong."""
        assert self._links is not None
        if _is_compacted(exc):
            raise _RevisionCompacted(f"etcd {link.endpoint}: {exc.details()}") from exc
        if self._closed or not _retriable(exc, idempotent) or asyncio.get_running_loop().time() > deadline:
            raise EtcdError(f"etcd {link.endpoint}: {exc.details()}") from exc
        self._links.failed(link)
        await asyncio.sleep(RETRY_DELAY)

    def _saw_revision(self, revision: int) -> None:
        self._current = max(self._current, revision)

    def _saw_compaction(self, revision: int) -> None:
        self._compacted = max(self._compacted, revision)

    async def _find_compacted(self) -> int:
        """The lowest revision a range can still read (0 if nothing was ever compacted)."""

        async def readable(revision: int) -> bool:
            try:
                await self._call("Range", rpc.RangeRequest(key=b"\0", revision=revision), idempotent=True)
            except _RevisionCompacted:
                return False
            return True

        if self._current <= 1 or await readable(1):
            return 0
        low, high = 1, self._current  # unreadable, readable
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if await readable(middle) else (middle, high)
        return high

    async def _compact_forever(self) -> None:
        """Keep the last ``compact_keep`` revisions of history, checking every interval."""
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                await self.compact(self._current - self._compact_keep)
            except StoreError:
                logger.exception("etcd store: compaction failed")

    # watches

    def watch(self, prefix: str, after_revision: int) -> _Watch:
        """See :meth:`Store.watch`; the etcd watch opens on the first iteration."""
        start, end = self._range(prefix)
        watch = _Watch(self, start, end, after_revision)
        if not self._closed:
            self._watches.add(watch)
        return watch

    def _event(self, event: Any, after: int) -> Event:
        """Our Event for an etcd one; raises Compacted when etcd no longer had the previous value.

        etcd reads a previous value at the event's revision - 1, and leaves it out when that
        revision is compacted; a DELETE without one could not say what was deleted.
        """
        kv, name = event.kv, self._name(event.kv.key)
        prev = event.prev_kv.value if event.HasField("prev_kv") else None
        if prev is None and (event.type == rpc.Event.DELETE or kv.version > 1):
            self._saw_compaction(kv.mod_revision)
            raise Compacted(after, self._compacted, self._current)
        if event.type == rpc.Event.DELETE:
            return Event("DELETE", name, prev or b"", kv.mod_revision, prev_value=prev)
        return Event("PUT", name, kv.value, kv.mod_revision, created=kv.version == 1, prev_value=prev)


class _Watch:
    """The iterator ``watch`` returns: one etcd watch stream, reopened after the last delivered
    revision whenever it breaks (on the next endpoint if its member failed)."""

    def __init__(self, store: EtcdStore, start: bytes, end: bytes, after_revision: int) -> None:
        self._store = store
        self._start, self._end = start, end
        self._last = after_revision
        self._events: deque[Event] = deque()
        self._call: Any = None
        self._link: _Link | None = None
        self._deadline: float | None = None  # while reconnecting: when to give up
        self._ended = store._closed

    def __aiter__(self) -> _Watch:
        return self

    async def __anext__(self) -> Event:
        while not self._events:
            if self._ended:
                raise StopAsyncIteration
            try:
                await self._receive()
            except StoreError:
                await self.aclose()
                raise
        return self._events.popleft()

    async def aclose(self) -> None:
        """End the watch and cancel its stream."""
        self._ended = True
        self._store._watches.discard(self)
        self._drop()

    def _drop(self) -> None:
        """Cancel the stream (if any) and forget it; the next read opens a new one."""
        if self._call is not None:
            self._call.cancel()
        self._call = None

    async def _receive(self) -> None:
        """Read one response (opening the stream first if needed) and buffer its events."""
        try:
            if self._call is None:
                await self._open()
            response = await self._call.read()
        except asyncio.CancelledError:
            self._drop()
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return  # our channel was closed under the call: reopen (or end, if the store closed)
        except grpc.aio.AioRpcError as exc:
            self._drop()
            if not self._ended:
                await self._backoff(exc)
            return
        if response is grpc.aio.EOF:
            self._drop()
            return
        self._deadline = None
        self._take(response)

    async def _open(self) -> None:
        store = self._store
        if self._last < store.compacted_revision():
            raise Compacted(self._last, store.compacted_revision(), store.current_revision())
        assert store._links is not None
        self._link = store._links.link
        create = rpc.WatchCreateRequest(key=self._start, range_end=self._end, start_revision=self._last + 1,
                                        prev_kv=True, progress_notify=True)
        self._call = self._link.watch.Watch()
        await self._call.write(rpc.WatchRequest(create_request=create))

    async def _backoff(self, exc: grpc.aio.AioRpcError) -> None:
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + RETRY_TIMEOUT
        assert self._link is not None
        await self._store._before_retry(exc, self._link, True, self._deadline)

    def _take(self, response: Any) -> None:
        store = self._store
        store._saw_revision(response.header.revision)
        if response.compact_revision:
            store._saw_compaction(response.compact_revision)
            raise Compacted(self._last, response.compact_revision, store.current_revision())
        if response.canceled:
            raise EtcdError(f"etcd watch canceled: {response.cancel_reason}")
        for event in response.events:
            self._events.append(store._event(event, self._last))
            self._last = self._events[-1].revision
