"""Client.reset: a watch stuck on a silent connection fails at once, and the client works on."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tinykube.client.rest import Client, Credentials
from tinykube.pki import self_signed


async def silent_watch(request: web.Request) -> web.StreamResponse:
    """Starts a watch response and then says nothing, as a server behind a cut link."""
    response = web.StreamResponse()
    await response.prepare(request)
    await asyncio.sleep(3600)
    return response


async def namespace(request: web.Request) -> web.Response:
    return web.json_response({"kind": "Namespace", "metadata": {"name": "default"}})


async def test_reset_ends_a_silent_watch_and_the_client_carries_on(tmp_path: Path) -> None:
    cert, key = str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
    self_signed("server", ["127.0.0.1"], cert, key)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/api/v1/pods", silent_watch)
    app.router.add_get("/api/v1/namespaces/default", namespace)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=serving)
    await site.start()
    port = runner.addresses[0][1]
    client = Client(Credentials(f"https://127.0.0.1:{port}", cert))
    try:
        waiting = asyncio.create_task(anext(client.watch("/api/v1/pods", "1")))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await client.reset("test")
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(waiting, 2)
        assert (await client.get("/api/v1/namespaces/default"))["metadata"]["name"] == "default"
    finally:
        await client.close()
        await runner.cleanup()
