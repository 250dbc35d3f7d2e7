"""gRPC health probes: one ``grpc.health.v1.Health/Check`` call over plaintext HTTP/2, as the kubelet's.

It follows ``pkg/probe/grpc/grpc.go``: dial with ``WithBlock`` (connection errors are retried
until the probe's timeout, which then reads ``timeout: failed to connect service "H:P" within 1s:
context deadline exceeded``), call Check with the service name, and succeed only on ``SERVING``;
every other outcome is a failure worded as upstream words it.

No grpcio: a gRPC unary call is one HTTP/2 stream (headers, one length-prefixed message each
way, ``grpc-status`` in the trailers), spoken here with the sans-I/O ``h2`` package on asyncio
streams, and the two messages (``HealthCheckRequest{string service = 1}``,
``HealthCheckResponse{ServingStatus status = 1}``) are encoded by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import struct
from dataclasses import dataclass, field
from urllib.parse import unquote

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (ConnectionTerminated, DataReceived, Event, RemoteSettingsChanged, ResponseReceived,
                       StreamEnded, StreamReset, TrailersReceived)
from h2.exceptions import ProtocolError

from tinykube.node.stats import go_duration

__all__ = ["GrpcError", "decode_response", "encode_request", "grpc_timeout", "health_check"]

CHECK_PATH = "/grpc.health.v1.Health/Check"
GRPC_GO = "grpc-go/1.65.0"  # the grpc-go of Kubernetes 1.32; grpc-go appends it to the User-Agent
RECONNECT_BACKOFF = 1.0  # seconds: grpc-go's base reconnect delay while a blocking dial waits
READ_SIZE = 65536
MAX_TIMEOUT_VALUE = 99_999_999  # grpc-timeout carries at most eight digits
SERVING = 1
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
CODES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
         "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
         "Internal", "Unavailable", "DataLoss", "Unauthenticated")
CANCELED, UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 1, 2, 4, 12, 13, 14
# grpc-go's http2ErrConvTab and HTTPStatusConvTab: RST_STREAM codes and HTTP statuses as gRPC codes
RESET_CODES = {ErrorCodes.CANCEL: CANCELED, ErrorCodes.REFUSED_STREAM: UNAVAILABLE, ErrorCodes.ENHANCE_YOUR_CALM: 8,
               ErrorCodes.INADEQUATE_SECURITY: 7}
HTTP_CODES = {400: INTERNAL, 401: 16, 403: 7, 404: UNIMPLEMENTED, 429: UNAVAILABLE, 502: UNAVAILABLE,
              503: UNAVAILABLE, 504: UNAVAILABLE}


class GrpcError(Exception):
    """A call that ended with a non-OK status, printed as grpc-go prints ``status.Error``."""

    def __init__(self, code: int, message: str) -> None:
        name = CODES[code] if 0 <= code < len(CODES) else f"Code({code})"
        super().__init__(f"rpc error: code = {name} desc = {message}")
        self.code = code
        self.message = message


class _Dropped(Exception):
    """The connection ended (EOF, GOAWAY, or bytes that are not HTTP/2)."""


# ---- the two messages ------------------------------------------------------------------------

def encode_request(service: str) -> bytes:
    """``HealthCheckRequest{service}`` in gRPC's framing: flag 0 (uncompressed), 4-byte length, message."""
    name = service.encode()
    message = b"\x0a" + _varint(len(name)) + name if name else b""  # proto3 omits an empty string
    return struct.pack(">BI", 0, len(message)) + message


