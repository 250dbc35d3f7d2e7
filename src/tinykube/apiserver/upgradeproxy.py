"""Relaying an upgraded connection to a node agent byte for byte, as kube-apiserver's UpgradeAwareHandler.

The request goes to the node with the headers an upgrade needs; the node's answer decides:
``101`` is passed on to the client with the node's headers, and from then on the two
connections are spliced until either side ends (WebSocket, SPDY and SPDY-in-WebSocket alike:
the node speaks the protocol, we only copy).  Any other answer is returned as it came (the
kubelet's plain-text refusals are what kubectl prints).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from aiohttp import web
from multidict import CIMultiDict

from tinykube.api.errors import ApiError
from tinykube.streams.upgrade import ByteStream, accept

__all__ = ["relay"]

FORWARDED = ("Connection", "Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
             "X-Stream-Protocol-Version", "User-Agent")
HOP_BY_HOP = ("Content-Length", "Transfer-Encoding", "Date", "Server")  # aiohttp writes its own
MAX_HEAD = 64 * 1024  # bytes of status line and headers accepted from the node
CONNECT_TIMEOUT = 10.0  # seconds to reach the node (kube-apiserver dials the kubelet with a similar bound)
CLOSE_TIMEOUT = 1.0  # seconds for the node to acknowledge our TLS close; the answer must not wait longer
CHUNK = 65536


async def relay(request: web.Request, tls: ssl.SSLContext | None, host: str, port: int,
                target: str) -> web.StreamResponse:
    """Send ``request`` to ``host:port`` + ``target`` (over ``tls`` when given); relay the answer, and after a
    101 the connection."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise ApiError(500, "InternalError", f"error dialing backend: dial tcp {_join(host, port)}: {e}") from None
    try:
        writer.write(_request_head(request, host, port, target))
        status, reason, headers = await _response_head(reader)
        if status != 101:
            return await _plain_answer(reader, status, reason, headers)
        client = await accept(request, _passed_on(headers))
        await _splice(client, reader, writer)
        return client.response
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _request_head(request: web.Request, host: str, port: int, target: str) -> bytes:
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {_join(host, port)}"]
    lines += [f"{name}: {value}" for name in FORWARDED for value in request.headers.getall(name, [])]
    if request.method == "POST":
        lines.append("Content-Length: 0")  # upgrade requests carry no body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _response_head(reader: asyncio.StreamReader) -> tuple[int, str, CIMultiDict[str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as e:
        raise ApiError(500, "InternalError", f"error proxying to the node: {e}") from None
    if len(head) > MAX_HEAD:
        raise ApiError(500, "InternalError", "error proxying to the node: response head too large")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    headers: CIMultiDict[str] = CIMultiDict()
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def _plain_answer(reader: asyncio.StreamReader, status: int, reason: str,
                        headers: CIMultiDict[str]) -> web.Response:
    """A refusal: its body (Content-Length, else to EOF) with its status and type."""
    length = headers.get("Content-Length")
    body = await (reader.readexactly(int(length)) if length and length.isdigit() else reader.read())
    return web.Response(status=status, reason=reason or None, body=body,
                        headers={"Content-Type": headers.get("Content-Type", "text/plain")})


def _passed_on(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.title() not in HOP_BY_HOP)


async def _splice(client: ByteStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy both ways until either side ends, then close both (UpgradeAwareHandler does the same)."""
    async def to_node() -> None:
        while data := await client.read():
            writer.write(data)
            await writer.drain()

    async def to_client() -> None:
        while data := await reader.read(CHUNK):
            await client.write(data)

    tasks = [asyncio.create_task(to_node()), asyncio.create_task(to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
