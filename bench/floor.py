"""The runtime floor: one busybox pod up (netns + CNI + conmon + runc), with nothing above it.

Measures, N times each, on a bridge and subnet of its own (``tkbench0``, 10.42.251.0/24):

* **raw** — the tools run directly and sequentially, as ``docs/runtime-notes.md`` measured them:
  ``unshare`` pins the namespaces, the loopback and bridge plugins ADD, ``config.json`` is
  written, conmon runs ``runc create``, ``runc start``.  No tinykube code but the pure config.
* **runtime** — the same through ``tinykube.node.runtime``: ``Sandboxes.create`` then
  ``Runtime.create_and_start``.  The difference is the runtime's own overhead.

Also: pod down for both, and ``--parallel`` pods up at once through the runtime.  Prints p50/p99
in ms.  :func:`runtime_floor` returns the runtime path's samples for ``bench/pod_startup.py``.
Needs root, runc, conmon and the CNI plugins; it removes everything it made, even on failure.

    .venv/bin/python bench/floor.py [-n 20] [--parallel 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.runtime.support import build_busybox_rootfs  # noqa: E402
from tinykube.node.runtime import cni, mounts  # noqa: E402
from tinykube.node.runtime.cni import CniConfig  # noqa: E402
from tinykube.node.runtime.containers import RUNC, ContainerSpec, Runtime  # noqa: E402
from tinykube.node.runtime.oci import build_config  # noqa: E402
from tinykube.node.runtime.sandbox import DnsConfig, Sandbox, Sandboxes, ensure_unreachable_routes  # noqa: E402

BRIDGE = "tkbench0"
SUBNET = "10.42.251.0/24"
DNS = DnsConfig(nameservers=["10.43.0.10"], searches=["default.svc.cluster.local"], options=["ndots:5"])


@dataclass
class Node:
    """The runtime and sandboxes of one benchmark run, in a temporary dir."""

    base: Path
    rootfs: Path
    runtime: Runtime
    sandboxes: Sandboxes
    cni: CniConfig


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@asynccontextmanager
async def bench_node() -> AsyncIterator[Node]:
    """A node on the benchmark bridge; afterwards the host as it was (bridge, ip_forward, dirs)."""
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    base = Path(tempfile.mkdtemp(prefix="tkbench", dir="/tmp"))
    config = CniConfig(bridge=BRIDGE, subnet=SUBNET, state_dir=base / "cni")
    node = Node(base, build_busybox_rootfs(base / "busybox"), Runtime(base / "state", base / "run", base / "runc"),
                Sandboxes(base / "run", config), config)
    await ensure_unreachable_routes()
    try:
        yield node
    finally:
        for status in node.runtime.list():
            await node.runtime.remove(status.id)
        for sandbox in node.sandboxes.list():
            await node.sandboxes.remove(sandbox.pod_uid)
        mounts.unmount(node.sandboxes.root)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(forward)
        shutil.rmtree(base, ignore_errors=True)


def _spec(node: Node, uid: str, sandbox: Sandbox | None = None) -> ContainerSpec:
    cid = f"b{uuid.uuid4().hex[:12]}"
    return ContainerSpec(id=cid, pod_uid=uid, name="sleep", args=["sleep", "1000"], rootfs_layers=[node.rootfs],
                         log_path=node.base / "logs" / f"{cid}.log", sandbox=sandbox,
                         mounts=sandbox.mounts() if sandbox else [])


@dataclass(frozen=True)
class PodUp:
    """One pod brought up through the runtime: where the time went, and what to tear down."""

    sandbox_ms: float
    container_ms: float
    uid: str
    cid: str

    @property
    def total_ms(self) -> float:
        return self.sandbox_ms + self.container_ms


async def runtime_pod_up(node: Node) -> PodUp:
    """Sandbox + one running container through the runtime."""
    uid = str(uuid.uuid4())
    started = time.perf_counter()
    sandbox = await node.sandboxes.create(uid, "bench", DNS, [])
    created = time.perf_counter()
    spec = _spec(node, uid, sandbox)
    await node.runtime.create_and_start(spec)
    return PodUp((created - started) * 1000, (time.perf_counter() - created) * 1000, uid, spec.id)


async def runtime_pod_down(node: Node, uid: str, cid: str) -> float:
    started = time.perf_counter()
    await node.runtime.remove(cid)
    await node.sandboxes.remove(uid)
    return (time.perf_counter() - started) * 1000


async def runtime_floor(n: int = 20) -> dict[str, list[float]]:
    """Samples (ms) of pod up and pod down through tinykube's runtime, on a bridge of its own."""
    samples: dict[str, list[float]] = {"sandbox": [], "create_and_start": [], "up": [], "down": []}
    async with bench_node() as node:
        for _ in range(n):
            pod = await runtime_pod_up(node)
            samples["sandbox"].append(pod.sandbox_ms)
            samples["create_and_start"].append(pod.container_ms)
            samples["up"].append(pod.total_ms)
            samples["down"].append(await runtime_pod_down(node, pod.uid, pod.cid))
    return samples


