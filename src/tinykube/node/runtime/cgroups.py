"""The pod cgroup tree: ``/tinykube/{burstable,besteffort}/pod<UID>`` in every host hierarchy.

Shaped after kubelet ``cm/types.go``: a cgroup is named by abstract components (``tinykube``,
QoS class, ``pod<UID>``, container id) and that one name is made real in each hierarchy the
host mounts (cgroup v1: one per controller; v2: the unified tree; hybrid: both, the unified
one without controllers).  Guaranteed pods sit directly under ``/tinykube`` as the kubelet puts
them under ``/kubepods``.  Only the cgroupfs driver exists: PID 1 is not always systemd.

The runtime creates the QoS parents and the pod cgroup (with the pod-level limits); runc
creates and removes each container's cgroup below it (``linux.cgroupsPath``).  Everything is
idempotent and rebuilt from the host (``list_pod_cgroups``), so an agent restart loses nothing.

The read side (``pod_usages``, ``node_usage``) takes each cgroup's CPU and memory accounting
the way cAdvisor does for the kubelet: cumulative CPU time, and the working set (usage minus
inactive file cache).
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Layout = Literal["v1", "v2", "hybrid"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
TOP = "tinykube"
QOS_CLASSES = ("guaranteed", "burstable", "besteffort")
BESTEFFORT_SHARES = 2  # the kubelet's MinShares for the besteffort parent: idle pods yield the CPU
RMDIR_ATTEMPTS = 50  # x RMDIR_BACKOFF = 1 s for SIGKILLed leftovers to leave the cgroup
RMDIR_BACKOFF = 0.02  # seconds
V2_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")  # what pods need enabled below the root
_V1_OPTIONS = {"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children"}


class CgroupBusy(OSError):
    """A pod cgroup still holds processes after they were killed; the caller retries later."""


@dataclass(frozen=True)
class Resources:
    """cgroup limits in the units the kernel takes; ``None`` leaves the kernel's default."""

    cpu_shares: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    memory_limit_bytes: int | None = None
    pids_limit: int | None = None


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: where it is, its version, the controllers it carries."""

    path: Path
    version: Literal[1, 2]
    controllers: frozenset[str]


@dataclass(frozen=True)
class PodCgroup:
    """A pod cgroup found on the host."""

    uid: str
    qos: str
    path: str


def use_root(name: str) -> None:
    """Put this process's pod cgroups under ``/<name>`` instead of ``/tinykube`` (``--cgroup-root``).

    Process-wide because one process runs at most one node agent, and every path below derives
    from it; two agents on one machine (test "hosts" in network namespaces) need separate trees
    so that neither lists, measures or removes the other's pods.
    """
    global TOP
    TOP = name


def parse_hierarchies(mountinfo: str, root: Path = CGROUP_ROOT) -> list[Hierarchy]:
    """The cgroup mounts under ``root`` in a /proc/self/mountinfo text (v2 controllers unread)."""
    found: dict[Path, Hierarchy] = {}
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _source, superopts = (tail.split(" ") + ["", ""])[:3]
        mountpoint = Path(fields.split(" ")[4])
        if fstype not in ("cgroup", "cgroup2") or not mountpoint.is_relative_to(root):
            continue
        version: Literal[1, 2] = 2 if fstype == "cgroup2" else 1
        options = superopts.split(",") if version == 1 else []  # v2 controllers are read from the tree
        controllers = frozenset(o for o in options if o not in _V1_OPTIONS)
        found[mountpoint] = Hierarchy(mountpoint, version, controllers)
    return list(found.values())


def layout_of(found: list[Hierarchy], root: Path = CGROUP_ROOT) -> Layout:
    """v2 when the root is the unified tree; hybrid when v1 controllers sit beside a unified tree."""
    if any(h.version == 2 and h.path == root for h in found):
        return "v2"
    return "hybrid" if any(h.version == 2 for h in found) else "v1"


@functools.cache
def hierarchies(root: Path = CGROUP_ROOT) -> tuple[Hierarchy, ...]:
    """The host's hierarchies, read once (mounts under /sys/fs/cgroup do not change at runtime)."""
    found = parse_hierarchies(Path("/proc/self/mountinfo").read_text(), root)
    return tuple(_with_v2_controllers(h) for h in found)


