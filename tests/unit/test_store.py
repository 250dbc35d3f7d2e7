"""The Store contract, run against every backend, then tests of the SQLite and etcd backends alone.

Contract tests only use the ``Store`` protocol plus ``compact(revision)``, which every backend
exposes for tests.  To add a backend, add a constructor to ``BACKENDS``.  The etcd backend runs
on one etcd shared by the module, each test under its own key prefix.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.etcd import EtcdCluster, etcd_cluster, requires_etcd
from tinykube import pki
from tinykube.apiserver import server
from tinykube.store import sqlite as sqlite_module
from tinykube.store.base import (
    Compacted,
    Event,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
)
from tinykube.store.etcd import EtcdStore, _Leases, _range_end
from tinykube.store.sqlite import SqliteStore, WatchTooSlow, _prefix_end

# One event loop for the module, as a server has: gRPC's asyncio stack serves one loop, and calls
# it cancelled complete a moment later, which a per-test loop would already have closed.  (The
# mark reaches the few plain functions too, which pytest-asyncio would warn about.)
pytestmark = [pytest.mark.asyncio(loop_scope="module"),
              pytest.mark.filterwarnings("ignore:.*marked with '@pytest.mark.asyncio' but it is not an async")]

OpenStore = Callable[..., Awaitable[Any]]


def _etcd_store(request: pytest.FixtureRequest, tmp_path: Path, **options: Any) -> EtcdStore:
    """A store on the module's etcd, under a prefix of the test's own (the same when reopened)."""
    cluster: EtcdCluster = request.getfixturevalue("etcd")
    return EtcdStore(cluster.endpoints, prefix=f"/{tmp_path.name}/", **options)


BACKENDS: dict[str, Callable[..., Any]] = {
    "sqlite": lambda request, tmp_path, **options: SqliteStore(str(tmp_path / "store.db"), **options),
    "etcd": _etcd_store,
}
MARKS = {"etcd": [requires_etcd]}


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    """One single-member etcd for the module's tests."""
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest_asyncio.fixture(loop_scope="module",
                        params=[pytest.param(name, marks=MARKS.get(name, [])) for name in sorted(BACKENDS)])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens a started store on the same data each time (reopening = a restart); closes them all."""
    opened: list[Any] = []

    async def open_(**options: Any) -> Any:
        store = BACKENDS[request.param](request, tmp_path, **options)
        await store.start()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest_asyncio.fixture(loop_scope="module")
async def store(open_store: OpenStore) -> Any:
    return await open_store()


async def take(watch: AsyncIterator[Event], n: int, timeout: float = 2.0) -> list[Event]:
    """The next ``n`` events of a watch, failing instead of hanging."""
    async with asyncio.timeout(timeout):
        return [await anext(watch) for _ in range(n)]


async def collect_all(watch: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in watch]


async def nothing_more(watch: AsyncIterator[Event]) -> None:
    with pytest.raises(TimeoutError):
        await take(watch, 1, timeout=0.05)


# --------------------------------------------------------------------------- contract: writes


async def test_create_then_get(store: Any) -> None:
    rev = await store.create("/r/pods/a", b"1")
    kv = await store.get("/r/pods/a")
    assert (kv.key, kv.value, kv.mod_revision, kv.create_revision) == ("/r/pods/a", b"1", rev, rev)
    assert store.current_revision() == rev
    assert await store.get("/r/pods/missing") is None


async def test_create_existing_key_raises_and_takes_no_revision(store: Any) -> None:
    rev = await store.create("/k", b"1")
    with pytest.raises(KeyExists):
        await store.create("/k", b"2")
    assert (await store.get("/k")).value == b"1"
    assert await store.create("/other", b"x") == rev + 1


async def test_update_compare_and_swap(store: Any) -> None:
    created = await store.create("/k", b"1")
    updated = await store.update("/k", b"2", created)
    assert updated > created
    kv = await store.get("/k")
    assert (kv.value, kv.mod_revision, kv.create_revision) == (b"2", updated, created)
    assert await store.update("/k", b"3", 0) > updated  # 0: unconditional


async def test_update_stale_revision_raises_mismatch_with_current(store: Any) -> None:
    created = await store.create("/k", b"1")
    updated = await store.update("/k", b"2", created)
    with pytest.raises(RevisionMismatch) as caught:
        await store.update("/k", b"3", created)
    assert (caught.value.current.value, caught.value.current.mod_revision) == (b"2", updated)
    assert store.current_revision() == updated


async def test_update_missing_raises_key_not_found(store: Any) -> None:
    with pytest.raises(KeyNotFound):
        await store.update("/nope", b"x", 0)


async def test_delete_returns_event_with_last_value(store: Any) -> None:
    await store.create("/k", b"1")
    last = await store.update("/k", b"2", 0)
    event = await store.delete("/k")
    assert (event.type, event.key, event.value, event.revision) == ("DELETE", "/k", b"2", last + 1)
    assert await store.get("/k") is None
    with pytest.raises(KeyNotFound):
        await store.delete("/k")


async def test_delete_compare_and_swap(store: Any) -> None:
    created = await store.create("/k", b"1")
    with pytest.raises(RevisionMismatch) as caught:
        await store.delete("/k", created + 100)
    assert caught.value.current.mod_revision == created
    assert (await store.delete("/k", created)).revision == created + 1


async def test_recreated_key_gets_a_new_create_revision(store: Any) -> None:
    await store.create("/k", b"1")
    await store.delete("/k")
    rev = await store.create("/k", b"2")
    assert (await store.get("/k")).create_revision == rev


async def test_many_concurrent_creates_get_distinct_revisions(store: Any) -> None:
    start = store.current_revision()
    revs = await asyncio.gather(*(store.create(f"/c/{i:04}", b"v") for i in range(500)))
    assert sorted(revs) == list(range(start + 1, start + 501))
    assert await store.count("/c/") == 500


async def test_concurrent_creates_of_one_key_one_wins(store: Any) -> None:
    results = await asyncio.gather(*(store.create("/same", b"%d" % i) for i in range(20)), return_exceptions=True)
    revs = [r for r in results if isinstance(r, int)]
    assert len(revs) == 1 and sum(isinstance(r, KeyExists) for r in results) == 19
    assert store.current_revision() == revs[0]


# --------------------------------------------------------------------------- contract: reads


async def test_list_is_prefix_scoped_and_key_ordered(store: Any) -> None:
    for key in ["/r/pods/b", "/r/pods/a", "/r/pods%/x", "/r/pods_/y", "/r/pod", "/r/podsz", "/r/pods/\U0001f600"]:
        await store.create(key, key.encode())
    result = await store.list("/r/pods/")
    assert [kv.key for kv in result.items] == ["/r/pods/a", "/r/pods/b", "/r/pods/\U0001f600"]
    assert [kv.value for kv in result.items] == [b"/r/pods/a", b"/r/pods/b", "/r/pods/\U0001f600".encode()]
    assert result.revision == store.current_revision() and not result.more
    assert [kv.key for kv in (await store.list("/r/pods%")).items] == ["/r/pods%/x"]
    assert len((await store.list("")).items) == 7


async def test_list_pages_with_limit_start_after_and_more(store: Any) -> None:
    for i in range(5):
        await store.create(f"/p/{i}", b"v")
    first = await store.list("/p/", limit=2)
    assert [kv.key for kv in first.items] == ["/p/0", "/p/1"] and first.more
    second = await store.list("/p/", start_after="/p/1", limit=2)
    assert [kv.key for kv in second.items] == ["/p/2", "/p/3"] and second.more
    last = await store.list("/p/", start_after="/p/3", limit=2)
    assert [kv.key for kv in last.items] == ["/p/4"] and not last.more
    exact = await store.list("/p/", start_after="/p/2", limit=2)
    assert [kv.key for kv in exact.items] == ["/p/3", "/p/4"] and not exact.more


async def test_count(store: Any) -> None:
    for key in ["/a/1", "/a/2", "/ab/1", "/b/1"]:
        await store.create(key, b"v")
    await store.delete("/a/2")
    assert [await store.count(p) for p in ["/a/", "/a", "/c/", ""]] == [1, 2, 0, 3]


# --------------------------------------------------------------------------- contract: watch


async def test_watch_from_now_gets_puts_and_deletes_in_order(store: Any) -> None:
    await store.create("/w/old", b"0")
    watch = store.watch("/w/", store.current_revision())
    r1 = await store.create("/w/a", b"1")
    await store.create("/x/ignored", b"x")
    r2 = await store.update("/w/a", b"2", r1)
    deleted = await store.delete("/w/a")
    events = await take(watch, 3)
    assert [(e.type, e.key, e.value, e.revision, e.created) for e in events] == [
        ("PUT", "/w/a", b"1", r1, True),
        ("PUT", "/w/a", b"2", r2, False),
        ("DELETE", "/w/a", b"2", deleted.revision, False),
    ]
    assert events[1].prev_value == b"1"
    await nothing_more(watch)
    await watch.aclose()


async def test_watch_from_old_revision_replays_then_goes_live(store: Any) -> None:
    start = store.current_revision()
    a = await store.create("/w/a", b"1")
    await store.update("/w/a", b"2", a)
    await store.delete("/w/a")
    watch = store.watch("/w/", start)
    live = await store.create("/w/b", b"3")
    events = await take(watch, 4)
    assert [(e.type, e.revision) for e in events] == [("PUT", a), ("PUT", a + 1), ("DELETE", a + 2), ("PUT", live)]
    assert events[0].created and not events[1].created and events[2].value == b"2"
    await nothing_more(watch)
    await watch.aclose()


async def test_watches_started_during_writes_have_no_gaps_or_duplicates(store: Any) -> None:
    """Watches open at various revisions while writers run; each sees every later revision once."""
    total = 300
    done = asyncio.Event()

    async def writer(worker: int) -> None:
        for i in range(total // 3):
            await store.create(f"/g/{worker}/{i}", b"v")
        done.set()

    async def watcher(delay: float) -> tuple[int, list[int]]:
        await asyncio.sleep(delay)
        after = max(store.current_revision() - 7, base)  # revisions before base may be other tests' (etcd)
        watch = store.watch("/g/", after)
        revs = [e.revision for e in await take(watch, base + total - after, timeout=5)]
        await watch.aclose()
        return after, revs

    base = store.current_revision()
    results = await asyncio.gather(*(watcher(d) for d in (0, 0.001, 0.005, 0.02)), *(writer(w) for w in range(3)))
    for after, revs in results[:4]:
        assert revs == list(range(after + 1, base + total + 1))


async def test_closed_watch_stops_receiving(store: Any) -> None:
    watch = store.watch("/w/", store.current_revision())
    await store.create("/w/a", b"1")
    assert len(await take(watch, 1)) == 1
    await watch.aclose()
    await store.create("/w/b", b"2")  # nothing to deliver to, nothing breaks
    with pytest.raises(StopAsyncIteration):
        await anext(watch)


async def test_watch_below_compacted_revision_raises_compacted(store: Any) -> None:
    first = await store.create("/k/1", b"v")
    for i in range(2, 6):
        await store.create(f"/k/{i}", b"v")
    await store.compact(first + 2)
    assert store.compacted_revision() == first + 2
    with pytest.raises(Compacted) as caught:
        await anext(store.watch("/k/", first))
    assert (caught.value.requested, caught.value.compacted) == (first, first + 2)
    assert caught.value.current == store.current_revision()
    events = await take(store.watch("/k/", first + 2), 2)  # exactly at the compacted revision is fine
    assert [e.revision for e in events] == [first + 3, first + 4]
    assert len((await store.list("/k/")).items) == 5  # compaction never loses live keys


async def test_background_compaction_keeps_the_newest_history(open_store: OpenStore) -> None:
    store = await open_store(compact_interval=0.01, compact_keep=3)
    base = store.current_revision()
    for i in range(10):
        await store.create(f"/k/{i}", b"v")
    async with asyncio.timeout(2):
        while store.compacted_revision() < base + 7:
            await asyncio.sleep(0.01)
    assert store.compacted_revision() == base + 7
    assert [e.revision for e in await take(store.watch("/k/", base + 7), 3)] == [base + 8, base + 9, base + 10]


# --------------------------------------------------------------------------- contract: TTLs


async def _first_delete(watch: AsyncIterator[Event], timeout: float) -> Event:
    async with asyncio.timeout(timeout):
        async for event in watch:
            if event.type == "DELETE":
                return event
    raise AssertionError("the watch ended")


async def test_keys_with_a_ttl_expire_and_watchers_see_the_delete(store: Any) -> None:
    """One pass covers expiry, renewal and clearing: the keys renewed or cleared would otherwise
    have expired before ``/t/a``, so the first DELETE being ``/t/a``'s proves they did not."""
    watch = store.watch("/t/", store.current_revision())
    renewed = await store.create("/t/renewed", b"r", ttl=1)
    cleared = await store.create("/t/cleared", b"c", ttl=1)
    await store.create("/t/keep", b"k")
    await asyncio.sleep(0.3)
    await store.update("/t/renewed", b"r2", renewed, ttl=60)
    await store.update("/t/cleared", b"c2", cleared)
    a = await store.create("/t/a", b"1", ttl=1)
    await store.update("/t/a", b"2", a, ttl=1)
    gone = await _first_delete(watch, timeout=5)
    assert (gone.key, gone.value) == ("/t/a", b"2")
    assert await store.get("/t/a") is None
    assert [kv.key for kv in (await store.list("/t/")).items] == ["/t/cleared", "/t/keep", "/t/renewed"]
    await watch.aclose()


