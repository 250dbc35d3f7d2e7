"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's ``leaderelection`` package does it.

kube-controller-manager and kube-scheduler must act once per cluster however many API servers
(each with its own copy of them) there are: every copy campaigns for its Lease in
``kube-system`` and runs its controllers only while it holds it.  The algorithm is client-go's
(``tools/leaderelection/leaderelection.go``, ``resourcelock/leaselock.go``) with its defaults
(lease 15 s, renew deadline 10 s, retry 2 s) and its safety argument: a candidate never trusts
another host's clock.  It counts a lease as held until ``leaseDurationSeconds`` after it last
*saw the record change*; a holder that could not renew for ``renewDeadline`` (shorter than the
lease) stops leading, so a new leader starts only after the old one stopped.  Every write is an
update carrying the resourceVersion of the Lease read before it, so of two candidates racing
for a free lease one gets 409 Conflict.

Deliberate differences from upstream:

* **Losing the lease cancels the controllers and campaigns again**; upstream's
  ``OnStoppedLeading`` exits the process, which here is also an API server.
* **Candidates also watch the Lease**, so a renewal counts as seen when it happens (not up to
  one 2-4.4 s retry later), and a candidate tries again the moment the lease it saw expires or
  is released, not on its next jittered tick.  After a leader dies its successor takes over at
  most the lease duration (plus one request) after its last renewal, instead of up to ~20 s.
* **Both leases are released on cancel** (``ReleaseOnCancel``, which upstream sets for the
  scheduler only), after the controllers stopped: a server stopped cleanly hands over at once,
  and a restarted single server does not wait out its predecessor's lease.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.events import EventRecorder, Source, reference
from tinykube.client.rest import Client, list_and_watch, path

log = logging.getLogger(__name__)

LEASES = lookup("coordination.k8s.io", "v1", "leases")
assert LEASES is not None

NAMESPACE = "kube-system"  # --leader-elect-resource-namespace
LEASE_DURATION = 15.0  # seconds: --leader-elect-lease-duration
RENEW_DEADLINE = 10.0  # seconds: --leader-elect-renew-deadline
RETRY_PERIOD = 2.0  # seconds: --leader-elect-retry-period
JITTER_FACTOR = 1.2  # a candidate waits retry * (1 + rand * 1.2) between tries
EXPIRY_MARGIN = 0.05  # seconds after an observed lease's expiry before trying to take it
RELEASE_TIMEOUT = 2.0  # seconds the release of a lease on cancel may take

