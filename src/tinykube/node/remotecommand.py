"""Remote command sessions for exec and attach: the client's streams, over WebSocket or SPDY/3.1.

The kubelet's streaming server (``pkg/kubelet/cri/streaming/remotecommand``): a WebSocket
request speaks one of the ``channel.k8s.io`` protocols (:mod:`tinykube.streams.channels`); any
other request is upgraded to SPDY/3.1 after negotiating ``X-Stream-Protocol-Version``, and the
client then opens one stream per role (``streamtype`` error, stdin, stdout, stderr, resize).
Either way the command's side sees one :class:`Session`: stdin to read, output to write,
terminal sizes, and a final ``metav1.Status`` (v4 and later: JSON with the exit code; earlier:
a failure's message only).  Errors before the upgrade are plain text, as the kubelet's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import WSMsgType, web

from tinykube.streams import channels
from tinykube.streams.channels import ERROR, RESIZE, STDERR, STDIN, STDOUT, ChannelProtocol, SizeDecoder, TerminalSize
from tinykube.streams.spdyconn import SpdyConnection, SpdyStream
from tinykube.streams.upgrade import UpgradedConnection, accept, header_values

__all__ = ["Abandoned", "Options", "Refused", "Session", "Status", "exit_status", "internal_error", "is_websocket",
           "negotiate", "open_session", "parse_options", "require_spdy_upgrade", "success"]

STREAM_CREATION_TIMEOUT = 30.0  # seconds for the client to open its SPDY streams (kubelet's default)
SPDY_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
STDIN_QUEUE = 64  # WebSocket messages of stdin held before the connection's reader waits for the command
STREAM_TYPES = {"error": ERROR, "stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "resize": RESIZE}
TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool

Status = dict[str, Any]  # a metav1.Status as JSON


class Abandoned(Exception):
    """The connection was upgraded but the session never started (the client opened too few streams)."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("timed out waiting for client to create streams")
        self.response = response


class Refused(Exception):
    """Answered before any upgrade with the kubelet's plain-text error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.Response(status=self.code, text=self.message + "\n", content_type="text/plain")


@dataclass(frozen=True)
class Options:
    """Which streams the client wants (``remotecommand.NewOptions``)."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def parse_options(query: Mapping[str, str]) -> Options:
    """From the query (the API server sends "1", clients "true"); a terminal carries stderr in stdout."""
    stdin, stdout, stderr, tty = (query.get(k, "") in TRUE for k in ("stdin", "stdout", "stderr", "tty"))
    if not (stdin or stdout or stderr):
        raise Refused(400, "you must specify at least 1 of stdin, stdout, stderr")
    return Options(stdin, stdout, stderr and not tty, tty)


# ---- the final status ----------------------------------------------------------------------------

def success() -> Status:
    return {"metadata": {}, "status": "Success"}


def exit_status(argv: list[str], code: int) -> Status:
    """A non-zero exit: kubectl prints "command terminated with exit code N" and exits N."""
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command [{' '.join(argv)}], "
                       f"exit code {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def internal_error(message: str) -> Status:
    """``apierrors.NewInternalError``: the command could not be run at all."""
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}


def _status_bytes(protocol: ChannelProtocol, status: Status) -> bytes:
    """v4+: the Status as JSON; before: only a failure, as its message (``v1WriteStatusFunc``)."""
    if protocol.status_json:
        return orjson.dumps(status)
    return b"" if status["status"] == "Success" else status["message"].encode()


# ---- sessions ------------------------------------------------------------------------------------

class Session(Protocol):
    """The client's side of one exec or attach."""

    options: Options
    gone: asyncio.Event  # the client went away: nobody reads the output any more
    response: web.StreamResponse  # the handler's return value, once the session is finished

    async def read_stdin(self) -> bytes:
        """The next input; b"" at its end."""
        ...

    def resizes(self) -> AsyncIterator[TerminalSize]: ...

    async def write(self, channel: int, data: bytes) -> None:
        """Output for STDOUT or STDERR; dropped when the client did not ask for that stream."""
        ...

    async def finish(self, status: Status) -> None:
        """Send the final status and close the connection."""
        ...


def is_websocket(request: web.Request) -> bool:
    """``wsstream.IsWebSocketRequest``: an upgrade to "websocket"."""
    return ("upgrade" in request.headers.get("Connection", "").lower()
            and request.headers.get("Upgrade", "").lower() == "websocket")


async def open_session(request: web.Request, options: Options) -> Session:
    """Upgrade the request and return its session.

    Refused when the upgrade cannot happen; Abandoned when it happened but the client did not
    follow up (the handler then returns the exception's response).
    """
    if is_websocket(request):
        return await WebSocketSession.open(request, options)
    return await SpdySession.open(request, options)


