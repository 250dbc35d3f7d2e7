"""The agent's log endpoint (the kubelet's /containerLogs) through aiohttp's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tinykube.api.errors import bad_request, not_found
from tinykube.node.server import build

URL = "/containerLogs/default/web/nginx"
LOG = (b"2024-05-01T10:00:01.5Z stdout F one\n"
       b"2024-05-01T10:00:02Z stderr F two\n"
       b"2099-01-01T00:00:00Z stdout F future\n")


class FakeNode:
    """A ``locate`` that serves one log file and remembers what it was asked."""

    def __init__(self, log_file: Path):
        self.log_file = log_file
        self.calls: list[tuple[str, str, str, bool]] = []
        self.error: Exception | None = None

    def locate(self, namespace: str, pod: str, container: str, previous: bool) -> tuple[str, Callable[[], bool]]:
        self.calls.append((namespace, pod, container, previous))
        if self.error is not None:
            raise self.error
        return str(self.log_file), lambda: False


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    path = tmp_path / "0.log"
    path.write_bytes(LOG)
    return FakeNode(path)


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build(node.locate))) as c:
        yield c


async def get(client: TestClient[Any, Any], **query: str) -> tuple[int, str, bytes]:
    resp = await client.get(URL, params=query)
    return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_whole_log_as_plain_text(client: TestClient[Any, Any], node: FakeNode) -> None:
    status, content_type, body = await get(client)
    assert (status, body) == (200, b"one\ntwo\nfuture\n")
    assert content_type.startswith("text/plain")
    assert node.calls == [("default", "web", "nginx", False)]


@pytest.mark.parametrize(("query", "expected"), [
    ({"tailLines": "1"}, b"future\n"),
    ({"tailLines": "0"}, b""),
    ({"limitBytes": "5"}, b"one\nt"),
    ({"timestamps": "true", "tailLines": "2"},
     b"2024-05-01T10:00:02.000000000Z two\n2099-01-01T00:00:00.000000000Z future\n"),
    ({"timestamps": "false", "tailLines": "1"}, b"future\n"),
    ({"sinceTime": "2024-05-01T10:00:02Z"}, b"two\nfuture\n"),
    ({"sinceSeconds": "3600"}, b"future\n"),
    ({"follow": "true"}, b"one\ntwo\nfuture\n"),  # the container is not running: follow ends at the end of the file
])
async def test_query_options(client: TestClient[Any, Any], query: dict[str, str], expected: bytes) -> None:
    status, _, body = await get(client, **query)
    assert (status, body) == (200, expected)


async def test_previous_is_passed_to_locate(client: TestClient[Any, Any], node: FakeNode) -> None:
    await get(client, previous="true")
    assert node.calls == [("default", "web", "nginx", True)]


@pytest.mark.parametrize("error", [
    bad_request('container "nginx" in pod "web" is waiting to start: ContainerCreating'),
    bad_request('previous terminated container "nginx" in pod "web" not found'),
    not_found("pods", "web"),
])
async def test_locate_errors_are_status_bodies(client: TestClient[Any, Any], node: FakeNode, error: Any) -> None:
    node.error = error
    resp = await client.get(URL)
    assert resp.status == error.code
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == error.status()
    assert (await resp.json())["kind"] == "Status"


async def test_a_bad_number_is_a_bad_request(client: TestClient[Any, Any]) -> None:
    resp = await client.get(URL, params={"tailLines": "many"})
    assert resp.status == 400
    body = await resp.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "BadRequest", 400)
    assert body["message"] == "invalid tailLines: many"


async def test_a_bad_since_time_is_a_bad_request(client: TestClient[Any, Any]) -> None:
    resp = await client.get(URL, params={"sinceTime": "yesterday"})
    assert resp.status == 400


async def test_healthz(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz")
    assert (resp.status, await resp.text()) == (200, "ok")
