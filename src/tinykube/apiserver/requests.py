"""The wire side of a request: which resource it names, its body, and how to answer it.

``request_info`` parses a path the way apiserver's ``RequestInfoFactory`` does
(``/api/v1/namespaces/NS/pods/NAME/status``); ``read_object`` decodes JSON, YAML or the
Kubernetes protobuf envelope; ``wants_table`` reads the Accept header.  Nothing here touches
storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web

from tinykube.api import protobuf, registry
from tinykube.api.formats import go_quote
from tinykube.api.errors import ApiError, bad_request, too_large, unsupported_media_type
from tinykube.api.registry import ResourceType

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit on a request body (3 MiB)
_NAMESPACE_SUBRESOURCES = ("status", "finalize")

try:
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml is present in our environments
    _YamlLoader = yaml.SafeLoader


@dataclass(frozen=True)
class RequestInfo:
    """The resource a request names; ``name`` is empty for collections."""

    rt: ResourceType
    namespace: str | None
    name: str
    subresource: str


def request_info(group: str, version: str, rest: str) -> RequestInfo:
    """Resolve the path after ``/api/v1/`` or ``/apis/G/V/`` to a resource."""
    parts = [p for p in rest.split("/") if p]
    namespace: str | None = None
    if parts and parts[0] == "namespaces" and len(parts) > 1:
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            namespace, parts = parts[1], parts[2:]
    if not parts or len(parts) > 3:
        raise not_found_path()
    rt = registry.lookup(group, version, parts[0])
    if rt is None:
        raise not_found_path()
    name = parts[1] if len(parts) > 1 else ""
    sub = parts[2] if len(parts) > 2 else ""
    if sub and sub not in rt.subresources:
        raise not_found_path()
    if rt.namespaced and name and namespace is None:
        raise not_found_path()
    return RequestInfo(rt, namespace if rt.namespaced else None, name, sub)


def not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()


async def read_body(request: web.Request) -> bytes:
    """The raw body, refused past 3 MiB before it is all read."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise _too_large()
    return body


def _too_large() -> ApiError:
    """As the handlers' ``limitedReadBody`` words it."""
    return too_large(f"Request entity too large: limit is {MAX_BODY}")


def parse(body: bytes, content_type: str) -> Any:
    """Decode a body of any media type kubectl and the client libraries send."""
    if content_type == "application/vnd.kubernetes.protobuf":
        return protobuf.decode(body)
    try:
        if content_type in ("application/yaml", "application/apply-patch+yaml"):
            return yaml.load(body, Loader=_YamlLoader)
        if content_type.endswith("json") or content_type in ("", "*/*", "text/plain"):
            return orjson.loads(body)
    except (orjson.JSONDecodeError, yaml.YAMLError) as e:
        raise bad_request(f"error decoding request body: {e}") from None
    raise unsupported_media_type(content_type)


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request body as an object (a JSON object is required)."""
    obj = parse(await read_body(request), media_type(request))
    if not isinstance(obj, dict):
        raise bad_request("Object 'Kind' is missing in request body")
    return obj


def check_kind(obj: dict[str, Any], rt: ResourceType) -> None:
    """The body must be the kind the URL names; a missing kind or apiVersion defaults to it.

    (The apiserver's decoder takes the URL's group-version-kind as the default.)
    """
    kind = obj.setdefault("kind", rt.kind) or rt.kind
    api_version = obj.setdefault("apiVersion", rt.group_version) or rt.group_version
    obj["kind"], obj["apiVersion"] = kind, api_version
    if api_version != rt.group_version:
        raise bad_request(f"the API version in the data ({api_version}) does not match the expected API version "
                          f"({rt.group_version})")
    if kind != rt.kind:
        raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {kind}: no kind "{kind}" is '
                          f'registered for version "{rt.group_version}"')


def wants_table(request: web.Request) -> bool:
    """True when the client asked for ``as=Table`` (kubectl's human output)."""
    return "as=Table" in request.headers.get("Accept", "")


def query_flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def query_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'invalid value for {name}: "{value}"') from None


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def object_response(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    """JSON of ``obj``, with one ``Warning: 299 - "text"`` header per warning (as upstream sends them)."""
    response = json_response(orjson.dumps(obj), status)
    for warning in dict.fromkeys(warnings or ()):
        response.headers.add("Warning", f"299 - {go_quote(warning)}")
    return response
