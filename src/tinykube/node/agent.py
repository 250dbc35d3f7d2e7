"""The node agent's composition root and its one dispatch loop (kubelet ``syncLoopIteration``).

It registers the Node, keeps its Lease alive, serves logs, and watches the pods bound to this
node; each pod change is handed to that pod's worker, which does all the work.  On start it
re-adopts what the runtime already runs (containers outlive the agent) and removes what belongs
to pods that no longer exist.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from aiohttp import web

from tinykube.api.errors import bad_request, not_found
from tinykube.api.registry import lookup
from tinykube.client.events import EventRecorder, Source, reference
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.node import host, server
from tinykube.node.dns import ClusterDns
from tinykube.node.eviction import Candidate, Eviction, EvictionConfig, EvictionManager, Meter
from tinykube.node.launch import Launcher, field_path, pod_log_dir
from tinykube.node.probes import Prober
from tinykube.node.proxy import ServiceProxy
from tinykube.node.logs import latest_log
from tinykube.node.routes import HostGateway
from tinykube.node.registration import Registration, reservation
from tinykube.node.security import POD_PIDS_LIMIT
from tinykube.node.sourcewatch import SourceWatches
from tinykube.node.runtime.cni import CniConfig
from tinykube.node.runtime.containers import Runtime
from tinykube.node.runtime.images import ImageStore
from tinykube.node.runtime.registry import Hosts
from tinykube.node.runtime import cgroups
from tinykube.node.runtime.cgroups import host_stat_sources
from tinykube.node.runtime.sandbox import Sandboxes, ensure_unreachable_routes
from tinykube.node.targets import PodTargets
from tinykube.node.stats import ContainerTarget, NodeStats, PodTarget, Sampler, read_sample
from tinykube.node.volumes import VolumeManager
from tinykube.node.worker import NodeContext, PodWorker

log = logging.getLogger(__name__)

PODS = lookup("", "v1", "pods")
assert PODS is not None


@dataclass(frozen=True)
class AgentConfig:
    """Everything ``tinykube node`` is told; several agents on one host differ in every path."""

    node_name: str
    data_dir: str  # images and registries config live here; node state under <data-dir>/agent
    run_dir: str = "/run/tinykube"  # runc root, bundles, CNI state: gone at reboot with the containers
    node_ip: str = "127.0.0.1"
    kubelet_port: int = 10250
    bridge: str = "tinykube0"
    cgroup_root: str = "tinykube"  # --cgroup-root: the parent of this node's pod cgroups
    dns_upstreams: tuple[tuple[str, int], ...] | None = None  # None: the host's resolvers
    serving_cert: str = ""
    serving_key: str = ""
    client_ca: str = ""
    pod_pids_limit: int = POD_PIDS_LIMIT  # --pod-max-pids (the kubelet's podPidsLimit); negative: none
    eviction: EvictionConfig = field(default_factory=EvictionConfig)
    system_reserved: Mapping[str, Fraction] = field(default_factory=dict)  # --system-reserved
    kube_reserved: Mapping[str, Fraction] = field(default_factory=dict)  # --kube-reserved

    @property
    def agent_dir(self) -> str:
        return os.path.join(self.data_dir, "agent")


def make_launcher(config: AgentConfig, pod_cidr: str, recorder: EventRecorder, client: Client,
                  allocatable: dict[str, Any], memory_bytes: int) -> Launcher:
    """The runtime stack of this node: containers, sandboxes on the node's pod CIDR, images."""
    run = Path(config.run_dir)
    runtime = Runtime(Path(config.agent_dir), run, run / "runc")
    sandboxes = Sandboxes(run, CniConfig(bridge=config.bridge, subnet=pod_cidr, state_dir=run / "cni"))
    images = ImageStore(Path(config.data_dir) / "images", hosts=Hosts(Path(config.data_dir) / "registries"))
    return Launcher(runtime, sandboxes, images, recorder, _fetcher(client), allocatable,
                    os.path.join(config.data_dir, "seccomp"), memory_bytes, config.pod_pids_limit)