# --------------------------------------------------------------------------- contract: durability


async def test_acknowledged_writes_survive_a_restart(open_store: OpenStore) -> None:
    store = await open_store()
    a = await store.create("/d/a", b"1")
    await store.update("/d/a", b"2", a)
    await store.create("/d/b", b"3")
    await store.delete("/d/b")
    last = store.current_revision()
    await store.close()
    again = await open_store()
    assert again.current_revision() == last
    assert [(kv.key, kv.value, kv.create_revision) for kv in (await again.list("/d/")).items] == [("/d/a", b"2", a)]
    assert await again.create("/d/c", b"4") == last + 1
    replay = await take(again.watch("/d/", a - 1), 5)
    assert [e.revision for e in replay] == list(range(a, last + 2))


async def test_revisions_never_go_backwards_across_compaction_and_restart(open_store: OpenStore) -> None:
    store = await open_store()
    await store.create("/m/a", b"1")
    last = await store.update("/m/a", b"2", 0)
    await store.compact(last)  # the whole history is gone
    await store.close()
    again = await open_store()
    assert (again.current_revision(), again.compacted_revision()) == (last, last)
    assert await again.create("/m/b", b"3") == last + 1
    with pytest.raises(Compacted):
        await anext(again.watch("/m/", last - 1))


