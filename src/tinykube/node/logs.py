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
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import BinaryIO

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
    """One parsed CRI record; ``message`` keeps its newline unless the record is partial."""

    time: str
    stream: str
    partial: bool
    message: bytes


STREAMS = (b"stdout", b"stderr")
_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def parse_line(line: bytes) -> Record | None:
    """One CRI log record as the kubelet's ``parseCRILog`` reads it, or None for a malformed line.

    A partial record (first tag ``P``) loses its newline so that a long line split by the
    runtime reads back as one.
    """
    parts = line.split(b" ", 3)
    if len(parts) < 4 or parts[1] not in STREAMS or not _STAMP.fullmatch(parts[0].decode("latin-1")):
        return None
    partial = parts[2].split(b":")[0] == b"P"
    message = parts[3][:-1] if partial and parts[3].endswith(b"\n") else parts[3]
    return Record(parts[0].decode(), parts[1].decode(), partial, message)


def _stamp_parts(stamp: str) -> tuple[str, str, str]:
    """(seconds, fraction digits, zone) of an RFC 3339 time; ``+00:00`` counts as ``Z``."""
    match = _STAMP.fullmatch(stamp)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {stamp!r}")
    zone = match[3]
    return match[1], match[2] or "", "Z" if zone in ("Z", "+00:00", "-00:00") else zone


def parse_time(stamp: str) -> datetime.datetime:
    """RFC 3339 with up to nanoseconds (Python keeps microseconds, truncating the rest)."""
    seconds, digits, zone = _stamp_parts(stamp)
    micro = (digits + "000000")[:6]
    return datetime.datetime.fromisoformat(f"{seconds}.{micro}{'+00:00' if zone == 'Z' else zone}")


def kube_timestamp(stamp: str) -> str:
    """The ``--timestamps`` prefix: always nine fraction digits (``RFC3339NanoFixed``), zone as logged."""
    seconds, digits, zone = _stamp_parts(stamp)
    return f"{seconds}.{digits[:9].ljust(9, '0')}{zone}"


class _Writer:
    """The kubelet's ``logWriter``: since filter, timestamps at line starts, and the byte budget."""

    def __init__(self, opts: LogOptions):
        self.opts = opts
        self.budget = opts.limit_bytes
        self.at_line_start = True

    def write(self, line: bytes) -> bytes:
        """The bytes to send for one raw log line (possibly none)."""
        record = parse_line(line)
        if record is None:
            return b""
        at_line_start = self.at_line_start
        self.at_line_start = not record.message or record.message.endswith(b"\n")
        if self.opts.since is not None and parse_time(record.time) < self.opts.since:
            return b""
        out = record.message
        if self.opts.timestamps and at_line_start:
            out = kube_timestamp(record.time).encode() + b" " + out
        if self.budget is not None:
            out = out[: self.budget]
            self.budget -= len(out)
        return out

    @property
    def exhausted(self) -> bool:
        return self.budget == 0


def initial_lines(data: bytes, opts: LogOptions) -> list[bytes]:
    """The raw lines already in the file that a read starts with.

    ``tailLines`` counts complete lines from the end (``tail.FindTailLineStartIndex``).  A
    trailing line still being written is read only without ``follow`` (and without a tail,
    which stops after its lines), as the kubelet does.
    """
    lines, incomplete = _split_lines(data)
    if opts.tail_lines is not None:
        return lines[-opts.tail_lines:] if opts.tail_lines > 0 else []
    return lines + [incomplete] if incomplete and not opts.follow else lines


def _split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (each with its newline) and what follows the last newline.

    Only ``\\n`` ends a CRI record; a ``\\r`` inside a message is part of it.
    """
    *lines, rest = data.split(b"\n")
    return [line + b"\n" for line in lines], rest


async def read(path: str, opts: LogOptions, running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """Stream a log file's messages; with ``follow``, until ``running()`` turns false."""
    writer = _Writer(opts)
    with open(path, "rb") as f:
        async for line in _lines(f, opts, running):
            if chunk := writer.write(line):
                yield chunk
            if writer.exhausted:
                return


async def _lines(f: BinaryIO, opts: LogOptions, running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The raw lines to render: what the file holds, then (following) what the container appends."""
    data = f.read()
    for line in initial_lines(data, opts):
        yield line
    if opts.follow:
        f.seek(data.rfind(b"\n") + 1)
        async for line in _follow(f, running):
            yield line


async def _follow(f: BinaryIO, running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """Complete lines appended to ``f`` until the container stops; a last partial write is dropped."""
    pending = b""
    while True:
        more = f.read()
        if not more:
            if running():
                await asyncio.sleep(FOLLOW_INTERVAL)
                continue
            more = f.read()  # what the container wrote just before it exited
            if not more:
                return
        lines, pending = _split_lines(pending + more)
        for line in lines:
            yield line


def latest_log(directory: str) -> str | None:
    """The newest ``N.log`` of a container's log directory."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".log") and n[:-4].isdigit()]
    except FileNotFoundError:
        return None
    return os.path.join(directory, max(names, key=lambda n: int(n[:-4]))) if names else None
