"""The ``Store`` protocol: etcd's revision model, which every backend implements.

Every write gets the next global revision; an object's ``resourceVersion`` is the revision of
its last write (its *mod revision*).  Values are opaque bytes: the API server splices the
revision into them when it serves them, so the store never decodes JSON.

Writes are create-if-absent, compare-and-swap update and (optionally compare-and-swap) delete,
written once in each backend's single writer.  A watch starts after a given revision and
receives, in revision order, every change under a key prefix; a start revision older than the
compacted one raises :class:`Compacted` (the API server answers ``410 Expired``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    """Base of the store's own error vocabulary (translated once, at the API edge)."""


class KeyExists(StoreError):
    """``create`` found a live key."""


class KeyNotFound(StoreError):
    """``update``/``delete`` found no live key."""


class RevisionMismatch(StoreError):
    """Compare-and-swap failed: the key's mod revision is not the expected one."""

    def __init__(self, current: KeyValue):
        super().__init__(f"key {current.key} is at revision {current.mod_revision}")
        self.current = current


class Compacted(StoreError):
    """The requested revision is older than the compacted history."""

    def __init__(self, requested: int, compacted: int, current: int):
        super().__init__(f"revision {requested} compacted (compacted {compacted}, current {current})")
        self.requested = requested
        self.compacted = compacted
        self.current = current


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One live key: its value and the revisions of its creation and last modification."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change.  ``type`` is ``PUT`` or ``DELETE``; ``created`` tells a first PUT apart.

    For a DELETE, ``value`` is the last value before deletion (what a DELETED watch event
    shows) and ``revision`` is the deletion's revision.
    """

    type: str
    key: str
    value: bytes
    revision: int
    created: bool = False
    prev_value: bytes | None = None


@dataclass(frozen=True, slots=True)
class ListResult:
    """A consistent read: the items (sorted by key) and the store revision they were read at."""

    items: list[KeyValue]
    revision: int
    more: bool = False  # True when ``limit`` cut the result short


class Store(Protocol):
    """What the API server needs from storage; small on purpose (compare kine's Backend)."""

    async def start(self) -> None:
        """Open the backend (create schema, start the writer and compactor)."""

    async def close(self) -> None:
        """Flush pending writes and release everything; acknowledged writes are durable."""

    async def get(self, key: str) -> KeyValue | None:
        """The live value of ``key``, or None."""

    async def list(self, prefix: str, start_after: str = "", limit: int = 0) -> ListResult:
        """Live keys under ``prefix`` in key order, after ``start_after``, at most ``limit`` (0: all)."""

    async def count(self, prefix: str) -> int:
        """How many live keys are under ``prefix``."""

    async def create(self, key: str, value: bytes, ttl: int = 0) -> int:
        """Store a new key; returns its revision.  Raises KeyExists.

        ``ttl`` > 0: the key is deleted (a DELETE event with its last value) about ``ttl``
        seconds later, as etcd does with a lease; 0 keeps it forever.  Expiry is lazy, as
        etcd's is: a key may still be read for a moment (up to the backend's reap interval)
        after its time is up.
        """

    async def update(self, key: str, value: bytes, expected_revision: int, ttl: int = 0) -> int:
        """Replace a key whose mod revision is ``expected_revision`` (0: any); returns the new revision.

        ``ttl`` restarts the key's time to live as in ``create`` (0: the key never expires).
        Raises KeyNotFound, or RevisionMismatch carrying the current value.
        """

    async def delete(self, key: str, expected_revision: int = 0) -> Event:
        """Remove a key (CAS when ``expected_revision`` is non-zero); returns the DELETE event.

        Raises KeyNotFound or RevisionMismatch.
        """

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        """Every change under ``prefix`` with revision > ``after_revision``, in order, forever.

        Raises Compacted (on first iteration) if ``after_revision`` is older than the history
        kept.  Closing the iterator (``aclose``) ends the watch.
        """

    def current_revision(self) -> int:
        """The revision of the latest committed write."""

    def compacted_revision(self) -> int:
        """History at or below this revision is gone; watches must start above it."""
