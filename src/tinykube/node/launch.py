"""From Pod objects to runtime calls: sandbox, image, container spec, and their events.

The pod worker decides *what* to do; the launcher knows *how*: it pulls images (``Pulling``,
``Pulled``, ``ErrImagePull`` → ``ImagePullBackOff``), builds the runtime's plain
``ContainerSpec`` from the pod and the image config, starts it (``Created``, ``Started``), and
tears everything down.  Failures come back as :class:`LaunchError` carrying the waiting reason
the API shows and when to retry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinykube.client.events import EventRecorder, reference
from tinykube.node import containerspec, envvars, servicelinks
from tinykube.node import security as node_security
from tinykube.node.runtime import cgroups
from tinykube.node.runtime.cgroups import Resources
from tinykube.node.runtime.containers import ContainerSpec, ContainerStatus, Runtime
from tinykube.node.runtime.oci import Mount
from tinykube.node.runtime.images import Image, ImageError, ImageNeverPull, ImageStore, PullError
from tinykube.node.runtime.cni import PortMapping
from tinykube.node.runtime.sandbox import DnsConfig, HostEntry, Sandboxes
from tinykube.node.volumes import VolumeError, VolumePath, container_mounts

log = logging.getLogger(__name__)

PULL_BACKOFF_START = 10.0  # seconds: the kubelet's image pull back-off doubles from here
PULL_BACKOFF_MAX = 300.0
CONFIG_RETRY = 2.0  # seconds before a container waiting on a missing ConfigMap/Secret key is tried again
RESYNC_AFTER_ERROR = 1.0  # seconds: the pod worker re-syncs soon after a failed pull and then reports the back-off
MAX_TERMINATION_MESSAGE = 4096  # bytes the kubelet reads from terminationMessagePath
FALLBACK_LOG_LINES = 80  # FallbackToLogsOnError: the log's last lines...
FALLBACK_LOG_BYTES = 2048  # ...and at most this many bytes of them
CLUSTER_DNS = "10.43.0.10"
CLUSTER_DOMAIN = "cluster.local"
LOG_ROOT = "/var/log/pods"

Obj = dict[str, Any]
ExitCallback = Callable[[str, int, str, str, str], None]


class LaunchError(Exception):
    """A container could not be started; ``reason`` is its waiting reason."""

    def __init__(self, reason: str, message: str, retry_after: float):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Started:
    runtime_id: str
    started_at: str
    image: str
    image_id: str


def pod_log_dir(pod: Obj) -> str:
    meta = pod["metadata"]
    return os.path.join(LOG_ROOT, f"{meta['namespace']}_{meta['name']}_{meta['uid']}")


def container_id(uid: str, name: str, attempt: int) -> str:
    """A runc container id that names its pod, container and attempt (and fits runc's limits)."""
    return f"{uid}-{name}-{attempt}"


def field_path(pod: Obj, name: str) -> str:
    """``spec.containers{nginx}`` or ``spec.initContainers{init-mydb}``: what events point at."""
    inits = {c["name"] for c in pod["spec"].get("initContainers", [])}
    return f"spec.initContainers{{{name}}}" if name in inits else f"spec.containers{{{name}}}"


def host_ports(pod: Obj) -> list[PortMapping]:
    """The pod's hostPort mappings, for the portmap CNI plugin."""
    return [PortMapping(p["hostPort"], p["containerPort"], p.get("protocol", "TCP").lower(), p.get("hostIP", ""))
            for c in pod["spec"].get("containers", []) for p in c.get("ports") or [] if p.get("hostPort")]


def termination_file(pod: Obj, name: str, attempt: int) -> str:
    """Where a container attempt's termination message lands on the host."""
    return os.path.join(pod_log_dir(pod), name, f"{attempt}.termination-log")


def termination_mount(pod: Obj, container: Obj, attempt: int) -> Mount:
    """The empty file bound at ``terminationMessagePath`` (default /dev/termination-log)."""
    source = termination_file(pod, container["name"], attempt)
    with open(source, "a"):
        pass
    return Mount(source, container.get("terminationMessagePath") or "/dev/termination-log", "bind", ["rbind", "rw"])


def termination_message(pod: Obj, container: Obj, attempt: int, exit_code: int) -> str:
    """The kubelet's terminated.message: the file (4096 bytes at most), or the log tail on failure.

    With ``FallbackToLogsOnError`` an empty file and a non-zero exit take the last 80 lines
    (2048 bytes at most) of the container's log instead.
    """
    try:
        with open(termination_file(pod, container["name"], attempt), errors="replace") as f:
            message = f.read(MAX_TERMINATION_MESSAGE)
    except OSError:
        message = ""
    if message or exit_code == 0 or container.get("terminationMessagePolicy") != "FallbackToLogsOnError":
        return message
    log_file = os.path.join(pod_log_dir(pod), container["name"], f"{attempt}.log")
    try:
        with open(log_file, errors="replace") as f:
            lines = [line.split(" ", 3)[-1] for line in f.read().splitlines()[-FALLBACK_LOG_LINES:]]
    except OSError:
        return ""
    return "\n".join(lines)[-FALLBACK_LOG_BYTES:] + "\n"


def host_aliases(pod: Obj) -> list[HostEntry]:
    """``spec.hostAliases``: extra /etc/hosts lines."""
    return [HostEntry(a["ip"], list(a.get("hostnames") or [])) for a in pod["spec"].get("hostAliases") or []]


def pod_domain(pod: Obj) -> str:
    """The pod's domain when it has a subdomain: ``SUBDOMAIN.NS.svc.cluster.local`` (its FQDN's tail)."""
    subdomain = pod["spec"].get("subdomain")
    return f"{subdomain}.{pod['metadata']['namespace']}.svc.{CLUSTER_DOMAIN}" if subdomain else ""


def host_dns(text: str) -> DnsConfig:
    """The host's resolv.conf (dnsPolicy Default): nameservers, search and options."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[0] == "nameserver":
            servers.append(fields[1])
        elif fields and fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields and fields[0] == "options":
            options += fields[1:]
    return DnsConfig(servers, searches, options)


def dns_config(pod: Obj, host_resolv: str = "") -> DnsConfig:
    """resolv.conf by dnsPolicy, then merged with dnsConfig, as the kubelet's dns configurer does.

    ClusterFirst (the default, also for ClusterFirstWithHostNet): the cluster DNS and the namespace's
    search path with ndots:5; Default: the host's; None: dnsConfig alone.  dnsConfig appends
    nameservers and searches (without duplicates) and overrides options by name.
    """
    spec = pod["spec"]
    policy = spec.get("dnsPolicy", "ClusterFirst")
    if policy == "None":
        base = DnsConfig()
    elif policy == "Default":
        base = host_dns(host_resolv)
    else:
        ns = pod["metadata"]["namespace"]
        base = DnsConfig([CLUSTER_DNS], [f"{ns}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN],
                         ["ndots:5"])
    extra = spec.get("dnsConfig") or {}
    servers = base.nameservers + [n for n in extra.get("nameservers") or [] if n not in base.nameservers]
    searches = base.searches + [d for d in extra.get("searches") or [] if d not in base.searches]
    options = {o.split(":")[0]: o for o in base.options}
    for option in extra.get("options") or []:
        options[option["name"]] = f"{option['name']}:{option['value']}" if option.get("value") else option["name"]
    return DnsConfig(servers, searches, list(options.values()))


class Launcher:
    """Runtime operations for pods, with their events."""

    def __init__(self, runtime: Runtime, sandboxes: Sandboxes, images: ImageStore, recorder: EventRecorder,
                 fetch: envvars.Fetch, allocatable: Obj, seccomp_root: str, memory_capacity: int,
                 pod_pids_limit: int = node_security.POD_PIDS_LIMIT):
        self.runtime = runtime
        self.sandboxes = sandboxes
        self.images = images
        self.recorder = recorder
        self.fetch = fetch  # reads ConfigMaps and Secrets through the API
        self.allocatable = allocatable  # the node's, for resourceFieldRef without a limit
        self.seccomp_root = seccomp_root  # Localhost seccomp profiles live here
        self.memory_capacity = memory_capacity  # bytes: Burstable containers' oom_score_adj scales with it
        self.pod_pids_limit = pod_pids_limit  # processes per pod cgroup (--pod-max-pids); negative: unlimited
        self.services: Callable[[], list[Obj]] = list  # every Service the node knows, for service links
        self._pull_backoff: dict[tuple[str, str], tuple[float, float]] = {}  # (uid, image) → (delay, until)
        self._sandbox_ips: dict[str, str] = {}

    async def ensure_sandbox(self, pod: Obj) -> str:
        """The pod's network namespace (created once), returning the pod IP."""
        uid = pod["metadata"]["uid"]
        if uid in self._sandbox_ips:
            return self._sandbox_ips[uid]
        await asyncio.to_thread(cgroups.ensure_pod_cgroup, uid, node_security.qos(pod),
                                node_security.pod_resources(pod, self.pod_pids_limit))
        hostname = pod["spec"].get("hostname") or pod["metadata"]["name"]
        sandbox = await self.sandboxes.create(uid, hostname[:63], dns_config(pod, _host_resolv()), host_aliases(pod),
                                              domain=pod_domain(pod), port_mappings=host_ports(pod),
                                              share_pid=bool(pod["spec"].get("shareProcessNamespace")))
        self._sandbox_ips[uid] = sandbox.ip
        return sandbox.ip

    def adopt(self, uid: str, on_exit: ExitCallback) -> tuple[str, list[ContainerStatus]]:
        """What the runtime already runs for a pod after an agent restart: its IP and containers.

        Exit notifications of the adopted containers are re-armed to ``on_exit``.
        """
        sandbox = self.sandboxes.get(uid)
        if sandbox is None:
            return "", []
        self._sandbox_ips[uid] = sandbox.ip
        containers = [c for c in self.runtime.list() if c.pod_uid == uid]
        for status in containers:
            if status.state == "running":
                self.runtime.watch_exit(status.id, lambda s: on_exit(s.id, s.exit_code or 0, exit_reason(s),
                                                                     s.started_at, s.finished_at))
        return sandbox.ip, containers

    def known_pods(self) -> set[str]:
        """UIDs of every pod with a sandbox on this node (to find orphans at start)."""
        return {s.pod_uid for s in self.sandboxes.list()}

    async def start_container(self, pod: Obj, container: Obj, attempt: int, on_exit: ExitCallback,
                              volumes: dict[str, VolumePath]) -> Started:
        ref = reference(pod, field_path(pod, container["name"]))
        image = await self._pull(pod, container, ref)
        try:
            links = servicelinks.service_env(self.services(), pod["spec"].get("enableServiceLinks", True),
                                             pod["metadata"]["namespace"])
            own_env = await envvars.pod_env(pod, container, self.fetch, self.allocatable, links)
        except envvars.EnvError as e:
            self.recorder.record(ref, "Warning", "Failed", f"Error: {e}")
            raise LaunchError("CreateContainerConfigError", str(e), CONFIG_RETRY) from e
        try:
            spec = self._container_spec(pod, container, attempt, image, own_env, volumes)
        except (VolumeError, node_security.SecurityError) as e:
            self.recorder.record(ref, "Warning", "Failed", f"Error: {e.message}")
            raise LaunchError(e.reason, e.message, CONFIG_RETRY) from e

        def exited(status: ContainerStatus) -> None:
            on_exit(status.id, status.exit_code or 0, exit_reason(status), status.started_at, status.finished_at)
        try:
            status = await self.runtime.create_and_start(spec, exited)
        except Exception as e:  # runc's own words are what the user needs to see
            self.recorder.record(ref, "Warning", "Failed", f"Error: {e}")
            raise LaunchError("CreateContainerError", str(e), PULL_BACKOFF_START) from e
        self.recorder.record(ref, "Normal", "Created", f"Created container {container['name']}")
        self.recorder.record(ref, "Normal", "Started", f"Started container {container['name']}")
        image_id = image.repo_digests[0] if image.repo_digests else image.id
        return Started(spec.id, status.started_at, container["image"], image_id)

    async def _pull(self, pod: Obj, container: Obj, ref: Obj) -> Image:
        """kubelet's EnsureImageExists with its events and the per-image pull back-off."""
        name = container["image"]
        key = (pod["metadata"]["uid"], name)
        delay, until = self._pull_backoff.get(key, (0.0, 0.0))
        if time.monotonic() < until:
            self.recorder.record(ref, "Normal", "BackOff", f'Back-off pulling image "{name}"')
            self.recorder.record(ref, "Warning", "Failed", "Error: ImagePullBackOff")
            raise LaunchError("ImagePullBackOff", f'Back-off pulling image "{name}"', until - time.monotonic())
        pulling = lambda: self.recorder.record(ref, "Normal", "Pulling", f'Pulling image "{name}"')  # noqa: E731
        try:
            ensured = await self.images.ensure(name, container.get("imagePullPolicy", "IfNotPresent"), on_pulling=pulling)
        except ImageNeverPull as e:
            self.recorder.record(ref, "Warning", "ErrImageNeverPull", str(e))
            raise LaunchError("ErrImageNeverPull", str(e), PULL_BACKOFF_START) from e
        except ImageError as e:
            delay = min(PULL_BACKOFF_MAX, PULL_BACKOFF_START if delay == 0 else delay * 2)
            self._pull_backoff[key] = (delay, time.monotonic() + delay)
            message = e.cri_message if isinstance(e, PullError) else str(e)
            self.recorder.record(ref, "Warning", "Failed", f'Failed to pull image "{name}": {message}')
            self.recorder.record(ref, "Warning", "Failed", "Error: ErrImagePull")
            raise LaunchError("ErrImagePull", message, RESYNC_AFTER_ERROR) from e
        self._pull_backoff.pop(key, None)
        if ensured.pulled:
            took = ensured.duration
            self.recorder.record(ref, "Normal", "Pulled", f'Successfully pulled image "{name}" in {took:.3f}s '
                                 f"({took:.3f}s including waiting). Image size: {ensured.image.size} bytes.")
        else:
            self.recorder.record(ref, "Normal", "Pulled", f'Container image "{name}" already present on machine')
        return ensured.image

    def _container_spec(self, pod: Obj, container: Obj, attempt: int, image: Image,
                        own_env: dict[str, str], volumes: dict[str, VolumePath]) -> ContainerSpec:
        uid = pod["metadata"]["uid"]
        config = image.config
        env = containerspec.environment(list(config.env), own_env)
        args = containerspec.argv(container, list(config.entrypoint), list(config.cmd), own_env)  # $(VAR): pod env only
        if not args:
            raise LaunchError("CreateContainerError", "no command specified", PULL_BACKOFF_START)
        security = node_security.container_security(
            pod, container, node_security.ImageUser(config.user, _image_file(image, "etc/passwd"),
                                                    _image_file(image, "etc/group")), self.seccomp_root)
        lim = containerspec.limits(container)
        log_dir = os.path.join(pod_log_dir(pod), container["name"])
        os.makedirs(log_dir, exist_ok=True)
        sandbox = self.sandboxes.get(uid)
        if sandbox is None:
            raise LaunchError("CreateContainerError", f"sandbox of pod {uid} is gone", PULL_BACKOFF_START)
        qos = (pod.get("status") or {}).get("qosClass", "BestEffort")
        runtime_id = container_id(uid, container["name"], attempt)
        return ContainerSpec(
            id=runtime_id, pod_uid=uid, name=container["name"], args=args,
            log_path=os.path.join(log_dir, f"{attempt}.log"), rootfs_layers=list(reversed(image.layers)),
            env=[f"{k}={v}" for k, v in env.items()], cwd=container.get("workingDir") or config.working_dir or "/",
            sandbox=sandbox, **vars(security), stdin=bool(container.get("stdin")), tty=bool(container.get("tty")),
            stdin_once=bool(container.get("stdinOnce")),
            oom_score_adj=node_security.oom_score_adj(pod, container, self.memory_capacity),
            mounts=sandbox.mounts() + container_mounts(container, volumes, own_env)
            + [termination_mount(pod, container, attempt)],
            cgroup_path=cgroups.container_cgroup(uid, qos, runtime_id),
            resources=Resources(cpu_shares=lim.cpu_shares, cpu_quota_us=lim.cpu_quota_us,
                                cpu_period_us=lim.cpu_period_us, memory_limit_bytes=lim.memory_limit_bytes or None))

    async def teardown(self, uid: str, runtime_ids: list[str], grace: int) -> None:
        """Stop containers (in parallel, grace then SIGKILL), remove them, the sandbox and the cgroup."""
        await asyncio.gather(*(self.runtime.stop(i, grace) for i in runtime_ids), return_exceptions=True)
        await asyncio.gather(*(self.runtime.remove(i) for i in runtime_ids), return_exceptions=True)
        try:
            await self.sandboxes.remove(uid)
            self._sandbox_ips.pop(uid, None)
            for log_dir in Path(LOG_ROOT).glob(f"*_{uid}"):  # the kubelet removes a pod's logs with the pod
                await asyncio.to_thread(shutil.rmtree, log_dir, True)
        finally:  # a sandbox that fails to go must not also leave the pod's cgroup behind
            await asyncio.to_thread(cgroups.remove_pod_cgroup, uid)
        for key in [k for k in self._pull_backoff if k[0] == uid]:
            del self._pull_backoff[key]


def exit_reason(status: ContainerStatus) -> str:
    """Completed, Error or OOMKilled, as the kubelet words a terminated container."""
    if status.oom_killed:
        return "OOMKilled"
    return "Completed" if (status.exit_code or 0) == 0 else "Error"


def _host_resolv() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            return f.read()
    except OSError:
        return ""


def _image_file(image: Image, name: str) -> str:
    """A file from the image's top-most layer that has it ("" when none has)."""
    for layer in reversed(image.layers):
        candidate = Path(layer) / name
        if candidate.is_file():
            return candidate.read_text(errors="replace")
    return ""
