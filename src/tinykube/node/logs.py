"""Reading container logs in the CRI format, with kubectl's options (kubelet kuberuntime/logs).

Each line of a CRI log file is ``TIMESTAMP STREAM TAG MESSAGE`` where TAG ``P`` marks a partial
line continued by the next record and ``F`` a full one.  ``LogOptions`` carries ``tailLines``,
``sinceSeconds``/``sinceTime``, ``timestamps`` and ``limitBytes``; ``follow`` keeps reading
until the container stops.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

FOLLOW_INTERVAL = 0.1  # seconds between reads of a followed log file that has no new data


@dataclass(frozen=True)
class LogOptions:
    tail_lines: int | None = None
    since: datetime.datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None
    follow: bool = False


@dataclass(frozen=True)
class Record:
    time: str
    stream: str
    partial: bool
    message: bytes


def parse_line(line: bytes) -> Record | None:
    """One CRI log record, or None for a malformed line."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    message = parts[3] if len(parts) == 4 else b""
    return Record(parts[0].decode(), parts[1].decode(), parts[2] == b"P", message)


def parse_time(stamp: str) -> datetime.datetime:
    """RFC 3339 with up to nanoseconds (Python keeps microseconds)."""
    head, _, frac = stamp.partition(".")
    zone = "+00:00"
    if frac:
        for sep in ("+", "-", "Z"):
            if sep in frac:
                digits, _, rest = frac.partition(sep)
                zone = "+00:00" if sep == "Z" else sep + rest
                frac = digits
                break
    elif head.endswith("Z"):
        head = head[:-1]
    micro = (frac + "000000")[:6]
    return datetime.datetime.fromisoformat(f"{head}.{micro}{zone}")


def kube_timestamp(stamp: str) -> str:
    """The ``--timestamps`` prefix: RFC 3339 with nanoseconds in UTC (``...Z``)."""
    head, _, frac = stamp.partition(".")
    digits = "".join(ch for ch in frac if ch.isdigit())[:9] if frac else ""
    return f"{head}.{digits.ljust(9, '0')}Z" if digits else f"{head}Z"


def render(record: Record, opts: LogOptions) -> bytes:
    body = record.message + (b"" if record.partial else b"\n")
    if opts.timestamps:
        return kube_timestamp(record.time).encode() + b" " + body
    return body


def _wanted(record: Record, opts: LogOptions) -> bool:
    return opts.since is None or parse_time(record.time) >= opts.since


def initial_chunks(data: bytes, opts: LogOptions) -> list[bytes]:
    """What is already in the file, after since/tail filtering (limitBytes is applied by the caller)."""
    records = [r for r in (parse_line(line) for line in data.splitlines(keepends=True)) if r and _wanted(r, opts)]
    if opts.tail_lines is not None:
        records = list(deque(records, maxlen=opts.tail_lines)) if opts.tail_lines > 0 else []
    return [render(r, opts) for r in records]


async def read(path: str, opts: LogOptions, running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """Stream a log file's messages; with ``follow``, until ``running()`` turns false."""
    budget = opts.limit_bytes
    with open(path, "rb") as f:
        data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        f.seek(len(complete))
        for chunk in initial_chunks(complete, opts):
            chunk, budget = _limit(chunk, budget)
            if chunk:
                yield chunk
            if budget == 0:
                return
        if not opts.follow:
            return
        pending = b""
        while True:
            more = f.read()
            if not more:
                if not running():
                    more = f.read()
                    if not more:
                        return
                else:
                    await asyncio.sleep(FOLLOW_INTERVAL)
                    continue
            pending += more
            lines, newline, pending = pending.rpartition(b"\n")
            if not newline:
                continue
            for line in (lines + newline).splitlines(keepends=True):
                record = parse_line(line)
                if record is None or not _wanted(record, opts):
                    continue
                chunk, budget = _limit(render(record, opts), budget)
                if chunk:
                    yield chunk
                if budget == 0:
                    return


def _limit(chunk: bytes, budget: int | None) -> tuple[bytes, int | None]:
    if budget is None:
        return chunk, None
    return chunk[:budget], max(0, budget - len(chunk))


def latest_log(directory: str) -> str | None:
    """The newest ``N.log`` of a container's log directory."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".log") and n[:-4].isdigit()]
    except FileNotFoundError:
        return None
    return os.path.join(directory, max(names, key=lambda n: int(n[:-4]))) if names else None
