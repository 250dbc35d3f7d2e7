"""LIST: selectors, paging with limit/continue, and the bytes of the answer.

Items are served from stored bytes; an object is decoded only when a selector or a Table needs
it.  The continue token carries the list's revision and the last key, as kube-apiserver's does;
later pages are read from the live keys after that key (not a snapshot at the revision).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from tinykube.api import conversion
from tinykube.api.errors import ApiError
from tinykube.api.registry import ResourceType
from tinykube.api.selectors import FieldSelector, LabelSelector
from tinykube.store.base import Store

_BATCH = 500  # keys read per store call while filtering


@dataclass
class Item:
    """One listed object: spliced bytes, and the decoded dict when something needed it."""

    raw: bytes
    obj: dict[str, Any] | None

    def decoded(self) -> dict[str, Any]:
        if self.obj is None:
            self.obj = orjson.loads(self.raw)
        return self.obj


@dataclass
class Page:
    items: list[Item]
    revision: int
    continue_token: str = ""


@dataclass(frozen=True)
class Filter:
    """Label and field selectors; ``matches`` decodes lazily."""

    labels: LabelSelector | None = None
    fields: FieldSelector | None = None

    @property
    def empty(self) -> bool:
        return self.labels is None and self.fields is None

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.labels is not None and not self.labels.matches(obj.get("metadata", {}).get("labels") or {}):
            return False
        return self.fields is None or self.fields.matches(obj)


def encode_continue(revision: int, key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": key})).decode()


def decode_continue(token: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "BadRequest", "continue key is not valid: incorrect encoded start resourceVersion "
                       "(version meta.k8s.io/v1)") from None


async def list_page(store: Store, rt: ResourceType, namespace: str | None, flt: Filter, limit: int,
                    token: str) -> Page:
    """One page of matching objects, in key order."""
    prefix = rt.list_prefix(namespace)
    revision, start_after = decode_continue(token) if token else (0, "")
    items: list[Item] = []
    while True:
        result = await store.list(prefix, start_after, _BATCH if limit or not flt.empty else 0)
        revision = revision or result.revision
        for index, kv in enumerate(result.items):
            item = Item(conversion.served(rt, kv.value, kv.mod_revision), None)
            if flt.empty or flt.matches(item.decoded()):
                items.append(item)
            if limit and len(items) == limit:
                more = result.more or index < len(result.items) - 1
                return Page(items, revision, encode_continue(revision, kv.key) if more else "")
        if not result.more:
            return Page(items, revision)
        start_after = result.items[-1].key