# --------------------------------------------------------------------------- SQLite backend only


def test_prefix_end_bounds_exactly_the_keys_with_the_prefix() -> None:
    assert _prefix_end("/a/") == "/a0"
    assert _prefix_end("a\U0010ffff") == "b"
    assert _prefix_end("\ud7ff") == "\ue000"
    assert _prefix_end("\U0010ffff") is None and _prefix_end("") is None


@pytest_asyncio.fixture(loop_scope="module")
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(str(tmp_path / "data" / "store.db"))
    await store.start()
    yield store
    await store.close()


async def test_replay_spans_several_pages(sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "REPLAY_PAGE", 3)
    for i in range(10):
        await sqlite_store.create(f"/p/{i}", b"v")
        await sqlite_store.create(f"/q/{i}", b"v")
    events = await take(sqlite_store.watch("/p/", 0), 10)
    assert [e.key for e in events] == [f"/p/{i}" for i in range(10)]


async def test_compaction_runs_in_steps(sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "COMPACT_STEP", 4)
    for i in range(10):
        await sqlite_store.create(f"/k/{i}", b"v")
    await sqlite_store.compact(100)  # clamped to the current revision
    assert sqlite_store.compacted_revision() == sqlite_store.current_revision() == 10


async def test_slow_watch_is_ended_with_watch_too_slow(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "MAX_WATCH_BACKLOG", 5)
    slow = sqlite_store.watch("/k/", sqlite_store.current_revision())
    await sqlite_store.create("/k/first", b"v")
    await take(slow, 1)  # now live: further events wait in its backlog
    for i in range(6):
        await sqlite_store.create(f"/k/{i}", b"v")
    with pytest.raises(WatchTooSlow):
        await anext(slow)
    await sqlite_store.create("/k/after", b"v")  # the failed watch is gone from the publishers