def detect(root: Path = CGROUP_ROOT) -> Layout:
    """``"v1"``, ``"v2"`` or ``"hybrid"``: decides which resource files and runc options apply."""
    return layout_of(list(hierarchies(root)), root)


def pod_cgroup_path(uid: str, qos: str) -> str:
    """The cgroupfs path of a pod: ``/tinykube/<qos>/pod<UID>``, guaranteed pods one level up."""
    qos = _qos(qos)
    parent = f"/{TOP}" if qos == "guaranteed" else f"/{TOP}/{qos}"
    return f"{parent}/pod{uid}"


def container_cgroup(uid: str, qos: str, container_id: str) -> str:
    """A container's cgroup (runc's ``linux.cgroupsPath``).

    Named by the container *id*, not its name: a restarted container is created while its
    exited predecessor still exists, and the two must not share (and delete) one cgroup.
    """
    return f"{pod_cgroup_path(uid, qos)}/{container_id}"


def ensure_qos_parents(root: Path = CGROUP_ROOT) -> None:
    """Create ``/tinykube`` and its burstable and besteffort children in every hierarchy."""
    for name in (f"/{TOP}", f"/{TOP}/burstable", f"/{TOP}/besteffort"):
        _ensure(name, root)
    write_resources(f"/{TOP}/besteffort", Resources(cpu_shares=BESTEFFORT_SHARES), root)


def ensure_pod_cgroup(uid: str, qos: str, resources: Resources | None = None, root: Path = CGROUP_ROOT) -> str:
    """Create the pod's cgroup (and the QoS parents) with its pod-level limits; returns its path."""
    ensure_qos_parents(root)
    path = pod_cgroup_path(uid, qos)
    _ensure(path, root)
    if resources is not None:
        write_resources(path, resources, root)
    return path


def remove_pod_cgroup(uid: str, qos: str | None = None, root: Path = CGROUP_ROOT) -> None:
    """Remove the pod's cgroup and anything left below it, killing leftover processes first.

    Idempotent.  Without ``qos`` every QoS parent is tried, so a caller that lost track of the
    pod's class (an agent restart) can still clean up.
    """
    names = [pod_cgroup_path(uid, qos)] if qos else [pod_cgroup_path(uid, q) for q in QOS_CLASSES]
    for h in hierarchies(root):
        for name in names:
            _remove_tree(h.path / name.lstrip("/"))


def list_pod_cgroups(root: Path = CGROUP_ROOT) -> list[PodCgroup]:
    """Every pod cgroup present in any hierarchy (kubelet's ``GetAllPodsFromCgroups``)."""
    found = {pod.uid: pod for h in hierarchies(root) for pod in _pods_in(h.path)}
    return sorted(found.values(), key=lambda p: p.uid)


def _pods_in(base: Path) -> list[PodCgroup]:
    """The pod cgroups below one hierarchy's mount point, in every QoS parent."""
    found = []
    for qos in QOS_CLASSES:
        parent = base / TOP if qos == "guaranteed" else base / TOP / qos
        for entry in _subdirs(parent):
            if entry.startswith("pod"):
                found.append(PodCgroup(entry[3:], qos, pod_cgroup_path(entry[3:], qos)))
    return found


