"""Fixtures for the runtime tests: a busybox rootfs, a test bridge, and a node that cleans up.

Every test gets its own state, run and runc-root dirs under a short /tmp path (conmon's attach
socket path must fit in 108 bytes).  Teardown removes, even when the test failed, everything
the test could have made: containers (runc state, conmon, overlay mounts), sandboxes (CNI IP
allocations, namespace pins), pod cgroups; then it asserts that nothing is left.  The session
deletes the test bridge and restores ``ip_forward``, which the bridge plugin turns on.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.hoststate import HostSnapshot, host_lock
from tests.runtime.support import build_busybox_rootfs
from tinykube.node.runtime import cgroups, mounts
from tinykube.node.runtime.cni import CniConfig
from tinykube.node.runtime.containers import ContainerSpec, Runtime
from tinykube.node.runtime.sandbox import DnsConfig, Sandbox, Sandboxes, ensure_unreachable_routes

BRIDGE = "tktest0"
SUBNET = "10.42.250.0/24"
REQUIRED = ("runc", "conmon", "unshare", "nsenter", "ip", "nft", "/usr/lib/cni/bridge")


@pytest.fixture(scope="session")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_rootfs(tmp_path_factory.mktemp("busybox"))


@pytest.fixture(scope="package")
def host() -> Iterator[None]:
    """Unreachable routes for the cluster CIDRs; afterwards the host as it was before these tests.

    The bridge plugin turns on ip_forward and creates the bridge; portmap creates the ``nat``
    tables and its top-level chains, which its DEL leaves; our QoS parents stay after the last
    pod cgroup.  Each is removed only if the session created it.
    """
    missing = [t for t in REQUIRED if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"runtime tests need root and {', '.join(REQUIRED)} (missing: {', '.join(missing) or 'root'})")
    with host_lock():  # a node cluster of another test session would lose its service route
        snapshot = HostSnapshot((BRIDGE,))
        asyncio.run(ensure_unreachable_routes())
        try:
            yield
        finally:
            snapshot.restore()


@dataclass
class Node:
    """A runtime and sandboxes rooted in one temporary dir, with helpers to make pods."""

    base: Path
    busybox: Path
    runtime: Runtime
    sandboxes: Sandboxes
    pod_uids: list[str] = field(default_factory=list)

    def new_runtime(self) -> Runtime:
        """Another Runtime on the same dirs: what the agent makes after a restart."""
        return Runtime(self.base / "state", self.base / "run", self.base / "runc")

    async def sandbox(self, hostname: str, **kwargs: Any) -> Sandbox:
        uid = str(uuid.uuid4())
        self.pod_uids.append(uid)
        dns = DnsConfig(nameservers=["10.43.0.10"], searches=["default.svc.cluster.local"], options=["ndots:5"])
        return await self.sandboxes.create(uid, hostname, dns, [], **kwargs)

    def spec(self, sandbox: Sandbox | None, name: str, args: list[str], **kwargs: Any) -> ContainerSpec:
        uid = sandbox.pod_uid if sandbox else str(uuid.uuid4())
        cid = f"{uid[:8]}-{name}-{uuid.uuid4().hex[:6]}"
        mounts = sandbox.mounts() if sandbox else []
        kwargs.setdefault("rootfs_layers", [self.busybox])
        return ContainerSpec(id=cid, pod_uid=uid, name=name, args=args, log_path=self.base / "logs" / f"{cid}.log",
                             sandbox=sandbox, mounts=mounts, **kwargs)

    def pod_cgroup(self, uid: str, qos: str = "burstable") -> str:
        self.pod_uids.append(uid)
        return cgroups.ensure_pod_cgroup(uid, qos)


@pytest.fixture
async def node(busybox: Path, host: None) -> AsyncIterator[Node]:
    base = Path(tempfile.mkdtemp(prefix="tk", dir="/tmp"))
    runtime = Runtime(base / "state", base / "run", base / "runc")
    sandboxes = Sandboxes(base / "run", CniConfig(bridge=BRIDGE, subnet=SUBNET, state_dir=base / "cni"))
    n = Node(base, busybox, runtime, sandboxes)
    try:
        yield n
    finally:
        await _teardown(n)
        leftovers = _leftovers(base)
        _force_clean(base)
        assert not leftovers, f"the test left {leftovers}"


async def _teardown(n: Node) -> None:
    """The runtime's own removal paths, each step attempted even when an earlier one failed."""
    for status in n.runtime.list():
        await _attempt(n.runtime.remove(status.id))
    for sandbox in n.sandboxes.list():
        await _attempt(n.sandboxes.remove(sandbox.pod_uid))
    for uid in n.pod_uids:
        await _attempt(n.sandboxes.remove(uid))
        await _attempt(asyncio.to_thread(cgroups.remove_pod_cgroup, uid))
    mounts.unmount(n.sandboxes.root)  # the private mount under which sandboxes pin namespaces


async def _attempt(step: Any) -> None:
    try:
        await step
    except Exception as e:  # keep tearing down; the leftover check reports what stayed
        print(f"teardown step failed: {e!r}")


def _leftovers(base: Path) -> dict[str, Any]:
    found = {"conmon": _conmon_pids(base), "mounts": _mounts_under(base), "runc": _runc_ids(base),
             "ip allocations": _allocations(base)}
    return {k: v for k, v in found.items() if v}


def _force_clean(base: Path) -> None:
    """Last resort, by PID and path only: what the runtime failed to remove must not outlive the test."""
    for cid in _runc_ids(base):
        subprocess.run(["runc", "--root", str(base / "runc"), "delete", "--force", cid], capture_output=True)
    for pid in _conmon_pids(base):
        os.kill(pid, signal.SIGKILL)
    for mountpoint in reversed(_mounts_under(base)):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def _conmon_pids(base: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            continue
        if os.path.basename(argv[0]) == b"conmon" and any(str(base).encode() in a for a in argv):
            pids.append(int(entry))
    return pids


def _mounts_under(base: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(base))]


def _runc_ids(base: Path) -> list[str]:
    if not (base / "runc").exists():
        return []
    out = subprocess.run(["runc", "--root", str(base / "runc"), "list", "-q"], capture_output=True, text=True)
    return out.stdout.split()


def _allocations(base: Path) -> list[str]:
    """host-local's files: one per allocated IP (plus its bookkeeping files)."""
    network = base / "cni" / "tinykube"
    if not network.exists():
        return []
    return [p.name for p in network.iterdir() if p.name[0].isdigit()]


