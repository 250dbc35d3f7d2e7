"""Stored bytes and the resourceVersion splice: objects are stored without their version.

An object's ``resourceVersion`` is the store revision of its last write, known only once the
write commits, so values are stored without it and the revision is spliced into the bytes when
they are served.  Stored JSON always starts ``{"apiVersion":…,"kind":…,"metadata":{`` so the
splice point is the first ``"metadata":{``; lists and watch events are then assembled from
stored bytes without decoding them.
"""

from __future__ import annotations

from typing import Any

import orjson

_METADATA = b'"metadata":{'


def encode(obj: dict[str, Any]) -> bytes:
    """The stored form: apiVersion, kind, metadata first, and no resourceVersion."""
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    ordered: dict[str, Any] = {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""), "metadata": metadata}
    for key, value in obj.items():
        if key not in ordered:
            ordered[key] = value
    return orjson.dumps(ordered)


def with_revision(value: bytes, revision: int) -> bytes:
    """Splice ``resourceVersion`` into stored bytes (the first key of metadata)."""
    at = value.index(_METADATA) + len(_METADATA)
    field = b'"resourceVersion":"%d"' % revision
    if value[at : at + 1] != b"}":
        field += b","
    return value[:at] + field + value[at:]


def decode(value: bytes, revision: int) -> dict[str, Any]:
    """The object as clients see it, with its resourceVersion."""
    obj: dict[str, Any] = orjson.loads(value)
    obj["metadata"]["resourceVersion"] = str(revision)
    return obj


def list_body(api_version: str, kind: str, revision: int, items: list[bytes], continue_token: str = "",
              remaining: int | None = None) -> bytes:
    """A ``PodList``-style body built from already-spliced item bytes."""
    meta: dict[str, Any] = {"resourceVersion": str(revision)}
    if continue_token:
        meta["continue"] = continue_token
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    head = orjson.dumps({"kind": kind, "apiVersion": api_version, "metadata": meta})
    return head[:-1] + b',"items":[' + b",".join(items) + b"]}"
