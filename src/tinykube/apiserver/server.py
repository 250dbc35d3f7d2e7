"""The API server process: store → storage → HTTPS API, started in order.

Components start in order, each once the previous is ready (never on a sleep): the store opens,
the cluster's identity (CA, service-account key, join token) is read from it or put there,
the built-in namespaces and the ``kubernetes`` Service exist, then the HTTPS listener is bound.
Controllers and node agents are started by the CLI afterwards and connect over loopback with
the ``loopback`` credentials, as any remote client would.
"""

from __future__ import annotations

import asyncio
import copy
import os
import secrets
import socket
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
from tinykube.apiserver.auth import Authenticator, User
from tinykube.apiserver.authz import BOOTSTRAPPERS_GROUP, Authorizer, node_restriction
from tinykube.apiserver.bootstrapdata import cluster_identity
from tinykube.apiserver.cache import ObjectCache
from tinykube.apiserver.csr_admission import set_requestor
from tinykube.apiserver.limitranger import LimitRanger
from tinykube.apiserver.nodeproxy import NodeProxy
from tinykube.apiserver.podsecurity import PodSecurityAdmission
from tinykube.apiserver.quota import QuotaAdmission
from tinykube.apiserver.serviceaccount_admission import ServiceAccountAdmission
from tinykube.apiserver.services import CLUSTER_DNS_IP, ServiceAllocator
from tinykube.apiserver.storage import Storage, WriteOptions
from tinykube.apiserver.tokens import ServiceAccountTokens, storage_lookup
from tinykube.client.rest import Credentials
from tinykube.store.base import Store

IP_FREEBIND = 15  # <linux/in.h>; the socket module does not name it

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``tinykube server`` is told on its command line."""

    data_dir: str = "/var/lib/tinykube"
    port: int = 6443
    bind: str = "127.0.0.1"
    advertise_address: str = ""  # published for the ``kubernetes`` Service and listened on too; "" = bind
    store: str = ""  # "sqlite:PATH" or "etcd[s]://HOST:PORT[,HOST:PORT...]"; empty means <data-dir>/db/state.db
    etcd_cafile: str = ""  # TLS towards etcd (kube-apiserver's --etcd-cafile/--etcd-certfile/--etcd-keyfile)
    etcd_certfile: str = ""
    etcd_keyfile: str = ""
    compaction_interval: float = 300.0  # seconds between compactions of the store's history
    compaction_retain: int = 10000  # revisions of history kept for watches to resume from
    event_ttl: int = 3600  # seconds an Event is kept after its last write (kube-apiserver's --event-ttl)

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
    """The store named by ``--store``: ``sqlite:PATH`` (the default) or ``etcd[s]://HOST:PORT[,...]``.

    Each backend is imported only when chosen: etcd's gRPC client costs a noticeable start-up.
    ``etcds://`` (or any ``--etcd-*file``) means TLS; several endpoints are tried in turn.
    """
    spec = config.store or "sqlite:" + os.path.join(config.data_dir, "db", "state.db")
    compaction = {"compact_interval": config.compaction_interval, "compact_keep": config.compaction_retain}
    scheme, _, hosts = spec.partition("://")
    if scheme in ("etcd", "etcds") and hosts.strip(","):
        from tinykube.store.etcd import EtcdStore

        endpoints = [("https://" if scheme == "etcds" else "") + host for host in hosts.split(",") if host]
        return EtcdStore(endpoints, ca=config.etcd_cafile, cert=config.etcd_certfile, key=config.etcd_keyfile,
                         **compaction)
    if not spec.startswith("sqlite:"):
        raise SystemExit(f"unsupported store {spec!r}: use sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...]")
    from tinykube.store.sqlite import SqliteStore

    filename = spec[len("sqlite:"):]
    os.makedirs(os.path.dirname(filename) or ".", exist_ok=True)
    return SqliteStore(filename, **compaction)


# The cluster DNS Service as k3s's CoreDNS manifest declares it, without a selector: every node
# agent serves 10.43.0.10 itself (as NodeLocal DNSCache binds kube-dns's address) and its proxy
# leaves that address alone, so no endpoints are needed.
KUBE_DNS = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                                        "kubernetes.io/name": "CoreDNS"},
                         "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
            "spec": {"clusterIP": CLUSTER_DNS_IP, "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                                                            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}}


async def bootstrap(storage: Storage, port: int) -> None:
    """The objects every cluster has from the start (idempotent)."""
    namespaces = lookup("", "v1", "namespaces")
    services = lookup("", "v1", "services")
    assert namespaces and services
    opts = WriteOptions(manager="kube-apiserver")
    for name in SYSTEM_NAMESPACES:
        await _ensure(storage, namespaces, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, opts)
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
           "spec": {"clusterIP": pki.SERVICE_IP, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}
    await _ensure(storage, services, "default", svc, opts)
    await _ensure(storage, services, "kube-system", copy.deepcopy(KUBE_DNS), opts)


def _resource(name: str) -> ResourceType:
    rt = lookup("", "v1", name)
    assert rt is not None
    return rt


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


def _freebind_socket(address: str, port: int) -> socket.socket:
    """A listening socket on ``address`` even before any interface has it (``IP_FREEBIND``): the
    advertised address of ``tinykube up`` is the pod network's gateway, which appears only when
    the node agent's bridge gets its first pod."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    sock.bind((address, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _admitting_storage(store: Store, reads: Storage, event_ttl: int) -> tuple[Storage, tuple[ObjectCache, ...]]:
    """The write path with kube-apiserver's admission chain, and the started caches it reads.

    Admission's listers are watch-fed caches, so a pod create costs no extra store reads; quota
    reads its objects live (its charges compare-and-swap on them), but only where one exists.
    """
    allocator = ServiceAllocator(store)
    namespaces, accounts, ranges, quota_cache = (ObjectCache(store, _resource(r)) for r in (
        "namespaces", "serviceaccounts", "limitranges", "resourcequotas"))
    caches = (namespaces, accounts, ranges, quota_cache)
    await asyncio.gather(*(c.start() for c in caches))

    async def cached_ranges(_rt: ResourceType, namespace: str) -> list[dict[str, Any]]:
        return ranges.list(namespace)

    async def live_quotas(rt: ResourceType, namespace: str) -> list[dict[str, Any]]:
        return await reads.list_objects(rt, namespace) if quota_cache.list(namespace) else []

    limits = LimitRanger(cached_ranges)
    quotas = QuotaAdmission(live_quotas, lambda q: reads.replace(_resource("resourcequotas"), q,
                                                                  int(q["metadata"]["resourceVersion"])))
    account_lister = lambda _resource, namespace, name: accounts.fetch(namespace, name)  # noqa: E731
    # Quota charges once every hook that may refuse a pod has passed, and before Service addresses are
    # claimed (a refused Service must not hold any); kube-apiserver reverts its allocations instead.
    storage = Storage(store, admission=[node_restriction, ServiceAccountAdmission(account_lister).admit, limits.validate,
                                        PodSecurityAdmission(store, namespaces).admit, quotas.admit, allocator.admit],
                      release=[allocator.release, quotas.release], namespaces=namespaces,
                      mutating=[set_requestor, limits.mutate], event_ttl=event_ttl)
    return storage, caches


