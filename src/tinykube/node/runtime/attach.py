"""Attaching to a container's main process through conmon: its output, its stdin, its terminal size.

conmon (started with ``--socket-dir-path``) listens on a ``SOCK_SEQPACKET`` socket,
``SOCKETS/<id>/attach`` (a symlink to the bundle keeps the path short), and sends every client a
copy of what the container writes, one packet per read, prefixed with a byte naming the pipe
(conmon's ``stdpipe_t``: 2 stdout, 3 stderr).  What a client writes goes to the container's stdin (when conmon holds
one, ``-i``); shutting down our write side closes it.  Resizes go to the bundle's ``ctl`` fifo as
``"1 HEIGHT WIDTH\\n"``.  This is CRI-O's ``AttachContainer`` (``internal/oci/runtime_oci.go``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

__all__ = ["Attachment", "STDERR", "STDOUT", "open_attachment"]

STDOUT, STDERR = 2, 3  # conmon's STDOUT_PIPE and STDERR_PIPE (1 is STDIN_PIPE)
BUFFER = 8192 + 1  # conmon's STDIO_BUF_SIZE plus the pipe byte
RESIZE = 1  # the ctl fifo's message type for a terminal resize


class Attachment:
    """One connection to conmon's attach socket, and the container's control fifo."""

    def __init__(self, sock: socket.socket, ctl: Path) -> None:
        self._sock = sock
        self._ctl = ctl

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(pipe, bytes) as the container writes them, until conmon closes (the container exited)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                packet = await loop.sock_recv(self._sock, BUFFER)
            except OSError:
                return
            if not packet:
                return
            if packet[0] in (STDOUT, STDERR) and len(packet) > 1:
                yield packet[0], packet[1:]

    async def write(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self._sock, data)

    def close_stdin(self) -> None:
        """No more input: conmon closes the container's stdin unless told to leave it open."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def resize(self, width: int, height: int) -> None:
        """Ask conmon to resize the container's terminal (ignored for a container without one)."""
        with contextlib.suppress(OSError):
            fd = os.open(self._ctl, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, f"{RESIZE} {height} {width}\n".encode())
            finally:
                os.close(fd)

    def close(self) -> None:
        self._sock.close()


async def open_attachment(sockets_dir: Path, bundle: Path, id: str) -> Attachment:
    """Connect to the attach socket of container ``id``; OSError when conmon is not listening."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, str(sockets_dir / id / "attach"))
    except BaseException:
        sock.close()
        raise
    return Attachment(sock, bundle / "ctl")
