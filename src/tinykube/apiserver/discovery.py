"""Discovery: ``/api``, ``/apis`` (aggregated v2 and v2beta1, or legacy) and per-group-version lists.

Aggregated discovery is answered only when the Accept header offers it, with the exact content
type kubectl checks; otherwise the legacy ``APIVersions``/``APIGroupList`` shapes.  All bodies
are computed once from the registry.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from tinykube.api.registry import SERVED, ResourceType, by_group_version

_AGGREGATED = "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.resource,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": sorted(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subs = [{"subresource": name,
             "responseKind": _POLICY_EVICTION if name == "eviction" else {"group": rt.group, "version": rt.version, "kind": kind},
             "verbs": _SUB_VERBS.get(name, ["get", "patch", "update"])} for name, kind in rt.subresources.items()]
    if subs:
        entry["subresources"] = subs
    return entry


_SUB_VERBS = {"binding": ["create"], "eviction": ["create"], "exec": ["create", "get"], "attach": ["create", "get"],
              "portforward": ["create", "get"], "log": ["get"], "token": ["create"], "finalize": ["update"]}
_POLICY_EVICTION = {"group": "policy", "version": "v1", "kind": "Eviction"}


def _group_entry(group: str, versions: dict[str, list[ResourceType]]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"creationTimestamp": None}
    if group:
        metadata["name"] = group
    return {"metadata": metadata, "versions": [
        {"version": v, "resources": [_aggregated_resource(rt) for rt in rts], "freshness": "Current"}
        for v, rts in versions.items()]}


def _groups() -> dict[str, dict[str, list[ResourceType]]]:
    out: dict[str, dict[str, list[ResourceType]]] = {}
    for rt in SERVED:
        out.setdefault(rt.group, {}).setdefault(rt.version, []).append(rt)
    return out


@functools.cache
def aggregated(core: bool, version: str) -> bytes:
    """``/api`` (core) or ``/apis`` as an APIGroupDiscoveryList of apidiscovery.k8s.io/``version``."""
    items = [_group_entry(g, vs) for g, vs in _groups().items() if (g == "") == core]
    body = {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {}, "items": items}
    return orjson.dumps(body)


def aggregated_version(accept: str) -> str | None:
    """Which aggregated discovery version the Accept header asks for, preferring v2."""
    if "g=apidiscovery.k8s.io" not in accept:
        return None
    for candidate in accept.split(","):
        if "as=APIGroupDiscoveryList" in candidate and "g=apidiscovery.k8s.io" in candidate:
            if "v=v2beta1" in candidate:
                return "v2beta1"
            if "v=v2" in candidate:
                return "v2"
    return None


def content_type(version: str) -> str:
    return _AGGREGATED.format(v=version)


@functools.cache
def legacy_api() -> bytes:
    return orjson.dumps({"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})


@functools.cache
def legacy_apis() -> bytes:
    groups = []
    for group, versions in _groups().items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})


@functools.cache
def legacy_group(group: str) -> bytes | None:
    versions = _groups().get(group)
    if not group or versions is None:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]})


@functools.cache
def resource_list(group_version: str) -> bytes | None:
    """``/api/v1`` or ``/apis/G/V`` as an APIResourceList (subresources as ``pods/log``)."""
    rts = by_group_version().get(group_version)
    if rts is None:
        return None
    resources: list[dict[str, Any]] = []
    for rt in rts:
        entry: dict[str, Any] = {"name": rt.resource, "singularName": rt.singular, "namespaced": rt.namespaced,
                                 "kind": rt.kind, "verbs": sorted(rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for name, kind in rt.subresources.items():
            resources.append({"name": f"{rt.resource}/{name}", "singularName": "", "namespaced": rt.namespaced,
                              **(_POLICY_EVICTION if name == "eviction" else {"kind": kind}),
                              "verbs": _SUB_VERBS.get(name, ["get", "patch", "update"])})
    body: dict[str, Any] = {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}
    if "/" in group_version:
        body["apiVersion"] = "v1"
    return orjson.dumps(body)
