"""``runc exec``: run a command inside a running container as the container's own process runs.

The exec'd process gets the container's ``process`` from its ``config.json`` (user and groups,
env, cwd, capabilities, no_new_privileges, AppArmor profile, SELinux label, OOM score) with
only argv, the terminal flag, and any extra env or cwd changed: CRI-O's ``prepareProcessExec``.
Building that spec (:func:`process_spec`) and starting runc (:func:`start`) are kept apart from
collecting the output (:func:`run`) so that the streaming exec (``kubectl exec -it``) can reuse
them with I/O of its own: :class:`Exec` hands it the pty master or the pipes.

Each exec has a scratch dir in the container's bundle, ``exec/<random>/`` (``process.json``,
runc's ``pid`` file and its JSON ``log``), removed when the exec ends.  runc's own failures
(container stopped, executable not found) come back as data, told apart from the command's exit
status by runc's log, which holds an ``error`` entry only then.  A timeout SIGKILLs the exec'd
process and its process group (runc makes it a group leader); the pid is taken through a pidfd
checked to be runc's child, so a reused pid is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import fcntl
import os
import secrets
import shutil
import signal
import struct
import termios
import tty
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tinykube.node.runtime import records

__all__ = ["Exec", "ExecResult", "Finished", "container_process", "process_spec", "read_chunks", "run", "start",
           "stop", "write_all"]

MAX_OUTPUT = 16 * 1024 * 1024  # bytes kept per stream; the CRI's ExecSync caps at the same (the rest is drained)
DRAIN_TIMEOUT = 2.0  # seconds to wait for our pipes to close once runc has exited
KILL_REAP_TIMEOUT = 10.0  # seconds for runc to exit once the exec'd process got SIGKILL
VEOF = b"\x04"  # ^D: how a terminal says "end of input"

Json = dict[str, Any]


@dataclass(frozen=True)
class ExecResult:
    """What a finished command left: its exit code (128+signal when killed) and its output."""

    exit_code: int
    stdout: bytes
    stderr: bytes  # b"" with a terminal: the pty carries both streams in stdout


@dataclass(frozen=True)
class Finished:
    """How an exec ended: a result, runc's own error, or a timeout (then ``result`` is None)."""

    result: ExecResult | None
    runc_error: str = ""
    timed_out: bool = False


@dataclass
class Exec:
    """A started ``runc exec``: runc's process, its scratch dir, and the ends of the command's I/O.

    Without a terminal ``stdin`` (None: /dev/null), ``stdout`` and ``stderr`` are pipe fds; with
    one, ``pty`` is the master of the terminal runc relays (read output, write input) and the
    others are None.  The caller owns every fd here.
    """

    proc: asyncio.subprocess.Process
    dir: Path
    stdin: int | None
    stdout: int | None
    stderr: int | None
    pty: int | None = None

    def runc_error(self) -> str:
        """runc's own error message, "" when the command ran (its exit status is then the command's)."""
        try:
            lines = (self.dir / "log").read_bytes().splitlines()
        except FileNotFoundError:
            return ""
        errors = [entry.get("msg", "") for entry in map(_json_line, lines) if entry.get("level") in ("error", "fatal")]
        return errors[-1] if errors else ""

    def resize(self, width: int, height: int) -> None:
        """Set the terminal's size: our pty's, then SIGWINCH tells runc to copy it to the container's."""
        if self.pty is None or self.proc.returncode is not None:
            return
        fcntl.ioctl(self.pty, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGWINCH)

    def started(self) -> bool:
        """Whether the command runs (or ran): runc writes its pid file only once the exec succeeded."""
        return (self.dir / "pid").exists()

    def discard_files(self) -> None:
        """Remove the scratch dir (process.json, pid, log) once the exec is over."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self) -> bool:
        """SIGKILL the exec'd process and its process group; False when there was no such process.

        runc forwards signals to the process but cannot forward SIGKILL, hence the direct kill.
        """
        try:
            pid = int((self.dir / "pid").read_text())
            pidfd = os.pidfd_open(pid)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return False  # not started yet, or already reaped
        try:
            if _parent(pid) != self.proc.pid:  # the pidfd pins the process: a reused pid fails this check
                return False
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)  # in case it left its group
            return True
        except ProcessLookupError:
            return False
        finally:
            os.close(pidfd)


def container_process(bundle: Path) -> Json:
    """The ``process`` of the container's ``config.json``, which every exec starts from."""
    config = records.read(bundle / "config.json") or {}
    return dict(config.get("process", {}))


