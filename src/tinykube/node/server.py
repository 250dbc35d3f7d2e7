"""The node agent's HTTPS endpoint, as the kubelet's port 10250: container logs, resource stats (exec later).

Only the API server calls it (proxying ``pods/log``, reading stats); callers must present a client certificate
signed by the cluster CA.  The agent supplies ``locate``, which maps (namespace, pod, container,
previous) to a log file and a "still running" predicate, or raises an ApiError with the
kubelet's wording.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import AsyncIterator, Callable, Mapping

import orjson
from aiohttp import web

from tinykube.api.errors import ApiError, bad_request
from tinykube.node import streaming
from tinykube.node.logs import LogOptions, read
from tinykube.node.stats import NodeStats

Locate = Callable[[str, str, str, bool], tuple[str, Callable[[], bool]]]
LOCATE: web.AppKey[Locate] = web.AppKey("locate")
STATS: web.AppKey[NodeStats] = web.AppKey("stats", NodeStats)
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"  # what the kubelet's /metrics/resource answers with


def options(query: Mapping[str, str]) -> LogOptions:
    """kubectl's log options from the query string (kubelet's PodLogOptions)."""
    def integer(name: str) -> int | None:
        value = query.get(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise bad_request(f"invalid {name}: {value}") from None

    since: datetime.datetime | None = None
    if query.get("sinceSeconds"):
        seconds = integer("sinceSeconds") or 0
        since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    elif query.get("sinceTime"):
        try:
            since = datetime.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f'parsing time "{query["sinceTime"]}" as "2006-01-02T15:04:05Z07:00": cannot parse') from None
    return LogOptions(tail_lines=integer("tailLines"), since=since,
                      timestamps=query.get("timestamps") == "true", limit_bytes=integer("limitBytes"),
                      follow=query.get("follow") == "true")


async def container_logs(request: web.Request) -> web.StreamResponse:
    mi = request.match_info
    try:
        log_path, running = request.app[LOCATE](mi["namespace"], mi["pod"], mi["container"],
                                                request.query.get("previous") == "true")
        opts = options(request.query)
    except ApiError as e:
        return web.Response(body=orjson.dumps(e.status()), status=e.code, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    async for chunk in read(log_path, opts, running):
        await response.write(chunk)
    await response.write_eof()
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build(locate: Locate, targets: streaming.Targets | None = None) -> web.Application:
    """The agent's routes; the streaming ones only with ``targets``."""
    app = web.Application()
    app[LOCATE] = locate
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    app.router.add_get("/healthz", healthz)
    if targets is not None:
        streaming.add_routes(app, targets)
    return app


async def stats_summary(request: web.Request) -> web.Response:
    """The kubelet's ``/stats/summary`` (CPU and memory), which the API server's metrics.k8s.io reads."""
    return web.Response(body=orjson.dumps(await request.app[STATS].summary()), content_type="application/json")


async def resource_metrics(request: web.Request) -> web.Response:
    return web.Response(body=await request.app[STATS].resource_metrics(), headers={"Content-Type": PROMETHEUS_TEXT})


def serve_stats(app: web.Application, stats: NodeStats) -> None:
    """Add the resource metrics endpoints; the sampler runs for as long as the app does."""
    app[STATS] = stats

    async def sampling(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(stats.sampler.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sampling)
    app.router.add_get("/stats/summary", stats_summary)
    app.router.add_get("/metrics/resource", resource_metrics)


def ssl_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """Serving TLS that requires a client certificate from the cluster CA (the API server's)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
