"""The bytes of an upgraded HTTP connection, taken over from aiohttp, and byte streams over WebSocket.

aiohttp upgrades only to WebSocket; SPDY/3.1 (``POST`` with ``Upgrade: SPDY/3.1``) and a
byte-for-byte relay need the raw connection after the ``101``.  :func:`accept` answers 101 and
installs a payload parser that hands every later byte to a :class:`asyncio.StreamReader` (which
pauses the transport when it fills: back-pressure), as aiohttp's own WebSocket response does.
:class:`WebSocketBytes` makes the binary messages of a WebSocket one byte stream, which is how
kubectl tunnels SPDY for port-forward (``SPDY/3.1+portforward.k8s.io``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from aiohttp import WSMsgType, web

__all__ = ["ByteStream", "UpgradedConnection", "WebSocketBytes", "accept", "header_values"]

READ_LIMIT = 256 * 1024  # bytes buffered from the peer before its transport is paused


class ByteStream(Protocol):
    """Both directions of a connection as bytes; ``read`` returns b"" at the end."""

    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class _Feed:
    """The payload parser aiohttp calls with every byte after the upgrade (see ``RequestHandler.set_parser``)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class UpgradedConnection:
    """An HTTP connection after our ``101 Switching Protocols``: raw bytes both ways."""

    def __init__(self, request: web.Request, response: web.StreamResponse, reader: asyncio.StreamReader) -> None:
        self.response = response  # what the handler returns to aiohttp once done
        self._request = request
        self._reader = reader

    async def read(self) -> bytes:
        try:
            return await self._reader.read(65536)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        await self.response.write(data)

    async def close(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.close()


async def accept(request: web.Request, headers: Mapping[str, str]) -> UpgradedConnection:
    """Answer ``101`` with ``headers`` and take over the connection's bytes from then on."""
    protocol, transport = request.protocol, request.transport
    if transport is None:
        raise ConnectionResetError("the client went away before the upgrade")
    reader = asyncio.StreamReader(limit=READ_LIMIT)
    reader.set_transport(transport)
    protocol.set_parser(_Feed(reader))  # type: ignore[arg-type]  # duck-typed like aiohttp's WebSocketReader
    response = web.StreamResponse(status=101, reason="Switching Protocols", headers=headers)
    response.force_close()  # nothing HTTP follows on this connection
    await response.prepare(request)
    return UpgradedConnection(request, response, reader)


def header_values(request: web.Request, name: str) -> list[str]:
    """Every value of a header that may repeat or be comma-joined (``X-Stream-Protocol-Version``)."""
    return [v.strip() for line in request.headers.getall(name, []) for v in line.split(",") if v.strip()]


class WebSocketBytes:
    """The binary messages of a WebSocket, concatenated, as one byte stream each way.

    Message boundaries mean nothing; a text message is a protocol error and ends the stream,
    as does the peer's close.  Pings are answered by aiohttp (``autoping``).
    """

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.response = ws
        self._ws = ws

    async def read(self) -> bytes:
        while True:
            msg = await self._ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
                continue
            return b""

    async def write(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self) -> None:
        await self._ws.close()
