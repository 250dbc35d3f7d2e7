"""Pod startup benchmark: create → Running through a watch, beside the runtime floor measured in the same run.

Starts ``tinykube up`` (API server, scheduler, node IPAM and a real node agent in one process)
with the local test registry as docker.io mirror, warms the node with one ``busybox:1.36`` pod
(so the image is cached), and then measures, each seen through one pod watch opened before the
first write (aiohttp with the admin client certificate, like ``bench/api.py``):

* **create → Running**: from sending the POST to the first watch event with phase Running and
  the container running; N sequential pods, each deleted (grace 0) before the next is created.
* **the same for richer pods**, N each, interleaved with the plain ones and printed beside them:
  the tutorial's sidecar pod (``examples/web-app.yaml``: nginx and busybox sharing an emptyDir)
  and a busybox pod mounting a ConfigMap, a Secret and a projected ServiceAccount token.  Their
  images are pulled by the warm-ups, and the ConfigMap and Secret exist before the first of them.
  Also the tutorial's ``resource-pod`` (nginx with requests and limits) beside the same pod without
  its resources: what enforcing limits (cgroup settings, QoS placement) costs a pod's start.
* **delete → DELETED**: from sending DELETE (gracePeriodSeconds=0) to the DELETED event; and,
  beside it, until the node has torn the sandbox down (its directory under the run dir is gone),
  awaited in the background so that a slow teardown does not hold up the next pod.
* **20 pods at once**: concurrent POSTs until every pod is Running (total ms).
* **memory per pod**: PSS (``/proc/PID/smaps_rollup``) of the tinykube process plus every conmon
  of this node, with 0 pods and with 20 running, the difference divided by 20.
* **the runtime floor**: ``bench/floor.py``'s :func:`runtime_floor` (netns + CNI + conmon + runc
  through tinykube's runtime, nothing above it), and tinykube's p50 over the floor's.

With ``--store etcd`` the plain pod is timed once more with ``tinykube up`` keeping its state in a
one-member etcd (tests/etcd.py, on /dev/shm), after the SQLite cluster is gone, and printed beside it.

Prints numbers beside their targets; never asserts.  Cleans up after itself even on failure:
the cluster goes through ``stop_node_cluster`` and the registry is stopped by PID.

    .venv/bin/python bench/pod_startup.py [-n 20] [--burst 20] [--store etcd]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import runtime_floor  # noqa: E402
from tests.e2e.cluster import Cluster  # noqa: E402
from tests.etcd import etcd_cluster  # noqa: E402
from tests.e2e.nodes import BRIDGE, start_node_cluster, stop_node_cluster  # noqa: E402
from tests.hoststate import HOST_LOCK, HostSnapshot, host_lock, link_exists  # noqa: E402
from tests.registry import LocalRegistry, build_test_images  # noqa: E402

NS = "default"
PODS = f"/api/v1/namespaces/{NS}/pods"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
IMAGE = "busybox:1.36"
WEB_APP = Path(__file__).resolve().parents[1] / "examples" / "web-app.yaml"  # the tutorial's sidecar pod
RESOURCE_POD = WEB_APP.with_name("resource-pod.yaml")  # the tutorial's requests and limits
WAIT = 60.0  # seconds any one watch event may take before the run gives up
TEARDOWN_WAIT = 120.0  # seconds for the node to tear a deleted pod down (its grace period included)
SETTLE = 1.0  # seconds for memory to settle before PSS is read
PODMAN_REFERENCE_MS = 260  # `podman kube play`, as measured on this machine per the issue

Obj = dict[str, Any]
Predicate = Callable[[str, Obj], bool]
Manifest = Callable[[str], Obj]


def pod(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}}


def example(manifest: Path, name: str) -> Obj:
    """One of the tutorial's manifests under ``examples/``, renamed."""
    doc: Obj = yaml.safe_load(manifest.read_text())
    doc["metadata"]["name"] = name
    return doc


