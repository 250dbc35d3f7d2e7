"""The server end of a SPDY/3.1 connection: client-created streams, replies, pings, FIN and reset.

What Kubernetes' streaming servers need of ``moby/spdystream`` and apimachinery's
``httpstream/spdy``: the client opens every stream (odd ids) with headers naming its role; the
server accepts a stream with ``SYN_REPLY`` or refuses it with ``RST_STREAM``, echoes the
client's ``PING``s, and ends with ``GOAWAY``.  There is no flow control (spdystream has none):
back-pressure comes from each stream's bounded inbox, which stalls the reader of the whole
connection while full, and from the transport's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from tinykube.streams import spdy
from tinykube.streams.upgrade import ByteStream

__all__ = ["SpdyConnection", "SpdyStream"]

log = logging.getLogger(__name__)

MAX_DATA = 32 * 1024  # bytes per DATA frame we send (spdystream reads any size; smaller keeps streams fair)
INBOX_LIMIT = 1024 * 1024  # bytes buffered per stream before the connection's reader waits for its consumer
CLOSE_GRACE = 5.0  # seconds the client has to close its end after our GOAWAY


class SpdyStream:
    """One stream the client opened: its headers, its inbound bytes, and our half of it."""

    def __init__(self, conn: SpdyConnection, stream_id: int, headers: spdy.HeaderBlock) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self.was_reset = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False  # the client sent FIN or RST_STREAM, or the connection ended
        self._discarding = False
        self._finished = False  # we sent FIN or RST_STREAM
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower(), [])
        return values[0] if values else ""

    async def read(self) -> bytes:
        """The next bytes the client sent; b"" once it finished (FIN), reset, or the connection ended."""
        await self._readable.wait()
        if not self._chunks:
            return b""
        data = self._chunks.popleft()
        self._buffered -= len(data)
        self._update()
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data`` as DATA frames; a no-op once the stream or the connection ended."""
        for start in range(0, len(data), MAX_DATA):
            if self._finished:
                return
            await self.conn.send(spdy.Data(self.id, data[start:start + MAX_DATA]))

    async def close(self) -> None:
        """Our FIN: we will send no more (the client may still write)."""
        if not self._finished:
            self._finished = True
            await self.conn.send(spdy.Data(self.id, b"", fin=True))
            self._forget_when_done()

    async def reset(self, status: int = spdy.CANCEL) -> None:
        if not self._finished:
            self._finished = True
            await self.conn.send(spdy.RstStream(self.id, status))
        self._eof = True
        self.discard()

    def discard(self) -> None:
        """Stop reading: what is buffered and what still arrives is dropped (no consumer is left)."""
        self._discarding = True
        self._chunks.clear()
        self._buffered = 0
        self._update()

    async def _deliver(self, data: bytes, fin: bool) -> None:
        while not self._writable.is_set():
            await self._writable.wait()
        if data and not self._discarding and not self._eof:
            self._chunks.append(data)
            self._buffered += len(data)
        self._eof = self._eof or fin
        self._update()

    def _end(self) -> None:
        """The connection ended: what is buffered can still be read, then EOF."""
        self._eof = True
        self._update()

    def _peer_reset(self) -> None:
        """The client reset the stream: nothing more goes either way."""
        self.was_reset = self._finished = self._eof = True
        self.discard()

    def _update(self) -> None:
        """Wake readers and the connection's reader as the inbox changes; forget a stream done both ways."""
        _toggle(self._readable, bool(self._chunks) or self._eof)
        _toggle(self._writable, self._buffered < INBOX_LIMIT or self._discarding)
        self._forget_when_done()

    def _forget_when_done(self) -> None:
        if self._eof and self._finished:
            self.conn._streams.pop(self.id, None)


def _toggle(event: asyncio.Event, on: bool) -> None:
    if on:
        event.set()
    else:
        event.clear()


class SpdyConnection:
    """Serve one SPDY connection over ``stream``; ``on_stream`` accepts (True) or refuses each new stream."""

    def __init__(self, stream: ByteStream, on_stream: Callable[[SpdyStream], bool]) -> None:
        self._io = stream
        self._on_stream = on_stream
        self._reader = spdy.FrameReader()
        self._writer = spdy.FrameWriter()
        self._write_lock = asyncio.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self._last_id = 0  # the newest stream the client opened (ids only grow)
        self._last_accepted = 0
        self._going_away = False
        self.closed = asyncio.Event()  # the client's side ended (EOF, error) or we closed

    async def serve(self) -> None:
        """Read and dispatch frames until the client's side ends; every stream then reads EOF."""
        try:
            while not self.closed.is_set():
                data = await self._io.read()
                if not data:
                    break
                for frame in self._reader.feed(data):
                    await self._dispatch(frame)
        except (spdy.SpdyError, ConnectionError) as e:
            log.debug("SPDY connection ended: %s", e)
        finally:
            self.closed.set()
            for stream in list(self._streams.values()):
                stream._end()

    async def send(self, frame: spdy.Frame) -> None:
        """Write one frame; frames to a connection that ended are dropped."""
        async with self._write_lock:
            if self.closed.is_set():
                return
            try:
                await self._io.write(self._writer.encode(frame))
            except (ConnectionError, RuntimeError) as e:  # aiohttp raises RuntimeError on a closing transport
                log.debug("SPDY write failed: %s", e)
                self.closed.set()

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """``GOAWAY`` (the last stream we accepted); close once the client has, or after ``grace`` s.

        Closing first would make the kernel answer the client's last frames with a reset, which
        can destroy output it has not read yet.
        """
        await self.send(spdy.GoAway(self._last_accepted))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), grace)
        self.closed.set()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._io.close()

    async def _dispatch(self, frame: spdy.Frame) -> None:
        match frame:
            case spdy.SynStream():
                await self._open(frame)
            case spdy.Data():
                if (stream := self._streams.get(frame.stream_id)) is not None:
                    await stream._deliver(frame.data, frame.fin)
            case spdy.RstStream():
                if (stream := self._streams.get(frame.stream_id)) is not None:
                    stream._peer_reset()
            case spdy.Ping() if frame.id & 1:  # the client's (odd) pings are echoed
                await self.send(frame)
            case spdy.GoAway():
                self._going_away = True
            # SETTINGS, WINDOW_UPDATE, HEADERS and stray replies change nothing here.

    async def _open(self, frame: spdy.SynStream) -> None:
        if self._going_away or frame.stream_id <= self._last_id or not frame.stream_id & 1:
            await self.send(spdy.RstStream(frame.stream_id, spdy.PROTOCOL_ERROR))
            return
        self._last_id = frame.stream_id
        stream = self._streams[frame.stream_id] = SpdyStream(self, frame.stream_id, frame.headers)
        if frame.fin:
            await stream._deliver(b"", True)
        if self._on_stream(stream):
            self._last_accepted = frame.stream_id
            await self.send(spdy.SynReply(frame.stream_id))
        else:
            await stream.reset()

