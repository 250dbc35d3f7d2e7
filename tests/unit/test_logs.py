"""CRI log files read as the kubelet's kuberuntime/logs does (parseCRILog, logWriter, ReadLogs)."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest

from tinykube.node import logs
from tinykube.node.logs import LogOptions, Record, kube_timestamp, latest_log, parse_line, parse_time, read

UTC = datetime.timezone.utc


def line(second: int, message: str, tag: str = "F", stream: str = "stdout", frac: str = ".000000001") -> bytes:
    return f"2024-05-01T10:00:{second:02d}{frac}Z {stream} {tag} {message}\n".encode()


@pytest.mark.parametrize(("raw", "expected"), [
    (b"2024-05-01T10:00:00.123456789Z stdout F hello world\n",
     Record("2024-05-01T10:00:00.123456789Z", "stdout", False, b"hello world\n")),
    (b"2024-05-01T10:00:00.1Z stderr P part\n", Record("2024-05-01T10:00:00.1Z", "stderr", True, b"part")),
    (b"2024-05-01T10:00:00Z stdout P:x more\n", Record("2024-05-01T10:00:00Z", "stdout", True, b"more")),
    (b"2024-05-01T12:00:00.5+02:00 stdout F \n", Record("2024-05-01T12:00:00.5+02:00", "stdout", False, b"\n")),
    (b"2024-05-01T10:00:00Z stdout F no newline yet", Record("2024-05-01T10:00:00Z", "stdout", False,
                                                             b"no newline yet")),
    (b"2024-05-01T10:00:00Z stdout F a\rb\n", Record("2024-05-01T10:00:00Z", "stdout", False, b"a\rb\n")),
])
def test_parse_line(raw: bytes, expected: Record) -> None:
    assert parse_line(raw) == expected


@pytest.mark.parametrize("raw", [
    b"garbage\n",
    b"2024-05-01T10:00:00Z stdout F\n",          # no space after the tag: "log tag is not found"
    b"2024-05-01T10:00:00Z stdin F x\n",         # "unexpected stream type"
    b"yesterday stdout F x\n",                   # not RFC 3339
])
def test_malformed_lines_are_skipped(raw: bytes) -> None:
    assert parse_line(raw) is None


@pytest.mark.parametrize(("stamp", "expected"), [
    ("2024-05-01T10:00:00.123456789Z", "2024-05-01T10:00:00.123456789Z"),
    ("2024-05-01T10:00:00.5Z", "2024-05-01T10:00:00.500000000Z"),
    ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000000000Z"),
    ("2024-05-01T10:00:00.1+00:00", "2024-05-01T10:00:00.100000000Z"),
    ("2024-05-01T12:00:00.25+02:00", "2024-05-01T12:00:00.250000000+02:00"),
])
def test_timestamps_are_rfc3339_with_nine_digits(stamp: str, expected: str) -> None:
    assert kube_timestamp(stamp) == expected


def test_parse_time() -> None:
    assert parse_time("2024-05-01T10:00:00.123456789Z") == datetime.datetime(2024, 5, 1, 10, 0, 0, 123456, UTC)
    assert parse_time("2024-05-01T12:00:00+02:00") == datetime.datetime(2024, 5, 1, 10, tzinfo=UTC)


async def collect(path: Path, opts: LogOptions, running: bool = False) -> bytes:
    return b"".join([chunk async for chunk in read(str(path), opts, lambda: running)])


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "0.log"
    path.write_bytes(line(1, "one") + line(2, "two-", "P") + line(2, "two") + line(3, "three", stream="stderr")
                     + b"not a cri line\n" + line(4, "four"))
    return path


async def test_plain_read_joins_partial_lines_and_skips_garbage(log_file: Path) -> None:
    assert await collect(log_file, LogOptions()) == b"one\ntwo-two\nthree\nfour\n"


async def test_timestamps_prefix_each_line_once(log_file: Path) -> None:
    out = await collect(log_file, LogOptions(timestamps=True))
    assert out.decode().splitlines() == [
        "2024-05-01T10:00:01.000000001Z one",
        "2024-05-01T10:00:02.000000001Z two-two",
        "2024-05-01T10:00:03.000000001Z three",
        "2024-05-01T10:00:04.000000001Z four"]


@pytest.mark.parametrize(("tail", "expected"), [
    (0, b""),
    (1, b"four\n"),
    (2, b"four\n"),            # the garbage line counts as a line, as the kubelet's tail does
    (3, b"three\nfour\n"),
    (100, b"one\ntwo-two\nthree\nfour\n"),
])
async def test_tail_counts_lines_from_the_end(log_file: Path, tail: int, expected: bytes) -> None:
    assert await collect(log_file, LogOptions(tail_lines=tail)) == expected


async def test_since_skips_older_records(log_file: Path) -> None:
    since = datetime.datetime(2024, 5, 1, 10, 0, 2, tzinfo=UTC)
    assert await collect(log_file, LogOptions(since=since)) == b"two-two\nthree\nfour\n"
    assert await collect(log_file, LogOptions(since=since, tail_lines=1)) == b"four\n"


@pytest.mark.parametrize(("limit", "expected"), [(1, b"o"), (6, b"one\ntw"), (1000, b"one\ntwo-two\nthree\nfour\n")])
async def test_limit_bytes_cuts_the_stream(log_file: Path, limit: int, expected: bytes) -> None:
    assert await collect(log_file, LogOptions(limit_bytes=limit)) == expected


async def test_limit_bytes_counts_the_timestamp(log_file: Path) -> None:
    assert await collect(log_file, LogOptions(limit_bytes=10, timestamps=True)) == b"2024-05-01"


async def test_a_line_being_written_is_read_only_without_follow(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(line(1, "done") + b"2024-05-01T10:00:02Z stdout F half")
    assert await collect(path, LogOptions()) == b"done\nhalf"
    assert await collect(path, LogOptions(follow=True)) == b"done\n"


async def test_follow_streams_what_is_appended_until_the_container_stops(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "FOLLOW_INTERVAL", 0.005)
    path = tmp_path / "0.log"
    path.write_bytes(line(1, "old"))
    alive = True

    async def container() -> None:
        nonlocal alive
        with path.open("ab") as f:
            for second, text in ((2, "first"), (3, "second")):
                await asyncio.sleep(0.02)
                f.write(line(second, text))
                f.flush()
            await asyncio.sleep(0.02)
            f.write(line(4, "split ", "P")[:20])  # a record written in two pieces
            f.flush()
            await asyncio.sleep(0.02)
            f.write(line(4, "split ", "P")[20:] + line(4, "last"))
            alive = False  # exits right after its last write

    writer = asyncio.create_task(container())
    chunks = [chunk async for chunk in read(str(path), LogOptions(follow=True, timestamps=True), lambda: alive)]
    await writer
    assert b"".join(chunks).decode().splitlines() == [
        "2024-05-01T10:00:01.000000001Z old",
        "2024-05-01T10:00:02.000000001Z first",
        "2024-05-01T10:00:03.000000001Z second",
        "2024-05-01T10:00:04.000000001Z split last"]


async def test_follow_with_tail_and_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "FOLLOW_INTERVAL", 0.005)
    path = tmp_path / "0.log"
    path.write_bytes(line(1, "a") + line(2, "b"))

    async def append() -> None:
        await asyncio.sleep(0.02)
        with path.open("ab") as f:
            f.write(line(3, "c") + line(4, "ddd"))

    writer = asyncio.create_task(append())
    out = await collect_running(path, LogOptions(follow=True, tail_lines=1, limit_bytes=6))
    await writer
    assert out == b"b\nc\ndd"  # stops at the byte limit although the container still runs


async def collect_running(path: Path, opts: LogOptions) -> bytes:
    return b"".join([chunk async for chunk in read(str(path), opts, lambda: True)])


def test_latest_log(tmp_path: Path) -> None:
    for name in ("0.log", "2.log", "10.log", "notes.txt", "x.log"):
        (tmp_path / name).write_text("")
    assert latest_log(str(tmp_path)) == str(tmp_path / "10.log")
    assert latest_log(str(tmp_path / "missing")) is None
