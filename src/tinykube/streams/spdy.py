"""SPDY/3.1 framing: frames to bytes and bytes to frames, with zlib-compressed header blocks.

Only what Kubernetes' streaming protocols use (``moby/spdystream``, the client in kubectl):
every control frame of the draft except CREDENTIAL, and data frames with FIN.  Header blocks
are compressed with one zlib stream per direction for the whole connection, primed with the
SPDY/3 dictionary and flushed with ``Z_SYNC_FLUSH`` after each block, so a :class:`FrameWriter`
and a :class:`FrameReader` each live as long as their connection.  No I/O here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = ["DICTIONARY", "Data", "Frame", "FrameReader", "FrameWriter", "GoAway", "HeaderBlock", "Headers", "Kind", "Ping",
           "RstStream", "Settings", "SpdyError", "SynReply", "SynStream", "WindowUpdate"]

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
MAX_LENGTH = (1 << 24) - 1  # bytes: the frame header's 24-bit length field



class Kind(IntEnum):
    """Control frame types (draft 3, section 2.6)."""

    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


# RST_STREAM status codes (draft 3, section 2.4.2)
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6

HeaderBlock = dict[str, list[str]]  # lower-case name -> values (NUL-separated on the wire)

# The SPDY/3 draft's compression dictionary (moby/spdystream spdy/dictionary.go, 1423 bytes):
# length-prefixed header names and common values, then status lines, dates and MIME types.
_WORDS = ("options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
          "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
          "content-base", "content-encoding", "content-language", "content-length", "content-location",
          "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
          "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
          "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
          "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
          "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public",
          "set-cookie", "keep-alive", "origin")
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
         "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
         "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
         "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
         "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class SpdyError(Exception):
    """The peer broke the framing (bad version, a header block that does not decompress, ...)."""


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: HeaderBlock = field(default_factory=dict)
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: HeaderBlock = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class Headers:
    stream_id: int
    headers: HeaderBlock = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes = b""
    fin: bool = False


Frame = SynStream | SynReply | RstStream | Settings | Ping | GoAway | Headers | WindowUpdate | Data


# ---- writing -----------------------------------------------------------------------------------

class FrameWriter:
    """Frames to bytes, for one direction of one connection (it owns that direction's compressor)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, Data):
            return _data_frame(frame)
        kind, flags, payload = self._control(frame)
        if len(payload) > MAX_LENGTH:
            raise SpdyError(f"control frame of {len(payload)} bytes is too large")
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def _control(self, frame: Frame) -> tuple[Kind, int, bytes]:
        """(type, flags, payload) of a control frame."""
        match frame:
            case SynStream():
                flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
                head = struct.pack(">IIBB", frame.stream_id, frame.associated_id, (frame.priority & 7) << 5, 0)
                return Kind.SYN_STREAM, flags, head + self._block(frame.headers)
            case SynReply():
                return Kind.SYN_REPLY, _fin(frame.fin), struct.pack(">I", frame.stream_id) + self._block(frame.headers)
            case Headers():
                return Kind.HEADERS, _fin(frame.fin), struct.pack(">I", frame.stream_id) + self._block(frame.headers)
            case RstStream():
                return Kind.RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status)
            case Settings():
                entries = b"".join(struct.pack(">II", (f << 24) | i, v) for f, i, v in frame.entries)
                return Kind.SETTINGS, int(frame.clear), struct.pack(">I", len(frame.entries)) + entries
            case Ping():
                return Kind.PING, 0, struct.pack(">I", frame.id)
            case GoAway():
                return Kind.GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status)
            case WindowUpdate():
                return Kind.WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta)
        raise TypeError(f"not a SPDY frame: {frame!r}")

    def _block(self, headers: HeaderBlock) -> bytes:
        return self._deflate.compress(encode_headers(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


def _fin(fin: bool) -> int:
    return FLAG_FIN if fin else 0


def _data_frame(frame: Data) -> bytes:
    if len(frame.data) > MAX_LENGTH:
        raise SpdyError(f"data frame of {len(frame.data)} bytes is too large")
    return struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (_fin(frame.fin) << 24) | len(frame.data)) + frame.data


def encode_headers(headers: HeaderBlock) -> bytes:
    """The uncompressed header block: a count, then length-prefixed names and NUL-joined values."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n, v = name.lower().encode(), "\0".join(values).encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


# ---- reading -----------------------------------------------------------------------------------

class FrameReader:
    """Bytes to frames, for one direction of one connection: feed what arrives, get whole frames.

    Frames of unknown control types are skipped, as the draft requires.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if len(self._buffer) < 8 + length:
                break
            head, payload = bytes(self._buffer[:8]), bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            frame = self._frame(head, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _frame(self, head: bytes, payload: bytes) -> Frame | None:
        first, flags = struct.unpack(">I", head[:4])[0], head[4]
        if not first & 0x80000000:
            return Data(first, payload, bool(flags & FLAG_FIN))
        version, kind = first >> 16 & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        try:
            return self._control(kind, flags, payload)
        except struct.error:
            raise SpdyError(f"control frame of type {kind} is truncated") from None

    def _control(self, kind: int, flags: int, p: bytes) -> Frame | None:
        fin = bool(flags & FLAG_FIN)
        match kind:
            case Kind.SYN_STREAM:
                sid, assoc, prio = struct.unpack(">IIB", p[:9])
                return SynStream(sid & 0x7FFFFFFF, self._block(p[10:]), assoc & 0x7FFFFFFF, prio >> 5, fin,
                                 bool(flags & FLAG_UNIDIRECTIONAL))
            case Kind.SYN_REPLY:
                return SynReply(_stream_id(p), self._block(p[4:]), fin)
            case Kind.HEADERS:
                return Headers(_stream_id(p), self._block(p[4:]), fin)
            case Kind.RST_STREAM:
                return RstStream(_stream_id(p), struct.unpack(">I", p[4:8])[0])
            case Kind.SETTINGS:
                count = struct.unpack(">I", p[:4])[0]
                pairs = [struct.unpack(">II", p[4 + 8 * i:12 + 8 * i]) for i in range(count)]
                return Settings(tuple((fi >> 24, fi & 0xFFFFFF, v) for fi, v in pairs), bool(flags & 1))
            case Kind.PING:
                return Ping(struct.unpack(">I", p[:4])[0])
            case Kind.GOAWAY:
                last, status = struct.unpack(">II", p[:8]) if len(p) >= 8 else (struct.unpack(">I", p[:4])[0], 0)
                return GoAway(last & 0x7FFFFFFF, status)
            case Kind.WINDOW_UPDATE:
                return WindowUpdate(_stream_id(p), struct.unpack(">I", p[4:8])[0] & 0x7FFFFFFF)
        return None

    def _block(self, compressed: bytes) -> HeaderBlock:
        try:
            raw = self._inflate.decompress(compressed)
        except zlib.error as e:
            raise SpdyError(f"header block does not decompress: {e}") from None
        return decode_headers(raw)


def _stream_id(payload: bytes) -> int:
    return int(struct.unpack(">I", payload[:4])[0]) & 0x7FFFFFFF


def decode_headers(raw: bytes) -> HeaderBlock:
    """The uncompressed header block back to names and values (names lower-cased)."""
    try:
        count, = struct.unpack(">I", raw[:4])
        pos, headers = 4, HeaderBlock()
        for _ in range(count):
            name, pos = _string(raw, pos)
            value, pos = _string(raw, pos)
            headers.setdefault(name.lower(), []).extend(value.split("\0"))
    except (struct.error, UnicodeDecodeError):
        raise SpdyError("malformed header block") from None
    return headers


def _string(raw: bytes, pos: int) -> tuple[str, int]:
    length, = struct.unpack(">I", raw[pos:pos + 4])
    end = pos + 4 + length
    if end > len(raw):
        raise struct.error("string runs past the block")
    return raw[pos + 4:end].decode(), end
