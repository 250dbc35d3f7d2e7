"""Containers run by runc under conmon: create, start, stop, remove, observe, with exits as events.

One :class:`Runtime` is the entry point for everything runc and conmon (cri-o ``internal/oci``).
Each container lives in three places, each with its own lifetime:

* ``RUN/containers/<id>/`` — the bundle: ``config.json``; ``meta.json`` (our record, rewritten
  atomically on each change); ``pid`` (runc's container pid) and ``conmon.pid``; ``persist/``
  (conmon's ``oom`` marker); ``rootfs/`` (the overlay mount point).  On tmpfs, so it dies with
  the boot, like the container.
* ``STATE/containers/<id>/{upper,work}`` — the overlay's writable layer, on disk.
* ``RUN/exits/<id>`` — the exit code, written by conmon when the container exits; its mtime
  is the finish time.

conmon (one per container, ~0.4 MiB) is the parent that reaps the container, records its exit
code and writes its CRI log; it outlives the agent, so an agent restart kills nothing.  The
agent learns of an exit through a pidfd on conmon (readable once conmon exits, right after it
wrote the exit file) registered with the event loop: no polling.  A new :class:`Runtime` finds
the bundles, re-arms the pidfds and so re-adopts what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import orjson

from tinykube.node.runtime import cgroups, execs, mounts, proc, records
from tinykube.node.runtime.cgroups import Resources
from tinykube.node.runtime.execs import ExecResult
from tinykube.node.runtime.oci import ContainerSpec, Mount, PodNamespaces, build_config

__all__ = ["ContainerError", "ContainerExists", "ContainerNotFound", "ContainerSpec", "ContainerStatus", "ExecResult",
           "ExecTimeout", "ExitCallback", "Mount", "PodNamespaces", "Resources", "Runtime", "rfc3339_nano"]  # the spec types come with the runtime

log = logging.getLogger(__name__)

RUNC = "/usr/sbin/runc"
CONMON = "/usr/bin/conmon"
SYNC_TIMEOUT = 60.0  # seconds for conmon + `runc create` (~45 ms when healthy; CRI-O allows 240)
KILL_TIMEOUT = 10.0  # seconds for a SIGKILLed container's conmon to record the exit
LOST_EXIT_CODE = 255  # conmon died without an exit file (CRI-O reports the same)
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # for conmon and runc when the agent has no PATH

State = Literal["created", "running", "exited"]


class ContainerError(Exception):
    """runc or conmon refused; the message is theirs (users need runc's words)."""


class ContainerExists(ContainerError):
    """A container with this id is already known: ids are never reused."""


class ContainerNotFound(ContainerError):
    """No container with this id."""


class ExecTimeout(ContainerError):
    """An exec outlived its timeout and was killed (the kubelet words it "command ... timed out")."""


@dataclass(frozen=True)
class ContainerStatus:
    """What the runtime observes; timestamps are RFC 3339 with nanoseconds, "" until they happen."""

    id: str
    pod_uid: str
    name: str
    state: State
    pid: int | None
    exit_code: int | None
    created_at: str
    started_at: str
    finished_at: str
    oom_killed: bool
    log_path: str
    message: str = ""


ExitCallback = Callable[[ContainerStatus], None]


def rfc3339_nano(ns: int | None) -> str:
    """``2026-11-26T09:11:43.719834861Z``; "" for a time that has not happened."""
    if ns is None:
        return ""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


# ---- on-disk record ------------------------------------------------------------------------

@dataclass
class _Record:
    """``meta.json``: what re-adoption needs that runc and conmon do not keep."""

    id: str
    pod_uid: str
    name: str
    log_path: str
    created_ns: int
    started_ns: int | None = None
    pid: int | None = None


@dataclass
class _Watch:
    """conmon's pidfd and who waits for the exit it announces."""

    done: asyncio.Future[ContainerStatus]
    callbacks: list[ExitCallback] = field(default_factory=list)
    pidfd: int | None = None


# ---- the runtime ---------------------------------------------------------------------------

class Runtime:
    """Create, start, stop, remove and observe containers with runc under conmon."""

    def __init__(self, state_dir: Path, run_dir: Path, runc_root: Path, *,
                 runc: str = RUNC, conmon: str = CONMON) -> None:
        self.state_dir = Path(state_dir) / "containers"
        self.bundles = Path(run_dir) / "containers"
        self.exits = Path(run_dir) / "exits"
        self.sockets = Path(run_dir) / "sockets"
        self.runc_root = Path(runc_root)
        self.runc = runc
        self.conmon = conmon
        for d in (self.state_dir, self.bundles, self.exits, self.sockets, self.runc_root):
            d.mkdir(parents=True, exist_ok=True)
        self.layout = cgroups.detect()
        self.swap_accounting = _swap_accounting()
        self._remove_orphan_layers()
        self._known: dict[str, _Record] = {}
        self._watches: dict[str, _Watch] = {}
        self._creating: set[str] = set()  # ids between mkdir and start: not yet observable

    async def create_and_start(self, spec: ContainerSpec, on_exit: ExitCallback | None = None) -> ContainerStatus:
        """Create the container under conmon, then start it; on any failure undo in reverse."""
        bundle = self.bundles / spec.id
        try:
            bundle.mkdir()
        except FileExistsError:
            raise ContainerExists(f"container {spec.id} already exists") from None
        self._creating.add(spec.id)
        try:
            async with contextlib.AsyncExitStack() as undo:
                undo.push_async_callback(self._undo_create, spec.id)
                await self._create(spec, bundle)
                undo.pop_all()
        finally:
            self._creating.discard(spec.id)
        if on_exit is not None:
            self.watch_exit(spec.id, on_exit)
        return self.status(spec.id)

    async def _create(self, spec: ContainerSpec, bundle: Path) -> None:
        root = self._mount_rootfs(spec, bundle)
        config = build_config(spec, str(root), layout=self.layout, swap_accounting=self.swap_accounting)
        records.write(bundle / "config.json", config)
        record = _Record(spec.id, spec.pod_uid, spec.name, str(spec.log_path), time.time_ns())
        self._save(record)
        record.pid = await self._spawn_conmon(spec, bundle)
        self._arm(spec.id)  # before start: an instant exit must not slip past
        await self._run_runc("start", spec.id)
        record.started_ns = time.time_ns()
        self._save(record)

    async def stop(self, id: str, grace_seconds: float, stop_signal: int = signal.SIGTERM) -> ContainerStatus:
        """Signal, wait out the grace period, then SIGKILL; a container not running is left as is."""
        if self.status(id).state != "running":
            return self.status(id)
        done = self._arm(id).done
        if grace_seconds > 0:
            await self._kill(id, stop_signal)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(done), grace_seconds)
        await self._kill(id, signal.SIGKILL)
        return await asyncio.wait_for(asyncio.shield(done), KILL_TIMEOUT)

    async def remove(self, id: str) -> None:
        """Kill if needed, ``runc delete``, unmount the rootfs, remove every file; idempotent."""
        try:
            status = self.status(id)
        except ContainerNotFound:
            self._discard_files(id)
            return
        if status.state != "exited":
            await self._kill(id, signal.SIGKILL)
        await self._delete(id)
        await asyncio.wait_for(asyncio.shield(self._arm(id).done), KILL_TIMEOUT)
        self._forget(id)
        self._discard_files(id)

    async def exec(self, id: str, argv: list[str], *, env: Mapping[str, str] | None = None,
                   timeout: float | None = None, stdin: bytes | None = None, tty: bool = False) -> ExecResult:
        """Run ``argv`` in a running container as its own process runs; wait for it and return its output.

        The command inherits the container's user, env, cwd, capabilities, no_new_privileges and
        security labels (:mod:`execs`).  A non-zero exit is a result, not an error; runc's refusal
        is a :class:`ContainerError`; past ``timeout`` seconds the command is killed: :class:`ExecTimeout`.
        """
        if self.status(id).state != "running":
            raise ContainerError(f"container {id} is not running")
        config = records.read(self.bundles / id / "config.json") or {}
        spec = execs.process_spec(config["process"], argv, env=env, tty=tty)
        done = await execs.run(self.runc, self.runc_root, self.bundles / id, id, spec, stdin=stdin, timeout=timeout)
        if done.timed_out:
            raise ExecTimeout(f"exec in container {id} timed out after {timeout} s")
        if done.result is None:
            raise ContainerError(f"runc exec: {done.runc_error}")
        return done.result

    def status(self, id: str) -> ContainerStatus:
        """The container's state from its record and conmon's files; costs no exec."""
        record = self._record(id)
        code, finished = self._exit(id)
        message = ""
        if code is None and id not in self._creating and not self._conmon_alive(id):
            code, finished = self._exit(id)  # conmon writes the file just before it exits
            if code is None:
                code, message = LOST_EXIT_CODE, "conmon exited without recording an exit code"
        state: State = "exited" if code is not None else "running" if record.started_ns else "created"
        return ContainerStatus(
            id=id, pod_uid=record.pod_uid, name=record.name, state=state, pid=record.pid, exit_code=code,
            created_at=rfc3339_nano(record.created_ns), started_at=rfc3339_nano(record.started_ns),
            finished_at=rfc3339_nano(finished), oom_killed=(self.bundles / id / "persist" / "oom").exists(),
            log_path=record.log_path, message=message)

    def list(self) -> list[ContainerStatus]:
        """Every container with a bundle, its exit watch re-armed (re-adoption after a restart).

        Call from the event loop: the watches are registered with it.
        """
        ids = sorted(p.parent.name for p in self.bundles.glob("*/meta.json"))
        statuses = [self.status(i) for i in ids if i not in self._creating]
        for s in statuses:
            self._arm(s.id)
        return statuses

    def watch_exit(self, id: str, callback: ExitCallback) -> None:
        """Call ``callback(status)`` once the container has exited (soon, if it already has)."""
        watch = self._arm(id)
        if watch.done.done():
            asyncio.get_running_loop().call_soon(callback, watch.done.result())
        else:
            watch.callbacks.append(callback)

    async def wait_exit(self, id: str) -> ContainerStatus:
        """The container's final status, once it has exited."""
        return await asyncio.shield(self._arm(id).done)

    # -- conmon and runc --

    async def _spawn_conmon(self, spec: ContainerSpec, bundle: Path) -> int:
        """Start conmon (which runs ``runc create``); its sync pipe reports the container pid."""
        Path(spec.log_path).parent.mkdir(parents=True, exist_ok=True)
        (bundle / "persist").mkdir()
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        args = self._conmon_args(spec, bundle)
        env = {"PATH": os.environ.get("PATH", HOST_PATH), "_OCI_SYNCPIPE": str(write_fd)}

        def spawn() -> None:
            """In a thread, with vfork (see proc.py): uvloop's fork of the whole agent would stall the
            loop for milliseconds.  The first conmon process exits once it has forked the monitor."""
            with open(bundle / "conmon.log", "wb") as out:
                subprocess.run(args, cwd=bundle, pass_fds=(write_fd,), stdout=out, stderr=out,
                               stdin=subprocess.DEVNULL, start_new_session=True, env=env, check=False)

        with os.fdopen(read_fd, "rb", 0) as sync:
            try:
                await asyncio.to_thread(spawn)
            finally:
                os.close(write_fd)  # else EOF never comes if conmon dies early
            try:
                line = await asyncio.wait_for(_read_line(sync), SYNC_TIMEOUT)
            except TimeoutError:
                raise ContainerError(f"conmon reported nothing within {SYNC_TIMEOUT:.0f} s") from None
        if not line:
            raise ContainerError(f"conmon failed: {(bundle / 'conmon.log').read_text(errors='replace').strip()}")
        reply = orjson.loads(line)
        if reply.get("data", -1) < 0:
            raise ContainerError(reply.get("message") or f"runc create failed: {reply}")
        return int(reply["data"])

    def _conmon_args(self, spec: ContainerSpec, bundle: Path) -> list[str]:
        args = [self.conmon, "--api-version", "1", "-c", spec.id, "-u", spec.id, "-n", spec.name,
                "-r", self.runc, "--runtime-arg", f"--root={self.runc_root}", "-b", str(bundle),
                "-p", str(bundle / "pid"), "-P", str(bundle / "conmon.pid"), "-l", f"k8s-file:{spec.log_path}",
                "--exit-dir", str(self.exits), "--persist-dir", str(bundle / "persist"),
                "--socket-dir-path", str(self.sockets), "--log-level", "error"]
        if spec.stdin:
            args += ["-i"] if spec.stdin_once else ["-i", "--leave-stdin-open"]
        return args + (["-t"] if spec.tty else [])

    async def _run_runc(self, *args: str) -> None:
        done = await proc.run(self.runc, "--root", str(self.runc_root), *args)
        if done.returncode != 0:
            raise ContainerError(f"runc {args[0]}: {done.stderr.decode(errors='replace').strip()}")

    async def _kill(self, id: str, sig: int) -> None:
        """``runc kill``; a container that exited meanwhile is not an error."""
        try:
            await self._run_runc("kill", id, str(int(sig)))
        except ContainerError:
            if self.status(id).state == "running":
                raise

    async def _delete(self, id: str) -> None:
        try:
            await self._run_runc("delete", "--force", id)
        except ContainerError as e:
            if "does not exist" not in str(e):
                raise

    # -- exit events --

    def _arm(self, id: str) -> _Watch:
        """The container's exit watch: a pidfd on conmon read by the event loop, made once."""
        watch = self._watches.get(id)
        if watch is not None:
            return watch
        loop = asyncio.get_running_loop()
        watch = self._watches[id] = _Watch(loop.create_future())
        watch.pidfd = self._open_conmon(id)
        if watch.pidfd is None:
            loop.call_soon(self._exited, id, watch)
        else:
            loop.add_reader(watch.pidfd, self._exited, id, watch)
        return watch

    def _open_conmon(self, id: str) -> int | None:
        """A pidfd on this container's conmon, or None when it is gone (or the pid was reused)."""
        try:
            pid = int((self.bundles / id / "conmon.pid").read_text())
            fd = os.pidfd_open(pid)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        if not self._conmon_alive(id, pid):
            os.close(fd)
            return None
        return fd

    def _conmon_alive(self, id: str, pid: int | None = None) -> bool:
        """True when ``pid`` (default: the recorded one) is a conmon running for ``id``."""
        try:
            pid = pid or int((self.bundles / id / "conmon.pid").read_text())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return False
        return os.path.basename(argv[0]) == b"conmon" and id.encode() in argv

    def _exited(self, id: str, watch: _Watch) -> None:
        """conmon exited (or was already gone): resolve the watch and tell the callbacks."""
        self._disarm(watch)
        if watch.done.done() or self._watches.get(id) is not watch:
            return
        status = self.status(id)
        watch.done.set_result(status)
        for callback in watch.callbacks:
            try:
                callback(status)
            except Exception:  # one broken consumer must not starve the others
                log.exception("exit callback for container %s failed", id)
        watch.callbacks.clear()

    def _disarm(self, watch: _Watch) -> None:
        if watch.pidfd is not None:
            asyncio.get_running_loop().remove_reader(watch.pidfd)
            os.close(watch.pidfd)
            watch.pidfd = None

    # -- files --

    def _mount_rootfs(self, spec: ContainerSpec, bundle: Path) -> Path:
        if spec.rootfs_dir is not None:
            return spec.rootfs_dir
        layer = self.state_dir / spec.id
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        root = bundle / "rootfs"
        root.mkdir()
        lower = ":".join(str(p) for p in spec.rootfs_layers)
        options = f"lowerdir={lower},upperdir={layer / 'upper'},workdir={layer / 'work'}"
        mounts.mount("overlay", root, "overlay", 0, options)
        return root

    def _exit(self, id: str) -> tuple[int | None, int | None]:
        """conmon's exit code and the time it wrote it, or (None, None) while the container runs."""
        path = self.exits / id
        try:
            return int(path.read_text().strip()), path.stat().st_mtime_ns
        except (FileNotFoundError, ValueError):
            return None, None

    def _record(self, id: str) -> _Record:
        record = self._known.get(id)
        if record is None:
            data = records.read(self.bundles / id / "meta.json")
            if data is None:
                raise ContainerNotFound(f"container {id} not found")
            record = self._known[id] = _Record(**data)
        return record

    def _save(self, record: _Record) -> None:
        self._known[record.id] = record
        records.write(self.bundles / record.id / "meta.json", asdict(record))

    async def _undo_create(self, id: str) -> None:
        """Undo a half-made container in reverse: runc's state, the monitor, the watch, the files."""
        self._forget(id)
        await self._delete(id)
        self._kill_conmon(id)
        self._discard_files(id)

    def _forget(self, id: str) -> None:
        watch = self._watches.pop(id, None)
        if watch is not None:
            self._disarm(watch)
            if not watch.done.done():
                watch.done.cancel()
        self._known.pop(id, None)

    def _kill_conmon(self, id: str) -> None:
        """A monitor without a container (create failed half-way) must not linger."""
        if self._conmon_alive(id):
            with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
                os.kill(int((self.bundles / id / "conmon.pid").read_text()), signal.SIGKILL)

    def _remove_orphan_layers(self) -> None:
        """Writable layers whose bundle is gone (a reboot emptied RUN) belong to no container.

        A bundle is always made before its layer and removed after it, so this never races
        a container being created or removed.
        """
        for layer in self.state_dir.iterdir():
            if not (self.bundles / layer.name).exists():
                shutil.rmtree(layer, ignore_errors=True)

    def _discard_files(self, id: str) -> None:
        mounts.unmount(self.bundles / id / "rootfs")
        shutil.rmtree(self.state_dir / id, ignore_errors=True)
        shutil.rmtree(self.bundles / id, ignore_errors=True)
        (self.exits / id).unlink(missing_ok=True)


def _swap_accounting() -> bool:
    """Whether the v1 memory controller can limit swap (``memory.memsw.*`` needs swapaccount=1)."""
    return any("memory" in h.controllers and (h.path / "memory.memsw.limit_in_bytes").exists()
               for h in cgroups.hierarchies())


async def _read_line(pipe: BinaryIO) -> bytes:
    """One line from a pipe without blocking the loop; b"" when the writer closed it first.

    The transport reads a duplicate of the descriptor and owns it: uvloop closes a transport's
    descriptor by number a loop turn after ``close()``, so had it shared ``pipe``'s, the caller's
    own close would free the number first and uvloop would then close whatever socket reused it
    (seen as API watch streams cut mid-chunk under load)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    own = os.fdopen(os.dup(pipe.fileno()), "rb", 0)
    try:
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), own)
    except BaseException:
        own.close()
        raise
    try:
        return await reader.readline()
    finally:
        transport.close()
