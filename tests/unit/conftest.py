"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tinykube.store.sqlite import SqliteStore


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A started SQLite store in the test's directory (test_store.py overrides it with every backend)."""
    s = SqliteStore(str(tmp_path / "state.db"))
    await s.start()
    yield s
    await s.close()
