"""The OCI runtime config of a container: a plain spec in, runc's ``config.json`` out, no I/O.

Built as containerd's CRI plugin builds it, because that is what Kubernetes users see: the
default capabilities, masked and read-only paths, mounts (without ``/run``; with a read-only
cgroupfs; the pod's ``/dev/shm`` shared), an own mount namespace with the network, IPC and UTS
namespaces joined from the sandbox's pins, an own PID namespace unless the pod shares one
(``shareProcessNamespace``: joined from its pin too), devices denied but runc's defaults, no
rlimits (runc fails on limits above the agent's own hard limits), no swap under a memory limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tinykube.node.runtime.cgroups import Layout, Resources

OCI_VERSION = "1.0.2"  # what runc 1.1 implements
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # containerd's

# containerd's defaults (oci/spec.go), which Kubernetes users see through the CRI.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE")
DEFAULT_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi")
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

Json = dict[str, Any]


class PodNamespaces(Protocol):
    """What a container needs of its sandbox: the pinned namespaces to join, the pod's /dev/shm."""

    @property
    def pid_ns(self) -> Path | None: ...

    @property
    def netns(self) -> Path: ...

    @property
    def ipc(self) -> Path: ...

    @property
    def uts(self) -> Path: ...

    @property
    def shm_dir(self) -> Path | None: ...


