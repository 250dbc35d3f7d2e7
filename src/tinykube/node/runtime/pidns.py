"""A pod's shared PID namespace (``shareProcessNamespace``): pinned on a file, held by an infra process.

A PID namespace whose PID 1 exits is dead (no process can enter it), so, as the pause container
does in the kubelet's pods, a tiny infra process is its PID 1: ``catatonit -P`` (podman's pause
process), which reaps the orphans the containers leave and otherwise sleeps.  With it as PID 1
any container may exit and restart without taking the others with it.

Making it costs no exec of a helper: one dedicated thread ``unshare(CLONE_NEWPID)``s, which sets
only *its own* namespace for children, spawns the infra (which therefore starts as PID 1 of the
new namespace) and ``setns`` back; then the namespace is bind-mounted on the pin.  The pin is the
record: :func:`remove` kills every process whose namespace is the pinned one, so it needs no PID
and cannot hit a reused one.  (A PID namespace cannot be pinned before its first process exists,
so an agent crash in the microseconds between the spawn and the mount would leak one idle
infra.)  The infra runs in its own session and outlives the agent as conmon does; containers
join the namespace by the pin's path, which, unlike ``/proc/PID/ns/pid``, can never name
another process's namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tinykube.node.runtime import mounts

__all__ = ["INFRA", "create", "members", "remove"]

INFRA = ("catatonit", "-P")  # Debian's catatonit: podman's pause process, statically linked
CLONE_NEWPID = 0x20000000  # os.CLONE_NEWPID from Python 3.12 on
CHILDREN_NS = "/proc/thread-self/ns/pid_for_children"
_libc = ctypes.CDLL(None, use_errno=True)
_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pidns")  # the only thread that ever unshares
_infras: dict[int, subprocess.Popen[bytes]] = {}  # infra processes this agent started: reaped on removal


def _check(rc: int, what: str) -> None:
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _create(pin: Path) -> int:
    """The infra as PID 1 of a new namespace, then the pin (runs on the dedicated thread, which returns home)."""
    pin.touch()
    home = os.open(CHILDREN_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        try:
            infra = subprocess.Popen(INFRA, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            _check(_libc.setns(home, CLONE_NEWPID), "setns back to the agent's PID namespace")
    finally:
        os.close(home)
    _infras[infra.pid] = infra
    try:
        mounts.mount(f"/proc/{infra.pid}/ns/pid", pin, "", mounts.MS_BIND)
    except OSError:
        infra.kill()
        _infras.pop(infra.pid).wait()
        raise
    return infra.pid


async def create(pin: Path) -> int:
    """A new PID namespace pinned on ``pin`` (a path under a private mount) with its infra; the infra's PID."""
    return await asyncio.get_running_loop().run_in_executor(_thread, _create, pin)


def members(pin: Path) -> list[int]:
    """PIDs (in the agent's namespace) of every process in the pinned namespace; the infra is among them."""
    target = os.stat(pin).st_ino
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _namespace_of(int(entry)) == target]


def _namespace_of(pid: int) -> int | None:
    """The inode of a process's PID namespace; None when it is gone (or a kernel thread)."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def _remove(pin: Path) -> None:
    if not mounts.is_mountpoint(pin):
        return
    for pid in members(pin):
        _kill(pid, pin)
    mounts.unmount(pin)


def _kill(pid: int, pin: Path) -> None:
    """SIGKILL ``pid`` if it is still in the pinned namespace (through a pidfd: no PID reuse), and reap it if ours."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if _namespace_of(pid) == os.stat(pin).st_ino:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:  # exited between the check and the signal
        pass
    finally:
        os.close(fd)
    infra = _infras.pop(pid, None)
    if infra is not None:
        infra.wait()


async def remove(pin: Path) -> None:
    """Kill the namespace's processes (the infra's death takes any others with it), unpin; idempotent.

    Free for the pods that share nothing: without a pin file there is nothing to undo."""
    if pin.exists():
        await asyncio.to_thread(_remove, pin)
