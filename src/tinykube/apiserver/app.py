"""The aiohttp application: routes, the auth + Status middleware, and request dispatch.

A request reads as authenticate → route → handler; any :class:`ApiError` raised on the way
becomes its ``Status`` body here, once.  Resource paths are resolved by ``request_info`` and
dispatched on (method, collection or item, subresource, watch).
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from tinykube.api import openapi, openapi_v2
from tinykube.api.errors import ApiError, internal, method_not_allowed
from tinykube.apiserver import discovery, instrumentation, resourcemetrics, rest, tokenrequest, watch
from tinykube.apiserver.auth import Authenticator
from tinykube.apiserver.authz import CURRENT_USER, Authorizer, attributes
from tinykube.apiserver.nodeproxy import NodeProxy
from tinykube.apiserver.requests import RequestInfo, json_response, query_flag, request_info
from tinykube.apiserver.storage import Storage
from tinykube.apiserver.tokens import ServiceAccountTokens

log = logging.getLogger(__name__)

STORAGE: web.AppKey[Storage] = web.AppKey("storage", Storage)
AUTH: web.AppKey[Authenticator] = web.AppKey("auth", Authenticator)
NODE_PROXY: web.AppKey[NodeProxy] = web.AppKey("node_proxy", NodeProxy)
CA_FILE: web.AppKey[str] = web.AppKey("ca_file", str)
TOKENS: web.AppKey[ServiceAccountTokens] = web.AppKey("tokens", ServiceAccountTokens)
AUTHORIZER: web.AppKey[Authorizer | None] = web.AppKey("authorizer", Authorizer)

VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.4+tinykube", "gitCommit": "tinykube", "gitTreeState": "clean",
    "buildDate": "2026-11-26T00:00:00Z", "goVersion": "go1.23.3", "compiler": "gc",
    "platform": f"linux/{'amd64' if platform.machine() == 'x86_64' else platform.machine()}",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, run the handler, and turn every failure into a ``Status``."""
    try:
        user = await request.app[AUTH].authenticate(request)
        CURRENT_USER.set(user)  # this request's task only: admission reads it (NodeRestriction, CSR requestor)
        return await handler(request)
    except ApiError as e:
        return json_response(orjson.dumps(e.status()), e.code)
    except web.HTTPException:
        raise
    except Exception as e:  # a bug must still answer as the apiserver would, not drop the connection
        log.exception("internal error on %s %s", request.method, request.path)
        err = internal(str(e))
        return json_response(orjson.dumps(err.status()), err.code)


async def version(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(VERSION))


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def cacerts(request: web.Request) -> web.Response:
    """The cluster CA, for joining nodes that check it against their token's pin (k3s' /cacerts)."""
    return web.FileResponse(request.app[CA_FILE], headers={"Content-Type": "text/plain"})


async def api_root(request: web.Request) -> web.Response:
    return _discovery(request, core=True)


async def apis_root(request: web.Request) -> web.Response:
    return _discovery(request, core=False)


def _discovery(request: web.Request, core: bool) -> web.Response:
    wanted = discovery.aggregated_version(request.headers.get("Accept", ""))
    if wanted:
        return web.Response(body=discovery.aggregated(core, wanted), headers={"Content-Type": discovery.content_type(wanted)})
    return json_response(discovery.legacy_api() if core else discovery.legacy_apis())


async def group(request: web.Request) -> web.Response:
    body = discovery.legacy_group(request.match_info["group"])
    return json_response(body) if body else _not_found()


async def core_resources(request: web.Request) -> web.Response:
    body = discovery.resource_list("v1")
    return json_response(body) if body else _not_found()


async def group_resources(request: web.Request) -> web.Response:
    body = discovery.resource_list(f"{request.match_info['group']}/{request.match_info['version']}")
    return json_response(body) if body else _not_found()


def _not_found() -> web.Response:
    err = ApiError(404, "NotFound", "the server could not find the requested resource", {})
    return json_response(orjson.dumps(err.status()), 404)


async def openapi_root(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(openapi.root()))


async def openapi_document(request: web.Request) -> web.Response:
    found = openapi.document(request.match_info["path"])
    if found is None:
        return _not_found()
    body, _ = found
    return json_response(body, headers={"Cache-Control": "public, immutable"} if request.query.get("hash") else None)


async def openapi_v2_document(request: web.Request) -> web.Response:
    """Swagger 2.0: protobuf when asked for (client-go's ``OpenAPISchema``), else JSON."""
    if "application/com.github.proto-openapi.spec.v2" in request.headers.get("Accept", ""):
        return web.Response(body=openapi_v2.protobuf_bytes(), headers={"Content-Type": openapi_v2.PROTOBUF})
    return json_response(openapi_v2.json_bytes())


