"""The embedded SQLite backend of the :class:`~tinykube.store.base.Store` protocol.

Why it is shaped this way:

* **One writer thread owns the only write connection.**  Async callers queue operations; the
  writer takes everything pending at once and applies it in one ``BEGIN IMMEDIATE`` transaction
  (group commit).  A single writer can never meet "database is locked", and one commit per
  batch is what makes thousands of small writes per second cheap.  An operation's future is
  resolved only after ``COMMIT``: an acknowledged write survives a process restart (WAL with
  ``synchronous=NORMAL``; ``sync_full`` also survives power loss).
* **Readers use their own connections** in a small thread pool, so reads never wait for the
  writer; WAL gives each read transaction a consistent snapshot, which is how ``list`` returns
  its items and their revision together.
* **Watches are fed by the writer, never by polling.**  After each commit the event-loop thread
  receives the batch's events in revision order.  A watch registers its subscriber first, then
  replays the ``log`` table from its start revision, then delivers live events, skipping any
  revision it already replayed: no gaps, no duplicates.
* **History is bounded.**  A background task deletes log rows older than ``compact_keep``
  revisions; the compacted and current revisions live in ``meta`` so revisions never go
  backwards, even when compaction leaves the log empty.
* **Keys with a TTL expire like etcd's leased keys.**  ``kv.expires`` (epoch seconds, NULL:
  never) is set by a write with ``ttl`` > 0; the same background task looks for expired keys
  every :data:`REAP_INTERVAL` and deletes them through the writer as ordinary DELETEs (so
  watches see the last value), at most :data:`REAP_BATCH` per pass.  Expiry is therefore lazy:
  a read may still return a key for up to a reap interval after its time is up, as a key under
  an expired etcd lease can be read until the leader revokes it.

A watch whose consumer falls more than :data:`MAX_WATCH_BACKLOG` events behind is ended with
:class:`WatchTooSlow`; the consumer resumes by watching again from the last revision it saw.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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

T = TypeVar("T")

MAX_WATCH_BACKLOG = 100_000  # events; ~100 s of a very busy cluster; beyond it the consumer is stuck
MAX_BATCH = 1_000  # ops per transaction: bounds commit latency and the size of one publish
COMPACT_STEP = 10_000  # revisions deleted per transaction, so writes interleave with compaction
REPLAY_PAGE = 1_000  # log rows per read transaction while a watch catches up
READERS = 4  # read connections; reads release the GIL inside SQLite, so more than the 2 cores
BUSY_TIMEOUT_MS = 5_000  # only another process touching the file can make us wait
REAP_INTERVAL = 1.0  # seconds between looks for expired keys: how late a key may outlive its TTL
REAP_BATCH = 1_000  # expired keys deleted per pass, so one pass never holds up the writer for long

PUT, DELETE = "PUT", "DELETE"
_TYPE_CODES = {PUT: 0, DELETE: 1}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, mod_rev INTEGER NOT NULL, create_rev INTEGER NOT NULL,
    expires REAL);
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY, key TEXT NOT NULL, type INTEGER NOT NULL, value BLOB NOT NULL,
    prev_value BLOB, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('current', 0), ('compacted', 0);
"""
_SELECT_KV = "SELECT key, value, mod_rev, create_rev FROM kv"
_SELECT_META = "SELECT name, value FROM meta"
_INSERT_KV = ("INSERT INTO kv (key, value, mod_rev, create_rev, expires) VALUES (?, ?, ?, ?, ?) "
              "ON CONFLICT (key) DO NOTHING")
_UPDATE_KV = "UPDATE kv SET value = ?, mod_rev = ?, expires = ? WHERE key = ?"
# Databases written before keys could expire lack the column; the index serves the reaper.
_MIGRATE_EXPIRES = "ALTER TABLE kv ADD COLUMN expires REAL"
_INDEX_EXPIRES = "CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires) WHERE expires IS NOT NULL"
_DELETE_KV = "DELETE FROM kv WHERE key = ?"
_INSERT_LOG = "INSERT INTO log VALUES (?, ?, ?, ?, ?, ?)"
_SELECT_LOG = "SELECT rev, key, type, value, prev_value, created FROM log"
_SET_META = "UPDATE meta SET value = ? WHERE name = ?"


class WatchTooSlow(StoreError):
    """A watch's consumer fell more than MAX_WATCH_BACKLOG events behind; watch again to resume."""