def sidecar_pod(name: str) -> Obj:
    """The tutorial's ``web-app``: nginx:1.14.2 and a busybox log writer sharing an emptyDir."""
    return example(WEB_APP, name)


def volumes_pod(name: str) -> Obj:
    """The plain pod with a ConfigMap, a Secret and a projected ServiceAccount token mounted."""
    doc = pod(name)
    doc["spec"]["volumes"] = [
        {"name": "config", "configMap": {"name": "bench-config"}},
        {"name": "secret", "secret": {"secretName": "bench-secret"}},
        {"name": "token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "bench", "expirationSeconds": 3600}}]}}]
    doc["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "config", "mountPath": "/etc/config"}, {"name": "secret", "mountPath": "/etc/secret", "readOnly": True},
        {"name": "token", "mountPath": "/var/run/secrets/tokens", "readOnly": True}]
    return doc


def resource_pod(name: str) -> Obj:
    """The tutorial's ``resource-pod``: nginx with cpu, memory and ephemeral-storage requests and limits."""
    return example(RESOURCE_POD, name)


def unlimited_pod(name: str) -> Obj:
    """``resource-pod`` without its resources: what enforcing them is measured against."""
    doc = resource_pod(name)
    del doc["spec"]["containers"][0]["resources"]
    return doc


KINDS: dict[str, Manifest] = {"plain": pod, "sidecar": sidecar_pod, "volumes": volumes_pod,
                              "unlimited": unlimited_pod, "resources": resource_pod}


def pct(samples: list[float], q: float) -> float:
    """The same nearest-rank convention as ``bench/api.py``: with 20 samples p99 is the maximum."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def running(name: str) -> Predicate:
    """The first event of ``name`` with phase Running and every container running."""
    def check(kind: str, obj: Obj) -> bool:
        status = obj.get("status") or {}
        containers = status.get("containerStatuses") or []
        return (kind in ("ADDED", "MODIFIED") and obj["metadata"]["name"] == name and status.get("phase") == "Running"
                and bool(containers) and all("running" in (c.get("state") or {}) for c in containers))
    return check


def deleted(name: str) -> Predicate:
    return lambda kind, obj: kind == "DELETED" and obj["metadata"]["name"] == name


# --- the API: an admin session and one pod watch ----------------------------------------------

def admin_session(url: str, tls: Path) -> aiohttp.ClientSession:
    ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    ctx.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
    ctx.check_hostname = False
    return aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=ctx, limit=64))


async def call(session: aiohttp.ClientSession, method: str, url: str, body: Obj | None = None) -> Obj:
    async with session.request(method, url, data=orjson.dumps(body) if body is not None else None,
                               headers={"Content-Type": "application/json", "Accept": "application/json"}) as r:
        data = await r.read()
        if r.status >= 400:
            raise RuntimeError(f"{method} {url}: {r.status} {data[:300]!r}")
        return orjson.loads(data)


@dataclass
class PodWatch:
    """One watch on the namespace's pods; :meth:`expect` returns the arrival time of a matching event.

    Expectations are registered before the write they wait for, so no event can slip past.
    """

    session: aiohttp.ClientSession
    waiters: list[tuple[Predicate, asyncio.Future[float]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        version = (await call(self.session, "GET", PODS))["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._read(version))

    async def _read(self, version: str) -> None:
        """Follow the stream; reopen it from the last version seen if the server ends it."""
        while True:
            params = {"watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true"}
            async with self.session.get(PODS, params=params, timeout=aiohttp.ClientTimeout()) as stream:
                async for line in stream.content:
                    arrived = time.perf_counter()
                    event = orjson.loads(line)
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch failed: {event['object']}")
                    version = event["object"]["metadata"]["resourceVersion"]
                    self._deliver(event["type"], event["object"], arrived)

    def _deliver(self, kind: str, obj: Obj, arrived: float) -> None:
        for check, future in list(self.waiters):
            if not future.done() and check(kind, obj):
                future.set_result(arrived)
                self.waiters.remove((check, future))

    def expect(self, check: Predicate) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.append((check, future))
        return future

    async def until(self, future: asyncio.Future[float]) -> float:
        """The event's arrival time; fails at once if the watch itself died."""
        assert self.task is not None
        done, _ = await asyncio.wait([future, self.task], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        if future in done:
            return future.result()
        if self.task in done:
            self.task.result()
        raise TimeoutError("no matching watch event within %.0f s" % WAIT)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


# --- the node: teardown and memory ------------------------------------------------------------

@dataclass
class Bench:
    """One running node cluster as the benchmark drives it: the API through one session and one watch."""

    session: aiohttp.ClientSession
    watch: PodWatch
    cluster: Cluster
    run_dir: Path

    async def create(self, name: str, make: Manifest = pod) -> tuple[float, str]:
        """ms from sending the POST of ``make(name)`` to the Running event, and the pod's uid."""
        seen = self.watch.expect(running(name))
        started = time.perf_counter()
        created = await call(self.session, "POST", PODS, make(name))
        return (await self.watch.until(seen) - started) * 1000, created["metadata"]["uid"]

    async def delete(self, name: str, uid: str) -> tuple[float, asyncio.Task[float]]:
        """ms from sending DELETE (grace 0) to the DELETED event, and a task giving ms until the node's teardown.

        The teardown is awaited in the background: it does not hold up the next pod.
        """
        gone = self.watch.expect(deleted(name))
        started = time.perf_counter()
        await call(self.session, "DELETE", f"{PODS}/{name}", {"gracePeriodSeconds": 0})
        event_ms = (await self.watch.until(gone) - started) * 1000
        return event_ms, asyncio.create_task(self.torn_down(uid, started))

    async def torn_down(self, uid: str, since: float) -> float:
        """ms from ``since`` until the pod's sandbox directory is gone (the agent removes it after the containers)."""
        sandbox = self.run_dir / "sandboxes" / uid
        deadline = time.monotonic() + TEARDOWN_WAIT
        while sandbox.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"sandbox of pod {uid} still there after {TEARDOWN_WAIT:.0f} s")
            await asyncio.sleep(0.005)
        return (time.perf_counter() - since) * 1000

    def pss_mib(self) -> float:
        """PSS of the tinykube process plus every conmon of this node's runc root."""
        assert self.cluster.proc is not None
        pids = [self.cluster.proc.pid, *conmons(self.run_dir / "runc")]
        return sum(pss_kib(pid) for pid in pids) / 1024


def conmons(runc_root: Path) -> Iterator[int]:
    marker = f"--root={runc_root}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"conmon" and marker in argv:
            yield int(entry.name)


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


# --- the phases -------------------------------------------------------------------------------

async def wait_node_ready(session: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for node in (await call(session, "GET", "/api/v1/nodes"))["items"]:
            if any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])):
                return
        await asyncio.sleep(0.1)
    raise TimeoutError("the node never became Ready")