def decode_response(body: bytes) -> int:
    """The ``status`` of a framed ``HealthCheckResponse`` (0, UNKNOWN, when absent); other fields are skipped."""
    if len(body) < 5:
        raise GrpcError(INTERNAL, "server closed the stream without sending a response message")
    compressed, length = struct.unpack(">BI", body[:5])
    if compressed:
        raise GrpcError(INTERNAL, "grpc: compressed flag set with identity or empty encoding")
    message, status, i = body[5:5 + length], 0, 0
    while i < len(message):
        key, i = _read_varint(message, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(message, i)
            status = value if number == 1 else status
        elif wire == 2:
            size, i = _read_varint(message, i)
            i += size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise GrpcError(INTERNAL, f"grpc: failed to unmarshal the received message: bad wire type {wire}")
    return status


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while i < len(data):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i
    raise GrpcError(INTERNAL, "grpc: failed to unmarshal the received message: unexpected EOF")


def grpc_timeout(seconds: float) -> str:
    """The ``grpc-timeout`` header as grpc-go encodes it: the finest unit that fits eight digits, rounded up."""
    if seconds <= 0:
        return "0n"
    ns = round(seconds * 1e9)
    for unit, size in (("n", 1), ("u", 10**3), ("m", 10**6), ("S", 10**9), ("M", 60 * 10**9)):
        value = -(-ns // size)
        if value <= MAX_TIMEOUT_VALUE:
            return f"{value}{unit}"
    return f"{-(-ns // (3600 * 10**9))}H"


# ---- one HTTP/2 connection -------------------------------------------------------------------

@dataclass
class _Call:
    """What arrived on the call's stream."""

    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    reset: ErrorCodes | None = None
    ended: bool = False
    goaway: str = ""  # the server ended the connection: an error unless the stream ended too


class _Connection:
    """A client HTTP/2 connection, ready once the server's SETTINGS arrived (grpc-go's READY)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        """Connect and finish the HTTP/2 handshake: what grpc-go's blocking dial waits for."""
        reader, writer = await asyncio.open_connection(host, port)
        conn = cls(reader, writer)
        try:
            conn.h2.initiate_connection()
            conn._flush()
            while not any(isinstance(e, RemoteSettingsChanged) for e in await conn._receive()):
                pass
        except BaseException:
            conn.close()
            raise
        return conn

    async def call(self, path: str, authority: str, message: bytes, user_agent: str, timeout: float) -> _Call:
        """One unary call: headers and the message, then everything until the stream ends."""
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, [
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority),
            ("content-type", "application/grpc"), ("user-agent", user_agent), ("te", "trailers"),
            ("grpc-timeout", grpc_timeout(timeout))])
        self.h2.send_data(stream, message, end_stream=True)
        self._flush()
        call = _Call()
        while not call.ended:
            for event in await self._receive():
                _record(call, stream, event)
            if call.goaway and not call.ended:
                raise _Dropped(call.goaway)
        return call

    async def _receive(self) -> list[Event]:
        data = await self.reader.read(READ_SIZE)
        if not data:
            raise _Dropped("EOF")
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as e:
            raise _Dropped(f"http2: {e}") from None
        for event in events:
            if isinstance(event, DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self._flush()
        return events

    def _flush(self) -> None:
        self.writer.write(self.h2.data_to_send())

    def close(self) -> None:
        """GOAWAY and close; nothing to wait for."""
        with contextlib.suppress(ProtocolError):
            self.h2.close_connection()
            self._flush()
        self.writer.close()


def _record(call: _Call, stream: int, event: Event) -> None:
    """Add one HTTP/2 event of our stream (or the connection's end) to the call."""
    if isinstance(event, ConnectionTerminated):
        code = event.error_code.name if isinstance(event.error_code, ErrorCodes) else event.error_code
        call.goaway = f"http2: server sent GOAWAY and closed the connection; ErrCode={code}"
    if getattr(event, "stream_id", None) != stream:
        return
    if isinstance(event, ResponseReceived):
        call.headers = dict(event.headers)  # str pairs: the connection decodes headers
    elif isinstance(event, DataReceived):
        call.body += event.data or b""
    elif isinstance(event, TrailersReceived):
        call.trailers = dict(event.headers)
    elif isinstance(event, StreamReset):
        call.reset, call.ended = ErrorCodes(event.error_code), True
    elif isinstance(event, StreamEnded):
        call.ended = True


def _serving_status(call: _Call) -> int:
    """The health status the call answered, or the GrpcError grpc-go would return for it."""
    if call.reset is not None:
        raise GrpcError(RESET_CODES.get(call.reset, INTERNAL),
                        f"stream terminated by RST_STREAM with error code: {call.reset.name}")
    http_status = int(call.headers.get(":status", "0"))
    if http_status != 200:
        raise GrpcError(HTTP_CODES.get(http_status, UNKNOWN),
                        f"unexpected HTTP status code received from server: {http_status} ({_phrase(http_status)})")
    final = call.trailers or call.headers  # a "trailers-only" answer puts grpc-status in the headers
    if "grpc-status" not in final:
        raise GrpcError(INTERNAL, "server closed the stream without sending trailers")
    code = int(final["grpc-status"])
    if code != 0:
        raise GrpcError(code, unquote(final.get("grpc-message", "")))
    return decode_response(call.body)


def _phrase(status: int) -> str:
    """Go's ``http.StatusText``: "Not Found" for 404, "" for a code it does not know."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


# ---- the probe -------------------------------------------------------------------------------

async def _dial(host: str, port: int) -> _Connection:
    """Connect, retrying every :data:`RECONNECT_BACKOFF` until cancelled (the caller's deadline)."""
    while True:
        try:
            return await _Connection.open(host, port)
        except (OSError, _Dropped):
            await asyncio.sleep(RECONNECT_BACKOFF)


async def health_check(host: str, port: int, service: str, timeout: float, user_agent: str) -> tuple[bool, str]:
    """``grpcProber.Probe``: (success, output), success only when the service answers SERVING."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            conn = await _dial(host, port)
    except TimeoutError:
        return False, (f'timeout: failed to connect service "{address}" within {go_duration(timeout)}: '
                       "context deadline exceeded")
    try:
        async with asyncio.timeout_at(deadline):
            left = deadline - asyncio.get_running_loop().time()
            call = await conn.call(CHECK_PATH, address, encode_request(service), f"{user_agent} {GRPC_GO}", left)
        status = _serving_status(call)
    except TimeoutError:
        return False, f"timeout: health rpc did not complete within {go_duration(timeout)}"
    except _Dropped as e:
        return _failed(GrpcError(UNAVAILABLE, f"error reading from server: {e}"), timeout)
    except GrpcError as e:
        return _failed(e, timeout)
    finally:
        conn.close()
    if status != SERVING:
        return False, f'service unhealthy (responded with "{STATUS_NAMES.get(status, str(status))}")'
    return True, "service healthy"


def _failed(error: GrpcError, timeout: float) -> tuple[bool, str]:
    """A failed call in the kubelet's words, which single out Unimplemented and DeadlineExceeded."""
    if error.code == UNIMPLEMENTED:
        return False, ("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "
                       f"{error.message}")
    if error.code == DEADLINE_EXCEEDED:
        return False, f"timeout: health rpc did not complete within {go_duration(timeout)}"
    return False, f"error: health rpc probe failed: {error}"