def resource_writes(resources: Resources, version: Literal[1, 2]) -> list[tuple[str, str, str]]:
    """(controller, file, value) to write for ``resources``, in an order the kernel accepts."""
    r = resources
    if version == 1:
        writes = [("cpu", "cpu.shares", r.cpu_shares), ("cpu", "cpu.cfs_period_us", r.cpu_period_us),
                  ("cpu", "cpu.cfs_quota_us", r.cpu_quota_us),
                  ("memory", "memory.limit_in_bytes", r.memory_limit_bytes), ("pids", "pids.max", r.pids_limit)]
        return [(c, f, str(v)) for c, f, v in writes if v is not None]
    out = []
    if r.cpu_shares is not None:
        out.append(("cpu", "cpu.weight", str(shares_to_weight(r.cpu_shares))))
    if r.cpu_quota_us is not None:
        quota = "max" if r.cpu_quota_us < 0 else str(r.cpu_quota_us)
        out.append(("cpu", "cpu.max", f"{quota} {r.cpu_period_us or 100_000}"))
    if r.memory_limit_bytes is not None:
        out.append(("memory", "memory.max", str(r.memory_limit_bytes)))
    if r.pids_limit is not None:
        out.append(("pids", "pids.max", str(r.pids_limit)))
    return out


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000], as runc converts them."""
    return 1 + ((shares - 2) * 9999) // 262142 if shares else 0


def write_resources(path: str, resources: Resources, root: Path = CGROUP_ROOT) -> None:
    """Write the limits into each hierarchy that carries the controller."""
    for h in hierarchies(root):
        for controller, name, value in resource_writes(resources, h.version):
            if controller in h.controllers:
                (h.path / path.lstrip("/") / name).write_text(value)


# ---- accounting: what pods use (the read side, for the node's resource metrics) -------------

@dataclass(frozen=True)
class Usage:
    """One reading of a cgroup, in cAdvisor's terms."""

    cpu_ns: int  # cumulative CPU time of every task that ever ran in it
    memory_bytes: int  # charged memory, page cache included
    working_set_bytes: int  # memory minus inactive file cache: what reclaim cannot simply drop


@dataclass(frozen=True)
class StatSources:
    """The hierarchies that account CPU and memory: v1 ``cpuacct`` and ``memory``, else the unified tree."""

    cpu: Hierarchy
    memory: Hierarchy


def stat_sources(found: list[Hierarchy] | tuple[Hierarchy, ...]) -> StatSources:
    """Pick the accounting hierarchies; on hybrid hosts the unified tree carries no controllers."""
    def pick(v1_controller: str) -> Hierarchy:
        for h in found:
            if h.version == 1 and v1_controller in h.controllers:
                return h
        for h in found:
            if h.version == 2:
                return h
        raise OSError(errno.ENOENT, f"no cgroup hierarchy accounts {v1_controller}")
    return StatSources(pick("cpuacct"), pick("memory"))