class WebSocketSession:
    """One message per write on a channel; the reader task routes stdin and resize messages."""

    def __init__(self, ws: web.WebSocketResponse, protocol: ChannelProtocol, options: Options) -> None:
        self.options = options
        self.gone = asyncio.Event()
        self.response: web.StreamResponse = ws
        self._ws = ws
        self._protocol = protocol
        self._stdin: asyncio.Queue[bytes] = asyncio.Queue(STDIN_QUEUE)
        self._sizes: asyncio.Queue[TerminalSize | None] = asyncio.Queue()
        self._stdin_open = options.stdin
        self._reader = asyncio.create_task(self._receive())

    @classmethod
    async def open(cls, request: web.Request, options: Options) -> WebSocketSession:
        ws = web.WebSocketResponse(protocols=[p for p in channels.PROTOCOLS if p], max_msg_size=0, compress=False)
        await ws.prepare(request)
        session = cls(ws, channels.PROTOCOLS[ws.ws_protocol or ""], options)
        # "Send an empty message to the lowest writable channel to notify the client the connection is established"
        first = STDOUT if options.stdout else STDERR if options.stderr else ERROR
        await session._send(first, b"")
        return session

    async def read_stdin(self) -> bytes:
        if not self.options.stdin:
            return b""
        return await self._stdin.get()

    async def resizes(self) -> AsyncIterator[TerminalSize]:
        while (size := await self._sizes.get()) is not None:
            yield size

    async def write(self, channel: int, data: bytes) -> None:
        if (channel == STDOUT and self.options.stdout) or (channel == STDERR and self.options.stderr):
            await self._send(channel, data)

    async def finish(self, status: Status) -> None:
        payload = _status_bytes(self._protocol, status)
        if payload:
            await self._send(ERROR, payload)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._ws.close()  # code 1000: the EOF that ends the client's read of the error channel
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _send(self, channel: int, data: bytes) -> None:
        if self.gone.is_set():
            return
        message = channels.encode(self._protocol, channel, data)
        try:
            if isinstance(message, str):
                await self._ws.send_str(message)
            else:
                await self._ws.send_bytes(message)
        except (ConnectionError, RuntimeError):  # aiohttp: RuntimeError once the socket is closing
            self.gone.set()

    async def _receive(self) -> None:
        decoder = SizeDecoder()
        try:
            async for msg in self._ws:
                if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                    await self._route(channels.decode(self._protocol, msg.data), decoder)
        finally:
            self.gone.set()
            self._sizes.put_nowait(None)

    async def _route(self, message: channels.Message | channels.Close | None, decoder: SizeDecoder) -> None:
        match message:
            case channels.Message(channel=channels.STDIN, data=data) if data and self._stdin_open:
                await self._stdin.put(data)
            case channels.Message(channel=channels.RESIZE, data=data):
                for size in decoder.feed(data):
                    self._sizes.put_nowait(size)
            case channels.Close(channel=channels.STDIN) if self._stdin_open:
                self._stdin_open = False
                await self._stdin.put(b"")


class SpdySession:
    """One SPDY stream per role, opened by the client right after the upgrade."""

    def __init__(self, io: UpgradedConnection, protocol: ChannelProtocol, options: Options) -> None:
        self.options = options
        self.response = io.response
        self._conn = SpdyConnection(io, self._on_stream)
        self.gone = self._conn.closed
        self._protocol = protocol
        self._streams: dict[int, SpdyStream] = {}
        self._expected = {ERROR} | {c for c, on in ((STDIN, options.stdin), (STDOUT, options.stdout),
                                                    (STDERR, options.stderr)) if on}
        if options.tty and protocol.version >= 3:
            self._expected.add(RESIZE)
        self._complete = asyncio.Event()
        self._serving: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, request: web.Request, options: Options) -> SpdySession:
        protocol = negotiate(header_values(request, "X-Stream-Protocol-Version"), SPDY_PROTOCOLS)
        require_spdy_upgrade(request)
        io = await accept(request, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": protocol})
        session = cls(io, channels.PROTOCOLS[protocol], options)
        session._serving = asyncio.create_task(session._conn.serve())
        try:
            await asyncio.wait_for(session._complete.wait(), STREAM_CREATION_TIMEOUT)
        except TimeoutError:
            await session._abandon()
            raise Abandoned(session.response) from None
        return session

    def _on_stream(self, stream: SpdyStream) -> bool:
        channel = STREAM_TYPES.get(stream.header("streamtype"))
        if channel is not None:
            self._streams[channel] = stream
            if channel not in (STDIN, RESIZE):  # the client never writes on these
                stream.discard()
        if self._expected <= self._streams.keys():
            self._complete.set()
        return True  # the kubelet replies to every stream, even of an unknown type

    async def read_stdin(self) -> bytes:
        stream = self._streams.get(STDIN)
        return await stream.read() if stream is not None else b""

    async def resizes(self) -> AsyncIterator[TerminalSize]:
        stream = self._streams.get(RESIZE)
        decoder = SizeDecoder()
        while stream is not None and (data := await stream.read()):
            for size in decoder.feed(data):
                yield size

    async def write(self, channel: int, data: bytes) -> None:
        stream = self._streams.get(channel) if channel in (STDOUT, STDERR) else None
        if stream is not None:
            await stream.write(data)

    async def finish(self, status: Status) -> None:
        for channel in (STDOUT, STDERR):
            if (stream := self._streams.get(channel)) is not None:
                await stream.close()
        error = self._streams[ERROR]
        await error.write(_status_bytes(self._protocol, status))
        await error.close()
        await self._abandon()

    async def _abandon(self) -> None:
        for stream in self._streams.values():
            stream.discard()
        await self._conn.close()
        if self._serving is not None:
            self._serving.cancel()
            await asyncio.gather(self._serving, return_exceptions=True)


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str:
    """``httpstream.Handshake``: the first protocol the client offers that the server speaks."""
    if not offered:
        raise Refused(400, "unable to upgrade: X-Stream-Protocol-Version is required")
    chosen = next((p for p in offered if p in supported), None)
    if chosen is None:
        raise Refused(403, f"unable to upgrade: unable to negotiate protocol: client supports [{' '.join(offered)}], "
                           f"server accepts [{' '.join(supported)}]")
    return chosen


def require_spdy_upgrade(request: web.Request) -> None:
    """``spdy.ResponseUpgrader``: the request must ask for ``Upgrade: SPDY/3.1``."""
    if ("upgrade" not in request.headers.get("Connection", "").lower()
            or "spdy/3.1" not in request.headers.get("Upgrade", "").lower()):
        raise Refused(400, "unable to upgrade: missing upgrade headers in request")
