"""The node's streaming endpoints over real sockets: refusals, and port-forward by SPDY, SPDY in WebSocket,
and through the API server's byte relay.  The "pod" is this process's own network namespace (setns to
it needs root), and the pod's port is a local echo server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tinykube.apiserver import upgradeproxy
from tinykube.node.server import build
from tinykube.node.streaming import ContainerRef, Refused, SandboxRef
from tinykube.streams import spdy

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="entering a network namespace needs CAP_SYS_ADMIN")


class FakeTargets:
    """One pod, "web", whose network namespace is ours; it has no running container."""

    def container(self, namespace: str, pod: str, container: str) -> ContainerRef:
        raise Refused(404, "pod does not exist") if pod != "web" else Refused(500, f'container not found ("{container}")')

    def sandbox(self, namespace: str, pod: str) -> SandboxRef:
        if pod != "web":
            raise Refused(404, "pod does not exist")
        return SandboxRef("uid-1", Path("/proc/self/ns/net"))


def no_logs(namespace: str, pod: str, container: str, previous: bool) -> tuple[str, Callable[[], bool]]:
    raise AssertionError("not used")


@pytest.fixture
async def node() -> AsyncIterator[TestServer]:
    server = TestServer(build(no_logs, FakeTargets()))
    async with server:
        yield server


def port_of(server: TestServer) -> int:
    assert server.port is not None
    return server.port


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


class SpdyClient:
    """kubectl's side of a SPDY port-forward, over a raw connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.out, self.inp = spdy.FrameWriter(), spdy.FrameReader()
        self.pending: list[spdy.Frame] = []

    @classmethod
    async def upgrade(cls, port: int, path: str) -> tuple[SpdyClient, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     f"X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n".encode())
        return cls(reader, writer), await reader.readuntil(b"\r\n\r\n")

    def send(self, *frames: spdy.Frame) -> None:
        self.writer.write(b"".join(self.out.encode(f) for f in frames))

    async def frame(self) -> spdy.Frame:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            assert data, "connection closed"
            self.pending += self.inp.feed(data)
        return self.pending.pop(0)

    async def frames_until(self, last: spdy.Frame) -> list[spdy.Frame]:
        frames = [await self.frame()]
        while frames[-1] != last:
            frames.append(await self.frame())
        return frames


def pair(request_id: str, port: int, first_id: int) -> list[spdy.Frame]:
    headers = {"port": [str(port)], "requestid": [request_id]}
    return [spdy.SynStream(first_id, {"streamtype": ["error"], **headers}), spdy.Data(first_id, b"", fin=True),
            spdy.SynStream(first_id + 2, {"streamtype": ["data"], **headers})]


async def forward_one(client: SpdyClient, port: int) -> list[spdy.Frame]:
    client.send(*pair("0", port, 1), spdy.Data(3, b"hello"), spdy.Data(3, b"", fin=True), spdy.Ping(1))
    return await client.frames_until(spdy.Data(1, b"", fin=True))


async def test_refusals_are_plain_text_before_any_upgrade(node: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        for path, query, code, text in [
            ("/exec/default/web/nginx", "command=true", 400, "you must specify at least 1 of stdin, stdout, stderr"),
            ("/exec/default/nope/nginx", "stdout=1", 404, "pod does not exist"),
            ("/attach/default/web/nginx", "stdout=1", 500, 'container not found ("nginx")'),
            ("/portForward/default/nope", "", 404, "pod does not exist"),
        ]:
            async with http.post(node.make_url(f"{path}?{query}")) as resp:
                assert (resp.status, (await resp.text()).strip()) == (code, text)


@needs_root
async def test_port_forward_over_spdy(node: TestServer, echo_port: int) -> None:
    client, head = await SpdyClient.upgrade(port_of(node), "/portForward/default/web")
    assert head.startswith(b"HTTP/1.1 101") and b"X-Stream-Protocol-Version: portforward.k8s.io" in head
    frames = await forward_one(client, echo_port)
    assert spdy.Ping(1) in frames and spdy.SynReply(1) in frames and spdy.SynReply(3) in frames
    data = [f for f in frames if isinstance(f, spdy.Data)]
    assert data == [spdy.Data(3, b"hello"), spdy.Data(3, b"", fin=True), spdy.Data(1, b"", fin=True)]
    client.writer.close()


@needs_root
async def test_many_connections_at_once_and_errors_on_the_error_stream(node: TestServer, echo_port: int) -> None:
    client, _ = await SpdyClient.upgrade(port_of(node), "/portForward/default/web")
    for n in range(20):
        client.send(*pair(str(n), echo_port, 4 * n + 1), spdy.Data(4 * n + 3, f"req{n}".encode()),
                    spdy.Data(4 * n + 3, b"", fin=True))
    frames = [await client.frame() for _ in range(20 * 5)]  # 2 replies, data, 2 FINs per connection
    assert {f.data for f in frames if isinstance(f, spdy.Data) and f.data} == {f"req{n}".encode() for n in range(20)}
    with_socket_closed = await closed_port()
    client.send(*pair("x", with_socket_closed, 81))
    frames = await client.frames_until(spdy.Data(81, b"", fin=True))
    message = next(f.data for f in frames if isinstance(f, spdy.Data) and f.stream_id == 81 and f.data).decode()
    assert message == (f"error forwarding port {with_socket_closed} to pod uid-1, uid : failed to connect to "
                       f'localhost:{with_socket_closed} inside namespace "uid-1": dial tcp4 127.0.0.1:'
                       f"{with_socket_closed}: connect: connection refused")
    client.writer.close()


@needs_root
async def test_port_forward_tunnelled_in_a_websocket(node: TestServer, echo_port: int) -> None:
    out, inp = spdy.FrameWriter(), spdy.FrameReader()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(node.make_url("/portForward/default/web"),
                                   protocols=["SPDY/3.1+portforward.k8s.io"]) as ws:
            assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
            for frame in pair("0", echo_port, 1) + [spdy.Data(3, b"hi"), spdy.Data(3, b"", fin=True)]:
                await ws.send_bytes(out.encode(frame))  # message boundaries mean nothing
            frames: list[spdy.Frame] = []
            while spdy.Data(1, b"", fin=True) not in frames:
                frames += inp.feed((await asyncio.wait_for(ws.receive(), 5)).data)
            assert spdy.Data(3, b"hi") in frames


@needs_root
async def test_the_api_server_relays_the_upgraded_connection(node: TestServer, echo_port: int) -> None:
    async def proxy(request: web.Request) -> web.StreamResponse:
        return await upgradeproxy.relay(request, None, "127.0.0.1", port_of(node), request.path_qs)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    apiserver = TestServer(app)
    async with apiserver:
        client, head = await SpdyClient.upgrade(port_of(apiserver), "/portForward/default/web")
        assert head.startswith(b"HTTP/1.1 101")
        frames = await forward_one(client, echo_port)
        assert spdy.Data(3, b"hello") in frames
        client.writer.close()
        refused, head = await SpdyClient.upgrade(port_of(apiserver), "/portForward/default/nope")
        assert head.startswith(b"HTTP/1.1 404") and b"Content-Length: 19" in head
        assert await refused.reader.readexactly(19) == b"pod does not exist\n"
        refused.writer.close()


async def closed_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port
