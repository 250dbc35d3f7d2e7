"""``tinykube``: one binary, one subcommand per role (k3s' shape).

``server`` runs the control plane; ``node`` joins a node agent to one; ``up`` runs every role in
one process (its node agent joins over loopback exactly as a remote one would) and points kubectl
at it; ``image`` manages the node's image store.  Each subcommand takes ``--data-dir`` so several instances can run side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import gc
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from fractions import Fraction

from tinykube.apiserver.masterleases import registered
from tinykube.apiserver.server import ControlPlane, ServerConfig, running
from tinykube.cli import image, kubeconfig
from tinykube.client.informers import share_watches
from tinykube.client.rest import Client
from tinykube.controllers.csr import SIGNING_DURATION, CsrController
from tinykube.controllers.endpoints import EndpointsController, advertise_address
from tinykube.controllers.leaderelection import run_elected
from tinykube.controllers.localpath import LocalPathController
from tinykube.controllers.namespace import NamespaceController
from tinykube.controllers.nodeipam import NodeIpamController, first_gateway
from tinykube.controllers.nodelifecycle import LifecycleConfig, NodeLifecycleController
from tinykube.controllers.resourcequota import ResourceQuotaController
from tinykube.controllers.rootca import RootCACertPublisher
from tinykube.controllers.scheduler import DEFAULT_SCHEDULER, SchedulerController
from tinykube.controllers.serviceaccounts import ServiceAccountController
from tinykube.node.registration import parse_reserved
from tinykube.node.security import POD_PIDS_LIMIT

DEFAULT_DATA_DIR = "/var/lib/tinykube"


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="state, certificates and kubeconfig (default %(default)s)")
    parser.add_argument("--port", type=int, default=6443, help="HTTPS port of the API (default %(default)s)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default loopback only)")
    parser.add_argument("--advertise-address", default="",
                        help="address published as the kubernetes Service's endpoint, and listened on too (default: "
                             "--bind; for `up` on loopback, the pod network's gateway, so pods reach the API)")
    parser.add_argument("--store", default="", help="sqlite:PATH (default <data-dir>/db/state.db) or "
                        "etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS)")
    parser.add_argument("--etcd-cafile", default="", help="CA that signs the etcd servers' certificates")
    parser.add_argument("--etcd-certfile", default="", help="client certificate towards etcd")
    parser.add_argument("--etcd-keyfile", default="", help="key of --etcd-certfile")
    parser.add_argument("--compaction-interval", type=float, default=300.0,
                        help="seconds between compactions of the store's history (default %(default)s)")
    parser.add_argument("--compaction-retain", type=int, default=10000,
                        help="revisions of history kept for watches to resume from (default %(default)s)")
    parser.add_argument("--event-ttl", type=_seconds, default=3600, metavar="DURATION",
                        help="how long Events are kept after their last write, e.g. 1h0m0s or 3600 (default 1h)")
    parser.add_argument("--cluster-signing-duration", type=_duration, default=SIGNING_DURATION.total_seconds(),
                        metavar="DURATION", help="lifetime of the certificates the CSR signer issues (default 8760h)")
    defaults = LifecycleConfig()
    for flag, default, what in (
            ("--node-monitor-period", defaults.monitor_period, "between checks of every node's heartbeat"),
            ("--node-monitor-grace-period", defaults.grace_period, "without a heartbeat before a node is Unknown"),
            ("--node-startup-grace-period", defaults.startup_grace_period, "a node that never reported may stay silent")):
        parser.add_argument(flag, type=_duration, default=default, metavar="DURATION",
                            help=f"time {what}, e.g. 40s or 1m (default {default:g}s)")


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> int:
    """Whole seconds from a bare number or a Go duration (``1h0m0s``), as ``--event-ttl`` takes them."""
    return int(text) if text.isdigit() else int(_duration(text))


def _duration(text: str) -> float:
    """A Go duration (``40s``, ``1m30s``, ``500ms``) in seconds, as kube-controller-manager's flags take them."""
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f'time: invalid duration "{text}"')
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _node_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-name", default=socket.gethostname(), help="the Node's name (default: host name)")
    parser.add_argument("--node-ip", default="127.0.0.1", help="address the node reports and serves on")
    parser.add_argument("--kubelet-port", type=int, default=10250, help="port of the agent's log/exec endpoint")
    parser.add_argument("--run-dir", default="/run/tinykube", help="runtime state: runc root, bundles, CNI")
    parser.add_argument("--bridge", default="tinykube0", help="name of the pod network bridge")
    parser.add_argument("--cgroup-root", default="tinykube", metavar="NAME",
                        help="top-level cgroup of this node's pods (default %(default)s)")
    parser.add_argument("--dns-upstream", action="append", default=None, metavar="HOST:PORT",
                        help="where cluster DNS forwards names outside the cluster (default: /etc/resolv.conf's)")
    parser.add_argument("--pod-max-pids", type=int, default=POD_PIDS_LIMIT,
                        help="processes each pod may have; -1: unlimited (default %(default)s)")
    for flag, whom in (("--system-reserved", "the operating system"), ("--kube-reserved", "tinykube itself")):
        parser.add_argument(flag, type=_reserved, default={}, metavar="cpu=500m,memory=512Mi,...",
                            help=f"resources kept from pods for {whom}: cpu, memory, ephemeral-storage, pid")


