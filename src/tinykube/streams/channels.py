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
from dataclasses import dataclass

__all__ = ["CLOSE", "ERROR", "PROTOCOLS", "RESIZE", "STDERR", "STDIN", "STDOUT", "ChannelProtocol", "Close", "Message",
           "decode", "encode"]

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: "the client will send no more on the channel that follows"


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
