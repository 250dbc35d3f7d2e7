"""The API server process: store → storage → HTTPS API, started in order.

Components start in order, each once the previous is ready (never on a sleep): the store opens,
the built-in namespaces and the ``kubernetes`` Service exist, then the HTTPS listener is bound.
Controllers and node agents are started by the CLI afterwards and connect over loopback with
the ``loopback`` credentials, as any remote client would.
"""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tinykube.api.errors import ApiError
from tinykube.api.registry import ResourceType, lookup
from tinykube import pki
from tinykube.apiserver.app import build
from tinykube.apiserver.auth import Authenticator, User, load_or_create_token
from tinykube.apiserver.nodeproxy import NodeProxy
from tinykube.apiserver.podsecurity import PodSecurityAdmission
from tinykube.apiserver.serviceaccount_admission import ServiceAccountAdmission
from tinykube.apiserver.services import ServiceAllocator
from tinykube.apiserver.storage import Storage, WriteOptions
from tinykube.apiserver.tokens import ServiceAccountTokens, storage_lookup
from tinykube.client.rest import Credentials
from tinykube.store.base import Store

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``tinykube server`` is told on its command line."""

    data_dir: str = "/var/lib/tinykube"
    port: int = 6443
    bind: str = "127.0.0.1"
    store: str = ""  # "sqlite:PATH"; empty means <data-dir>/db/state.db
    compaction_interval: float = 300.0  # seconds between compactions of the store's history
    compaction_retain: int = 10000  # revisions of history kept for watches to resume from

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "127.0.0.1") else self.bind
        return f"https://{host}:{self.port}"


@dataclass
class ControlPlane:
    """What a running control plane exposes to the CLI and to an in-process node agent."""

    config: ServerConfig
    pki: pki.Pki
    storage: Storage
    loopback: Credentials
    join_token: str


def open_store(config: ServerConfig) -> Store:
    """The store named by ``--store`` (sqlite only for now; etcd arrives with scale-out)."""
    spec = config.store or "sqlite:" + os.path.join(config.data_dir, "db", "state.db")
    if not spec.startswith("sqlite:"):
        raise SystemExit(f"unsupported store {spec!r}: use sqlite:PATH")
    from tinykube.store.sqlite import SqliteStore

    filename = spec[len("sqlite:"):]
    os.makedirs(os.path.dirname(filename) or ".", exist_ok=True)
    return SqliteStore(filename, compact_interval=config.compaction_interval, compact_keep=config.compaction_retain)


async def bootstrap(storage: Storage) -> None:
    """The objects every cluster has from the start (idempotent)."""
    namespaces = lookup("", "v1", "namespaces")
    services = lookup("", "v1", "services")
    assert namespaces and services
    opts = WriteOptions(manager="kube-apiserver")
    for name in SYSTEM_NAMESPACES:
        await _ensure(storage, namespaces, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, opts)
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
           "spec": {"clusterIP": pki.SERVICE_IP, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}
    await _ensure(storage, services, "default", svc, opts)


async def _ensure(storage: Storage, rt: ResourceType, namespace: str | None, obj: dict[str, Any],
                  opts: WriteOptions) -> None:
    try:
        await storage.get(rt, namespace, obj["metadata"]["name"])
    except ApiError as e:
        if e.code != 404:
            raise
        await storage.create(rt, obj, namespace, opts)


def ssl_context(paths: pki.Pki) -> ssl.SSLContext:
    """TLS for the API: our serving cert, and client certificates verified against the CA when offered."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(paths.serving_cert, paths.serving_key)
    ctx.load_verify_locations(paths.ca_cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@asynccontextmanager
async def running(config: ServerConfig) -> AsyncIterator[ControlPlane]:
    """Start the control plane; it stops (acknowledged writes flushed) when the block exits."""
    os.makedirs(config.data_dir, mode=0o700, exist_ok=True)
    paths = pki.ensure(os.path.join(config.data_dir, "tls"), config.bind)
    with open(paths.ca_cert, "rb") as f:
        join_token = load_or_create_token(os.path.join(config.data_dir, "token"), f.read())
    loopback_token = secrets.token_hex(24)
    store = open_store(config)
    await store.start()
    allocator = ServiceAllocator(store)
    lookup_object = storage_lookup(Storage(store))  # reads only, so without admission
    storage = Storage(store, admission=[allocator.admit, ServiceAccountAdmission(lookup_object).admit, PodSecurityAdmission(store).admit],
                      release=[allocator.release])
    tokens = ServiceAccountTokens(pki.load_key(paths.service_account_key), lookup_object)
    auth = Authenticator({loopback_token: User("system:apiserver", ("system:masters",)),
                          join_token: User("system:node-joiner", ("system:nodes", "system:masters"))}, tokens)
    runner: web.AppRunner | None = None
    try:
        await bootstrap(storage)
        proxy = NodeProxy(paths.kubelet_client_cert, paths.kubelet_client_key)
        runner = web.AppRunner(build(storage, auth, proxy, paths.ca_cert, tokens), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, config.bind, config.port, ssl_context=ssl_context(paths), backlog=1024).start()
        loopback = Credentials(config.url, paths.ca_cert, token=loopback_token)
        yield ControlPlane(config, paths, storage, loopback, join_token)
    finally:
        if runner is not None:
            await runner.cleanup()
        await store.close()
