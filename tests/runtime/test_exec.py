"""Runtime.exec against real busybox containers: runc exec with the container's own process spec."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import Node
from tinykube.node.runtime.containers import ContainerError, ExecResult, ExecTimeout

pytestmark = pytest.mark.slow

SLEEPER = ["sleep", "1000"]


async def running(node: Node, **kwargs: object) -> str:
    status = await node.runtime.create_and_start(node.spec(None, "app", SLEEPER, **kwargs))
    return status.id


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds ``marker`` (to prove a kill left nothing behind)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            continue
    return found


async def test_exit_code_stdout_and_stderr_come_back_apart(node: Node) -> None:
    cid = await running(node)
    started = time.perf_counter()
    result = await node.runtime.exec(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    print(f"exec: {(time.perf_counter() - started) * 1000:.1f} ms")
    assert result == ExecResult(3, b"out\n", b"err\n")
    assert (await node.runtime.exec(cid, ["true"])).exit_code == 0
    assert (await node.runtime.exec(cid, ["sh", "-c", "kill -9 $$"])).exit_code == 137
    pid = node.runtime.status(cid).pid
    inside = await node.runtime.exec(cid, ["sh", "-c", "for n in pid mnt net; do readlink /proc/$$/ns/$n; done"])
    assert inside.stdout.decode().split() == [os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("pid", "mnt", "net")]
    assert list((node.runtime.bundles / cid / "exec").iterdir()) == []  # scratch dirs are removed


async def test_exec_inherits_the_containers_user_env_cwd_and_privileges(node: Node) -> None:
    cid = await running(node, uid=1000, gid=1000, env=["GREETING=hi"], cwd="/tmp", no_new_privileges=True)
    result = await node.runtime.exec(cid, ["sh", "-c", "id -u; id -g; echo $GREETING $EXTRA; pwd"], env={"EXTRA": "x"})
    assert result.stdout.decode().split("\n")[:4] == ["1000", "1000", "hi x", "/tmp"]
    pid = node.runtime.status(cid).pid
    mine = (await node.runtime.exec(cid, ["cat", "/proc/self/status"])).stdout.decode()
    theirs = Path(f"/proc/{pid}/status").read_text()
    for field in ("CapEff", "CapBnd", "NoNewPrivs"):
        assert _field(mine, field) == _field(theirs, field)
    assert _field(mine, "NoNewPrivs") == "1"


def _field(status: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith(name + ":"))


async def test_stdin_and_terminal(node: Node) -> None:
    cid = await running(node)
    assert (await node.runtime.exec(cid, ["cat"], stdin=b"fed\n")).stdout == b"fed\n"
    tty = await node.runtime.exec(cid, ["sh", "-c", "tty; exit 4"], tty=True)
    assert tty.exit_code == 4 and tty.stdout.startswith(b"/dev/pts/") and tty.stderr == b""
    echoed = await node.runtime.exec(cid, ["cat"], stdin=b"typed\n", tty=True, timeout=5)
    assert echoed == ExecResult(0, b"typed\r\ntyped\r\n", b"")  # the terminal echoes, then cat; ^D ends it


async def test_timeout_kills_the_command_and_its_children(node: Node) -> None:
    cid = await running(node)
    started = time.monotonic()
    with pytest.raises(ExecTimeout):
        await node.runtime.exec(cid, ["sh", "-c", "sleep 7771 & sleep 7772"], timeout=0.3)
    assert time.monotonic() - started < 3
    with pytest.raises(ExecTimeout):
        await node.runtime.exec(cid, ["sh", "-c", "sleep 7774 & sleep 7775"], tty=True, timeout=0.3)
    await asyncio.sleep(0.1)
    assert processes_with("sleep 777") == []
    assert node.runtime.status(cid).state == "running"  # the container itself is untouched


async def test_cancelling_the_caller_kills_the_command(node: Node) -> None:
    cid = await running(node)
    task = asyncio.ensure_future(node.runtime.exec(cid, ["sleep", "7773"]))
    await asyncio.sleep(0.3)
    assert processes_with("sleep\x007773")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert processes_with("sleep\x007773") == []


async def test_runc_refusals_are_container_errors(node: Node) -> None:
    cid = await running(node)
    with pytest.raises(ContainerError, match='executable file not found in \\$PATH'):
        await node.runtime.exec(cid, ["no-such-command"])
    await node.runtime.stop(cid, 0)
    with pytest.raises(ContainerError, match="is not running"):
        await node.runtime.exec(cid, ["true"])
