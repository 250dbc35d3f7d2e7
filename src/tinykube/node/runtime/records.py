"""JSON records on disk, written atomically: what the runtime made, for the next agent to read.

The runtime keeps no state that matters only in memory (a restarted agent rebuilds from
these files and from the host), so every record is written to a temporary name and renamed
into place: a crash leaves the old record or the new one, never a torn one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


def write(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (write, then rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(data))
    os.replace(tmp, path)


def read(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when there is none."""
    try:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    return data
