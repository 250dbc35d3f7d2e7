"""Leader election on a fake clock: who leads when, and never two at once.

Candidates share one in-memory Lease that behaves like the API's (resourceVersions, conflicts,
a watch); the clock moves only when a test advances it, waking each sleeper at its deadline.
"""

from __future__ import annotations

import asyncio
import datetime
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tinykube.api.errors import ApiError
from tinykube.controllers.leaderelection import (
    EXPIRY_MARGIN,
    LeaderElector,
    LeaseLock,
    LockError,
    Record,
    as_record,
    micro_time,
    new_identity,
)

EPOCH = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)


async def settle() -> None:
    """Let every ready task run until nothing moves (the fake API answers within a few loop turns)."""
    for _ in range(100):
        await asyncio.sleep(0)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.t

    def wall(self) -> datetime.datetime:
        return EPOCH + datetime.timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own deadline, everything settling in between."""
        end = self.t + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            deadline, _, future = heapq.heappop(self._sleepers)
            self.t = max(self.t, deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self.t = end
        await settle()


class FakeApi:
    """One Lease as the API server keeps it: a spec, a resourceVersion, watchers and the events written."""

    def __init__(self) -> None:
        self.spec: Record | None = None
        self.version = 0
        self.watchers: list[Callable[[Record], None]] = []
        self.events: list[str] = []
        self.history: list[Record] = []

    def write(self, spec: Record) -> None:
        self.spec, self.version = dict(spec), self.version + 1
        self.history.append(self.spec)
        for watcher in list(self.watchers):
            asyncio.get_running_loop().call_soon(watcher, as_record(spec))


class FakeLock:
    """The Lock protocol on a FakeApi; ``down`` makes every call fail as an unreachable API would."""

    def __init__(self, api: FakeApi, identity: str) -> None:
        self.api = api
        self.identity = identity
        self.version: int | None = None
        self.down = False
        self.calls: Counter[str] = Counter()

    def describe(self) -> str:
        return "kube-system/test"

    async def _reach(self, call: str) -> None:
        await asyncio.sleep(0)
        self.calls[call] += 1
        if self.down:
            raise LockError("connection refused")

    async def get(self) -> Record | None:
        await self._reach("get")
        self.version = None if self.api.spec is None else self.api.version
        return None if self.api.spec is None else as_record(self.api.spec)

    async def create(self, record: Record) -> None:
        await self._reach("create")
        if self.api.spec is not None:
            raise LockError('leases.coordination.k8s.io "test" already exists')
        self.api.write(record)
        self.version = self.api.version

    async def update(self, record: Record) -> None:
        await self._reach("update")
        if self.version is None:
            raise LockError("lease not initialized, call get or create first")
        if self.version != self.api.version:
            raise LockError("the object has been modified; please apply your changes to the latest version")
        self.api.write(record)
        self.version = self.api.version

    def record_event(self, message: str) -> None:
        self.api.events.append(f"{self.identity} {message}")

    async def watch(self, seen: Callable[[Record | None], None]) -> None:
        def deliver(record: Record) -> None:
            if not self.down:
                seen(record)

        if self.api.spec is not None:
            seen(as_record(self.api.spec))
        self.api.watchers.append(deliver)
        try:
            await asyncio.Future()
        finally:
            self.api.watchers.remove(deliver)


class Candidate:
    """One process campaigning: its elector, and the [start, stop] times of each term it led."""

    def __init__(self, api: FakeApi, clock: FakeClock, identity: str, fail: bool = False) -> None:
        self.clock = clock
        self.lock = FakeLock(api, identity)
        self.elector = LeaderElector(self.lock, clock=clock, rng=random.Random(7))
        self.terms: list[list[float | None]] = []
        self.fail = fail
        self.task: asyncio.Task[None] | None = None

    async def lead(self) -> None:
        self.terms.append([self.clock.now(), None])
        try:
            if self.fail:
                raise RuntimeError("controller crashed")
            await asyncio.Future()
        finally:
            self.terms[-1][1] = self.clock.now()

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run(self.lead))
        return self

    @property
    def leading(self) -> bool:
        return bool(self.terms) and self.terms[-1][1] is None

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


async def leader_and_follower(api: FakeApi, clock: FakeClock) -> tuple[Candidate, Candidate]:
    """``a`` takes the lease at time 0, then ``b`` starts campaigning."""
    a = Candidate(api, clock, "a").start()
    await clock.advance(0)
    return a, Candidate(api, clock, "b").start()


async def test_first_candidate_creates_the_lease_and_leads(api: FakeApi, clock: FakeClock) -> None:
    a = Candidate(api, clock, "a").start()
    await clock.advance(0)
    assert a.leading and a.elector.is_leader()
    stamp = micro_time(EPOCH)
    assert api.spec == {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": stamp, "renewTime": stamp,
                        "leaseTransitions": 0}
    assert api.events == ["a became leader"]
    await a.stop()


async def test_leader_renews_every_retry_period_and_follower_waits(api: FakeApi, clock: FakeClock) -> None:
    a, b = await leader_and_follower(api, clock)
    await clock.advance(61)
    assert a.leading and not b.terms and b.elector.leader == "a"
    assert api.spec is not None and api.spec["renewTime"] == micro_time(EPOCH + datetime.timedelta(seconds=60))
    assert api.spec["acquireTime"] == micro_time(EPOCH) and api.spec["leaseTransitions"] == 0
    # renewals (at once after acquiring, as upstream's renew loop starts, then every 2 s) take the fast path
    assert a.lock.calls == {"get": 1, "create": 1, "update": 31}
    await a.stop()
    await b.stop()


async def test_follower_takes_over_a_crashed_leader_one_lease_after_its_last_renewal(api: FakeApi, clock: FakeClock) -> None:
    a, b = await leader_and_follower(api, clock)
    await clock.advance(5)  # a renewed at 0, 2 and 4
    a.lock.down = True  # the process is gone: no renewal, no release
    await a.stop()
    await clock.advance(18.9 - clock.t)
    assert not b.terms
    await clock.advance(0.2)
    assert b.leading and b.terms[0][0] == 19.0 + EXPIRY_MARGIN  # one lease after the last renewal at 4
    assert api.spec is not None and api.spec["holderIdentity"] == "b" and api.spec["leaseTransitions"] == 1
    assert api.spec["acquireTime"] == micro_time(EPOCH + datetime.timedelta(seconds=19 + EXPIRY_MARGIN))
    assert api.events == ["a became leader", "a stopped leading", "b became leader"]
    await b.stop()


async def test_leader_cut_off_from_the_api_stops_before_anyone_else_starts(api: FakeApi, clock: FakeClock) -> None:
    a, b = await leader_and_follower(api, clock)
    await clock.advance(5)
    a.lock.down = True  # last renewal at 4: a gives up by 4 + 2 + 10, b waits until 4 + 15
    await clock.advance(15)
    assert a.terms[0][1] is not None and a.terms[0][1] <= 16.0 and b.leading
    assert b.terms[0][0] == 19.0 + EXPIRY_MARGIN and a.terms[0][1] < b.terms[0][0]
    a.lock.down = False  # back: a campaigns again, but b holds the lease
    await clock.advance(60)
    assert len(a.terms) == 1 and b.leading and a.elector.leader == "b"
    await a.stop()
    await b.stop()


async def test_cancel_stops_the_work_then_releases_and_the_follower_takes_over_at_once(api: FakeApi, clock: FakeClock) -> None:
    a, b = await leader_and_follower(api, clock)
    await clock.advance(3)
    await a.stop()
    assert a.terms == [[0.0, 3.0]]
    await clock.advance(0)
    released = next(record for record in api.history if record["holderIdentity"] != "a")
    assert released["holderIdentity"] == "" and released["leaseDurationSeconds"] == 1
    assert b.leading and b.terms[0][0] == 3.0  # woken by the watch, not by its next tick
    assert api.spec is not None and api.spec["holderIdentity"] == "b" and api.spec["leaseTransitions"] == 1
    await b.stop()


async def test_candidates_racing_for_a_free_lease_elect_exactly_one(api: FakeApi, clock: FakeClock) -> None:
    candidates = [Candidate(api, clock, name).start() for name in "abc"]
    for _ in range(30):
        await clock.advance(1)
        assert sum(c.leading for c in candidates) == 1
    assert api.spec is not None and api.spec["leaseTransitions"] == 0
    for candidate in candidates:
        await candidate.stop()


async def test_an_exception_from_the_work_releases_the_lease_and_ends_the_run(api: FakeApi, clock: FakeClock) -> None:
    a = Candidate(api, clock, "a", fail=True).start()
    await clock.advance(0)
    assert a.task is not None and a.task.done()
    with pytest.raises(RuntimeError, match="controller crashed"):
        a.task.result()
    assert api.spec is not None and api.spec["holderIdentity"] == ""


def test_timings_are_checked_as_upstream_checks_them(api: FakeApi) -> None:
    lock = FakeLock(api, "a")
    with pytest.raises(ValueError, match="leaseDuration must be greater than renewDeadline"):
        LeaderElector(lock, lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="renewDeadline must be greater than retryPeriod"):
        LeaderElector(lock, renew_deadline=2.4, retry_period=2)


def test_identity_is_hostname_underscore_uuid() -> None:
    host, _, unique = new_identity().rpartition("_")
    assert host and len(unique) == 36 and unique.count("-") == 4


# --- LeaseLock over the REST client -------------------------------------------------------------


class FakeClient:
    """The three calls LeaseLock makes, with the API server's resourceVersion check on PUT."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.puts: list[dict[str, Any]] = []

    async def get_or_none(self, url: str) -> dict[str, Any] | None:
        return self.lease

    async def create(self, url: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.lease = {**obj, "metadata": {**obj["metadata"], "uid": "u1", "resourceVersion": "1"}}
        return self.lease

    async def update(self, url: str, obj: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        self.puts.append(obj)
        if obj["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on leases.coordination.k8s.io "kube-scheduler"')
        version = str(int(self.lease["metadata"]["resourceVersion"]) + 1)
        self.lease = {**obj, "metadata": {**obj["metadata"], "resourceVersion": version}}
        return self.lease


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[dict[str, Any], str, str, str]] = []

    def record(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((ref, type_, reason, message))


async def test_lease_lock_guards_updates_with_the_resource_version_it_read() -> None:
    client, recorder = FakeClient(), FakeRecorder()
    lock = LeaseLock(client, "kube-system", "kube-scheduler", "host_1", recorder)  # type: ignore[arg-type]
    with pytest.raises(LockError, match="lease not initialized"):
        await lock.update({"holderIdentity": "host_1"})
    assert await lock.get() is None
    await lock.create({"holderIdentity": "host_1", "leaseDurationSeconds": 15})
    assert client.lease is not None and client.lease["kind"] == "Lease" and client.lease["apiVersion"] == "coordination.k8s.io/v1"
    await lock.update({"holderIdentity": "host_1", "leaseDurationSeconds": 15, "leaseTransitions": 0})
    assert client.puts[-1]["metadata"]["resourceVersion"] == "1"
    other = LeaseLock(client, "kube-system", "kube-scheduler", "host_2")  # type: ignore[arg-type]
    assert (await other.get() or {})["holderIdentity"] == "host_1"
    await lock.update({"holderIdentity": "host_1"})  # moves the Lease past what `other` read
    with pytest.raises(LockError, match="Operation cannot be fulfilled"):
        await other.update({"holderIdentity": "host_2"})
    lock.record_event("became leader")
    ref, type_, reason, message = recorder.events[0]
    assert (type_, reason, message) == ("Normal", "LeaderElection", "host_1 became leader")
    assert ref["kind"] == "Lease" and ref["apiVersion"] == "coordination.k8s.io/v1"
    assert (ref["namespace"], ref["name"], ref["uid"]) == ("kube-system", "kube-scheduler", "u1")


def test_records_read_back_compare_equal_to_records_written() -> None:
    spec = {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "t", "renewTime": "t",
            "leaseTransitions": 2}
    assert as_record({**spec, "strategy": "x"}) == spec
    assert as_record({}) == {"holderIdentity": "", "leaseDurationSeconds": 0, "acquireTime": None, "renewTime": None,
                             "leaseTransitions": 0}