@dataclass(frozen=True)
class Mount:
    """An OCI mount; a volume is a ``bind`` with ``rbind`` in its options."""

    source: str | Path
    destination: str
    type: str = "bind"
    options: list[str] = field(default_factory=lambda: ["rbind", "rprivate", "rw"])


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to run one container; no Kubernetes objects.

    The rootfs is either ``rootfs_layers`` (image layer dirs, top first, mounted as an overlay
    with the writable layer in the container's own dir) or ``rootfs_dir`` (used as is).
    """

    id: str
    pod_uid: str
    name: str
    args: list[str]
    log_path: str | Path  # CRI format, written by conmon
    rootfs_layers: list[Path] = field(default_factory=list)
    rootfs_dir: Path | None = None
    env: list[str] = field(default_factory=list)  # "K=V"
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    sandbox: PodNamespaces | None = None  # None: the container gets namespaces of its own
    cgroup_path: str = ""  # cgroups.container_cgroup(...)
    resources: Resources | None = None
    tty: bool = False
    stdin: bool = False  # keep the process's stdin open for `kubectl attach -i` (conmon -i)
    stdin_once: bool = False  # close it after the first attached client detaches
    readonly_rootfs: bool = False
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    no_new_privileges: bool = False  # Kubernetes' allowPrivilegeEscalation defaults to true
    masked_paths: tuple[str, ...] = DEFAULT_MASKED_PATHS
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY_PATHS
    oom_score_adj: int | None = None
    privileged: bool = False  # writable /sys and cgroupfs, devices cgroup open (no host device nodes added)
    seccomp: Json | None = None  # the OCI linux.seccomp; None: unconfined
    sysctl: dict[str, str] = field(default_factory=dict)
    apparmor_profile: str = ""  # a loaded profile's name; "": unconfined

    def __post_init__(self) -> None:
        if bool(self.rootfs_layers) == (self.rootfs_dir is not None):
            raise ValueError("give exactly one of rootfs_layers and rootfs_dir")


def build_config(spec: ContainerSpec, root_path: str, *, layout: Layout = "hybrid",
                 swap_accounting: bool = False) -> Json:
    """The runc ``config.json`` for ``spec``, as containerd's CRI plugin would build it."""
    return {
        "ociVersion": OCI_VERSION,
        "process": _process(spec),
        "root": {"path": root_path, "readonly": spec.readonly_rootfs},
        "mounts": container_mounts(spec),
        "linux": _linux(spec, layout, swap_accounting),
    }


def default_mounts(privileged: bool = False) -> list[Mount]:
    """containerd's default mounts with CRI's changes: no /run tmpfs, a read-only cgroupfs.

    A privileged container gets /sys and the cgroupfs read-write (``WithWriteableSysfs``/``Cgroupfs``).
    """
    sys_mode = "rw" if privileged else "ro"
    return [
        Mount("proc", "/proc", "proc", ["nosuid", "noexec", "nodev"]),
        Mount("tmpfs", "/dev", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount("devpts", "/dev/pts", "devpts",
              ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        Mount("shm", "/dev/shm", "tmpfs", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        Mount("mqueue", "/dev/mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        Mount("sysfs", "/sys", "sysfs", ["nosuid", "noexec", "nodev", sys_mode]),
        Mount("cgroup", "/sys/fs/cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", sys_mode]),
    ]


def container_mounts(spec: ContainerSpec) -> list[Json]:
    """Defaults, the pod's shared /dev/shm, then the spec's mounts (parents before children).

    A spec mount replaces a default (and the pod's /dev/shm) at the same destination, as in
    containerd.
    """
    extra = list(spec.mounts)
    taken = {os.path.normpath(m.destination) for m in extra}
    if spec.sandbox is not None and spec.sandbox.shm_dir is not None and "/dev/shm" not in taken:
        extra.insert(0, Mount(spec.sandbox.shm_dir, "/dev/shm"))
        taken.add("/dev/shm")
    chosen = [m for m in default_mounts(spec.privileged) if m.destination not in taken]
    chosen += sorted(extra, key=lambda m: os.path.normpath(m.destination).count("/"))
    return [{"destination": m.destination, "type": m.type, "source": str(m.source), "options": list(m.options)}
            for m in chosen]


def _process(spec: ContainerSpec) -> Json:
    env = list(spec.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    user: Json = {"uid": spec.uid, "gid": spec.gid}
    if spec.additional_gids:
        user["additionalGids"] = list(spec.additional_gids)
    caps = list(spec.capabilities)
    process: Json = {
        "terminal": spec.tty, "user": user, "args": list(spec.args), "env": env, "cwd": spec.cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": spec.no_new_privileges,
    }
    if spec.oom_score_adj is not None:
        process["oomScoreAdj"] = spec.oom_score_adj
    if spec.apparmor_profile:
        process["apparmorProfile"] = spec.apparmor_profile
    return process


def _linux(spec: ContainerSpec, layout: Layout, swap_accounting: bool) -> Json:
    linux: Json = {
        "namespaces": _namespaces(spec.sandbox),
        "resources": _resources(spec.resources, layout, swap_accounting, spec.privileged),
        "maskedPaths": list(spec.masked_paths),
        "readonlyPaths": list(spec.readonly_paths),
    }
    if spec.cgroup_path:
        linux["cgroupsPath"] = spec.cgroup_path
    if spec.seccomp is not None:
        linux["seccomp"] = spec.seccomp
    if spec.sysctl:
        linux["sysctl"] = dict(spec.sysctl)
    return linux


def _namespaces(sandbox: PodNamespaces | None) -> list[Json]:
    """Own mount namespace; network, IPC and UTS joined from the pod's pins; PID too when the pod shares it."""
    if sandbox is None:
        return [{"type": kind} for kind in ("pid", "mount", "network", "ipc", "uts")]
    pid: Json = {"type": "pid", "path": str(sandbox.pid_ns)} if sandbox.pid_ns is not None else {"type": "pid"}
    return [pid, {"type": "mount"}, {"type": "network", "path": str(sandbox.netns)},
            {"type": "ipc", "path": str(sandbox.ipc)}, {"type": "uts", "path": str(sandbox.uts)}]


def _resources(r: Resources | None, layout: Layout, swap_accounting: bool, privileged: bool = False) -> Json:
    out: Json = {"devices": [{"allow": privileged, "access": "rwm"}]}  # privileged: WithAllDevicesAllowed
    if r is None:
        return out
    cpu = {k: v for k, v in (("shares", r.cpu_shares), ("quota", r.cpu_quota_us), ("period", r.cpu_period_us))
           if v is not None}
    if cpu:
        out["cpu"] = cpu
    if r.memory_limit_bytes is not None:
        out["memory"] = {"limit": r.memory_limit_bytes}
        if swap_accounting and layout != "v2":  # no swap for the container, as the kubelet's NoSwap
            out["memory"]["swap"] = r.memory_limit_bytes
    if r.pids_limit is not None:
        out["pids"] = {"limit": r.pids_limit}
    return out