def bootstrap_user(join_token: str) -> User:
    """Who the join token is: a bootstrap token's user (``system:bootstrap:<token id>``, the secret's
    first six characters) that may only ask for a node client certificate."""
    secret = join_token.rpartition(":")[2]
    return User(f"system:bootstrap:{secret[:6]}", (BOOTSTRAPPERS_GROUP,))


def _authorizer(reads: Storage) -> Authorizer:
    """The Node authorizer, its graph read live from the store (nodes' requests only)."""
    async def pods(namespace: str | None) -> list[dict[str, Any]]:
        return await reads.list_objects(_resource("pods"), namespace)

    async def get(resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            obj, _ = await reads.get(_resource(resource), namespace, name)
        except ApiError as e:
            if e.code != 404:
                raise
            return None
        return obj

    return Authorizer(pods, get)


@asynccontextmanager
async def running(config: ServerConfig) -> AsyncIterator[ControlPlane]:
    """Start the control plane; it stops (acknowledged writes flushed) when the block exits."""
    os.makedirs(config.data_dir, mode=0o700, exist_ok=True)
    loopback_token = secrets.token_hex(24)
    store = open_store(config)
    await store.start()
    # the CA, service-account key and join token are the store's (shared by every server on it)
    paths, join_token = await cluster_identity(store, config.data_dir, config.bind, config.advertise_address)
    # reads (and quota's compare-and-swap status writes), so without admission
    reads = Storage(store, event_ttl=config.event_ttl)
    lookup_object = storage_lookup(reads)
    storage, caches = await _admitting_storage(store, reads, config.event_ttl)
    tokens = ServiceAccountTokens(pki.load_key(paths.service_account_key), lookup_object)
    auth = Authenticator({loopback_token: User("system:apiserver", ("system:masters",)),
                          join_token: bootstrap_user(join_token)}, tokens)
    runner: web.AppRunner | None = None
    try:
        await bootstrap(storage, config.port)
        proxy = NodeProxy(paths.kubelet_client_cert, paths.kubelet_client_key)
        app = build(storage, auth, proxy, paths.ca_cert, tokens, _authorizer(reads))
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        tls = ssl_context(paths)
        await web.TCPSite(runner, config.bind, config.port, ssl_context=tls, backlog=1024).start()
        if config.advertise_address not in ("", config.bind, "0.0.0.0"):
            await web.SockSite(runner, _freebind_socket(config.advertise_address, config.port), ssl_context=tls).start()
        loopback = Credentials(config.url, paths.ca_cert, token=loopback_token)
        yield ControlPlane(config, paths, storage, loopback, join_token)
    finally:
        if runner is not None:
            await runner.cleanup()
        await asyncio.gather(*(c.close() for c in caches))
        await store.close()
