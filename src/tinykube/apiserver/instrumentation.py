"""The control plane's Prometheus ``/metrics``: ``apiserver_request_total`` and ``apiserver_request_duration_seconds``.

Every resource request (and the health checks) is counted once it is authenticated, labelled as
``k8s.io/apiserver/pkg/endpoints/metrics/metrics.go`` labels it: the verb from the HTTP method
(GET on a collection is LIST, ``watch=true`` is WATCH, an apply patch is APPLY, log/exec/attach/
portforward are CONNECT), the dry-run values, group, version, resource, subresource, the scope
(``resource`` when a name is given or an object is created, ``namespace``, ``cluster``), the
component and the response code.  Requests that fail authentication, and non-resource paths
other than the health checks, are not counted (upstream's filters and handlers do the same).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest

from tinykube.api.errors import ApiError
from tinykube.apiserver.requests import request_info

COMPONENT = "apiserver"
LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")
BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60)
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_VALID_VERBS = frozenset({"APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET", "LIST", "PATCH", "POST",
                          "PROXY", "PUT", "UPDATE", "WATCH", "WATCHLIST"})
_CONNECT = frozenset({"log", "exec", "portforward", "attach", "proxy"})
_HEALTH = ("/healthz", "/livez", "/readyz")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestMetrics:
    """The two request metrics, in a registry of their own (one per application)."""

    def __init__(self) -> None:
        disable_created_metrics()  # the Go client exposes no ``_created`` series
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "apiserver_request_total", "[STABLE] Counter of apiserver requests broken out for each verb, dry run "
            "value, group, version, resource, scope, component, and HTTP response code.", (*LABELS, "code"),
            registry=self.registry)
        self.latency = Histogram(
            "apiserver_request_duration_seconds", "[STABLE] Response latency distribution in seconds for each verb, "
            "dry run value, group, version, resource, subresource, scope and component.", LABELS, buckets=BUCKETS,
            registry=self.registry)

    def observe(self, labels: dict[str, str], code: int, seconds: float) -> None:
        self.requests.labels(**labels, code=str(code)).inc()
        self.latency.labels(**labels).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS: web.AppKey[RequestMetrics] = web.AppKey("request_metrics", RequestMetrics)


def _resource_parts(path: str) -> tuple[str, str, str] | None:
    """(group, version, rest) of a resource path, None for anything else."""
    parts = path.split("/", 4)
    if len(parts) >= 4 and parts[1] == "api":
        return "", parts[2], "/".join(parts[3:])
    if len(parts) == 5 and parts[1] == "apis":
        return parts[2], parts[3], parts[4]
    return None


def _verb(method: str, scope: str, subresource: str, query: dict[str, str], content_type: str) -> str:
    """``CanonicalVerb`` then ``CleanVerb``, with unknown methods as ``other``."""
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        verb = "GET" if scope in ("resource", "") else "LIST"
        if query.get("watch", "").lower() not in ("", "0", "false"):
            verb = "WATCH"
    if verb == "PATCH" and content_type == "application/apply-patch+yaml":
        verb = "APPLY"
    if subresource in _CONNECT:
        verb = "CONNECT"
    return verb if verb in _VALID_VERBS else "other"


def _dry_run(values: list[str]) -> str:
    """``cleanDryRun``: the sorted distinct values, ``invalid`` when one is not ``All``."""
    if any(v != "All" for v in values):
        return "invalid"
    return ",".join(sorted(set(values)))


def request_labels(method: str, path: str, query: dict[str, str], dry_run: list[str],
                   content_type: str) -> dict[str, str] | None:
    """The labels a request is counted under; None when upstream does not count it."""
    if path.startswith(_HEALTH):
        return dict(zip(LABELS, ("GET" if method in ("GET", "HEAD") else "other", "", "", "", "", path, "", "")))
    found = _resource_parts(path)
    if found is None:
        return None
    group, version, rest = found
    try:
        info = request_info(group, version, rest)
    except ApiError:
        return None
    scope = "resource" if info.name or method == "POST" else "namespace" if info.namespace else "cluster"
    verb = _verb(method, scope, info.subresource, query, content_type)
    return dict(zip(LABELS, (verb, _dry_run(dry_run), group, version, info.rt.resource, info.subresource, scope,
                             COMPONENT)))


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time the request (runs inside authentication, so refused requests are not counted)."""
    labels = request_labels(request.method, request.path, dict(request.query), request.query.getall("dryRun", []),
                            request.headers.get("Content-Type", "").split(";")[0].strip())
    if labels is None:
        return await handler(request)
    started, code = time.monotonic(), 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except ApiError as e:
        code = e.code
        raise
    except web.HTTPException as e:
        code = e.status
        raise
    finally:
        request.app[METRICS].observe(labels, code, time.monotonic() - started)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics`` in the Prometheus text format."""
    return web.Response(body=request.app[METRICS].exposition(), headers={"Content-Type": PROMETHEUS_TEXT})