def process_spec(container: Json, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 tty: bool = False, cwd: str | None = None) -> Json:
    """The OCI ``process`` for an exec: the container's own, with argv, terminal, env and cwd set.

    Extra env replaces a container variable of the same name (the kubelet's exec has none; a
    streaming exec may want TERM).  ``terminal`` is always set: a container started with a tty
    would otherwise hand its terminal flag to every exec (CRI-O's comment on the same line).
    """
    spec = copy.deepcopy(container)
    spec["args"] = list(argv)
    spec["terminal"] = tty
    spec.pop("consoleSize", None)
    if env:
        kept = [e for e in spec.get("env", []) if e.partition("=")[0] not in env]
        spec["env"] = kept + [f"{k}={v}" for k, v in env.items()]
    if cwd:
        spec["cwd"] = cwd
    return spec


async def start(runc: str, root: Path, bundle: Path, id: str, spec: Json, *, stdin: bool = False) -> Exec:
    """Start ``runc exec`` for ``spec`` in container ``id`` and return our ends of its I/O.

    ``stdin`` asks for a pipe to the command's stdin (else /dev/null); with a terminal (``spec``'s
    ``terminal``) input and output go through the pty master instead.
    """
    scratch = bundle / "exec" / secrets.token_hex(6)
    scratch.mkdir(parents=True)
    records.write(scratch / "process.json", spec)
    args = [runc, "--root", str(root), "--log", str(scratch / "log"), "--log-format", "json", "exec",
            "--process", str(scratch / "process.json"), "--pid-file", str(scratch / "pid"), id]
    try:
        if spec.get("terminal"):
            return await _start_with_terminal(args, scratch)
        return await _start_with_pipes(args, scratch, stdin)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


async def run(runc: str, root: Path, bundle: Path, id: str, spec: Json, *, stdin: bytes | None = None,
              timeout: float | None = None) -> Finished:
    """Run the exec to its end, feeding ``stdin`` and collecting output; kill it after ``timeout`` s.

    runc returns once the command exited *and* its output is closed, like containerd's ExecSync:
    a background child that keeps stdout open keeps the exec going, up to the timeout.
    Cancelling the caller kills the exec too: an abandoned probe leaves nothing running.
    """
    ex = await start(runc, root, bundle, id, spec, stdin=stdin is not None)
    if ex.pty is not None and stdin is not None:
        ex.stdin = os.dup(ex.pty)  # the reader closes the master when runc is done: write to our own fd
    outputs = [ex.pty] if ex.pty is not None else [ex.stdout, ex.stderr]
    reads = [asyncio.ensure_future(_read_all(fd)) for fd in outputs if fd is not None]
    feed = asyncio.ensure_future(_feed(ex, stdin or b"", VEOF if ex.pty is not None else b""))
    try:
        async with asyncio.timeout(timeout):
            code = await ex.proc.wait()
        error = ex.runc_error()
        timed_out = False
    except TimeoutError:
        await stop(ex)
        error, timed_out = ex.runc_error(), True
    except BaseException:
        await asyncio.shield(stop(ex))
        raise
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
        _close(ex.stdin)
        out = await _gather_output(reads)
        ex.discard_files()
    if timed_out or error:
        return Finished(None, error, timed_out)
    return Finished(ExecResult(code, out[0], out[1] if len(out) > 1 else b""))


# ---- starting runc ---------------------------------------------------------------------------