def _fetcher(client: Client) -> Any:
    """Read a namespaced object through the API; None when it does not exist."""
    async def fetch(resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await client.get_or_none(f"/api/v1/namespaces/{namespace}/{resource}/{name}")  # type: ignore[no-any-return]
    return fetch


class NodeAgent:
    """Everything one node runs, wired together."""

    launcher: Launcher  # built once the node knows its pod CIDR
    ctx: NodeContext
    dns: ClusterDns

    def __init__(self, config: AgentConfig, client: Client):
        self.config = config
        self.client = client
        self.recorder = EventRecorder(client, Source("kubelet", config.node_name))
        facts = host.gather(config.data_dir, config.node_ip)
        cgroups.use_root(config.cgroup_root)
        self.registration = Registration(client, config.node_name, facts, config.kubelet_port,
                                         reservation(config.system_reserved, config.kube_reserved))
        self.workers: dict[str, PodWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.sources = SourceWatches(client, self._on_source_change)

    async def run(self) -> None:
        self.recorder.start()
        runner = await self._serve()
        try:
            await self.registration.register()
            pod_cidr = await self.registration.wait_for_pod_cidr()
            await ensure_unreachable_routes()
            allocatable = self.registration.node.get("status", {}).get("allocatable", {})
            upstreams = list(self.config.dns_upstreams) if self.config.dns_upstreams is not None else None
            self.dns = ClusterDns(self.client, upstreams=upstreams)
            self.launcher = make_launcher(self.config, pod_cidr, self.recorder, self.client, allocatable,
                                          self.registration.facts.memory_bytes)
            self.launcher.services = lambda: list(self.dns.cache.services.values())
            volumes = VolumeManager(self.client, os.path.join(self.config.agent_dir, "pods"), allocatable=allocatable)
            prober = Prober(self.launcher.runtime.exec, self._pod_ip, self._on_probe_result, self._on_probe_event)
            self.ctx = NodeContext(self.client, self.recorder, self.config.node_name, self.config.node_ip,
                                   self.launcher, volumes, prober)
            selector = {"fieldSelector": f"spec.nodeName={self.config.node_name}"}
            await self._remove_orphans(selector)
            proxy = ServiceProxy(self.client, [self.config.node_ip],  # after the unreachable routes: it reroutes them
                                 local_ips=[self.dns.listen[0]])
            routes = HostGateway(self.client, self.config.node_name)  # pods of other nodes, via their addresses
            await asyncio.gather(self.registration.heartbeat(), self._proxy(proxy), self.dns.run(), routes.run(),
                                 self._eviction_manager().run(),
                                 list_and_watch(self.client, path(PODS), self._on_pod, selector))
        finally:
            for task in self.tasks.values():
                task.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            await self.sources.close()
            await runner.cleanup()
            await self.recorder.stop()

    async def _serve(self) -> web.AppRunner:
        app = server.build(self.locate_log, PodTargets(self.workers, lambda: getattr(self, "launcher", None)))
        sources = host_stat_sources()
        sampler = Sampler(lambda: read_sample(sources))
        server.serve_stats(app, NodeStats(self.config.node_name, sampler, self.stat_targets))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        ctx = server.ssl_context(self.config.serving_cert, self.config.serving_key, self.config.client_ca)
        await web.TCPSite(runner, self.config.node_ip, self.config.kubelet_port, ssl_context=ctx).start()
        return runner

    def _eviction_manager(self) -> EvictionManager:
        """Evictions measure the node's data dir, the runtime's writable layers and the pods' volumes."""
        meter = Meter(self.registration.facts.memory_bytes, self.config.data_dir, self.launcher.runtime.state_dir,
                      self.ctx.volumes.volume_dir)
        return EvictionManager(self.config.eviction, meter, self.eviction_candidates, self._evict, self.registration,
                               self.recorder, self.config.node_name)

    def eviction_candidates(self) -> list[Candidate]:
        """The active pods, with each container's latest runtime id."""
        return [Candidate(w.pod, {name: r.runtime_id for name, r in w.records.items() if r.runtime_id})
                for w in self.workers.values() if w.active and w.pod is not None]

    async def _evict(self, uid: str, eviction: Eviction) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            await worker.evict(eviction)

    async def _on_source_change(self, kind: str, obj: dict[str, Any]) -> None:
        """A ConfigMap or Secret changed: wake the pods that mount it, so their files follow."""
        if kind != "MODIFIED":
            return
        namespace, name, source = obj["metadata"]["namespace"], obj["metadata"]["name"], obj["kind"]
        for worker in self.workers.values():
            if worker.pod and worker.pod["metadata"]["namespace"] == namespace and mounts_source(worker.pod, source, name):
                worker.refresh_volumes()

    async def _proxy(self, proxy: ServiceProxy) -> None:
        """Service rules while the agent runs; removed on an orderly stop (a crash keeps them working)."""
        try:
            await proxy.run()
        finally:
            await asyncio.shield(proxy.cleanup())

    async def _remove_orphans(self, selector: dict[str, str]) -> None:
        """Tear down sandboxes of pods that were deleted while the agent was away."""
        listed = await self.client.get(path(PODS), selector)
        alive = {p["metadata"]["uid"] for p in listed["items"]}
        for uid in self.launcher.known_pods() - alive:
            log.info("removing orphaned pod %s", uid)
            ids = [c.id for c in self.launcher.runtime.list() if c.pod_uid == uid]
            await self.launcher.teardown(uid, ids, 0)
            await self.ctx.volumes.teardown(uid)

    async def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.update(pod, deleted=True)
            self._sync_sources(gone=uid)
            return
        if worker is None:
            worker = self.workers[uid] = PodWorker(self.ctx, uid, pod)
            worker.adopt()
            self.tasks[uid] = asyncio.create_task(self._run_worker(worker))
        worker.update(pod)
        self._sync_sources()

    def _sync_sources(self, gone: str = "") -> None:
        """Watch what the node's pods mount; a deleted pod's objects are no longer this node's to read."""
        self.sources.sync(w.pod for w in self.workers.values() if w.pod is not None and w.uid != gone)

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            self.workers.pop(worker.uid, None)
            self.tasks.pop(worker.uid, None)
            self._sync_sources()

    def _pod_ip(self, uid: str) -> str:
        worker = self.workers.get(uid)
        return worker._pod_ip if worker else ""

    def _owner(self, runtime_id: str) -> tuple[PodWorker, str] | None:
        """The worker and container name that own a runtime container id."""
        for worker in self.workers.values():
            for name, record in worker.records.items():
                if record.runtime_id == runtime_id:
                    return worker, name
        return None

    def _on_probe_result(self, runtime_id: str, kind: str, ok: bool, message: str) -> None:
        owner = self._owner(runtime_id)
        if owner is not None:
            owner[0].probe_result(runtime_id, kind, ok)

    def _on_probe_event(self, runtime_id: str, reason: str, message: str) -> None:
        owner = self._owner(runtime_id)
        if owner is not None and owner[0].pod is not None:
            pod = owner[0].pod
            self.recorder.record(reference(pod, field_path(pod, owner[1])), "Warning", reason, message)

    def stat_targets(self) -> list[PodTarget]:
        """The pods and running containers the stats endpoints report (as the kubelet: running ones only)."""
        return [PodTarget(w.pod["metadata"]["namespace"], w.pod["metadata"]["name"], w.uid,
                          tuple(ContainerTarget(name, r.runtime_id, r.observed.started_at)
                                for name, r in w.records.items() if r.observed.state == "running"))
                for w in self.workers.values() if w.pod is not None]

    def locate_log(self, namespace: str, name: str, container: str, previous: bool) -> tuple[str, Any]:
        """The log file for ``kubectl logs`` and whether its container still runs."""
        worker = next((w for w in self.workers.values() if w.pod and w.pod["metadata"]["namespace"] == namespace
                       and w.pod["metadata"]["name"] == name), None)
        if worker is None or worker.pod is None:
            raise not_found("pods", name)
        record = worker.records.get(container)
        state = record.observed if record else None
        if state is None or record is None or record.attempt < 0:
            reason = state.reason if state else "ContainerCreating"
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        attempt = record.attempt - 1 if previous else record.attempt
        if previous and attempt < 0:
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        directory = f"{pod_log_dir(worker.pod)}/{container}"
        log_file = f"{directory}/{attempt}.log" if previous else latest_log(directory)
        if log_file is None:
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
        running_id = record.runtime_id

        def running() -> bool:
            return not previous and record.runtime_id == running_id and record.observed.state == "running"
        return log_file, running


def mounts_source(pod: dict[str, Any], kind: str, name: str) -> bool:
    """Whether a pod's volumes project ConfigMap or Secret ``name``."""
    key, field = ("configMap", "name") if kind == "ConfigMap" else ("secret", "secretName")
    for volume in pod["spec"].get("volumes") or []:
        if (volume.get(key) or {}).get(field) == name:
            return True
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get(key) or {}).get("name") == name:
                return True
    return False