async def warm_up(bench: Bench, name: str = "warmup", make: Manifest = pod) -> float:
    """One pod that pulls its images (retried while the default ServiceAccount is not there yet)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            took, uid = await bench.create(name, make)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    _, teardown = await bench.delete(name, uid)
    await teardown
    return took


async def volume_sources(bench: Bench) -> None:
    """The ConfigMap and Secret that :func:`volumes_pod` mounts."""
    await call(bench.session, "POST", CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "bench-config"}, "data": {"app.conf": "x=1\n"}})
    await call(bench.session, "POST", SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-secret"},
                                               "stringData": {"password": "s3cr3t"}})


async def sequential(bench: Bench, n: int, kinds: dict[str, Manifest] = KINDS) -> dict[str, dict[str, list[float]]]:
    """N pods of each of :data:`KINDS`, interleaved (plain, sidecar, volumes, plain, ...) so that any
    drift of the machine hits every kind alike; create, delete and teardown ms per kind."""
    rows: dict[str, dict[str, list[float]]] = {kind: {"create": [], "delete": []} for kind in kinds}
    teardowns: dict[str, list[asyncio.Task[float]]] = {kind: [] for kind in kinds}
    for i in range(n):
        for kind, make in kinds.items():
            name = f"{kind}-{i}"
            took, uid = await bench.create(name, make)
            event_ms, teardown = await bench.delete(name, uid)
            rows[kind]["create"].append(took)
            rows[kind]["delete"].append(event_ms)
            teardowns[kind].append(teardown)
            print(f"  {name}: create -> Running {took:.1f} ms, delete -> DELETED {event_ms:.1f} ms", file=sys.stderr)
    for kind, tasks in teardowns.items():
        rows[kind]["teardown"] = list(await asyncio.gather(*tasks))
    return rows


async def burst(bench: Bench, count: int) -> tuple[float, float, float]:
    """(ms until all ``count`` pods Running, PSS MiB with 0 pods, PSS MiB with ``count`` running)."""
    await asyncio.sleep(SETTLE)
    idle = bench.pss_mib()
    names = [f"burst-{i}" for i in range(count)]
    seen = [bench.watch.expect(running(name)) for name in names]
    started = time.perf_counter()
    created = await asyncio.gather(*(call(bench.session, "POST", PODS, pod(name)) for name in names))
    arrivals = [await bench.watch.until(f) for f in seen]
    total = (max(arrivals) - started) * 1000
    await asyncio.sleep(SETTLE)
    busy = bench.pss_mib()
    deletions = await asyncio.gather(*(bench.delete(name, c["metadata"]["uid"]) for name, c in zip(names, created)))
    await asyncio.gather(*(teardown for _, teardown in deletions))
    return total, idle, busy


@contextlib.asynccontextmanager
async def node_cluster(base: Path, server_args: tuple[str, ...] = ()) -> AsyncIterator[Bench]:
    """Registry + ``tinykube up`` + an admin session and pod watch; all gone afterwards, whatever happened.

    Run under :func:`host_lock`; a bridge left by a crashed run must be removed first.
    """
    if link_exists(BRIDGE):
        raise SystemExit(f"bridge {BRIDGE} exists without an e2e run holding {HOST_LOCK}: a crashed run left it")
    snapshot = HostSnapshot((BRIDGE,))
    registry = LocalRegistry(base / "registry")
    cluster: Cluster | None = None
    run_dir: Path | None = None
    session: aiohttp.ClientSession | None = None
    watch: PodWatch | None = None
    try:
        registry.start().push(build_test_images())
        cluster, run_dir = start_node_cluster(base / "node", registry, server_args)
        session = admin_session(cluster.url, cluster.data_dir / "tls")
        await wait_node_ready(session)
        watch = PodWatch(session)
        await watch.start()
        yield Bench(session, watch, cluster, run_dir)
    finally:
        if watch is not None:
            await watch.stop()
        if session is not None:
            await session.close()
        if cluster is not None and run_dir is not None:
            stop_node_cluster(cluster, run_dir)
        registry.stop()
        snapshot.restore()


def row(label: str, samples: list[float], target: str) -> str:
    return f"{label:<44} p50 {pct(samples, .5):7.1f} ms  p99 {pct(samples, .99):7.1f} ms   {target}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20, help="sequential pods of each kind (default %(default)s)")
    parser.add_argument("--burst", type=int, default=20, help="pods applied at once (default %(default)s)")
    parser.add_argument("--keep-log", type=Path, help="copy the tinykube log here before cleaning up")
    parser.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite",
                        help="etcd: also time the plain pod with the API server on a 1-member etcd, same run")
    args = parser.parse_args()
    floor = await runtime_floor(args.n)
    base = Path(tempfile.mkdtemp(prefix="tkpods", dir="/tmp"))
    try:
        with host_lock():
            async with node_cluster(base / "c") as bench:
                first = await warm_up(bench)
                print(f"  warm-up: {first:.1f} ms", file=sys.stderr)
                await warm_up(bench, "warmup-sidecar", sidecar_pod)  # pulls nginx:1.14.2 and busybox:latest
                await volume_sources(bench)
                rows = await sequential(bench, args.n)
                total, idle, busy = await burst(bench, args.burst)
            if args.store == "etcd":
                rows["etcd"] = await on_etcd(base / "e", args.n)
    finally:
        if args.keep_log:
            for log in (base / "c" / "node").glob("server-*.log"):
                shutil.copy(log, args.keep_log)
        shutil.rmtree(base, ignore_errors=True)
    report(args, floor, first, rows, total, idle, busy)


async def on_etcd(base: Path, n: int) -> dict[str, list[float]]:
    """The plain pod's create → Running with ``tinykube up --store etcd://`` (one member on /dev/shm)."""
    with etcd_cluster(1) as etcd:
        async with node_cluster(base, ("--store", "etcd://" + etcd.endpoints[0])) as bench:
            await warm_up(bench)
            return (await sequential(bench, n, {"plain": pod}))["plain"]