# --------------------------------------------------------------------------- connections & SQL


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves) usable from any one thread."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    return db


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (None: no bound).

    Like etcd's ``GetPrefixRangeEnd``: bump the last character.  SQLite compares UTF-8 bytes,
    whose order is code-point order, so ``prefix <= key < end`` is exactly "starts with" and,
    unlike ``LIKE``, needs no escaping of ``%`` and ``_`` and uses the primary-key index.
    """
    while prefix:
        code = ord(prefix[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored as UTF-8
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


def _key_range(prefix: str, start_after: str = "") -> tuple[str, list[str]]:
    """A WHERE clause (and its parameters) selecting keys under ``prefix`` after ``start_after``."""
    clauses, params = ["key > ?" if start_after >= prefix else "key >= ?"], [max(prefix, start_after)]
    end = _prefix_end(prefix)
    if end is not None:
        clauses.append("key < ?")
        params.append(end)
    return " AND ".join(clauses), params


def _event(row: Sequence[Any]) -> Event:
    """An Event from a ``log`` row; a DELETE's previous value is the value it removed."""
    rev, key, code, value, prev_value, created = row
    if code == _TYPE_CODES[DELETE]:
        return Event(DELETE, key, value, rev, prev_value=value)
    return Event(PUT, key, value, rev, created=bool(created), prev_value=prev_value)


def _meta(db: sqlite3.Connection) -> dict[str, int]:
    """The current and compacted revisions as stored."""
    return dict(db.execute(_SELECT_META).fetchall())


# --------------------------------------------------------------------------- reads


def _read_get(db: sqlite3.Connection, key: str) -> KeyValue | None:
    row = db.execute(f"{_SELECT_KV} WHERE key = ?", (key,)).fetchone()
    return KeyValue(*row) if row else None


def _read_list(db: sqlite3.Connection, prefix: str, start_after: str, limit: int) -> ListResult:
    """Items and revision from one read transaction, so they agree with each other."""
    where, params = _key_range(prefix, start_after)
    sql = f"{_SELECT_KV} WHERE {where} ORDER BY key LIMIT ?"
    db.execute("BEGIN")
    try:
        revision = _meta(db)["current"]
        rows = db.execute(sql, [*params, limit + 1 if limit > 0 else -1]).fetchall()
    finally:
        db.execute("COMMIT")
    more = 0 < limit < len(rows)
    return ListResult([KeyValue(*row) for row in (rows[:limit] if more else rows)], revision, more)


def _read_count(db: sqlite3.Connection, prefix: str) -> int:
    where, params = _key_range(prefix)
    return int(db.execute(f"SELECT count(*) FROM kv WHERE {where}", params).fetchone()[0])


def _read_expired(db: sqlite3.Connection, now: float, limit: int) -> list[str]:
    """Keys whose TTL ran out by ``now``, soonest first, at most ``limit``."""
    rows = db.execute("SELECT key FROM kv WHERE expires <= ? ORDER BY expires LIMIT ?", (now, limit))
    return [key for (key,) in rows]


def _expires(ttl: int) -> float | None:
    """The ``kv.expires`` of a write with ``ttl`` seconds to live (None: forever)."""
    return time.time() + ttl if ttl > 0 else None


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database from an older tinykube up to the current schema (idempotent)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(kv)")}
    if "expires" not in columns:
        db.execute(_MIGRATE_EXPIRES)
    db.execute(_INDEX_EXPIRES)


def _read_log_page(db: sqlite3.Connection, prefix: str, after: int) -> tuple[list[Event], dict[str, int]]:
    """Up to REPLAY_PAGE events after ``after``, with the revisions of the same snapshot.

    Reading ``meta`` in the same transaction is what lets the caller tell "no more events" from
    "compaction deleted the events I needed".
    """
    where, params = _key_range(prefix)
    sql = f"{_SELECT_LOG} WHERE rev > ? AND {where} ORDER BY rev LIMIT ?"
    db.execute("BEGIN")
    try:
        meta = _meta(db)
        rows = db.execute(sql, [after, *params, REPLAY_PAGE]).fetchall()
    finally:
        db.execute("COMMIT")
    return [_event(row) for row in rows], meta


class _Readers:
    """A few threads, each with its own read-only connection, that run read functions."""

    def __init__(self, path: str, synchronous: str) -> None:
        self._path, self._synchronous = path, synchronous
        self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="tinykube-sqlite-read")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def run(self, read: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, read, args)

    def _call(self, read: Callable[..., T], args: tuple[Any, ...]) -> T:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = _connect(self._path, self._synchronous)
            db.execute("PRAGMA query_only = ON")
            with self._lock:
                self._connections.append(db)
        return read(db, *args)

    def close(self) -> None:
        """Wait for running reads, then close every connection (blocking: run it in a thread)."""
        self._pool.shutdown(wait=True)
        for db in self._connections:
            db.close()


