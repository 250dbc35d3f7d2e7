"""Kubernetes' WebSocket channel framing for exec and attach (``channel.k8s.io`` and its versions).

Each WebSocket message carries one channel's bytes: the first byte names the channel (0 stdin,
1 stdout, 2 stderr, 3 error, 4 resize), the rest is data.  The ``base64.`` protocols send text
messages instead, the channel as an ASCII digit and the data base64-encoded.  From v4 the error
channel carries a ``metav1.Status`` as JSON (exit codes); v5 adds the client's half-close, a
message ``[255, channel]``.  The table follows the kubelet's ``remotecommand/websocket.go``
and apimachinery's ``wsstream``; no I/O here.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

__all__ = ["CLOSE", "ERROR", "PROTOCOLS", "RESIZE", "STDERR", "STDIN", "STDOUT", "ChannelProtocol", "Close", "Message",
           "SizeDecoder", "TerminalSize", "decode", "encode"]

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: "the client will send no more on the channel that follows"
MAX_SIZE_JSON = 4096  # bytes: a terminal size object is far smaller; more without one decoding is garbage


@dataclass(frozen=True)
class ChannelProtocol:
    """One ``Sec-WebSocket-Protocol`` the server speaks and what it implies."""

    name: str
    version: int  # 1 for the unversioned protocols
    base64: bool = False

    @property
    def status_json(self) -> bool:
        """v4 and later write a Status JSON on the error channel (earlier: a failure's message only)."""
        return self.version >= 4

    @property
    def half_close(self) -> bool:
        return self.version >= 5


# In the kubelet's order of preference; "" is a client that asked for no subprotocol.
PROTOCOLS: dict[str, ChannelProtocol] = {p.name: p for p in (
    ChannelProtocol("v5.channel.k8s.io", 5), ChannelProtocol("v5.base64.channel.k8s.io", 5, True),
    ChannelProtocol("v4.channel.k8s.io", 4), ChannelProtocol("v4.base64.channel.k8s.io", 4, True),
    ChannelProtocol("v3.channel.k8s.io", 3), ChannelProtocol("v2.channel.k8s.io", 2),
    ChannelProtocol("channel.k8s.io", 1), ChannelProtocol("base64.channel.k8s.io", 1, True),
    ChannelProtocol("", 1))}


@dataclass(frozen=True)
class Message:
    """Data for one channel."""

    channel: int
    data: bytes


@dataclass(frozen=True)
class Close:
    """The client half-closed a channel (v5)."""

    channel: int


def encode(protocol: ChannelProtocol, channel: int, data: bytes) -> bytes | str:
    """One server message: bytes for a binary protocol, text for a base64 one."""
    if protocol.base64:
        return chr(ord("0") + channel) + base64.b64encode(data).decode()
    return bytes((channel,)) + data


def decode(protocol: ChannelProtocol, message: bytes | str) -> Message | Close | None:
    """A client message; None for an empty one or one that breaks the framing (the kubelet skips both)."""
    raw = message.encode() if isinstance(message, str) else message
    if not raw:
        return None
    if protocol.half_close and raw[0] == CLOSE:
        if len(raw) != 2:
            return None
        return Close(raw[1] - ord("0") if protocol.base64 else raw[1])
    if not protocol.base64:
        return Message(raw[0], raw[1:])
    try:
        return Message(raw[0] - ord("0"), base64.b64decode(raw[1:], validate=True))
    except binascii.Error:
        return None


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


class SizeDecoder:
    """Terminal sizes from the resize channel or stream: JSON objects one after another, in any chunks.

    As Go's ``json.Decoder`` into ``remotecommand.TerminalSize``: keys match case-insensitively,
    missing ones are 0; anything that is not JSON ends the stream (the kubelet stops reading).
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._json = json.JSONDecoder()
        self.broken = False

    def feed(self, data: bytes) -> list[TerminalSize]:
        if self.broken:
            return []
        self._buffer += data.decode(errors="replace")
        sizes: list[TerminalSize] = []
        while self._buffer.strip():
            text = self._buffer.lstrip()
            try:
                value, end = self._json.raw_decode(text)
            except json.JSONDecodeError:
                # incomplete, unless it cannot be a size object or has grown past any size object
                self.broken = not text.startswith("{") or len(text) > MAX_SIZE_JSON
                return sizes
            self._buffer = text[end:]
            sizes.append(_size(value))
        return sizes


def _size(value: object) -> TerminalSize:
    fields = {k.lower(): v for k, v in value.items()} if isinstance(value, dict) else {}
    return TerminalSize(_uint16(fields.get("width")), _uint16(fields.get("height")))


def _uint16(value: object) -> int:
    return value if isinstance(value, int) and 0 <= value <= 0xFFFF else 0