async def test_a_database_from_before_ttls_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, mod_rev INTEGER NOT NULL, create_rev INTEGER NOT NULL);
        CREATE TABLE log (rev INTEGER PRIMARY KEY, key TEXT NOT NULL, type INTEGER NOT NULL, value BLOB NOT NULL,
                          prev_value BLOB, created INTEGER NOT NULL);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO meta VALUES ('current', 1), ('compacted', 0);
        INSERT INTO kv VALUES ('/old/a', x'31', 1, 1);
        INSERT INTO log VALUES (1, '/old/a', 0, x'31', NULL, 1);""")
    old.commit()
    old.close()
    store = SqliteStore(str(path))
    await store.start()
    try:
        assert (await store.get("/old/a")).value == b"1"
        assert await store.update("/old/a", b"2", 1, ttl=60) == 2
        assert await store.create("/old/b", b"3", ttl=60) == 3
        assert await store.reap() == 0
    finally:
        await store.close()


async def test_reaping_is_bounded_per_pass(sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        await sqlite_store.create(f"/e/{i}", b"v", ttl=1)
    monkeypatch.setattr(sqlite_module, "REAP_BATCH", 2)
    later = time.time() + 2
    assert [await sqlite_store.reap(later) for _ in range(4)] == [2, 2, 1, 0]
    assert await sqlite_store.count("/e/") == 0


async def test_close_commits_queued_writes_and_ends_watches(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.start()
    watched = asyncio.ensure_future(collect_all(store.watch("", 0)))
    pending = [asyncio.ensure_future(store.create(f"/k/{i}", b"v")) for i in range(50)]
    await asyncio.sleep(0)  # let every create reach the writer's queue
    await store.close()
    assert sorted([await p for p in pending]) == list(range(1, 51))
    assert len(await watched) == 50  # and then the watch ended
    with pytest.raises(RuntimeError):
        await store.create("/late", b"v")
    again = SqliteStore(str(tmp_path / "s.db"), sync_full=True)
    await again.start()
    assert await again.count("/k/") == 50
    await again.close()


async def test_a_failed_transaction_fails_its_batch_and_takes_no_revision(sqlite_store: SqliteStore) -> None:
    first = await sqlite_store.create("/k/1", b"v")
    watch = sqlite_store.watch("/k/", first)
    with pytest.raises(sqlite3.Error):
        await sqlite_store.create("/k/bad", {"not": "bytes"})  # type: ignore[arg-type]
    assert await sqlite_store.get("/k/bad") is None
    assert await sqlite_store.create("/k/2", b"v") == first + 1
    assert [e.key for e in await take(watch, 1)] == ["/k/2"]


def test_acknowledged_write_survives_a_killed_process(tmp_path: Path) -> None:
    """The writing process exits without closing anything: what it was told is committed stays."""
    path = str(tmp_path / "s.db")
    script = (
        "import asyncio, os\n"
        "from tinykube.store.sqlite import SqliteStore\n"
        "async def main():\n"
        f"    store = SqliteStore({path!r})\n"
        "    await store.start()\n"
        "    for i in range(20):\n"
        "        await store.create(f'/k/{i}', b'v')\n"
        "    os._exit(0)\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)

    async def check() -> None:
        store = SqliteStore(path)
        await store.start()
        assert (store.current_revision(), await store.count("/k/")) == (20, 20)
        await store.close()

    asyncio.run(check())


async def test_benchmark_prints_rates(sqlite_store: SqliteStore) -> None:
    """Not a timed assertion: run with ``-s`` to see creates/s and get latency on this machine."""
    n, workers = 3000, 64

    async def creator(worker: int) -> None:
        for i in range(worker, n, workers):
            await sqlite_store.create(f"/bench/{i:06}", b"x" * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(creator(w) for w in range(workers)))
    creates = n / (time.perf_counter() - started)
    latencies = []
    for i in range(0, n, 3):
        t = time.perf_counter()
        await sqlite_store.get(f"/bench/{i:06}")
        latencies.append(time.perf_counter() - t)
    latencies.sort()
    p50, p99 = (latencies[int(len(latencies) * q)] * 1e6 for q in (0.5, 0.99))
    print(f"\nsqlite store: {creates:,.0f} creates/s ({workers} callers); get p50 {p50:.0f} µs, p99 {p99:.0f} µs")


# --------------------------------------------------------------------------- etcd backend only


def test_range_end_is_etcds_prefix_range_end() -> None:
    assert _range_end(b"/a/") == b"/a0"
    assert _range_end(b"a\xff\xff") == b"b"
    assert _range_end(b"\xff") == _range_end(b"") == b"\0"  # no upper bound


async def _started(*stores: EtcdStore) -> list[EtcdStore]:
    await asyncio.gather(*(store.start() for store in stores))
    return list(stores)


@requires_etcd
async def test_stores_on_one_etcd_see_each_others_writes(etcd: EtcdCluster, tmp_path: Path) -> None:
    """Three API servers on one etcd: each watch sees every server's writes; CAS spans servers."""
    stores = await _started(*(EtcdStore(etcd.endpoints, prefix=f"/{tmp_path.name}/") for _ in range(3)))
    try:
        start = max(store.current_revision() for store in stores)
        watches = [store.watch("/pods/", start) for store in stores]
        created = await stores[0].create("/pods/a", b"1")
        updated = await stores[1].update("/pods/a", b"2", created)
        with pytest.raises(RevisionMismatch) as caught:
            await stores[2].update("/pods/a", b"3", created)
        assert (caught.value.current.value, caught.value.current.mod_revision) == (b"2", updated)
        deleted = await stores[2].delete("/pods/a", updated)
        for watch in watches:
            events = await take(watch, 3)
            assert [(e.type, e.value, e.revision, e.created, e.prev_value) for e in events] == [
                ("PUT", b"1", created, True, None),
                ("PUT", b"2", updated, False, b"1"),
                ("DELETE", b"2", deleted.revision, False, b"2"),
            ]
        assert [store.current_revision() for store in stores] == [deleted.revision] * 3  # from watch headers
    finally:
        await asyncio.gather(*(store.close() for store in stores))