# --------------------------------------------------------------------------- the writer


@dataclass(slots=True)
class _Op:
    """One queued write: the writer method to call, its arguments and the caller's future."""

    apply: Callable[..., tuple[Any, Event | None]]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


# (future, result or exception, failed)
_Outcome = tuple["asyncio.Future[Any]", Any, bool]
_CommitCallback = Callable[[list[_Outcome], list[Event], int, int], None]


class _Writer:
    """The writer thread: the only code that writes, and the only user of its connection."""

    def __init__(self, path: str, synchronous: str) -> None:
        self._path, self._synchronous = path, synchronous
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tinykube-sqlite-write", daemon=True)
        self.revision = 0
        self.compacted = 0

    def open(self, on_commit: _CommitCallback) -> None:
        """Create the schema, load the revisions and start the thread (blocking)."""
        self._on_commit = on_commit
        self._db = _connect(self._path, self._synchronous)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA journal_size_limit = 67108864")  # keep the WAL file at <= 64 MiB
        self._db.executescript(_SCHEMA)
        _migrate(self._db)
        self._load_meta()
        self._thread.start()

    def submit(self, op: _Op) -> None:
        self._queue.put(op)

    def stop(self) -> None:
        """Apply everything queued so far, then end the thread (blocking)."""
        self._queue.put(None)
        self._thread.join()

    def _load_meta(self) -> None:
        meta = _meta(self._db)
        self.revision, self.compacted = meta["current"], meta["compacted"]

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._take_batch()
                if batch:
                    self._commit(batch)
        finally:
            self._db.close()

    def _take_batch(self) -> tuple[list[_Op], bool]:
        """Block for one op, then take whatever else is already queued (group commit)."""
        batch: list[_Op] = []
        op = self._queue.get()
        while op is not None:
            batch.append(op)
            if len(batch) >= MAX_BATCH:
                return batch, False
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _commit(self, batch: list[_Op]) -> None:
        """Apply a batch in one transaction and hand the outcomes to the event loop."""
        events: list[Event] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            outcomes: list[_Outcome] = [self._apply(op, events) for op in batch]
            self._db.execute(_SET_META, (self.revision, "current"))
            self._db.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - the writer must outlive any failure
            self._abort()
            outcomes, events = [(op.future, exc, True) for op in batch], []
        self._on_commit(outcomes, events, self.revision, self.compacted)

    def _apply(self, op: _Op, events: list[Event]) -> _Outcome:
        """Run one op; a StoreError fails only this op, before it has written anything."""
        try:
            result, event = op.apply(*op.args)
        except StoreError as exc:
            return op.future, exc, True
        if event is not None:
            events.append(event)
        return op.future, result, False

    def _abort(self) -> None:
        """Roll back a failed batch and forget the revisions it had taken."""
        logger.exception("sqlite store: write transaction failed")
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._load_meta()

    # The operations below run inside the writer's transaction.

    def create(self, key: str, value: bytes, ttl: int) -> tuple[int, Event]:
        revision = self.revision + 1
        if self._db.execute(_INSERT_KV, (key, value, revision, revision, _expires(ttl))).rowcount == 0:
            raise KeyExists(key)
        return revision, self._log(Event(PUT, key, value, revision, created=True))

    def update(self, key: str, value: bytes, expected_revision: int, ttl: int) -> tuple[int, Event]:
        old = self._fetch(key, expected_revision)
        revision = self.revision + 1
        self._db.execute(_UPDATE_KV, (value, revision, _expires(ttl), key))
        return revision, self._log(Event(PUT, key, value, revision, prev_value=old.value))

    def delete(self, key: str, expected_revision: int) -> tuple[Event, Event]:
        event = self._remove(self._fetch(key, expected_revision))
        return event, event

    def expire(self, key: str, now: float) -> tuple[bool, Event | None]:
        """Delete ``key`` if its TTL ran out by ``now`` (a write since the reaper looked may have renewed it)."""
        row = self._db.execute(f"{_SELECT_KV} WHERE key = ? AND expires <= ?", (key, now)).fetchone()
        if row is None:
            return False, None
        return True, self._remove(KeyValue(*row))

    def _remove(self, old: KeyValue) -> Event:
        self._db.execute(_DELETE_KV, (old.key,))
        return self._log(Event(DELETE, old.key, old.value, self.revision + 1, prev_value=old.value))

    def compact(self, revision: int) -> tuple[int, None]:
        if revision > self.compacted:
            self._db.execute("DELETE FROM log WHERE rev <= ?", (revision,))
            self._db.execute(_SET_META, (revision, "compacted"))
            self.compacted = revision
        return self.compacted, None

    def _fetch(self, key: str, expected_revision: int) -> KeyValue:
        """The live key, checked against the compare-and-swap revision (0: any)."""
        row = self._db.execute(f"{_SELECT_KV} WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyNotFound(key)
        current = KeyValue(*row)
        if expected_revision and current.mod_revision != expected_revision:
            raise RevisionMismatch(current)
        return current

    def _log(self, event: Event) -> Event:
        """Append the event to the history and take its revision."""
        prev_value = event.prev_value if event.type == PUT else None
        row = (event.revision, event.key, _TYPE_CODES[event.type], event.value, prev_value, event.created)
        self._db.execute(_INSERT_LOG, row)
        self.revision = event.revision
        return event


# --------------------------------------------------------------------------- watches


class _Subscriber:
    """Live events for one watch, buffered in the event-loop thread until the watch takes them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._pending: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._error: StoreError | None = None
        self._ended = False

    def offer(self, events: list[Event]) -> bool:
        """Buffer the matching events; False (and the watch fails) once the backlog is too long."""
        self._pending.extend(e for e in events if e.key.startswith(self.prefix))
        if len(self._pending) > MAX_WATCH_BACKLOG:
            self._pending.clear()
            self._error = WatchTooSlow(f"watch on {self.prefix!r} fell {MAX_WATCH_BACKLOG} events behind")
        if self._pending or self._error:
            self._wakeup.set()
        return self._error is None

    def end(self) -> None:
        self._ended = True
        self._wakeup.set()

    async def take(self) -> list[Event] | None:
        """Everything buffered (waiting for at least one event); None once the store closed."""
        while not self._pending and self._error is None and not self._ended:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._error is not None:
            raise self._error
        if not self._pending:
            return None
        events = list(self._pending)
        self._pending.clear()
        return events


class _Watch:
    """The iterator ``watch`` returns: it subscribes when created, so nothing can slip past."""

    def __init__(
        self,
        subscriber: _Subscriber,
        history: Callable[[str, int], AsyncIterator[Event]],
        unsubscribe: Callable[[_Subscriber], None],
        after_revision: int,
    ) -> None:
        self._subscriber = subscriber
        self._unsubscribe = unsubscribe
        self._events = self._stream(history(subscriber.prefix, after_revision), after_revision)

    def __aiter__(self) -> _Watch:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """End the watch and unregister it."""
        self._unsubscribe(self._subscriber)
        await self._events.aclose()

    async def _stream(self, history: AsyncIterator[Event], last: int) -> AsyncIterator[Event]:
        """Replayed history, then live events above the last revision already delivered."""
        async for event in history:
            last = event.revision
            yield event
        while (batch := await self._subscriber.take()) is not None:
            for event in batch:
                if event.revision > last:
                    last = event.revision
                    yield event


# --------------------------------------------------------------------------- the store


class SqliteStore:
    """The Store protocol on one SQLite file (see the module docstring for the design)."""

    def __init__(
        self,
        path: str,
        *,
        sync_full: bool = False,
        compact_interval: float = 300.0,
        compact_keep: int = 10_000,
    ) -> None:
        synchronous = "FULL" if sync_full else "NORMAL"
        self._path = path
        self._writer = _Writer(path, synchronous)
        self._readers = _Readers(path, synchronous)
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep
        self._subscribers: weakref.WeakSet[_Subscriber] = weakref.WeakSet()
        self._current = 0
        self._compacted = 0
        self._closed = False
        self._compactor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._writer.open, self._schedule_commit)
        self._current, self._compacted = self._writer.revision, self._writer.compacted
        self._compactor = asyncio.create_task(self._compact_forever(), name="tinykube-sqlite-compactor")

    async def close(self) -> None:
        """Stop compacting, commit everything queued, end the watches, close the connections."""
        if self._closed:
            return
        self._closed = True
        if self._compactor is None:  # never started
            return
        self._compactor.cancel()
        await asyncio.gather(self._compactor, return_exceptions=True)
        await asyncio.to_thread(self._writer.stop)
        for subscriber in list(self._subscribers):
            subscriber.end()
        await asyncio.to_thread(self._readers.close)

    def current_revision(self) -> int:
        """The latest revision whose events have been published to the watches."""
        return self._current

    def compacted_revision(self) -> int:
        return self._compacted

    # reads

    async def get(self, key: str) -> KeyValue | None:
        return await self._readers.run(_read_get, key)

    async def list(self, prefix: str, start_after: str = "", limit: int = 0) -> ListResult:
        return await self._readers.run(_read_list, prefix, start_after, limit)

    async def count(self, prefix: str) -> int:
        return await self._readers.run(_read_count, prefix)

    # writes

    async def create(self, key: str, value: bytes, ttl: int = 0) -> int:
        return await self._write(self._writer.create, key, value, ttl)

    async def update(self, key: str, value: bytes, expected_revision: int, ttl: int = 0) -> int:
        return await self._write(self._writer.update, key, value, expected_revision, ttl)

    async def delete(self, key: str, expected_revision: int = 0) -> Event:
        return await self._write(self._writer.delete, key, expected_revision)

    async def compact(self, revision: int) -> None:
        """Forget history at or below ``revision`` (clamped to the current revision).

        Done in steps of COMPACT_STEP revisions so that writes queued meanwhile are not held up
        by one huge delete.
        """
        target = min(revision, self._current)
        while self._compacted < target:
            await self._write(self._writer.compact, min(self._compacted + COMPACT_STEP, target))

    async def reap(self, now: float | None = None) -> int:
        """Delete up to REAP_BATCH keys expired by ``now`` (default: the time), queued together so
        that they commit in one transaction; returns how many."""
        now = time.time() if now is None else now
        keys = await self._readers.run(_read_expired, now, REAP_BATCH)
        done = await asyncio.gather(*(self._write(self._writer.expire, key, now) for key in keys))
        return sum(done)

    async def _write(self, apply: Callable[..., tuple[T, Event | None]], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("the store is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._writer.submit(_Op(apply, args, future))
        return await future

    def _schedule_commit(self, outcomes: list[_Outcome], events: list[Event], current: int, compacted: int) -> None:
        """Called in the writer thread: the rest happens in the event-loop thread."""
        self._loop.call_soon_threadsafe(self._committed, outcomes, events, current, compacted)

    def _committed(self, outcomes: list[_Outcome], events: list[Event], current: int, compacted: int) -> None:
        """Publish a committed batch to the watches, then acknowledge its writers."""
        self._current, self._compacted = current, compacted
        if events:
            for subscriber in list(self._subscribers):
                if not subscriber.offer(events):
                    self._subscribers.discard(subscriber)
        for future, result, failed in outcomes:
            if future.done():  # the caller was cancelled; the write stands regardless
                continue
            if failed:
                future.set_exception(result)
            else:
                future.set_result(result)

    # watches

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        """See :meth:`Store.watch`; also raises WatchTooSlow if the consumer lags too far."""
        subscriber = _Subscriber(prefix)
        if not self._closed:
            self._subscribers.add(subscriber)
        else:
            subscriber.end()
        return _Watch(subscriber, self._history, self._subscribers.discard, after_revision)

    async def _history(self, prefix: str, after: int) -> AsyncIterator[Event]:
        """Logged events above ``after`` until the live stream is sure to hold the rest.

        Every revision up to ``current_revision()`` has already been offered to the
        subscribers registered at that time; so once ``after`` reaches it, the subscriber
        (registered before this runs) has, or will get, everything newer.
        """
        if after < self._compacted:
            raise Compacted(after, self._compacted, self._current)
        while after < self._current:
            events, meta = await self._readers.run(_read_log_page, prefix, after)
            if after < meta["compacted"]:
                raise Compacted(after, meta["compacted"], meta["current"])
            for event in events:
                yield event
            if len(events) < REPLAY_PAGE:
                return
            after = events[-1].revision

    async def _compact_forever(self) -> None:
        """Reap expired keys every REAP_INTERVAL; keep the last ``compact_keep`` revisions, checking every interval."""
        next_compaction = self._loop.time() + self._compact_interval
        while True:
            await asyncio.sleep(min(REAP_INTERVAL, self._compact_interval))
            await self._housekeep(self.reap(), "expiry")
            if self._loop.time() >= next_compaction:
                next_compaction = self._loop.time() + self._compact_interval
                await self._housekeep(self.compact(self._current - self._compact_keep), "compaction")

    async def _housekeep(self, work: Awaitable[Any], what: str) -> None:
        """Run one background chore; a failure is logged and tried again next time."""
        try:
            await work
        except (StoreError, sqlite3.Error):
            logger.exception("sqlite store: %s failed", what)
