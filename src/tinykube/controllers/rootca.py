"""The root CA publisher: every namespace has a ``kube-root-ca.crt`` ConfigMap holding the cluster CA.

Pods read it through their projected service-account volume to trust the API server.  As
pkg/controller/certificates/rootcacertpublisher/publisher.go: a namespace is synced when it is
added or becomes active, and when its ConfigMap is changed or deleted; a sync creates the
ConfigMap, or puts back its ``ca.crt`` and description annotation if they differ.  A namespace
that is gone or terminating is left alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.controllers.workqueue import WorkQueue

NAMESPACES = lookup("", "v1", "namespaces")
CONFIGMAPS = lookup("", "v1", "configmaps")
assert NAMESPACES is not None and CONFIGMAPS is not None
NAME = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such "
               "as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")
_MANAGER = "?fieldManager=kube-controller-manager"


class RootCACertPublisher:
    """Keeps ``kube-root-ca.crt`` (data ``ca.crt`` = ``ca_pem``) in every namespace."""

    def __init__(self, client: Client, ca_pem: str):
        self.client = client
        self.ca_pem = ca_pem
        self.queue = WorkQueue(self.sync, "root-ca-cert-publisher")

    async def run(self) -> None:
        await asyncio.gather(
            list_and_watch(self.client, path(NAMESPACES), self._on_namespace),
            list_and_watch(self.client, path(CONFIGMAPS), self._on_configmap, {"fieldSelector": f"metadata.name={NAME}"}),
            self.queue.run())

    async def _on_namespace(self, kind: str, ns: dict[str, Any]) -> None:
        if kind == "ADDED" or (kind == "MODIFIED" and ns.get("status", {}).get("phase") == "Active"):
            self.queue.add(ns["metadata"]["name"])

    async def _on_configmap(self, kind: str, cm: dict[str, Any]) -> None:
        if kind in ("MODIFIED", "DELETED"):
            self.queue.add(cm["metadata"]["namespace"])

    async def sync(self, namespace: str) -> None:
        """Create the ConfigMap, or repair its data and annotation."""
        try:
            cm = await self.client.get(path(CONFIGMAPS, namespace, NAME))
        except ApiError as e:
            if e.code != 404:
                raise
            await self._create(namespace)
            return
        annotations = cm["metadata"].get("annotations") or {}
        if cm.get("data") == self._data() and annotations.get(DESCRIPTION_ANNOTATION):
            return
        cm["data"] = self._data()
        cm["metadata"]["annotations"] = {**annotations, DESCRIPTION_ANNOTATION: DESCRIPTION}
        await self.client.update(path(CONFIGMAPS, namespace, NAME) + _MANAGER, cm)

    async def _create(self, namespace: str) -> None:
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": NAME, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}}, "data": self._data()}
        try:
            await self.client.create(path(CONFIGMAPS, namespace) + _MANAGER, cm)
        except ApiError as e:
            if e.code not in (403, 404):  # the namespace is gone or terminating: nothing to publish into
                raise

    def _data(self) -> dict[str, str]:
        return {"ca.crt": self.ca_pem}