async def core_resource(request: web.Request) -> web.StreamResponse:
    return await dispatch(request, request_info("", "v1", request.match_info["rest"]))


async def group_resource(request: web.Request) -> web.StreamResponse:
    mi = request.match_info
    return await dispatch(request, request_info(mi["group"], mi["version"], mi["rest"]))


async def metrics_resource(request: web.Request) -> web.StreamResponse:
    """metrics.k8s.io: answered from the nodes, never from storage."""
    info = request_info(resourcemetrics.GROUP, resourcemetrics.VERSION, request.match_info["rest"])
    await _authorize(request, info)
    return await resourcemetrics.serve(request, request.app[STORAGE], request.app[NODE_PROXY], info)


async def _authorize(request: web.Request, info: RequestInfo) -> None:
    """The authorization filter: after authentication and request-info, before any handler."""
    authorizer = request.app[AUTHORIZER]
    if authorizer is not None:
        await authorizer.authorize(CURRENT_USER.get(), attributes(request.method, info, request.query))


async def dispatch(request: web.Request, info: RequestInfo) -> web.StreamResponse:
    """Pick the verb handler for a resource request."""
    await _authorize(request, info)
    storage = request.app[STORAGE]
    method = request.method
    if info.subresource == "binding" and method == "POST":
        return await rest.bind(request, storage, info)
    if info.subresource == "eviction" and method == "POST":
        return await rest.evict(request, storage, info)
    if info.subresource == "token" and method == "POST":
        return await tokenrequest.create(request, storage, request.app[TOKENS], info)
    if info.subresource == "log" and method == "GET":
        return await request.app[NODE_PROXY].logs(request, storage, info)
    if info.subresource in ("exec", "attach", "portforward") and method in ("GET", "POST"):
        return await request.app[NODE_PROXY].stream(request, storage, info)
    if info.subresource in ("", "status", "finalize", "approval"):
        if not info.name:
            return await _collection(request, storage, info)
        if method == "GET":
            return await rest.get(request, storage, info)
        if method == "PUT":
            return await rest.update(request, storage, info)
        if method == "PATCH":
            return await rest.patch_(request, storage, info)
        if method == "DELETE" and not info.subresource:
            return await rest.delete(request, storage, info)
    raise method_not_allowed()


async def _collection(request: web.Request, storage: Storage, info: RequestInfo) -> web.StreamResponse:
    method = request.method
    if method == "GET":
        if query_flag(request, "watch"):
            return await watch.serve(request, storage.store, info)
        return await rest.list_(request, storage, info)
    if method == "POST":
        return await rest.create(request, storage, info)
    if method == "DELETE" and "deletecollection" in info.rt.verbs:
        return await rest.delete_collection(request, storage, info)
    raise method_not_allowed()


def build(storage: Storage, auth: Authenticator, node_proxy: NodeProxy, ca_file: str,
          tokens: ServiceAccountTokens, authorizer: Authorizer | None = None) -> web.Application:
    """The whole API as one aiohttp application (every authenticated user may do anything without ``authorizer``)."""
    app = web.Application(middlewares=[middleware, instrumentation.middleware], client_max_size=4 * 1024 * 1024)
    app[STORAGE] = storage
    app[AUTH] = auth
    app[NODE_PROXY] = node_proxy
    app[CA_FILE] = ca_file
    app[TOKENS] = tokens
    app[AUTHORIZER] = authorizer
    app[instrumentation.METRICS] = instrumentation.RequestMetrics()

    async def close_proxy(app: web.Application) -> None:
        await node_proxy.close()

    app.on_cleanup.append(close_proxy)
    r = app.router
    r.add_get("/version", version)
    r.add_get("/metrics", instrumentation.metrics)
    r.add_get("/cacerts", cacerts)
    for path in ("/healthz", "/livez", "/readyz"):
        r.add_get(path, health)
        r.add_get(path + "/{check:.*}", health)
    r.add_get("/api", api_root)
    r.add_get("/api/", api_root)
    r.add_get("/apis", apis_root)
    r.add_get("/apis/", apis_root)
    r.add_get("/api/v1", core_resources)
    r.add_get("/api/v1/", core_resources)
    r.add_get("/apis/{group}", group)
    r.add_get("/apis/{group}/{version}", group_resources)
    r.add_get("/apis/{group}/{version}/", group_resources)
    r.add_get("/openapi/v2", openapi_v2_document)
    r.add_get("/openapi/v3", openapi_root)
    r.add_get("/openapi/v3/{path:.+}", openapi_document)
    r.add_route("*", "/api/v1/{rest:.+}", core_resource)
    r.add_route("*", f"/apis/{resourcemetrics.API_VERSION}/{{rest:.+}}", metrics_resource)  # before the stored kinds
    r.add_route("*", "/apis/{group}/{version}/{rest:.+}", group_resource)
    return app
