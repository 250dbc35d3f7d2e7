"""Pod sandboxes: a pod's network, IPC, UTS (and shared PID) namespaces, its address, and its /etc files.

No pause process: one ``unshare`` exec creates the three namespaces, sets the hostname in the
UTS one and pins each on a file by bind mount (as CRI-O's ``pinns``); containers join them by
path.  The pins live under ``RUN/sandboxes``, bind-mounted on itself as a private mount, which
``unshare`` requires and which keeps the pins from propagating into other mount namespaces.
A pod with ``shareProcessNamespace`` also gets a PID namespace, pinned the same way and held by
an infra process as its PID 1 (:mod:`tinykube.node.runtime.pidns`).

Each sandbox is a directory, and everything needed to undo it is written there *before* the
step it undoes (the CNI plan before ADD), so :meth:`Sandboxes.remove` works after a crash at
any point, and :meth:`Sandboxes.list` rebuilds the set after an agent restart::

    RUN/sandboxes/<pod uid>/
        net ipc uts              the pinned namespaces (nsfs bind mounts)
        pid                      the shared PID namespace (shareProcessNamespace), pinned once its infra runs
        shm/                     the pod's /dev/shm (tmpfs), shared by its containers
        hosts resolv.conf hostname
        network.json             the CNI plan, then ADD's result (what DEL replays)
        sandbox.json             the finished :class:`Sandbox`
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinykube.node.runtime import cni, mounts, pidns, proc, records
from tinykube.node.runtime.cni import CniConfig, NetworkPlan, PortMapping
from tinykube.node.runtime.oci import Mount

UNSHARE = "unshare"
HOSTNAME = "hostname"
CLUSTER_CIDRS = ("10.42.0.0/16", "10.43.0.0/16")  # pod and service CIDRs: never leave the host
SHM_OPTIONS = "mode=1777,size=65536k"  # containerd's pod /dev/shm: 64 MiB, writable by all
SHM_FLAGS = mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC


class SandboxError(Exception):
    """A namespace, mount or network step failed; the sandbox was undone."""


@dataclass(frozen=True)
class DnsConfig:
    """The pod's resolv.conf."""

    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HostEntry:
    """An extra /etc/hosts line (a pod's hostAliases)."""

    ip: str
    hostnames: list[str]


@dataclass(frozen=True)
class Sandbox:
    """A pod's pinned namespaces, address and generated /etc files."""

    pod_uid: str
    hostname: str
    netns: Path
    ipc: Path
    uts: Path
    ip: str
    gateway: str
    hosts_file: Path
    resolv_file: Path
    hostname_file: Path
    shm_dir: Path | None
    pid_ns: Path | None = None  # the pinned PID namespace the containers share, or None: one each

    def mounts(self, readonly: bool = False) -> list[Mount]:
        """The /etc files every container of the pod mounts (read-only with a read-only rootfs)."""
        mode = "ro" if readonly else "rw"
        return [Mount(path, dest, "bind", ["rbind", "rprivate", mode]) for path, dest in (
            (self.hosts_file, "/etc/hosts"), (self.resolv_file, "/etc/resolv.conf"),
            (self.hostname_file, "/etc/hostname"))]

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sandbox:
        paths = {"netns", "ipc", "uts", "hosts_file", "resolv_file", "hostname_file", "shm_dir", "pid_ns"}
        return cls(**{k: Path(v) if k in paths and v is not None else v for k, v in data.items()})


def hosts_content(ip: str, hostname: str, domain: str = "", entries: list[HostEntry] | None = None) -> str:
    """The kubelet's managed /etc/hosts (``managedHostsFileContent``), byte for byte."""
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters",
             f"{ip}\t{hostname}.{domain}\t{hostname}" if domain else f"{ip}\t{hostname}"]
    if entries:
        lines += ["", "# Entries added by HostAliases."] + [f"{e.ip}\t" + "\t".join(e.hostnames) for e in entries]
    return "\n".join(lines) + "\n"


def resolv_content(dns: DnsConfig) -> str:
    """resolv.conf as containerd writes it from the CRI DNS config: search, nameservers, options."""
    lines = [f"search {' '.join(dns.searches)}"] if dns.searches else []
    lines += [f"nameserver {n}" for n in dns.nameservers]
    if dns.options:
        lines.append(f"options {' '.join(dns.options)}")
    return "".join(line + "\n" for line in lines)


