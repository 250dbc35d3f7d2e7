"""Version conversion between a served kind and its stored form.

Every kind is stored as served except ``events.k8s.io/v1`` Events, which share storage with
core/v1 Events (``/registry/events``) as in kube-apiserver: they are written in core shape and
converted back when read (``pkg/apis/events/v1/conversion.go``).  Bytes of kinds that need no
conversion pass through untouched.
"""

from __future__ import annotations

from typing import Any

import orjson

from tinykube.api import objects
from tinykube.api.registry import ResourceType

# events.k8s.io/v1 field → core/v1 field
_EVENTS_TO_CORE = {"regarding": "involvedObject", "note": "message", "deprecatedCount": "count",
                   "deprecatedFirstTimestamp": "firstTimestamp", "deprecatedLastTimestamp": "lastTimestamp",
                   "deprecatedSource": "source", "reportingController": "reportingComponent"}
_CORE_TO_EVENTS = {v: k for k, v in _EVENTS_TO_CORE.items()}


def converts(rt: ResourceType) -> bool:
    return rt.group == "events.k8s.io"


def core_event(event: dict[str, Any]) -> dict[str, Any]:
    """An ``events.k8s.io/v1`` Event in ``core/v1`` shape."""
    out = {_EVENTS_TO_CORE.get(k, k): v for k, v in event.items()}
    out["apiVersion"] = "v1"
    return out


def events_v1_event(event: dict[str, Any]) -> dict[str, Any]:
    """A ``core/v1`` Event in ``events.k8s.io/v1`` shape."""
    out = {_CORE_TO_EVENTS.get(k, k): v for k, v in event.items()}
    out["apiVersion"] = "events.k8s.io/v1"
    return out


def stored(rt: ResourceType, obj: dict[str, Any]) -> bytes:
    """The bytes to store for an object served as ``rt``."""
    return objects.encode(core_event(obj) if converts(rt) else obj)


def served(rt: ResourceType, value: bytes, revision: int) -> bytes:
    """Stored bytes as ``rt`` serves them, with their resourceVersion."""
    raw = objects.with_revision(value, revision)
    if not converts(rt):
        return raw
    return orjson.dumps(events_v1_event(orjson.loads(raw)))


def decoded(rt: ResourceType, value: bytes, revision: int) -> dict[str, Any]:
    """Stored bytes as the object ``rt`` serves."""
    obj = objects.decode(value, revision)
    return events_v1_event(obj) if converts(rt) else obj
