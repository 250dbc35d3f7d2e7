"""TCP connections made inside a pod's network namespace, so that the pod's loopback is reachable.

Port-forward connects to ``127.0.0.1:PORT`` as seen *from the pod* (a server listening only on
the pod's localhost must work, as with containerd's ``PortForward``).  A socket belongs to the
network namespace of the thread that created it, and ``setns(CLONE_NEWNET)`` moves only the
calling thread: so one helper thread enters the pod's namespace, creates the socket, and goes
back at once; the connect then runs on the event loop like any other.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["connect"]

CLONE_NEWNET = 0x40000000  # os.CLONE_NEWNET from Python 3.12 on
_libc = ctypes.CDLL(None, use_errno=True)
_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netns")  # the only thread that ever leaves


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _socket_in(netns: Path) -> socket.socket:
    """A TCP socket created in ``netns`` (runs on the helper thread, which always returns home)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(home)  # cannot fail for our own namespace's fd; if it did, the error must surface
    finally:
        os.close(target)
        os.close(home)


async def connect(netns: Path, port: int, host: str = "127.0.0.1") -> socket.socket:
    """A connected, non-blocking TCP socket to ``host:port`` inside ``netns``; OSError when refused."""
    sock = await asyncio.get_running_loop().run_in_executor(_thread, _socket_in, netns)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock
