"""``tinykube``: one binary, one subcommand per role (k3s' shape).

``server`` runs the control plane; ``up`` runs every role in one process and points kubectl at
it.  Each subcommand takes ``--data-dir`` so several instances can run side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from tinykube.apiserver.server import ControlPlane, ServerConfig, running
from tinykube.cli import kubeconfig
from tinykube.client.rest import Client
from tinykube.controllers.namespace import NamespaceController
from tinykube.controllers.nodeipam import NodeIpamController
from tinykube.controllers.scheduler import SchedulerController
from tinykube.controllers.serviceaccounts import ServiceAccountController

DEFAULT_DATA_DIR = "/var/lib/tinykube"


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="state, certificates and kubeconfig (default %(default)s)")
    parser.add_argument("--port", type=int, default=6443, help="HTTPS port of the API (default %(default)s)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default loopback only)")
    parser.add_argument("--store", default="", help="sqlite:PATH (default <data-dir>/db/state.db)")
    parser.add_argument("--compaction-interval", type=float, default=300.0,
                        help="seconds between compactions of the store's history (default %(default)s)")
    parser.add_argument("--compaction-retain", type=int, default=10000,
                        help="revisions of history kept for watches to resume from (default %(default)s)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tinykube", description="A Kubernetes-compatible Pod platform.")
    sub = top.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server", help="run the control plane (API server, store, controllers)")
    _server_args(server)
    up = sub.add_parser("up", help="run every role in one process and merge a kubectl context")
    _server_args(up)
    up.add_argument("--no-kubeconfig", action="store_true", help="do not touch ~/.kube/config")
    return top


def _announce(plane: ControlPlane, merge_into: str | None) -> None:
    config = kubeconfig.admin_config(plane.config.url, plane.pki.ca_cert, plane.pki.admin_cert, plane.pki.admin_key)
    admin = os.path.join(plane.config.data_dir, "admin.kubeconfig")
    kubeconfig.write(admin, config)
    if merge_into:
        kubeconfig.merge(merge_into, config)
    print(f"tinykube is serving the Kubernetes API at {plane.config.url}", flush=True)
    print(f"  kubeconfig: {admin}{' (also merged into ' + merge_into + ')' if merge_into else ''}", flush=True)


async def _serve(args: argparse.Namespace) -> None:
    config = ServerConfig(data_dir=args.data_dir, port=args.port, bind=args.bind, store=args.store,
                          compaction_interval=args.compaction_interval, compaction_retain=args.compaction_retain)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(config) as plane:
        client = Client(plane.loopback, "kube-controller-manager")
        tasks = [asyncio.create_task(controller.run()) for controller in (
            NamespaceController(client), ServiceAccountController(client), SchedulerController(client),
            NodeIpamController(client))]
        merge = None if args.command != "up" or args.no_kubeconfig else os.path.expanduser("~/.kube/config")
        _announce(plane, merge)
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
