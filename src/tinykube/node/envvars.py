"""A container's environment as the kubelet builds it (``makeEnvironmentVariables``).

Order and precedence as upstream: ``envFrom`` sources first (each key with its prefix), then
``env`` entries in order, later ones winning; ``$(VAR)`` in a value sees what came before.
``valueFrom`` reads ConfigMaps and Secrets through the API, the downward API from the pod, and
resource limits (node allocatable when a limit is unset).  A missing source that is not optional
stops the container with CreateContainerConfigError and the API's own message.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any

from tinykube.node import volumedata
from tinykube.node.containerspec import expand

Obj = dict[str, Any]
Fetch = Callable[[str, str, str], Awaitable[Obj | None]]  # (resource, namespace, name) → object or None
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # RelaxedEnvironmentVariableValidation is on in 1.32


class EnvError(Exception):
    """The container cannot be configured (its waiting reason is CreateContainerConfigError)."""


def field_value(pod: Obj, path: str) -> str:
    """A ``fieldRef`` value (``podFieldSelectorRuntimeValue``): the node and status fields env may
    use, else the downward API's metadata fields, shared with downwardAPI volumes."""
    spec, status = pod["spec"], pod.get("status") or {}
    runtime = {"spec.nodeName": spec.get("nodeName"), "spec.serviceAccountName": spec.get("serviceAccountName"),
               "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP"),
               "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs") or []),
               "status.hostIPs": ",".join(p["ip"] for p in status.get("hostIPs") or [])}
    if path in runtime:
        return str(runtime[path] or "")
    try:
        return volumedata.field_value(pod, path)
    except ValueError as e:
        raise EnvError(str(e)) from None


def resource_value(pod: Obj, container: Obj, ref: Obj, allocatable: Obj) -> str:
    """A ``resourceFieldRef`` value; the container defaults to the one being configured."""
    try:
        return volumedata.resource_value(pod, {**ref, "containerName": ref.get("containerName") or container["name"]},
                                         allocatable)
    except ValueError as e:
        raise EnvError(str(e)) from None


async def _source(fetch: Fetch, resource: str, namespace: str, name: str, optional: bool) -> Obj | None:
    obj = await fetch(resource, namespace, name)
    if obj is None and not optional:
        raise EnvError(f'{resource[:-1]} "{name}" not found')
    return obj


def _values(obj: Obj, secret: bool) -> dict[str, str]:
    data = obj.get("data") or {}
    if secret:
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
    return dict(data)


async def pod_env(pod: Obj, container: Obj, fetch: Fetch, allocatable: Obj,
                  base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables the pod spec gives ``container`` on top of ``base`` (the Service links).

    The image's Env is not included: the kubelet never sees it.
    """
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        ref, secret = (source["secretRef"], True) if "secretRef" in source else (source.get("configMapRef", {}), False)
        obj = await _source(fetch, "secrets" if secret else "configmaps", namespace, ref.get("name", ""),
                            bool(ref.get("optional")))
        for key, value in (_values(obj, secret) if obj else {}).items():
            name = source.get("prefix", "") + key
            if _ENV_NAME.match(name):
                env[name] = value
    for var in container.get("env") or []:
        if "valueFrom" not in var:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        value = await _value_from(pod, container, var["valueFrom"], fetch, allocatable)
        if value is not None:
            env[var["name"]] = value
    return env


async def _value_from(pod: Obj, container: Obj, source: Obj, fetch: Fetch, allocatable: Obj) -> str | None:
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return resource_value(pod, container, source["resourceFieldRef"], allocatable)
    secret = "secretKeyRef" in source
    ref = source["secretKeyRef"] if secret else source["configMapKeyRef"]
    optional = bool(ref.get("optional"))
    namespace = pod["metadata"]["namespace"]
    obj = await _source(fetch, "secrets" if secret else "configmaps", namespace, ref["name"], optional)
    if obj is None:
        return None
    values = _values(obj, secret)
    if ref["key"] not in values:
        if optional:
            return None
        raise EnvError(f"couldn't find key {ref['key']} in {'Secret' if secret else 'ConfigMap'} {namespace}/{ref['name']}")
    return values[ref["key"]]