async def _start_with_pipes(args: list[str], scratch: Path, stdin: bool) -> Exec:
    """runc with pipes as the command's stdio (runc copies between them and the command)."""
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if stdin else (None, None)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=in_r if in_r is not None else asyncio.subprocess.DEVNULL, stdout=out_w, stderr=err_w,
            start_new_session=True)
    except BaseException:
        _close(in_w, out_r, err_r)
        raise
    finally:
        _close(in_r, out_w, err_w)  # else the reads never see EOF
    return Exec(proc, scratch, in_w, out_r, err_r)


async def _start_with_terminal(args: list[str], scratch: Path) -> Exec:
    """runc on a pty of ours: with ``terminal`` set and no ``--detach`` it makes the command's pty
    in the container and copies between it and its own terminal (our slave), so we keep the exit
    code; a streaming exec resizes by setting our pty's size and sending runc SIGWINCH.
    """
    master, slave = os.openpty()
    tty.setraw(slave)  # as runc will: our line discipline must pass ^D and the rest through untouched
    try:
        proc = await asyncio.create_subprocess_exec(*args, stdin=slave, stdout=slave, stderr=slave,
                                                    start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)  # runc holds the only other: EIO on the master once runc is done
    return Exec(proc, scratch, None, None, None, pty=master)


# ---- I/O -------------------------------------------------------------------------------------

async def _feed(ex: Exec, data: bytes, end: bytes) -> None:
    """Write ``data`` then ``end`` to the command's stdin and close it: EOF on a pipe, ^D on a terminal."""
    if ex.stdin is None:
        return
    with contextlib.suppress(OSError):  # the command exited (or closed stdin) without reading all: not our error
        await write_all(ex.stdin, data + end)
    _close(ex.stdin)
    ex.stdin = None


async def _read_all(fd: int, cap: int = MAX_OUTPUT) -> bytes:
    """What the writers of ``fd`` write until they all close it, keeping ``cap`` bytes."""
    kept = bytearray()
    async for chunk in read_chunks(fd):
        kept += chunk[:max(0, cap - len(kept))]
    return bytes(kept)


async def read_chunks(fd: int) -> AsyncIterator[bytes]:
    """What the writers of ``fd`` write, as it comes, until they all close it (EIO on a pty); closes ``fd``."""
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                await _wait_fd(fd, readable=True)
                continue
            except OSError as e:
                if e.errno != errno.EIO:  # a pty's master reads EIO once the last slave is closed
                    raise
                return
            if not chunk:
                return
            yield chunk
    finally:
        os.close(fd)


async def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a non-blocking-capable ``fd``, waiting on the loop when it is full."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await _wait_fd(fd, readable=False)


async def _wait_fd(fd: int, *, readable: bool) -> None:
    """Until ``fd`` is readable (or writable): the event loop's readiness, no polling."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (loop.add_reader, loop.remove_reader) if readable else (loop.add_writer, loop.remove_writer)
    add(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        remove(fd)


async def _gather_output(reads: list[asyncio.Future[bytes]]) -> list[bytes]:
    """The output, waiting at most DRAIN_TIMEOUT once runc is gone.

    runc is the only other holder of our ends, so they close with it; the bound keeps a leaked
    descriptor from hanging the agent.
    """
    await asyncio.wait(reads, timeout=DRAIN_TIMEOUT)
    for read in reads:
        read.cancel()
    results = await asyncio.gather(*reads, return_exceptions=True)
    return [r if isinstance(r, bytes) else b"" for r in results]


async def stop(ex: Exec) -> None:
    """Kill the exec'd process, and runc too if it has none yet or lingers; reap runc."""
    if ex.kill():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ex.proc.wait(), KILL_REAP_TIMEOUT)
    if ex.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            ex.proc.kill()  # runc init, blocked on its parent, then exits as well
    await ex.proc.wait()


def _parent(pid: int) -> int:
    """The parent pid from ``/proc/<pid>/status``; raises ProcessLookupError when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))


def _json_line(line: bytes) -> Json:
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return entry if isinstance(entry, dict) else {}


def _close(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)
