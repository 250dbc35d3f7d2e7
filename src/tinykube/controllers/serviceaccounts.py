"""The service-account controller: every active namespace has a ``default`` ServiceAccount.

Recreates it when it is deleted (pkg/controller/serviceaccount/serviceaccounts_controller.go).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.controllers.workqueue import WorkQueue

NAMESPACES = lookup("", "v1", "namespaces")
SERVICEACCOUNTS = lookup("", "v1", "serviceaccounts")
assert NAMESPACES is not None and SERVICEACCOUNTS is not None


class ServiceAccountController:
    def __init__(self, client: Client):
        self.client = client
        self.queue = WorkQueue(self.sync, "serviceaccount")

    async def run(self) -> None:
        await asyncio.gather(
            list_and_watch(self.client, path(NAMESPACES), self._on_namespace),
            list_and_watch(self.client, path(SERVICEACCOUNTS), self._on_serviceaccount,
                           {"fieldSelector": "metadata.name=default"}),
            self.queue.run())

    async def _on_namespace(self, kind: str, ns: dict[str, Any]) -> None:
        if kind != "DELETED":
            self.queue.add(ns["metadata"]["name"])

    async def _on_serviceaccount(self, kind: str, sa: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.queue.add(sa["metadata"]["namespace"])

    async def sync(self, namespace: str) -> None:
        try:
            ns = await self.client.get(path(NAMESPACES, name=namespace))
        except ApiError as e:
            if e.code == 404:
                return
            raise
        if ns.get("status", {}).get("phase") != "Active":
            return
        sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}}
        try:
            await self.client.create(path(SERVICEACCOUNTS, namespace) + "?fieldManager=kube-controller-manager", sa)
        except ApiError as e:
            if e.code not in (403, 404, 409):  # exists, or the namespace is going away
                raise