def host_stat_sources(root: Path = CGROUP_ROOT) -> StatSources:
    """:func:`stat_sources` of this host's mounts."""
    return stat_sources(hierarchies(root))


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A ``key value`` per line file (``memory.stat``, ``cpu.stat``, ``/proc/meminfo`` without units)."""
    out = {}
    for line in text.splitlines():
        fields = line.replace(":", " ").split()
        if len(fields) >= 2 and fields[1].isdigit():
            out[fields[0]] = int(fields[1])
    return out


def working_set(usage: int, stat: dict[str, int], version: Literal[1, 2]) -> int:
    """Usage minus inactive file pages, floored at 0 (cAdvisor's ``setMemoryStats``).

    v1 counts the whole subtree in ``total_inactive_file``; v2's ``memory.stat`` is hierarchical already.
    """
    inactive = stat.get("total_inactive_file" if version == 1 else "inactive_file", 0)
    return max(usage - inactive, 0)


def read_usage(path: str, sources: StatSources) -> Usage | None:
    """The cgroup's reading; None when it is gone (a container that exited meanwhile)."""
    try:
        memory, stat = _memory_files(sources.memory, path)
        return Usage(_cpu_ns(sources.cpu, path), memory, working_set(memory, stat, sources.memory.version))
    except FileNotFoundError:
        return None


def node_usage(sources: StatSources, meminfo: Path = Path("/proc/meminfo")) -> Usage:
    """The whole node: the root cgroup, as the kubelet reports the node.

    A v2 root has no ``memory.current``; like runc, memory then comes from ``/proc/meminfo``
    (used = MemTotal - MemFree, of which ``Inactive(file)`` is not working set).
    """
    cpu = _cpu_ns(sources.cpu, "/")
    if sources.memory.version == 1:
        memory, stat = _memory_files(sources.memory, "/")
        return Usage(cpu, memory, working_set(memory, stat, 1))
    info = {k: v * 1024 for k, v in parse_flat_keyed(meminfo.read_text()).items()}  # kB
    used = info["MemTotal"] - info["MemFree"]
    return Usage(cpu, used, max(used - info.get("Inactive(file)", 0), 0))


def pod_usages(sources: StatSources) -> dict[tuple[str, str], Usage]:
    """Every pod cgroup and the container cgroups below it: ``(pod UID, "" or container id)`` to its reading."""
    out: dict[tuple[str, str], Usage] = {}
    for pod in _pods_in(sources.cpu.path):
        children = _subdirs(sources.cpu.path / pod.path.lstrip("/"))
        for key, path in [((pod.uid, ""), pod.path), *(((pod.uid, c), f"{pod.path}/{c}") for c in children)]:
            usage = read_usage(path, sources)
            if usage is not None:
                out[key] = usage
    return out


def _cpu_ns(h: Hierarchy, path: str) -> int:
    directory = h.path / path.lstrip("/")
    if h.version == 1:
        return int((directory / "cpuacct.usage").read_text())
    return parse_flat_keyed((directory / "cpu.stat").read_text())["usage_usec"] * 1000


def _memory_files(h: Hierarchy, path: str) -> tuple[int, dict[str, int]]:
    """Charged bytes and ``memory.stat`` of one cgroup."""
    directory = h.path / path.lstrip("/")
    usage = directory / ("memory.usage_in_bytes" if h.version == 1 else "memory.current")
    return int(usage.read_text()), parse_flat_keyed((directory / "memory.stat").read_text())


def _qos(qos: str) -> str:
    """Accept the API spelling (``BestEffort``) as well as ours."""
    qos = qos.lower()
    if qos not in QOS_CLASSES:
        raise ValueError(f"unknown QoS class {qos!r}")
    return qos


def _with_v2_controllers(h: Hierarchy) -> Hierarchy:
    if h.version == 1:
        return h
    controllers = frozenset((h.path / "cgroup.controllers").read_text().split())
    return Hierarchy(h.path, 2, controllers)


def _ensure(name: str, root: Path) -> None:
    """mkdir ``name`` in every hierarchy, preparing each new level as the controller needs."""
    for h in hierarchies(root):
        path = h.path
        for part in name.strip("/").split("/"):
            parent, path = path, path / part
            if path.is_dir():
                continue
            if h.version == 2:
                _enable_v2_controllers(parent)
            path.mkdir(exist_ok=True)
            if "cpuset" in h.controllers:
                _inherit_cpuset(path, parent)


def _enable_v2_controllers(parent: Path) -> None:
    """A v2 child sees only the controllers its parent enables in ``cgroup.subtree_control``."""
    available = set((parent / "cgroup.controllers").read_text().split())
    enabled = set((parent / "cgroup.subtree_control").read_text().split())
    wanted = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
    if wanted:
        (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))


def _inherit_cpuset(path: Path, parent: Path) -> None:
    """A v1 cpuset cgroup with empty cpus/mems refuses tasks: copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not (path / name).read_text().strip():
            (path / name).write_text((parent / name).read_text())


def _remove_tree(path: Path) -> None:
    if not path.is_dir():
        return
    for _ in range(RMDIR_ATTEMPTS):
        _kill_tasks(path)
        try:
            for directory in _bottom_up(path):
                directory.rmdir()
            return
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
        time.sleep(RMDIR_BACKOFF)
    raise CgroupBusy(errno.EBUSY, f"cgroup {path} still has processes")


def _bottom_up(path: Path) -> list[Path]:
    """Every directory of the subtree, children before parents (rmdir order)."""
    return [Path(d) for d, _, _ in os.walk(path, topdown=False)]


def _kill_tasks(path: Path) -> None:
    """SIGKILL every process left in the subtree: the pod is gone, nothing in it may outlive it."""
    for directory in _bottom_up(path):
        try:
            pids = (directory / "cgroup.procs").read_text().split()
        except FileNotFoundError:
            continue
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _subdirs(path: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(path) if e.is_dir()]
    except FileNotFoundError:
        return []
