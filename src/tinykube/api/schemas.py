"""The upstream v1.32 object schemas, loaded once from the ``kubernetes-validate`` package.

They are JSON Schema (draft 2020-12 style, ``$defs``), generated from Kubernetes' OpenAPI, and
keep the ``x-kubernetes-*`` extensions that strategic merge patch, server-side apply and
``kubectl explain`` need (``x-kubernetes-patch-merge-key``, ``-patch-strategy``,
``-list-type``, ``-list-map-keys``, ``-group-version-kind``).  The ``strict`` variant closes
every object with ``additionalProperties: false``; it is otherwise identical.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

KUBERNETES_VERSION = "1.32.0"
IDENTITY_CACHE_SIZE = 65536  # schema nodes are few and permanent; the bound only guards stray ones

R = TypeVar("R")


def _schema_dir() -> str:
    import kubernetes_validate  # local import: the package is large and only its data is needed

    base = os.path.dirname(kubernetes_validate.__file__)
    return os.path.join(base, "kubernetes-json-schema", f"v{KUBERNETES_VERSION}-local-strict")


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """All definitions by name, e.g. ``definitions()["io.k8s.api.core.v1.PodSpec"]``.

    References inside them look like ``{"$ref": "#/$defs/io.k8s.api.core.v1.Container"}``.
    """
    with open(os.path.join(_schema_dir(), "_definitions.json"), "rb") as f:
        return orjson.loads(f.read())["$defs"]


def ref_name(ref: str) -> str:
    """``#/$defs/io.k8s.api.core.v1.Container`` (or a ``/api/_definitions.json#`` form) -> the name."""
    return ref.rsplit("/", 1)[-1]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` (possibly nested in ``allOf``) to the referenced definition."""
    while True:
        if "$ref" in schema:
            schema = definitions()[ref_name(schema["$ref"])]
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def by_identity(fn: Callable[[dict[str, Any]], R]) -> Callable[[dict[str, Any]], R]:
    """Cache a pure function of a schema node by the node's identity.

    Schema dicts are unhashable but loaded once and never changed, and apply and patch walk
    the same nodes for every object they see: identity is the cheap key.  Each entry keeps its
    node alive so an id is never reused while cached.
    """
    cache: dict[int, tuple[dict[str, Any], R]] = {}

    @functools.wraps(fn)
    def cached(node: dict[str, Any]) -> R:
        if not node:  # ``{}`` (an unknown field) is often a fresh literal: not worth keeping
            return fn(node)
        hit = cache.get(id(node))
        if hit is not None and hit[0] is node:
            return hit[1]
        if len(cache) >= IDENTITY_CACHE_SIZE:
            cache.clear()
        result = fn(node)
        cache[id(node)] = (node, result)
        return result

    return cached
