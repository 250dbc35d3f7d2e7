"""What a stream request names, found among this node's pod workers: a running container, a sandbox.

The kubelet looks pods up by namespace and name among the pods bound to it, then asks the
runtime for the *running* container; its refusals are plain text (``pod does not exist``,
``container not found ("nginx")``), which kubectl prints as
``error: unable to upgrade connection: ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tinykube.node.launch import Launcher
from tinykube.node.runtime.containers import ContainerNotFound
from tinykube.node.streaming import ContainerRef, Refused, SandboxRef
from tinykube.node.worker import PodWorker

__all__ = ["PodTargets"]


class PodTargets:
    """:class:`tinykube.node.streaming.Targets` over the agent's workers and (once built) its launcher."""

    def __init__(self, workers: Mapping[str, PodWorker], launcher: Callable[[], Launcher | None]) -> None:
        self._workers = workers
        self._launcher = launcher

    def container(self, namespace: str, pod: str, container: str) -> ContainerRef:
        worker, launcher = self._find(namespace, pod)
        record = worker.records.get(container)
        try:
            running = record is not None and launcher.runtime.status(record.runtime_id).state == "running"
        except ContainerNotFound:
            running = False
        if record is None or not running:
            raise Refused(500, f'container not found ("{container}")')
        spec = worker.pod or {}
        declared = [*spec.get("spec", {}).get("initContainers", []), *spec.get("spec", {}).get("containers", [])]
        tty = any(c.get("name") == container and c.get("tty", False) for c in declared)
        return ContainerRef(launcher.runtime, record.runtime_id, tty)

    def sandbox(self, namespace: str, pod: str) -> SandboxRef:
        worker, launcher = self._find(namespace, pod)
        sandbox = launcher.sandboxes.get(worker.uid)
        if sandbox is None:
            raise Refused(500, f'pod not found ("{pod}_{namespace}")')
        return SandboxRef(worker.uid, sandbox.netns)

    def _find(self, namespace: str, name: str) -> tuple[PodWorker, Launcher]:
        launcher = self._launcher()
        worker = next((w for w in self._workers.values() if w.pod is not None
                       and w.pod["metadata"]["namespace"] == namespace and w.pod["metadata"]["name"] == name), None)
        if worker is None or launcher is None:
            raise Refused(404, "pod does not exist")
        return worker, launcher