def report(args: argparse.Namespace, floor: dict[str, list[float]], first: float,
           rows: dict[str, dict[str, list[float]]], total: float, idle: float, busy: float) -> None:
    n = args.n
    seq = rows["plain"]
    print(f"pod startup, busybox:1.36 `sleep 3600`, image cached; N={n} sequential (p99 of {n} = max)")
    print(f"{'warm-up pod (first pull of busybox:1.36)':<44} {first:7.1f} ms")
    print(row("tinykube create -> Running (watch)", seq["create"], "target p50 <= 100 ms, p99 <= 200 ms"))
    baseline = pct(seq["create"], .5)
    for label, kind in (("  sidecar web-app (nginx+busybox, emptyDir)", "sidecar"),
                        ("  configMap + secret + projected token", "volumes")):
        extra = pct(rows[kind]["create"], .5) - baseline
        print(row(label, rows[kind]["create"], f"({extra:+.1f} ms p50 over the plain pod, same run)"))
    unlimited = pct(rows["unlimited"]["create"], .5)
    print(row("  nginx, resource-pod without resources", rows["unlimited"]["create"], "(baseline, same run)"))
    cost = pct(rows["resources"]["create"], .5) / unlimited - 1
    print(row("  the tutorial's resource-pod (limits)", rows["resources"]["create"],
              f"({cost * 100:+.1f}% p50 over the same pod without limits; target <= +10%)"))
    if "etcd" in rows:
        extra = pct(rows["etcd"]["create"], .5) / baseline - 1
        print(row("  the same, API server on etcd (1 member)", rows["etcd"]["create"],
                  f"({extra * 100:+.1f}% p50 over SQLite; target <= +20%)"))
    print(row("tinykube delete grace 0 -> DELETED (watch)", seq["delete"], "target <= 150 ms"))
    print(row("  (until the node's teardown is done)", seq["teardown"], "(information: sandbox dir gone)"))
    print(f"{f'tinykube {args.burst} pods at once -> all Running':<44} {total:7.1f} ms total"
          f"{'':<24}target <= 1200 ms")
    per_pod = (busy - idle) / args.burst
    print(f"{'PSS tinykube + conmons':<44} {idle:7.1f} MiB with 0 pods, {busy:.1f} MiB with {args.burst}"
          f" -> {per_pod:.2f} MiB per pod   target <= 1 MiB")
    print(row("runtime floor (bench/floor.py runtime_floor)", floor["up"], "(baseline, same run)"))
    print(row("  of which Sandboxes.create", floor["sandbox"], ""))
    print(row("  of which Runtime.create_and_start", floor["create_and_start"], ""))
    print(row("runtime floor pod down", floor["down"], ""))
    ratio = pct(seq["create"], .5) / pct(floor["up"], .5)
    print(f"tinykube p50 / floor p50: {ratio:.2f}x")
    print(f"podman kube play reference (~{PODMAN_REFERENCE_MS} ms on this machine per the issue): "
          "not measured in this run (podman is not installed)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