class Sandboxes:
    """Create, find and remove pod sandboxes on this node's bridge."""

    def __init__(self, run_dir: Path, cni_config: CniConfig) -> None:
        self.root = Path(run_dir) / "sandboxes"
        self.cni = cni_config
        self._cache: dict[str, Sandbox] = {}
        self._private = False

    async def create(self, pod_uid: str, hostname: str, dns: DnsConfig, hosts_entries: list[HostEntry] | None = None,
                     *, domain: str = "", port_mappings: list[PortMapping] | None = None,
                     share_pid: bool = False) -> Sandbox:
        """The pod's sandbox, made if missing (a finished one is returned as is; a torn one redone).

        ``share_pid`` (``shareProcessNamespace``) adds one PID namespace for all its containers.
        """
        existing = self.get(pod_uid)
        if existing is not None:
            return existing
        await self.remove(pod_uid)  # leftovers of a create that crashed half-way
        self._ensure_private_root()
        d = self.root / pod_uid
        d.mkdir()
        async with contextlib.AsyncExitStack() as undo:
            undo.push_async_callback(self.remove, pod_uid)
            await _pin_namespaces(d, hostname)
            pid_ns = await _share_pid(d / "pid") if share_pid else None
            (d / "shm").mkdir()
            mounts.mount("tmpfs", d / "shm", "tmpfs", SHM_FLAGS, SHM_OPTIONS)
            attachment = await self._attach(d, pod_uid, port_mappings or [])
            sandbox = Sandbox(pod_uid, hostname, d / "net", d / "ipc", d / "uts", attachment.ip, attachment.gateway,
                              d / "hosts", d / "resolv.conf", d / "hostname", d / "shm", pid_ns)
            sandbox.hosts_file.write_text(hosts_content(sandbox.ip, hostname, domain, hosts_entries))
            sandbox.resolv_file.write_text(resolv_content(dns))
            sandbox.hostname_file.write_text(hostname + "\n")
            records.write(d / "sandbox.json", sandbox.to_json())
            undo.pop_all()
        self._cache[pod_uid] = sandbox
        return sandbox

    async def remove(self, pod_uid: str) -> None:
        """CNI DEL with the stored plan, unpin the namespaces, delete the directory; idempotent."""
        self._cache.pop(pod_uid, None)
        d = self.root / pod_uid
        if not d.exists():
            return
        network = records.read(d / "network.json")
        if network is not None:
            await cni.delete(self.cni.bin_dir, NetworkPlan.from_json(network["plan"]), network.get("result"))
        await pidns.remove(d / "pid")
        for name in ("shm", "net", "ipc", "uts"):
            mounts.unmount(d / name)
        shutil.rmtree(d)

    def get(self, pod_uid: str) -> Sandbox | None:
        """The finished sandbox of a pod, from memory or from disk."""
        sandbox = self._cache.get(pod_uid)
        if sandbox is None:
            data = records.read(self.root / pod_uid / "sandbox.json")
            if data is not None:
                sandbox = self._cache[pod_uid] = Sandbox.from_json(data)
        return sandbox

    def list(self) -> list[Sandbox]:
        """Every finished sandbox on disk (re-adoption after an agent restart)."""
        uids = sorted(p.parent.name for p in self.root.glob("*/sandbox.json"))
        return [s for s in (self.get(u) for u in uids) if s is not None]

    async def _attach(self, d: Path, pod_uid: str, ports: list[PortMapping]) -> cni.Attachment:
        """CNI ADD, with the plan on disk first so that DEL is possible whatever happens next."""
        plan = cni.plan(self.cni, pod_uid, str(d / "net"), ports)
        records.write(d / "network.json", {"plan": plan.to_json()})
        attachment = await cni.add(self.cni.bin_dir, plan)
        records.write(d / "network.json", {"plan": plan.to_json(), "result": attachment.result})
        return attachment

    def _ensure_private_root(self) -> None:
        if not self._private:
            mounts.make_private_mountpoint(self.root)
            self._private = True


async def ensure_unreachable_routes(cidrs: tuple[str, ...] | list[str] = CLUSTER_CIDRS) -> None:
    """``unreachable`` routes for the cluster CIDRs: nothing addressed to them leaves the host.

    The bridge's own subnet (a /24 inside the pod CIDR) has a more specific kernel route, so
    local pods stay reachable; an address of another node's /24 without a route is refused
    here instead of being sent out of the default route.  ``replace`` makes it idempotent.
    """
    script = "".join(f"route replace unreachable {c}\n" for c in cidrs).encode()
    await _run("ip", "-batch", "-", stdin=script)


async def _pin_namespaces(d: Path, hostname: str) -> None:
    """One exec: new net, IPC and UTS namespaces, the hostname set, each pinned on a file."""
    for name in ("net", "ipc", "uts"):
        (d / name).touch()  # a bind mount needs an existing target
    await _run(UNSHARE, f"--net={d / 'net'}", f"--ipc={d / 'ipc'}", f"--uts={d / 'uts'}", HOSTNAME, hostname)


async def _share_pid(pin: Path) -> Path:
    """The pod's PID namespace, pinned on ``pin`` with its infra process running."""
    try:
        await pidns.create(pin)
    except OSError as e:
        raise SandboxError(f"shared PID namespace ({' '.join(pidns.INFRA)}): {e}") from e
    return pin


async def _run(*args: str, stdin: bytes | None = None) -> None:
    done = await proc.run(*args, input=stdin)
    if done.returncode != 0:
        raise SandboxError(f"{args[0]}: {done.stderr.decode(errors='replace').strip()}")