def raw_pod_up(node: Node) -> tuple[float, Path, str]:
    """The same pod with the tools run directly; (ms, pod dir, container id)."""
    started = time.perf_counter()
    d = node.base / "raw" / uuid.uuid4().hex[:12]
    d.mkdir(parents=True)
    for name in ("net", "ipc", "uts"):
        (d / name).touch()
    subprocess.run(["unshare", f"--net={d}/net", f"--ipc={d}/ipc", f"--uts={d}/uts", "hostname", "bench"], check=True)
    _raw_cni(node, d, "ADD")
    spec = _spec(node, d.name, None)
    bundle = d / "bundle"
    bundle.mkdir()
    config = build_config(spec, str(node.rootfs), layout=node.runtime.layout)
    config["linux"]["namespaces"][2:] = [{"type": t, "path": f"{d}/{n}"} for t, n in
                                         (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))]
    config["root"]["readonly"] = True  # the shared rootfs is used without an overlay here
    (bundle / "config.json").write_text(json.dumps(config))
    _raw_conmon(node, bundle, spec)
    subprocess.run([RUNC, "--root", str(node.base / "raw-runc"), "start", spec.id], check=True)
    return (time.perf_counter() - started) * 1000, d, spec.id


def raw_pod_down(node: Node, d: Path, cid: str) -> float:
    started = time.perf_counter()
    subprocess.run([RUNC, "--root", str(node.base / "raw-runc"), "delete", "--force", cid], check=True)
    _raw_cni(node, d, "DEL")
    for name in ("net", "ipc", "uts"):
        mounts.unmount(d / name)
    shutil.rmtree(d)
    return (time.perf_counter() - started) * 1000


def _raw_cni(node: Node, d: Path, command: str) -> None:
    plan = cni.plan(node.cni, d.name, str(d / "net"))
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": d.name, "CNI_NETNS": str(d / "net"),
           "CNI_PATH": str(node.cni.bin_dir)}
    bridge = cni.plugin_config(plan.network, plan.network["plugins"][0], {}, None)
    for conf, ifname in ((plan.loopback, "lo"), (bridge, "eth0")):
        subprocess.run([str(node.cni.bin_dir / conf["type"])], input=json.dumps(conf).encode(),
                       env={**env, "CNI_IFNAME": ifname}, check=True, capture_output=True)


def _raw_conmon(node: Node, bundle: Path, spec: ContainerSpec) -> None:
    read_fd, write_fd = os.pipe()
    subprocess.run(["/usr/bin/conmon", "--api-version", "1", "-c", spec.id, "-u", spec.id, "-n", "sleep", "-r", RUNC,
                    "--runtime-arg", f"--root={node.base / 'raw-runc'}", "-b", str(bundle), "-p", f"{bundle}/pid",
                    "-P", f"{bundle}/conmon.pid", "-l", f"k8s-file:{spec.log_path}", "--exit-dir", str(bundle),
                    "--persist-dir", f"{bundle}/persist", "--socket-dir-path", str(node.base / "s")],
                   cwd=bundle, pass_fds=(write_fd,), env={"PATH": os.environ["PATH"], "_OCI_SYNCPIPE": str(write_fd)},
                   check=True, capture_output=True)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as sync:
        reply = json.loads(sync.readline())
    if reply["data"] < 0:
        raise RuntimeError(reply.get("message"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=20)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {"raw up": [], "raw down": [], "runtime up": [], "  of which Sandboxes.create": [],
                                    "  of which Runtime.create_and_start": [], "runtime down": []}
    async with bench_node() as node:
        for d in ("logs", "s"):
            (node.base / d).mkdir()
        for _ in range(args.n):
            took, d, cid = raw_pod_up(node)
            rows["raw up"].append(took)
            rows["raw down"].append(raw_pod_down(node, d, cid))
            pod = await runtime_pod_up(node)
            rows["runtime up"].append(pod.total_ms)
            rows["  of which Sandboxes.create"].append(pod.sandbox_ms)
            rows["  of which Runtime.create_and_start"].append(pod.container_ms)
            rows["runtime down"].append(await runtime_pod_down(node, pod.uid, pod.cid))
        started = time.perf_counter()
        pods = await asyncio.gather(*(runtime_pod_up(node) for _ in range(args.parallel)))
        burst = (time.perf_counter() - started) * 1000
        await asyncio.gather(*(runtime_pod_down(node, p.uid, p.cid) for p in pods))
    print(f"{'pod (sandbox + 1 busybox container)':<40} {'p50 ms':>8} {'p99 ms':>8}   (N={args.n})")
    for name, samples in rows.items():
        print(f"{name:<40} {pct(samples, 0.5):>8.1f} {pct(samples, 0.99):>8.1f}")
    print(f"{f'runtime: {args.parallel} pods up in parallel':<40} {burst:>8.1f} ms total")


if __name__ == "__main__":
    asyncio.run(main())