@requires_etcd
async def test_compaction_by_another_store_ends_a_watch_with_compacted(etcd: EtcdCluster, tmp_path: Path) -> None:
    """A compaction this store did not make is learnt from etcd's answer to the watch."""
    ours, theirs = await _started(*(EtcdStore(etcd.endpoints, prefix=f"/{tmp_path.name}/") for _ in range(2)))
    try:
        first = await theirs.create("/k/1", b"v")
        last = await theirs.update("/k/1", b"w", first)
        await theirs.compact(last)
        assert ours.compacted_revision() < last
        with pytest.raises(Compacted) as caught:
            await take(ours.watch("/k/", first - 1), 1)
        assert (caught.value.requested, caught.value.compacted) == (first - 1, last)
        assert ours.compacted_revision() == last
        await ours.compact(first)  # already compacted by the other store: not an error
    finally:
        await asyncio.gather(ours.close(), theirs.close())


async def _leader(endpoints: list[str]) -> str:
    """The endpoint of the member that leads the cluster, as the members report it."""
    import grpc
    from aetcd import rpc

    for endpoint in endpoints:
        async with grpc.aio.insecure_channel(endpoint) as channel:
            status = await rpc.MaintenanceStub(channel).Status(rpc.StatusRequest(), timeout=5)
            if status.leader == status.header.member_id:
                return endpoint
    raise AssertionError("no member leads")


