"""API benchmark: latency and throughput of tinykube's API beside a bare aiohttp floor.

Starts ``tinykube server`` in a temporary data dir and, as the baseline in the same run, a bare
aiohttp TLS server that answers every request with a stored pod (the cost of HTTP + TLS +
Python with no API logic).  Prints p50/p99 for GET pod, LIST 1,000 pods (JSON and Table),
create pod (1 client and 16 concurrent), write-to-watch-event latency, and idle RSS.  With
``--store etcd`` a second server on an etcd cluster (tests/etcd.py, on /dev/shm; one member, or
``--etcd-members 3``) is measured in the same run, its rows printed beside the SQLite server's.

    .venv/bin/python bench/api.py [--pods 1000] [--creates 1000] [--store etcd [--etcd-members 3]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.cluster import Cluster, free_port  # noqa: E402
from tests.etcd import etcd_cluster  # noqa: E402

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
BASELINE = r"""
import ssl, sys
from aiohttp import web
pod = open(sys.argv[3], "rb").read()
async def handle(request):
    await request.read()
    return web.Response(body=pod, content_type="application/json")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", handle)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1] + "/serving.crt", sys.argv[1] + "/serving.key")
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), ssl_context=ctx, print=None, access_log=None)
"""


def pod(name: str) -> dict:
    """A pod bound to a node that does not exist: the API is measured, not the scheduler.

    Unbound pods on a cluster without nodes make the in-process scheduler write a FailedScheduling
    status and event for each one, which triples the writes per create (measured: 234/s unbound
    vs 712/s bound, 1 client).
    """
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"nodeName": "bench-node",
                     "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "10m"}}}]}}


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Target:
    def __init__(self, url: str, tls: Path):
        ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        ctx.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
        ctx.check_hostname = False
        self.session = aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=ctx, limit=64))

    async def timed(self, method: str, path: str, body: bytes | None = None, accept: str = "application/json") -> float:
        start = time.perf_counter()
        async with self.session.request(method, path, data=body, headers={"Accept": accept, "Content-Type": "application/json"}) as r:
            await r.read()
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: {r.status}")
        return time.perf_counter() - start


async def creates(target: Target, prefix: str, count: int, concurrency: int) -> tuple[float, list[float]]:
    samples: list[float] = []
    names = iter(range(count))

    async def worker() -> None:
        for i in names:
            samples.append(await target.timed("POST", "/api/v1/namespaces/default/pods", orjson.dumps(pod(f"{prefix}-{i}"))))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start), samples


async def watch_latency(target: Target, rounds: int) -> list[float]:
    """Time from sending a write to receiving its watch event."""
    async with target.session.get("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0") as stream:
        samples = []
        for i in range(rounds):
            body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"w{i}"}, "data": {"a": "b"}})
            start = time.perf_counter()
            await target.session.post("/api/v1/namespaces/default/configmaps", data=body,
                                      headers={"Content-Type": "application/json"})
            while True:
                line = await stream.content.readline()
                if b'"w%d"' % i in line:
                    break
            samples.append(time.perf_counter() - start)
        return samples


async def measure(target: Target, label: str, pods: int, count: int) -> None:
    rate1, single = await creates(target, f"{label}-a", count, 1)
    rate16, _ = await creates(target, f"{label}-b", max(count, pods - count), 16)
    gets = [await target.timed("GET", f"/api/v1/namespaces/default/pods/{label}-a-0") for _ in range(1000)]
    lists = [await target.timed("GET", "/api/v1/namespaces/default/pods?limit=1000") for _ in range(20)]
    tables = [await target.timed("GET", "/api/v1/namespaces/default/pods?limit=1000", accept=TABLE) for _ in range(20)]
    print(f"{label:>9} | GET pod p50 {pct(gets, .5):6.2f} ms p99 {pct(gets, .99):6.2f} ms"
          f" | LIST json p50 {pct(lists, .5):6.1f} p99 {pct(lists, .99):6.1f} ms"
          f" | LIST table p50 {pct(tables, .5):6.1f} p99 {pct(tables, .99):6.1f} ms"
          f" | create 1 client {rate1:6.0f}/s (p50 {pct(single, .5):.2f} ms) 16 clients {rate16:6.0f}/s", flush=True)


@dataclass
class Server:
    label: str
    cluster: Cluster
    etcd_pid: int | None = None  # the etcd member it stores in, if any


def start_servers(tmp: Path, store: str, members: int, stack: contextlib.ExitStack) -> list[Server]:
    """The SQLite server, and with ``--store etcd`` one on an etcd cluster (on /dev/shm) beside it."""
    servers = [Server("tinykube", Cluster(tmp / "data"))]
    if store == "etcd":
        etcd = stack.enter_context(etcd_cluster(members))
        (tmp / "etcd").mkdir()
        assert etcd.members[0].proc is not None
        servers.append(Server("tk-etcd", Cluster(tmp / "etcd" / "data", extra_args=("--store", "etcd://" + ",".join(etcd.endpoints))),
                              etcd.members[0].proc.pid))
    for server in servers:
        stack.callback(server.cluster.stop)
        server.cluster.start()
    return servers


def rss_line(when: str, servers: list[Server]) -> str:
    parts = [f"{s.label} server {rss_mb(s.cluster.proc.pid):.1f} MB" for s in servers]  # type: ignore[union-attr]
    parts += [f"its etcd {rss_mb(s.etcd_pid):.1f} MB" for s in servers if s.etcd_pid is not None]
    return f"{when}: " + ", ".join(parts)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--creates", type=int, default=500)
    parser.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite",
                        help="etcd: also measure a server on etcd, its rows beside SQLite's (default %(default)s)")
    parser.add_argument("--etcd-members", type=int, default=1, choices=(1, 3), help="size of that etcd cluster")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        servers = start_servers(Path(tmp), args.store, args.etcd_members, stack)
        await asyncio.sleep(2)
        tls = servers[0].cluster.data_dir / "tls"
        pod_file = Path(tmp) / "pod.json"
        pod_file.write_bytes(orjson.dumps(pod("baseline")))
        port = free_port()
        baseline = subprocess.Popen([sys.executable, "-c", BASELINE, str(tls), str(port), str(pod_file)])
        stack.callback(lambda: (baseline.terminate(), baseline.wait()))
        await asyncio.sleep(1.5)
        print(rss_line("idle RSS (target <= 80 MB)", servers) + f" | baseline bare aiohttp TLS server {rss_mb(baseline.pid):.1f} MB")
        base = Target(f"https://127.0.0.1:{port}", tls)
        await measure(base, "baseline", args.pods, args.creates)
        await base.session.close()
        targets = [(s.label, Target(s.cluster.url, s.cluster.data_dir / "tls")) for s in servers]
        for label, target in targets:
            await measure(target, label, args.pods, args.creates)
        for label, target in targets:
            lat = await watch_latency(target, 300)
            print(f"{label:>9} | write-to-watch event: p50 {pct(lat, .5):.2f} ms p99 {pct(lat, .99):.2f} ms"
                  " (target p99 <= 10 ms; includes the write's own round trip)")
            await target.session.close()
        print(rss_line("RSS after load", servers))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
