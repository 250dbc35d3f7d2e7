"""The Store contract, run against every backend, then tests of the SQLite backend alone.

Contract tests only use the ``Store`` protocol plus ``compact(revision)``, which every backend
exposes for tests.  To add a backend, add a constructor to ``BACKENDS``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tinykube.store import sqlite as sqlite_module
from tinykube.store.base import (
    Compacted,
    Event,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
)
from tinykube.store.sqlite import SqliteStore, WatchTooSlow, _prefix_end

OpenStore = Callable[..., Awaitable[Any]]

BACKENDS: dict[str, Callable[..., Any]] = {
    "sqlite": lambda tmp_path, **options: SqliteStore(str(tmp_path / "store.db"), **options),
}


@pytest.fixture(params=sorted(BACKENDS))
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens a started store on the same data each time (reopening = a restart); closes them all."""
    opened: list[Any] = []

    async def open_(**options: Any) -> Any:
        store = BACKENDS[request.param](tmp_path, **options)
        await store.start()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
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
        after = max(store.current_revision() - 7, 0)
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


@pytest.fixture
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


async def test_background_compaction_keeps_the_newest_history(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"), compact_interval=0.01, compact_keep=3)
    await store.start()
    for i in range(10):
        await store.create(f"/k/{i}", b"v")
    async with asyncio.timeout(2):
        while store.compacted_revision() < 7:
            await asyncio.sleep(0.01)
    assert [e.revision for e in await take(store.watch("/k/", 7), 3)] == [8, 9, 10]
    await store.close()


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