@requires_etcd
async def test_three_members_keep_working_when_the_members_store_talks_to_is_killed() -> None:
    """Killing the member the store uses moves its reads, writes and watch to the next one.

    A read notices first (reads are retried on the next member).  A write that was on the wire
    when its member died fails instead, its outcome unknown, as with any etcd client; so does
    one reaching a cluster that has not yet noticed its leader is gone (after etcd's request
    timeout), which is why the member killed here is a follower.
    """
    with etcd_cluster(3) as cluster:
        leader = await _leader(cluster.endpoints)
        followers = [e for e in cluster.endpoints if e != leader]
        store = EtcdStore([*followers, leader])
        await store.start()
        try:
            watch = store.watch("/w/", store.current_revision())
            revisions = [await store.create("/w/0", b"v")]
            assert [e.revision for e in await take(watch, 1)] == revisions
            cluster.member(followers[0]).kill()
            assert await store.count("/w/") == 1
            revisions += [await store.create(f"/w/{i}", b"v") for i in range(1, 20)]
            assert [e.revision for e in await take(watch, 19, timeout=10)] == revisions[1:]
            assert await store.count("/w/") == 20
            await nothing_more(watch)
        finally:
            await store.close()


@requires_etcd
async def test_etcds_store_with_client_certificates(tmp_path: Path) -> None:
    """``--store etcds://`` with ``--etcd-cafile/certfile/keyfile`` against an etcd demanding client certs."""
    paths = pki.ensure(str(tmp_path / "tls"), "127.0.0.1")
    with etcd_cluster(1, tls=paths) as cluster:
        config = server.ServerConfig(store=f"etcds://{cluster.endpoints[0]}", etcd_cafile=paths.ca_cert,
                                     etcd_certfile=paths.admin_cert, etcd_keyfile=paths.admin_key)
        store = server.open_store(config)
        assert isinstance(store, EtcdStore)
        await store.start()
        try:
            watch = store.watch("/s/", store.current_revision())
            revision = await store.create("/s/a", b"v")
            assert (await store.get("/s/a")).mod_revision == revision
            assert [e.revision for e in await take(watch, 1)] == [revision]
        finally:
            await store.close()


