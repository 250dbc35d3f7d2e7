"""Port-forward (``portforward.k8s.io``): each client connection a pair of SPDY streams to a pod port.

The kubelet's ``portforward/httpstream.go``: for every local connection kubectl opens an error
stream and a data stream carrying the same ``requestid`` and ``port`` headers.  Once both are
there the node connects to ``127.0.0.1:PORT`` inside the pod's network namespace and copies
bytes both ways (containerd's ``PortForward``); when one direction ends the other gets a
second to finish.  The data stream is then closed and the error stream closed empty, or
carrying the error's text when the connection could not be made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinykube.node.runtime import netns
from tinykube.streams.spdyconn import SpdyConnection, SpdyStream
from tinykube.streams.upgrade import ByteStream

__all__ = ["serve"]

log = logging.getLogger(__name__)

STREAM_CREATION_TIMEOUT = 30.0  # seconds for the second stream of a pair to arrive (kubelet's default)
HALF_CLOSE_GRACE = 1.0  # seconds the other direction gets once one has ended (containerd's, as socat's -t)
CHUNK = 32 * 1024  # bytes read from the pod at a time


@dataclass
class _Pair:
    """The two streams of one forwarded connection."""

    request_id: str
    error: SpdyStream | None = None
    data: SpdyStream | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def add(self, stream: SpdyStream) -> str:
        """Take a stream; "" or the kubelet's complaint about it."""
        kind = stream.header("streamtype")
        if getattr(self, kind) is not None:
            return f"{kind} stream already assigned"
        setattr(self, kind, stream)
        return ""

    @property
    def complete(self) -> bool:
        return self.error is not None and self.data is not None


class _Forwarder:
    """The stream pairs of one connection, and a task per forwarded connection."""

    def __init__(self, pod: str, namespace: Path) -> None:
        self.pod = pod
        self.netns = namespace
        self.pairs: dict[str, _Pair] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def on_stream(self, stream: SpdyStream) -> bool:
        """``httpStreamReceived``: a stream needs a valid port and stream type, else it is refused."""
        if reason := _invalid(stream):
            log.debug("port-forward stream refused: %s", reason)
            return False
        request_id = _request_id(stream)
        pair = self.pairs.get(request_id)
        if pair is None:
            pair = self.pairs[request_id] = _Pair(request_id)
            pair.timer = asyncio.get_running_loop().call_later(STREAM_CREATION_TIMEOUT, self._expire, pair)
        complaint = pair.add(stream)
        if complaint:
            self._spawn(_fail(pair, f"error processing stream for request {request_id}: {complaint}"))
        elif pair.complete:
            self._finish_pairing(pair)
            self._spawn(self._forward(pair))
        return True

    def _finish_pairing(self, pair: _Pair) -> None:
        if pair.timer is not None:
            pair.timer.cancel()
        self.pairs.pop(pair.request_id, None)

    def _expire(self, pair: _Pair) -> None:
        self.pairs.pop(pair.request_id, None)
        self._spawn(_fail(pair, f"timed out waiting for streams for request {pair.request_id}"))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _forward(self, pair: _Pair) -> None:
        assert pair.error is not None and pair.data is not None
        pair.error.discard()  # the client only ever closes it
        port = int(pair.data.header("port"))
        try:
            sock = await netns.connect(self.netns, port)
        except OSError as e:
            reason = os.strerror(e.errno).lower() if e.errno else str(e)
            await _fail(pair, f"error forwarding port {port} to pod {self.pod}, uid : failed to connect to "
                              f'localhost:{port} inside namespace "{self.pod}": dial tcp4 127.0.0.1:{port}: '
                              f"connect: {reason}")
            return
        try:
            await _pipe(sock, pair.data)
        finally:
            sock.close()
            await pair.data.close()
            await pair.error.close()


async def serve(io: ByteStream, pod: str, namespace: Path) -> None:
    """Forward the client's connections into ``namespace`` until it closes the connection."""
    forwarder = _Forwarder(pod, namespace)
    conn = SpdyConnection(io, forwarder.on_stream)
    try:
        await conn.serve()
    finally:
        for task in list(forwarder.tasks):
            task.cancel()
        await asyncio.gather(*forwarder.tasks, return_exceptions=True)
        await conn.close(grace=0)


async def _pipe(sock: socket.socket, stream: SpdyStream) -> None:
    """Copy both ways until one way ends, then give the other HALF_CLOSE_GRACE to end too."""
    up = asyncio.create_task(_to_pod(stream, sock))
    down = asyncio.create_task(_from_pod(sock, stream))
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.wait({up, down}, timeout=HALF_CLOSE_GRACE)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)


async def _to_pod(stream: SpdyStream, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    try:
        with contextlib.suppress(OSError):
            while data := await stream.read():
                await loop.sock_sendall(sock, data)
            sock.shutdown(socket.SHUT_WR)  # the client's FIN, passed on
    finally:
        stream.discard()


async def _from_pod(sock: socket.socket, stream: SpdyStream) -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):
        while data := await loop.sock_recv(sock, CHUNK):
            await stream.write(data)
    await stream.close()


async def _fail(pair: _Pair, message: str) -> None:
    """``printError``: the message on the error stream, then both streams closed."""
    log.info("port-forward: %s", message)
    if pair.error is not None:
        await pair.error.write(message.encode())
        await pair.error.close()
    if pair.data is not None:
        await pair.data.close()


def _invalid(stream: SpdyStream) -> str:
    port = stream.header("port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f'unable to parse "{port}" as a port'
    if stream.header("streamtype") not in ("error", "data"):
        return f'invalid stream type "{stream.header("streamtype")}"'
    return ""


def _request_id(stream: SpdyStream) -> str:
    """The ``requestid`` header; old clients send none and pair by consecutive stream ids."""
    request_id = stream.header("requestid")
    if request_id:
        return request_id
    return str(stream.id if stream.header("streamtype") == "error" else stream.id - 2)
