"""Watches of the single ConfigMaps and Secrets this node's pods mount (the kubelet's watch-based manager).

A node may not list every Secret in the cluster (the Node authorizer allows only the objects its
pods reference), so instead of one cluster-wide watch the agent keeps one ``metadata.name=``
watch per mounted object, as the kubelet's ``configMapAndSecretChangeDetectionStrategy: Watch``
does, started when the first pod mounting it arrives and stopped when the last one is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from tinykube.client.rest import Client, list_and_watch

Obj = dict[str, Any]
Handler = Callable[[str, Obj], Awaitable[None]]
Key = tuple[str, str, str]  # resource ("configmaps" or "secrets"), namespace, name


def mounted_sources(pod: Obj) -> Iterator[Key]:
    """The ConfigMaps and Secrets a pod's volumes (projected ones too) show as files."""
    namespace = pod["metadata"]["namespace"]
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if (volume.get("configMap") or {}).get("name"):
            yield "configmaps", namespace, volume["configMap"]["name"]
        if (volume.get("secret") or {}).get("secretName"):
            yield "secrets", namespace, volume["secret"]["secretName"]
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("configMap") or {}).get("name"):
                yield "configmaps", namespace, source["configMap"]["name"]
            if (source.get("secret") or {}).get("name"):
                yield "secrets", namespace, source["secret"]["name"]


class SourceWatches:
    """One list-and-watch per mounted object; :meth:`sync` makes the set follow the pods."""

    def __init__(self, client: Client, on_change: Handler):
        self.client = client
        self.on_change = on_change
        self.tasks: dict[Key, asyncio.Task[None]] = {}

    def sync(self, pods: Iterable[Obj]) -> None:
        """Start watches for newly mounted objects and stop those no pod mounts any more."""
        wanted = {key for pod in pods for key in mounted_sources(pod)}
        for key in wanted - self.tasks.keys():
            resource, namespace, name = key
            self.tasks[key] = asyncio.create_task(list_and_watch(
                self.client, f"/api/v1/namespaces/{namespace}/{resource}", self.on_change,
                {"fieldSelector": f"metadata.name={name}"}))
        for key in self.tasks.keys() - wanted:
            self.tasks.pop(key).cancel()

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