Record = dict[str, Any]  # LeaderElectionRecord, kept as the LeaseSpec it is written as
Lead = Callable[[], Awaitable[None]]
_TRANSPORT = (ApiError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


class LockError(Exception):
    """The Lease could not be read or written: the API refused (409 Conflict...) or was unreachable."""


class Clock(Protocol):
    """Time for the elector: monotonic seconds for every decision, the wall clock only for the record."""

    def now(self) -> float: ...

    def wall(self) -> datetime.datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The process's clocks."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Lock(Protocol):
    """client-go's ``resourcelock.Interface``: one election record and how to read, write and watch it."""

    identity: str

    def describe(self) -> str: ...

    async def get(self) -> Record | None:
        """The current record (None: there is no Lease); remembers the object for the next update."""

    async def create(self, record: Record) -> None: ...

    async def update(self, record: Record) -> None:
        """Write ``record`` over the object last read or written; LockError if it changed since."""

    def record_event(self, message: str) -> None: ...

    async def watch(self, seen: Callable[[Record | None], None]) -> None:
        """Call ``seen`` with every record the Lease takes (None when deleted), forever."""


def new_identity() -> str:
    """``<hostname>_<uuid>``, as kube-controller-manager and kube-scheduler name themselves."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def micro_time(moment: datetime.datetime) -> str:
    """``metav1.MicroTime`` as the API serialises it (RFC 3339, microseconds, UTC)."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_record(spec: dict[str, Any]) -> Record:
    """``LeaseSpecToLeaderElectionRecord``: the five fields of a LeaseSpec the election uses."""
    return {"holderIdentity": spec.get("holderIdentity") or "",
            "leaseDurationSeconds": spec.get("leaseDurationSeconds") or 0,
            "acquireTime": spec.get("acquireTime"), "renewTime": spec.get("renewTime"),
            "leaseTransitions": spec.get("leaseTransitions") or 0}


class LeaseLock:
    """``resourcelock.LeaseLock``: the record is the spec of Lease ``namespace/name``, written through the API."""

    def __init__(self, client: Client, namespace: str, name: str, identity: str,
                 recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.recorder = recorder
        self.lease: dict[str, Any] | None = None  # the object last read or written: its resourceVersion guards updates

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def get(self) -> Record | None:
        self.lease = await self._call(self.client.get_or_none(path(LEASES, self.namespace, self.name)))
        return None if self.lease is None else as_record(self.lease.get("spec") or {})

    async def create(self, record: Record) -> None:
        lease = {"apiVersion": LEASES.group_version, "kind": "Lease",
                 "metadata": {"name": self.name, "namespace": self.namespace}, "spec": record}
        self.lease = await self._call(self.client.create(path(LEASES, self.namespace), lease))

    async def update(self, record: Record) -> None:
        if self.lease is None:
            raise LockError("lease not initialized, call get or create first")
        lease = {**self.lease, "spec": record}
        self.lease = await self._call(self.client.update(path(LEASES, self.namespace, self.name), lease))

    @staticmethod
    async def _call(request: Awaitable[Any]) -> Any:
        try:
            return await request
        except _TRANSPORT as e:
            raise LockError(str(e) or type(e).__name__) from e

    def record_event(self, message: str) -> None:
        """A ``LeaderElection`` event about the Lease: ``<identity> <message>``."""
        if self.recorder is None or self.lease is None:
            return
        subject = {"kind": "Lease", "apiVersion": LEASES.group_version, "metadata": self.lease["metadata"]}
        self.recorder.record(reference(subject), "Normal", "LeaderElection", f"{self.identity} {message}")

    async def watch(self, seen: Callable[[Record | None], None]) -> None:
        async def handle(kind: str, lease: dict[str, Any]) -> None:
            seen(None if kind == "DELETED" else as_record(lease.get("spec") or {}))

        await list_and_watch(self.client, path(LEASES, self.namespace), handle,
                             {"fieldSelector": f"metadata.name={self.name}"})


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has stopped (its own failure is not ours)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class LeaderElector:
    """client-go's ``LeaderElector`` on one :class:`Lock` (see the module docstring)."""

    def __init__(self, lock: Lock, *, lease_duration: float = LEASE_DURATION, renew_deadline: float = RENEW_DEADLINE,
                 retry_period: float = RETRY_PERIOD, clock: Clock | None = None,
                 rng: random.Random | None = None) -> None:
        if lease_duration <= renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        self.lock = lock
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock: Clock = clock or RealClock()
        self.rng = rng or random.Random()
        self._record: Record = {}  # the record last observed (read, watched or written)
        self._observed_time = 0.0  # when it was observed, on our own clock
        self._reported = ""
        self._wake = asyncio.Event()  # set by the watch when the lease becomes free

    @property
    def leader(self) -> str:
        """The holder last observed ("" if none)."""
        return str(self._record.get("holderIdentity") or "")

    def is_leader(self) -> bool:
        return self.leader == self.lock.identity

    async def run(self, lead: Lead) -> None:
        """Campaign, run ``lead()`` while holding the lease, campaign again after losing it.

        Runs until cancelled; ``lead()`` is cancelled (and awaited) before the lease is released.
        An exception from ``lead()`` also ends the run, after the release.
        """
        watcher = asyncio.create_task(self.lock.watch(self._saw), name=f"leaderelection-watch-{self.lock.describe()}")
        try:
            while True:
                await self._acquire()
                await self._lead(lead)
        finally:
            await _cancel(watcher)

    # --- campaigning and leading ------------------------------------------------------------

    async def _acquire(self) -> None:
        """Try until the lease is ours (``acquire``)."""
        log.info("attempting to acquire leader lease %s as %s...", self.lock.describe(), self.lock.identity)
        while True:
            self._wake.clear()
            succeeded = await self._try(self.renew_deadline)
            self._report_transition()
            if succeeded:
                self.lock.record_event("became leader")
                log.info("successfully acquired lease %s", self.lock.describe())
                return
            await self._pause()

    async def _pause(self) -> None:
        """A jittered retry period, cut short when the lease we saw expires first or the watch shows it free."""
        delay = self.retry_period * (1 + self.rng.random() * JITTER_FACTOR)
        left = self._expiry() - self.clock.now()
        if self.leader and left > -self.retry_period:
            # Just past the expiry (a timer fired a little early, the last try raced it) counts too:
            # waiting a full jittered period then would add up to 4.4 s to the failover.
            delay = min(delay, max(left, 0.0) + EXPIRY_MARGIN)
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _lead(self, lead: Lead) -> None:
        """Run ``lead()`` while renewals succeed; then stop it, say so, and release the lease."""
        work = asyncio.create_task(lead(), name=f"leading-{self.lock.describe()}")
        renewing = asyncio.create_task(self._renew(), name=f"leaderelection-renew-{self.lock.describe()}")
        try:
            await asyncio.wait({work, renewing}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                work.result()  # raises what lead() raised
            await renewing  # lead() returned: keep the lease until it is lost
            log.info("failed to renew lease %s: timed out waiting for the condition", self.lock.describe())
        finally:
            await _cancel(work)
            await _cancel(renewing)
            self.lock.record_event("stopped leading")
            await self._release()

    async def _renew(self) -> None:
        """Renew every retry period (``renew``); return once a renewal did not succeed within the deadline."""
        while True:
            deadline = self.clock.now() + self.renew_deadline
            while not await self._try(deadline - self.clock.now()):
                self._report_transition()
                await self.clock.sleep(self.retry_period)
                if self.clock.now() >= deadline:
                    return
            self._report_transition()
            await self.clock.sleep(self.retry_period)

    async def _try(self, timeout: float) -> bool:
        """One ``tryAcquireOrRenew``, given up after ``timeout`` seconds (a hung request is a failed one)."""
        try:
            async with asyncio.timeout(max(timeout, 0.001)):  # not wait_for: on 3.11 it can swallow a cancel
                return await self._try_acquire_or_renew()
        except TimeoutError:
            log.error("lease %s: no answer from the API within %.1f s", self.lock.describe(), timeout)
            return False

    async def _release(self) -> None:
        """Give the lease up (``release``): no holder, a one-second duration, the transitions kept."""
        if not self.is_leader():
            return
        stamp = micro_time(self.clock.wall())
        record = {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": stamp, "renewTime": stamp,
                  "leaseTransitions": self._record.get("leaseTransitions", 0)}
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await self.lock.update(record)
        except (LockError, TimeoutError) as e:
            log.error("Failed to release lock: %s", e)
            return
        self._observe(record)

    # --- one attempt ----------------------------------------------------------------------------

    async def _try_acquire_or_renew(self) -> bool:
        """client-go's ``tryAcquireOrRenew``: renew on the fast path, else read, then take or renew."""
        now = self.clock.now()
        stamp = micro_time(self.clock.wall())
        record: Record = {"holderIdentity": self.lock.identity, "leaseDurationSeconds": int(self.lease_duration),
                          "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}
        if self.is_leader() and self._valid(now) and await self._renew_optimistically(dict(record)):
            return True
        try:
            current = await self.lock.get()
        except LockError as e:
            log.error("error retrieving resource lock %s: %s", self.lock.describe(), e)
            return False
        if current is None:
            return await self._write(self.lock.create, record, "error initially creating leader election record")
        if current != self._record:
            self._observe(current)
        if current["holderIdentity"] and self._valid(now) and not self.is_leader():
            return False  # held by another, not expired
        if self.is_leader():
            record.update(acquireTime=current["acquireTime"], leaseTransitions=current["leaseTransitions"])
        else:
            record["leaseTransitions"] = current["leaseTransitions"] + 1
        return await self._write(self.lock.update, record, "Failed to update lock")

    async def _renew_optimistically(self, record: Record) -> bool:
        """The leader's fast path: update on top of the record it last wrote, without reading first."""
        record.update(acquireTime=self._record.get("acquireTime"), leaseTransitions=self._record.get("leaseTransitions", 0))
        try:
            await self.lock.update(record)
        except LockError as e:
            log.error("Failed to update lock optimistically: %s, falling back to slow path", e)
            return False
        self._observe(record)
        return True

    async def _write(self, write: Callable[[Record], Awaitable[None]], record: Record, failure: str) -> bool:
        try:
            await write(record)
        except LockError as e:
            log.error("%s: %s", failure, e)
            return False
        self._observe(record)
        return True

    # --- what we have seen --------------------------------------------------------------------------

    def _observe(self, record: Record) -> None:
        """``setObservedRecord``: the record, and now as the time it was seen."""
        self._record = record
        self._observed_time = self.clock.now()

    def _expiry(self) -> float:
        return self._observed_time + float(self._record.get("leaseDurationSeconds") or 0)

    def _valid(self, now: float) -> bool:
        """``isLeaseValid``: the observed lease has not run out on our clock."""
        return self._expiry() > now

    def _saw(self, record: Record | None) -> None:
        """A record from the watch: a change counts as observed now; a free or deleted lease wakes the campaign."""
        if record is not None and record != self._record:
            self._observe(record)
        if record is None or not record["holderIdentity"]:
            self._wake.set()

    def _report_transition(self) -> None:
        """``maybeReportTransition``, as a log line (the components set no ``OnNewLeader``)."""
        if self.leader != self._reported:
            self._reported = self.leader
            log.info("new leader of %s: %s", self.lock.describe(), self.leader or "(none)")


async def run_elected(client: Client, name: str, component: str, lead: Lead, identity: str = "") -> None:
    """Run ``lead()`` only while this process holds Lease ``kube-system/<name>`` (until cancelled).

    ``component`` is the events' source (``kube-controller-manager``, ``default-scheduler``).
    """
    recorder = EventRecorder(client, Source(component))
    recorder.start()
    try:
        lock = LeaseLock(client, NAMESPACE, name, identity or new_identity(), recorder)
        await LeaderElector(lock).run(lead)
    finally:
        await recorder.stop()