def _reserved(text: str) -> dict[str, Fraction]:
    """``--system-reserved``/``--kube-reserved``, refused with the kubelet's message."""
    try:
        return parse_reserved(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tinykube", description="A Kubernetes-compatible Pod platform.")
    sub = top.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server", help="run the control plane (API server, store, controllers)")
    _server_args(server)
    up = sub.add_parser("up", help="run every role in one process and merge a kubectl context")
    _server_args(up)
    _node_args(up)
    up.add_argument("--no-kubeconfig", action="store_true", help="do not touch ~/.kube/config")
    node = sub.add_parser("node", help="run a node agent that joins a control plane")
    node.add_argument("--server", required=True, help="the API server URL, e.g. https://10.0.0.1:6443")
    node.add_argument("--token", required=True, help="the join token from the server's <data-dir>/token")
    node.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="images and node state (default %(default)s)")
    _node_args(node)
    image.add_parser(sub, DEFAULT_DATA_DIR)
    return top


def _announce(plane: ControlPlane, merge_into: str | None) -> None:
    config = kubeconfig.admin_config(plane.config.url, plane.pki.ca_cert, plane.pki.admin_cert, plane.pki.admin_key)
    admin = os.path.join(plane.config.data_dir, "admin.kubeconfig")
    kubeconfig.write(admin, config)
    if merge_into:
        kubeconfig.merge(merge_into, config)
    print(f"tinykube is serving the Kubernetes API at {plane.config.url}", flush=True)
    print(f"  kubeconfig: {admin}{' (also merged into ' + merge_into + ')' if merge_into else ''}", flush=True)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host else (text, 53)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _until(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Run until a signal (or a task ends), then cancel every task."""
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in [waiter, *tasks]:
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)


async def _node(args: argparse.Namespace, server: str, token: str) -> None:
    """One node agent that joins ``server`` exactly as a remote node would."""
    from tinykube.node.agent import AgentConfig, NodeAgent  # not imported by `tinykube server`: 4 MB less RSS
    from tinykube.node.join import join, keep_rotating

    upstreams = tuple(_address(a) for a in args.dns_upstream) if args.dns_upstream else None
    config = AgentConfig(node_name=args.node_name, data_dir=args.data_dir, run_dir=args.run_dir, node_ip=args.node_ip,
                         kubelet_port=args.kubelet_port, bridge=args.bridge, cgroup_root=args.cgroup_root,
                         dns_upstreams=upstreams, pod_pids_limit=args.pod_max_pids,
                         system_reserved=args.system_reserved, kube_reserved=args.kube_reserved)
    creds, cert, key = await join(server, token, config.agent_dir, config.node_name, config.node_ip)
    config = dataclasses.replace(config, serving_cert=cert, serving_key=key, client_ca=creds.ca_file)
    client = Client(creds, "kubelet")

    def write_kubeconfig() -> None:
        """The node's own credentials, for people (kubectl --kubeconfig)."""
        kubeconfig.write(os.path.join(config.agent_dir, "kubelet.kubeconfig"),
                         kubeconfig.admin_config(server, creds.ca_file, creds.cert_file, creds.key_file))

    async def rotated() -> None:
        write_kubeconfig()
        await client.reset("the client certificate was renewed")  # new connections present it

    write_kubeconfig()

    rotation = asyncio.create_task(keep_rotating(creds, config.node_name, rotated))
    try:
        await NodeAgent(config, client).run()
    finally:
        rotation.cancel()
        await client.close()


def _advertise_address(args: argparse.Namespace) -> str:
    """``--advertise-address``, or for ``up`` on loopback its node's pod-network gateway."""
    if args.advertise_address or args.command != "up" or not ipaddress.ip_address(args.bind).is_loopback:
        return args.advertise_address
    return first_gateway()


async def _controller_manager(client: Client, plane: ControlPlane, args: argparse.Namespace,
                              masters: Callable[[], Awaitable[list[str]]]) -> None:
    """kube-controller-manager's controllers, made afresh for each term as leader (they keep state);
    one failing stops them all."""
    config = plane.config
    controllers = (NamespaceController(client), ServiceAccountController(client), NodeIpamController(client),
                   LocalPathController(client, os.path.join(args.data_dir, "storage")),
                   RootCACertPublisher(client, _read(plane.pki.ca_cert)), CsrController(
                       client, plane.pki, signing_duration=datetime.timedelta(seconds=args.cluster_signing_duration)),
                   EndpointsController(client, config.advertise_address or config.bind, config.port, masters),
                   ResourceQuotaController(client), NodeLifecycleController(client, LifecycleConfig(
                       args.node_monitor_period, args.node_monitor_grace_period, args.node_startup_grace_period)))
    async with asyncio.TaskGroup() as group:
        for controller in controllers:
            group.create_task(controller.run())


async def _serve(args: argparse.Namespace) -> None:
    config = ServerConfig(data_dir=args.data_dir, port=args.port, bind=args.bind, store=args.store,
                          advertise_address=_advertise_address(args),
                          compaction_interval=args.compaction_interval, compaction_retain=args.compaction_retain,
                          event_ttl=args.event_ttl,
                          etcd_cafile=args.etcd_cafile, etcd_certfile=args.etcd_certfile, etcd_keyfile=args.etcd_keyfile)
    stop = _stop_event()
    published = advertise_address(config.advertise_address or config.bind)
    async with running(config) as plane, registered(plane.storage.store, published) as masters:
        client = Client(plane.loopback, "kube-controller-manager")
        share_watches(client)  # one watch per resource for every controller, as shared informers are
        # kube-controller-manager and kube-scheduler: once in the cluster, on whichever server holds their Lease
        tasks = [asyncio.create_task(run_elected(client, "kube-controller-manager", "kube-controller-manager",
                                                 lambda: _controller_manager(client, plane, args, masters.live))),
                 asyncio.create_task(run_elected(client, "kube-scheduler", DEFAULT_SCHEDULER,
                                                 lambda: SchedulerController(client).run()))]
        if args.command == "up":
            tasks.append(asyncio.create_task(_node(args, config.url, plane.join_token)))
        merge = None if args.command != "up" or args.no_kubeconfig else os.path.expanduser("~/.kube/config")
        _announce(plane, merge)
        gc.collect()
        gc.freeze()  # schemas, OpenAPI documents, routes: never garbage, so no collection rescans them
        try:
            await _until(stop, tasks)
        finally:
            await client.close()


async def _join(args: argparse.Namespace) -> None:
    stop = _stop_event()
    await _until(stop, [asyncio.create_task(_node(args, args.server, args.token))])


GC_THRESHOLDS = (50_000, 20, 100)  # Python's (700, 10, 10) ran a collection every few requests over every
# object the watches and caches hold: measured +15% creates/s (1 client) and +20% (16 clients) on bench/api.py


def main(argv: list[str] | None = None) -> int:
    gc.set_threshold(*GC_THRESHOLDS)
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvloop

    if args.command == "image":
        return image.run(args)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_join(args) if args.command == "node" else _serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
