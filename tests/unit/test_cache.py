"""The admission listers: a watch keeps them current, a miss reads the store."""

from __future__ import annotations

import asyncio

import orjson

from tinykube.api.registry import lookup
from tinykube.apiserver.cache import ObjectCache
from tinykube.store.sqlite import SqliteStore

ACCOUNTS = lookup("", "v1", "serviceaccounts")
assert ACCOUNTS is not None


def account(namespace: str, name: str, **extra: object) -> bytes:
    return orjson.dumps({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"namespace": namespace, "name": name, **extra}})


async def until(check: object, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_lists_at_start_then_follows_the_watch(store: SqliteStore) -> None:
    await store.create(ACCOUNTS.key("a", "default"), account("a", "default"))
    cache = ObjectCache(store, ACCOUNTS)
    await cache.start()
    try:
        assert cache.get("a", "default") is not None
        await store.create(ACCOUNTS.key("b", "builder"), account("b", "builder"))
        await until(lambda: cache.get("b", "builder") is not None)
        kv = await store.get(ACCOUNTS.key("a", "default"))
        assert kv is not None
        await store.update(kv.key, account("a", "default", labels={"x": "y"}), kv.mod_revision)
        await until(lambda: (cache.get("a", "default") or {})["metadata"].get("labels") == {"x": "y"})
        await store.delete(ACCOUNTS.key("a", "default"))
        await until(lambda: cache.get("a", "default") is None)
        assert [o["metadata"]["name"] for o in cache.list("b")] == ["builder"]
    finally:
        await cache.close()


async def test_a_miss_reads_the_store_and_an_unstarted_cache_always_does(store: SqliteStore) -> None:
    cache = ObjectCache(store, ACCOUNTS)
    assert await cache.fetch("a", "default") is None
    await store.create(ACCOUNTS.key("a", "default"), account("a", "default"))
    fetched = await cache.fetch("a", "default")
    assert fetched is not None and fetched["metadata"]["name"] == "default"


async def test_compacted_history_makes_it_list_again(store: SqliteStore) -> None:
    cache = ObjectCache(store, ACCOUNTS)
    await cache.start()
    try:
        assert cache._task is not None
        cache._task.cancel()  # stop following, write behind its back, compact, follow from the old revision
        revision = store.current_revision()
        for i in range(3):
            await store.create(ACCOUNTS.key("c", f"sa{i}"), account("c", f"sa{i}"))
        await store.compact(store.current_revision())
        cache._task = asyncio.create_task(cache._follow(revision))
        await until(lambda: len(cache.list("c")) == 3)
    finally:
        await cache.close()