def test_open_store_reads_etcd_endpoints() -> None:
    assert isinstance(server.open_store(server.ServerConfig(store="etcd://127.0.0.1:2379,127.0.0.1:22379")), EtcdStore)
    with pytest.raises(SystemExit):
        server.open_store(server.ServerConfig(store="etcd://"))


async def test_lease_manager_reuses_a_lease_within_its_window() -> None:
    """As kube-apiserver's LeaseManager: TTL + min(60 s, 5% of TTL), reused while within that window."""
    granted: list[int] = []

    async def grant(ttl: int) -> int:
        granted.append(ttl)
        return len(granted)

    clock = [1000.0]

    async def lease(ttl: int, after: float = 1.0) -> int:
        clock[0] += after
        return await leases.lease(ttl)

    leases = _Leases(grant, lambda: clock[0])
    assert [await lease(3600), await lease(3600, after=58)] == [1, 1]
    assert await lease(3600, after=2) == 2  # the first lease would no longer outlive a new key
    assert [await lease(1), await lease(1)] == [3, 4]  # 5% of 1 s is no window at all
    assert await lease(100) == 5
    assert granted == [3660, 3660, 1, 1, 105]


def test_cli_takes_event_ttl_as_seconds_or_go_duration() -> None:
    from tinykube.cli.main import parser

    assert parser().parse_args(["server"]).event_ttl == 3600
    assert parser().parse_args(["server", "--event-ttl", "1h0m0s"]).event_ttl == 3600
    assert parser().parse_args(["up", "--event-ttl", "2s"]).event_ttl == 2
    assert parser().parse_args(["server", "--event-ttl", "90"]).event_ttl == 90


def test_cli_takes_etcd_tls_files() -> None:
    from tinykube.cli.main import parser

    args = parser().parse_args(["server", "--store", "etcds://10.0.0.1:2379", "--etcd-cafile", "ca.crt",
                                "--etcd-certfile", "client.crt", "--etcd-keyfile", "client.key"])
    assert (args.store, args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile) == (
        "etcds://10.0.0.1:2379", "ca.crt", "client.crt", "client.key")
