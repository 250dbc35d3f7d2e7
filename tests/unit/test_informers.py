"""Shared watches: one list-and-watch per resource, each handler with its own copies, late joiners replayed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tinykube.client.informers import share_watches
from tinykube.client.rest import list_and_watch

Obj = dict[str, Any]


def pod(name: str, rv: int) -> Obj:
    return {"metadata": {"namespace": "default", "name": name, "resourceVersion": str(rv)}}


class FakeClient:
    """Lists two pods, then streams what the test puts on ``events``; counts the requests."""

    def __init__(self) -> None:
        self.shared: Any = None
        self.lists = 0
        self.watches = 0
        self.events: asyncio.Queue[Obj] = asyncio.Queue()

    async def get(self, url: str, params: Any = None) -> Obj:
        self.lists += 1
        return {"metadata": {"resourceVersion": "2"}, "items": [pod("a", 1), pod("b", 2)]}

    async def watch(self, url: str, version: str, params: Any = None) -> AsyncIterator[Obj]:
        self.watches += 1
        while True:
            yield await self.events.get()


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.objects: list[Obj] = []

    async def __call__(self, kind: str, obj: Obj) -> None:
        self.seen.append((kind, obj["metadata"]["name"]))
        self.objects.append(obj)


async def until(check: Any) -> None:
    async with asyncio.timeout(2):
        while not check():
            await asyncio.sleep(0.001)


async def test_handlers_share_one_watch_and_get_their_own_copies() -> None:
    client = FakeClient()
    share_watches(client)  # type: ignore[arg-type]
    first, second = Recorder(), Recorder()
    tasks = [asyncio.create_task(list_and_watch(client, "/api/v1/pods", h)) for h in (first, second)]  # type: ignore[arg-type]
    await until(lambda: len(first.seen) == 2 and len(second.seen) == 2)
    await client.events.put({"type": "MODIFIED", "object": pod("a", 3)})
    await until(lambda: len(second.seen) == 3)
    assert first.seen == second.seen == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a")]
    assert (client.lists, client.watches) == (1, 1)
    assert first.objects[2] == second.objects[2] and first.objects[2] is not second.objects[2]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert client.shared._watches == {}


async def test_a_late_handler_is_replayed_what_exists_and_misses_nothing_after() -> None:
    client = FakeClient()
    share_watches(client)  # type: ignore[arg-type]
    early, late = Recorder(), Recorder()
    tasks = [asyncio.create_task(list_and_watch(client, "/api/v1/pods", early))]  # type: ignore[arg-type]
    await until(lambda: len(early.seen) == 2)
    await client.events.put({"type": "DELETED", "object": pod("b", 3)})
    await client.events.put({"type": "ADDED", "object": pod("c", 4)})
    await until(lambda: len(early.seen) == 4)
    tasks.append(asyncio.create_task(list_and_watch(client, "/api/v1/pods", late)))  # type: ignore[arg-type]
    await until(lambda: len(late.seen) == 2)
    assert sorted(late.seen) == [("ADDED", "a"), ("ADDED", "c")]
    await client.events.put({"type": "MODIFIED", "object": pod("c", 5)})
    await until(lambda: len(late.seen) == 3)
    assert late.seen[-1] == early.seen[-1] == ("MODIFIED", "c") and client.lists == 1
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_different_parameters_are_different_watches() -> None:
    client = FakeClient()
    share_watches(client)  # type: ignore[arg-type]
    a, b = Recorder(), Recorder()
    tasks = [asyncio.create_task(list_and_watch(client, "/api/v1/pods", a)),  # type: ignore[arg-type]
             asyncio.create_task(list_and_watch(client, "/api/v1/pods", b, {"fieldSelector": "x=y"}))]  # type: ignore[arg-type]
    await until(lambda: len(a.seen) == 2 and len(b.seen) == 2)
    assert client.lists == 2
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class RelistingClient(FakeClient):
    """Its first list has a and b, and its watch then breaks; the second list has only a."""

    async def get(self, url: str, params: Any = None) -> Obj:
        self.lists += 1
        items = [pod("a", 1), pod("b", 2)] if self.lists == 1 else [pod("a", 5)]
        return {"metadata": {"resourceVersion": str(self.lists * 5)}, "items": items}

    async def watch(self, url: str, version: str, params: Any = None) -> AsyncIterator[Obj]:
        self.watches += 1
        if self.watches == 1:
            raise ConnectionError("watch broken")
        while True:
            yield await self.events.get()


async def test_a_relist_delivers_deleted_for_what_went_while_the_watch_was_down() -> None:
    for shared in (False, True):
        client = RelistingClient()
        if shared:
            share_watches(client)  # type: ignore[arg-type]
        seen = Recorder()
        task = asyncio.create_task(list_and_watch(client, "/api/v1/pods", seen, retry_delay=0))  # type: ignore[arg-type]
        await until(lambda: len(seen.seen) == 4)
        assert seen.seen == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "a"), ("DELETED", "b")], shared
        assert seen.objects[3]["metadata"]["resourceVersion"] == "2"  # the last state seen of b
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
