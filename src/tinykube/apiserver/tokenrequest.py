"""The TokenRequest subresource: ``POST serviceaccounts/NAME/token`` mints a service-account token.

As pkg/registry/core/serviceaccount/storage/token.go: the body is an authentication.k8s.io/v1
TokenRequest; its name and namespace, when given, must be the account's; ``audiences`` default to
the API server's and ``expirationSeconds`` to 3600 (at least 600, at most 2^32); an optional
``boundObjectRef`` ties the token to a Pod (whose node is named too), a Secret or a Node, which
must exist, carry the uid given, and — for a Pod — run as this account.  A pod-bound token asked
for 3607 s (what the ServiceAccount admission plugin projects) is valid for a year and carries a
``warnafter`` claim instead (--service-account-extend-token-expiration, on by default).  The
answer is 201 with the request, defaulted, and ``status.token``/``status.expirationTimestamp``.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from aiohttp import web

from tinykube.api import structural
from tinykube.api.errors import ApiError, bad_request, conflict, invalid, invalid_value
from tinykube.api.registry import ResourceType, lookup
from tinykube.apiserver.requests import RequestInfo, check_kind, object_response, read_object
from tinykube.apiserver.rest import write_options
from tinykube.apiserver.storage import Storage, WriteOptions
from tinykube.apiserver.tokens import EXTENDED_EXPIRATION, WARN_ONLY_EXPIRATION, Binding, Ref, ServiceAccountTokens

GROUP = "authentication.k8s.io"
_KIND = ResourceType(GROUP, "v1", "tokenrequests", "TokenRequest", True, "tokenrequest")  # for check_kind only
_DEFINITION = "io.k8s.api.authentication.v1.TokenRequest"
DEFAULT_EXPIRATION = 60 * 60  # SetDefaults_TokenRequestSpec
MIN_EXPIRATION = 10 * 60
MAX_EXPIRATION = 1 << 32
_BINDABLE = {kind: lookup("", "v1", resource) for kind, resource in (("Pod", "pods"), ("Secret", "secrets"),
                                                                      ("Node", "nodes"))}
NODES = _BINDABLE["Node"]
assert NODES is not None


async def create(request: web.Request, storage: Storage, tokens: ServiceAccountTokens, info: RequestInfo) -> web.Response:
    """Mint a token for the service account ``info`` names."""
    body = await read_object(request)
    check_kind(body, _KIND)
    opts = write_options(request, info)
    _decode(body, opts)
    meta = _metadata(body.get("metadata") or {}, info)
    sa, _ = await storage.get(info.rt, info.namespace, info.name)
    now = int(time.time())
    spec = _spec(body.get("spec") or {}, tokens)
    meta["creationTimestamp"] = _rfc3339(now)
    _validate(spec)
    binding = await _binding(storage, info, spec["boundObjectRef"])
    expiration, warn_after = _lifetime(spec, binding, tokens)
    token = tokens.issue(sa, binding, expiration, warn_after, spec["audiences"], now)
    out = {"kind": "TokenRequest", "apiVersion": f"{GROUP}/v1", "metadata": meta, "spec": spec,
           "status": {"token": token, "expirationTimestamp": _rfc3339(now + spec["expirationSeconds"])}}
    return object_response(out, 201, opts.warnings)


def _decode(body: dict[str, Any], opts: WriteOptions) -> None:
    """The structural pass every create gets: type errors and (Strict) unknown fields are a 400."""
    result = structural.normalize(body, _DEFINITION)
    failure = structural.decode_failure("TokenRequest", f"{GROUP}/v1", result, opts.field_validation == "Strict")
    if failure is not None:
        raise failure
    if opts.field_validation == "Warn":
        opts.warnings.extend(structural.warnings(result))


def _metadata(meta: dict[str, Any], info: RequestInfo) -> dict[str, Any]:
    """The request's metadata: a name or namespace other than the URL's is refused, missing ones filled."""
    for field, wanted, what in (("name", info.name, "name"), ("namespace", info.namespace, "namespace")):
        if meta.get(field) and meta[field] != wanted:
            raise invalid("TokenRequest", info.name, [invalid_value(
                f"metadata.{field}", meta[field], f"must match the service account {what} if specified")], GROUP)
    return {**meta, "name": info.name, "namespace": info.namespace}


def _spec(spec: dict[str, Any], tokens: ServiceAccountTokens) -> dict[str, Any]:
    """The spec with its defaults, in the field order Go writes it (``boundObjectRef`` may be null)."""
    expiration = spec.get("expirationSeconds")
    return {"audiences": spec.get("audiences") or list(tokens.audiences),
            "expirationSeconds": DEFAULT_EXPIRATION if expiration is None else expiration,
            "boundObjectRef": spec.get("boundObjectRef")}


def _validate(spec: dict[str, Any]) -> None:
    """ValidateTokenRequest (pkg/apis/authentication/validation)."""
    seconds = spec["expirationSeconds"]
    if seconds < MIN_EXPIRATION:
        detail = "may not specify a duration less than 10 minutes"
    elif seconds > MAX_EXPIRATION:
        detail = "may not specify a duration larger than 2^32 seconds"
    else:
        return
    raise invalid("TokenRequest", "", [invalid_value("spec.expirationSeconds", seconds, detail)], GROUP)


async def _binding(storage: Storage, info: RequestInfo, ref: dict[str, Any] | None) -> Binding:
    """Resolve ``boundObjectRef`` to the live object it names (404, 400 or 409 when it cannot be)."""
    if not ref:
        return Binding()
    kind, name = ref.get("kind", ""), ref.get("name", "")
    group, _, version = ref.get("apiVersion", "").rpartition("/")
    rt = _BINDABLE.get(kind) if not group else None
    if rt is None:
        raise bad_request(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
    obj, _ = await storage.get(rt, info.namespace if rt.namespaced else None, name)
    uid = obj["metadata"].get("uid", "")
    if ref.get("uid") and ref["uid"] != uid:
        raise conflict(kind, name, f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
                                   "record. The object might have been deleted and then recreated")
    if kind == "Pod":
        return await _pod_binding(storage, info, obj)
    return Binding(secret=Ref(name, uid)) if kind == "Secret" else Binding(node=Ref(name, uid))


async def _pod_binding(storage: Storage, info: RequestInfo, pod: dict[str, Any]) -> Binding:
    """A pod binding names the pod's node too, by name alone when the Node object is gone."""
    spec = pod.get("spec", {})
    if spec.get("serviceAccountName") != info.name:
        raise bad_request(f'cannot bind token for serviceaccount "{info.name}" to pod running with different '
                          "serviceaccount name.")
    pod_ref = Ref(pod["metadata"]["name"], pod["metadata"].get("uid", ""))
    node_name = spec.get("nodeName")
    if not node_name:
        return Binding(pod=pod_ref)
    try:
        node, _ = await storage.get(NODES, None, node_name)
    except ApiError as e:
        if e.code != 404:
            raise
        return Binding(pod=pod_ref, node=Ref(node_name))
    return Binding(pod=pod_ref, node=Ref(node_name, node["metadata"].get("uid", "")))


def _lifetime(spec: dict[str, Any], binding: Binding, tokens: ServiceAccountTokens) -> tuple[int, int]:
    """(seconds the token is valid, seconds after which its use is only warned about; 0 for none)."""
    requested = spec["expirationSeconds"]
    if binding.pod is not None and requested == WARN_ONLY_EXPIRATION and tokens.is_kube_audiences(spec["audiences"]):
        return EXTENDED_EXPIRATION, requested
    return requested, 0


def _rfc3339(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
