"""The service proxy: one nftables table that sends Service traffic to the Service's endpoints.

It is kube-proxy's nftables mode (``pkg/proxy/nftables/proxier.go``) in our own table,
``table ip tinykube``, with the same layout, chain names and rules, so ``nft list table ip
tinykube`` reads like ``nft list table ip kube-proxy``:

- ``nat-prerouting`` (pod and off-node traffic) and ``nat-output`` (the host's own sockets) jump
  to ``services``, which looks the destination up in two verdict maps: ``service-ips``
  (ClusterIP or external IP . protocol . port) and, for the addresses in ``nodeport-ips``,
  ``service-nodeports`` (protocol . port).  Each hit jumps to a per-port ``service-…`` chain
  that picks an endpoint with ``numgen random mod N`` and goes to its ``endpoint-…`` chain,
  which DNATs.  NodePorts and external IPs pass an ``external-…`` chain that marks the packet
  for masquerading first.
- Marked packets (mark 0x4000) are masqueraded in ``nat-postrouting``: NodePort traffic, host
  traffic to a ClusterIP, and hairpin traffic (a pod reaching itself through its Service).
- Services without ready endpoints are in the ``no-endpoint-…`` maps, checked from filter
  chains that ``reject`` new connections; traffic to an allocated ClusterIP on an undefined port
  is rejected and traffic to an unallocated one dropped (``cluster-ips-check``).
- ClientIP session affinity is one timed set per endpoint (``affinity-…``) that the endpoint
  chain refreshes with ``update`` and the service chain consults before ``numgen``.

Two deliberate additions to kube-proxy's nftables mode, both from its iptables mode:
NodePorts also answer on 127.0.0.1 (which needs ``route_localnet=1``, hence the rule dropping
un-NATed off-host packets to 127/8, CVE-2020-8558), and the host gets a route for the
service CIDR into ``lo``: the agent installs ``unreachable`` routes for the cluster CIDRs, and a
socket looks its route up before the output hook could DNAT, so host processes could
otherwise never connect to a ClusterIP.  Non-NATed packets to ``lo`` are dropped: nothing
leaves the host.

Every sync is one ``nft -f`` transaction.  The first replaces the whole table; later ones
flush the rules and our maps in place, so that the affinity sets keep their entries.  A chain
that falls out of use is emptied at once but deleted only a second later, because kernels
before 6.2 release a map element's reference to a chain after the transaction.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.node.runtime.sandbox import CLUSTER_CIDRS

log = logging.getLogger(__name__)

Json = dict[str, Any]

TABLE = "tinykube"
CLUSTER_CIDR, SERVICE_CIDR = CLUSTER_CIDRS
LOCALHOST = "127.0.0.1"
MASQ_MARK = "0x4000"  # kube-proxy's default --masquerade-bit=14
AFFINITY_TIMEOUT = 10800  # seconds: v1.DefaultClientIPServiceAffinitySeconds
NAME_BASE_MAX = 240  # nft names hold 256 bytes; 16 are left for the longest chain prefix
DEBOUNCE = 0.02  # seconds: a burst of watch events (a rollout, the initial lists) is one transaction
STALE_CHAIN_DELAY = 1.0  # seconds before deleting an unused chain (kernels < 6.2 release it late)
RETRY_MAX = 30.0  # seconds: the back-off after failed syncs never grows past this
ROUTE_LOCALNET = "net.ipv4.conf.all.route_localnet"

SERVICES = lookup("", "v1", "services")
ENDPOINTS = lookup("", "v1", "endpoints")
assert SERVICES is not None and ENDPOINTS is not None

# Base chains: name, type, hook, priority.  Filter chains run after DNAT (priority 0), so a
# packet still addressed to a service IP there was not sent to any endpoint.
BASE_CHAINS = (
    ("filter-forward", "filter", "forward", 0),
    ("filter-input", "filter", "input", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
    ("nat-prerouting", "nat", "prerouting", -100),
)
FIXED_CHAINS = ("cluster-ips-check", "mark-for-masquerade", "masquerading", "nodeport-endpoints-check",
                "reject-chain", "services", "service-endpoints-check")
ADDR_PORT_VERDICT = "ipv4_addr . inet_proto . inet_service : verdict"
PORT_VERDICT = "inet_proto . inet_service : verdict"
CONTAINERS = {  # our sets and maps, rebuilt on every sync: name -> (kind, type)
    "cluster-ips": ("set", "ipv4_addr"),
    "nodeport-ips": ("set", "ipv4_addr"),
    "no-endpoint-nodeports": ("map", PORT_VERDICT),
    "no-endpoint-services": ("map", ADDR_PORT_VERDICT),
    "service-ips": ("map", ADDR_PORT_VERDICT),
    "service-nodeports": ("map", PORT_VERDICT),
}
# With route_localnet=1 the kernel accepts packets to 127/8 from any interface: drop those that
# were not DNATed to an endpoint (kubelet's KUBE-FIREWALL rule, CVE-2020-8558).
LOCALNET_GUARD = ("ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state != { established, related } "
                  "ct status & dnat == 0 drop")
FIXED_RULES = (
    ("cluster-ips-check", "ip daddr @cluster-ips goto reject-chain"),
    ("cluster-ips-check", f"ip daddr {SERVICE_CIDR} drop"),
    ("filter-forward", "ct state new jump service-endpoints-check"),
    ("filter-forward", "ct state new jump cluster-ips-check"),
    ("filter-input", LOCALNET_GUARD),
    ("filter-input", "ct state new jump nodeport-endpoints-check"),
    ("filter-input", "ct state new jump service-endpoints-check"),
    ("filter-output", "ct state new jump service-endpoints-check"),
    ("filter-output", "ct state new jump cluster-ips-check"),
    ("mark-for-masquerade", f"mark set mark or {MASQ_MARK}"),
    ("masquerading", f"mark and {MASQ_MARK} == 0 return"),
    ("masquerading", f"mark set mark xor {MASQ_MARK}"),
    ("masquerading", "masquerade fully-random"),
    ("nat-output", "jump services"),
    ("nat-postrouting", "jump masquerading"),
    ("nat-prerouting", "jump services"),
    ("nodeport-endpoints-check", "ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"),
    # A TCP reset rather than kube-proxy's ICMP error: the host's own packets to a service IP
    # leave via the lo route, and the kernel cannot send an ICMP error from the (non-local)
    # service IP back to them; a reset it can.  Clients see "connection refused" either way.
    ("reject-chain", "meta l4proto tcp reject with tcp reset"),
    ("reject-chain", "reject"),
    ("services", "ip daddr . meta l4proto . th dport vmap @service-ips"),
    ("services", "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"),
    ("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services"),
)


class ProxyError(Exception):
    """An ``nft``, ``ip`` or ``sysctl`` command failed (or is missing)."""


def hashed(name: str) -> str:
    """A chain name base: hash prefix, then the readable name (``hashAndTruncate``).

    The hash keeps names unique when truncated and tells near-identical names apart at a glance.
    """
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    name = f"{digest[:8]}-{name}"
    return name if len(name) <= NAME_BASE_MAX else name[:NAME_BASE_MAX - 3] + "..."


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service with its ready endpoints: what kube-proxy's ServicePortInfo keeps."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # tcp, udp or sctp
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    affinity_timeout: int = 0  # seconds; 0 without ClientIP session affinity
    endpoints: tuple[tuple[str, int], ...] = ()  # ready (ip, port) pairs

    @property
    def label(self) -> str:
        """``ServicePortName.String()``: ns/name, then :port-name if the port has one."""
        return f"{self.namespace}/{self.name}" + (f":{self.port_name}" if self.port_name else "")

    def chain(self, prefix: str) -> str:
        return prefix + hashed(f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name}")

    def endpoint_chain(self, prefix: str, ip: str, port: int) -> str:
        return prefix + hashed(f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name}__{ip}/{port}")


def _is_ipv4(value: Any) -> bool:
    """Only IPv4 goes into an ``ip`` table; one malformed address would fail the whole transaction."""
    try:
        return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address)
    except ValueError:
        return False


def _key(obj: Json) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", "")


def is_proxied(service: Json) -> bool:
    """kube-proxy's ``ShouldSkipService`` inverted: headless and ExternalName Services get no rules."""
    spec = service.get("spec", {})
    return spec.get("type") != "ExternalName" and _is_ipv4(spec.get("clusterIP"))


def ready_endpoints(endpoints: Json | None, port_name: str, protocol: str) -> tuple[tuple[str, int], ...]:
    """The ready (ip, port) pairs of the Endpoints port named like the Service port, sorted."""
    found: set[tuple[str, int]] = set()
    for subset in (endpoints or {}).get("subsets") or []:
        numbers = [p["port"] for p in subset.get("ports") or []
                   if p.get("name", "") == port_name and p.get("protocol", "TCP") == protocol]
        found.update((a["ip"], n) for a in subset.get("addresses") or [] if _is_ipv4(a.get("ip")) for n in numbers)
    return tuple(sorted(found, key=lambda e: (ipaddress.ip_address(e[0]), e[1])))


def _external_ips(service: Json) -> tuple[str, ...]:
    """spec.externalIPs and load-balancer ingress IPs: both are "external" destinations."""
    ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    ips = [*(service["spec"].get("externalIPs") or []), *(i.get("ip") for i in ingress)]
    return tuple(ip for ip in dict.fromkeys(ips) if _is_ipv4(ip))


def _affinity_timeout(spec: Json) -> int:
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
    return int(client_ip.get("timeoutSeconds") or AFFINITY_TIMEOUT)


def service_ports(services: Iterable[Json], endpoints: Iterable[Json], local_ips: Collection[str] = ()) -> list[ServicePort]:
    """Every proxied Service port joined with its Endpoints, in a stable order.

    A Service whose ClusterIP this node serves itself (``local_ips``: the cluster DNS address,
    as NodeLocal DNSCache binds kube-dns's) gets no rules, so its traffic reaches the local server.
    """
    by_key = {_key(e): e for e in endpoints}
    result = []
    for svc in sorted(filter(is_proxied, services), key=_key):
        if svc["spec"]["clusterIP"] in local_ips:
            continue
        spec = svc["spec"]
        for p in spec.get("ports") or []:
            protocol = p.get("protocol", "TCP")
            result.append(ServicePort(
                *_key(svc), port_name=p.get("name", ""), protocol=protocol.lower(), cluster_ip=spec["clusterIP"],
                port=p["port"], node_port=p.get("nodePort") or 0, external_ips=_external_ips(svc),
                affinity_timeout=_affinity_timeout(spec),
                endpoints=ready_endpoints(by_key.get(_key(svc)), p.get("name", ""), protocol)))
    return result


@dataclass
class Plan:
    """What the table holds beyond its fixed skeleton: everything Services and Endpoints decide."""

    chains: dict[str, list[str]] = field(default_factory=dict)  # service, external, endpoint chains: rules
    elements: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in CONTAINERS})
    affinity: dict[str, int] = field(default_factory=dict)  # affinity set -> timeout in seconds


def plan(services: Iterable[Json], endpoints: Iterable[Json], node_ips: Sequence[str],
         local_ips: Collection[str] = ()) -> Plan:
    """The chains, map elements and affinity sets for these Services and Endpoints (pure)."""
    p = Plan()
    p.elements["nodeport-ips"] = [ip for ip in dict.fromkeys([*node_ips, LOCALHOST]) if _is_ipv4(ip)]
    claimed: set[str] = set()
    for sp in service_ports(services, endpoints, local_ips):
        _add_service_port(p, sp, claimed)
    return p


def _add_service_port(p: Plan, sp: ServicePort, claimed: set[str]) -> None:
    """One Service port's elements and chains, unless another port already holds its keys.

    Keys can collide only when a watch missed a deletion (an address or port was freed and
    handed out again); a duplicate map key would fail the whole transaction.
    """
    ip_keys = [f"{ip} . {sp.protocol} . {sp.port}" for ip in dict.fromkeys((sp.cluster_ip, *sp.external_ips))]
    port_keys = [f"{sp.protocol} . {sp.node_port}"] if sp.node_port else []
    if taken := claimed.intersection(ip_keys + port_keys):
        log.warning("%s: %s already belongs to another Service; no rules for it", sp.label, sorted(taken))
        return
    claimed.update(ip_keys + port_keys)
    if sp.cluster_ip not in p.elements["cluster-ips"]:
        p.elements["cluster-ips"].append(sp.cluster_ip)
    if sp.endpoints:
        _add_forwarding(p, sp, ip_keys, port_keys)
    else:
        p.elements["no-endpoint-services"] += [f'{k} comment "{sp.label}" : goto reject-chain' for k in ip_keys]
        p.elements["no-endpoint-nodeports"] += [f'{k} comment "{sp.label}" : goto reject-chain' for k in port_keys]


def _add_forwarding(p: Plan, sp: ServicePort, ip_keys: list[str], port_keys: list[str]) -> None:
    """Map elements to the service (ClusterIP) or external chain, and the chains themselves."""
    service, external = sp.chain("service-"), sp.chain("external-")
    p.elements["service-ips"].append(f"{ip_keys[0]} : goto {service}")
    p.elements["service-ips"] += [f"{k} : goto {external}" for k in ip_keys[1:]]
    p.elements["service-nodeports"] += [f"{k} : goto {external}" for k in port_keys]
    p.chains[service] = _service_rules(sp)
    if ip_keys[1:] or port_keys:  # off-node clients may reach endpoints on other nodes: masquerade
        p.chains[external] = ["jump mark-for-masquerade", f"goto {service}"]
    for ip, port in sp.endpoints:
        affinity = sp.endpoint_chain("affinity-", ip, port) if sp.affinity_timeout else ""
        if affinity:
            p.affinity[affinity] = sp.affinity_timeout
        p.chains[sp.endpoint_chain("endpoint-", ip, port)] = _endpoint_rules(sp, ip, port, affinity)


def _service_rules(sp: ServicePort) -> list[str]:
    """Masquerade clients outside the cluster CIDR, honour affinity, else pick an endpoint at random."""
    rules = [f"ip daddr {sp.cluster_ip} ip saddr != {CLUSTER_CIDR} jump mark-for-masquerade"]
    chains = [sp.endpoint_chain("endpoint-", ip, port) for ip, port in sp.endpoints]
    if sp.affinity_timeout:
        rules += [f"ip saddr @{sp.endpoint_chain('affinity-', ip, port)} goto {chain}"
                  for (ip, port), chain in zip(sp.endpoints, chains)]
    choices = " , ".join(f"{i} : goto {chain}" for i, chain in enumerate(chains))
    return rules + [f"numgen random mod {len(chains)} vmap {{ {choices} }}"]


def _endpoint_rules(sp: ServicePort, ip: str, port: int, affinity: str) -> list[str]:
    """Masquerade hairpin traffic, remember the client for affinity, DNAT."""
    rules = [f"ip saddr {ip} jump mark-for-masquerade"]
    if affinity:
        rules.append(f"update @{affinity} {{ ip saddr }}")
    return rules + [f"meta l4proto {sp.protocol} dnat to {ip}:{port}"]


def _skeleton(t: str) -> list[str]:
    """Declarations of the fixed chains, sets and maps; ``add`` of an existing one is a no-op."""
    lines = [f"add set {t} {n} {{ type {typ} ; }}" for n, (kind, typ) in CONTAINERS.items() if kind == "set"]
    lines += [f"add map {t} {n} {{ type {typ} ; }}" for n, (kind, typ) in CONTAINERS.items() if kind == "map"]
    lines += [f"add chain {t} {n} {{ type {typ} hook {hook} priority {prio} ; }}" for n, typ, hook, prio in BASE_CHAINS]
    return lines + [f"add chain {t} {n}" for n in FIXED_CHAINS]


def render(p: Plan, table: str = TABLE, previous: Plan | None = None, retired: Collection[str] = ()) -> str:
    """The ``nft -f`` script (one transaction) that makes the table hold exactly ``p``.

    Without ``previous`` the table is deleted and re-created.  With it (the plan the table holds
    now) rules and our maps are flushed in place, which keeps the affinity sets' entries;
    affinity sets ``p`` no longer uses are deleted, and so are the ``retired`` chains (unused
    since an earlier transaction).
    """
    t = f"ip {table}"
    header = f'add table {t} {{ comment "rules for tinykube Services" ; }}'
    lines = [header] + ([f"delete table {t}", header] if previous is None else []) + _skeleton(t)
    if previous is not None:
        lines.append(f"flush table {t}")
        lines += [f"flush {kind} {t} {name}" for name, (kind, _) in CONTAINERS.items()]
        lines += [f"delete chain {t} {c}" for c in sorted(retired) if c not in p.chains]
        lines += [f"delete set {t} {s}" for s in sorted(previous.affinity.keys() - p.affinity.keys())]
    lines += [f"add chain {t} {c}" for c in p.chains]
    lines += [f"add set {t} {s} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {n}s ; }}"
              for s, n in p.affinity.items()]
    lines += [f"add element {t} {name} {{ {e} }}" for name, elements in p.elements.items() for e in elements]
    lines += [f"add rule {t} {chain} {rule}" for chain, rule in FIXED_RULES]
    lines += [f"add rule {t} {c} {rule}" for c, rules in p.chains.items() for rule in rules]
    return "\n".join(lines) + "\n"


def ruleset(services: Iterable[Json], endpoints: Iterable[Json], node_ips: Sequence[str], table: str = TABLE) -> str:
    """The complete ``nft -f`` script replacing our table for these Services and Endpoints."""
    return render(plan(services, endpoints, node_ips), table)


def delete_script(table: str = TABLE) -> str:
    """Delete the table, and succeed when it does not exist (``add`` first)."""
    return f"add table ip {table}\ndelete table ip {table}\n"


def retire(previous: Plan, current: Plan, retired: dict[str, float], deleted: Collection[str],
           now: float) -> dict[str, float]:
    """The chains the table still holds but no longer uses, each with when it fell out of use."""
    kept = {c: t for c, t in retired.items() if c not in deleted and c not in current.chains}
    kept.update({c: now for c in previous.chains if c not in current.chains and c not in kept})
    return kept


class ServiceProxy:
    """Keeps the table in step with every Service and Endpoints object (kube-proxy's Proxier).

    Watch events only update two caches and set a flag; one loop turns a burst of them into one
    transaction.  ``netns`` runs every command inside that network namespace (``ip netns exec``).
    """

    def __init__(self, client: Client, node_ips: Sequence[str], nft: str = "nft", *,
                 table: str = TABLE, netns: str = "", local_ips: Collection[str] = ()) -> None:
        self.client = client
        self.node_ips = list(node_ips)
        self.local_ips = frozenset(local_ips)  # ClusterIPs served on this node itself: never proxied
        self.table = table
        self._nft = nft
        self._prefix = ("ip", "netns", "exec", netns) if netns else ()
        self._services: dict[tuple[str, str], Json] = {}
        self._endpoints: dict[tuple[str, str], Json] = {}
        self._changed = asyncio.Event()
        self._applied: Plan | None = None  # what the table holds; None: unknown, replace it
        self._retired: dict[str, float] = {}
        self._failures = 0
        self._localnet: str | None = None  # route_localnet before we set it

    async def run(self) -> None:
        """Prepare the host, list, then follow both watches and sync until cancelled.

        The rules stay when this is cancelled (an agent restart keeps Services working);
        :meth:`cleanup` removes them.
        """
        await self.prepare_host()
        await self._list()
        self._changed.set()
        await asyncio.gather(list_and_watch(self.client, path(SERVICES), self.on_service),
                             list_and_watch(self.client, path(ENDPOINTS), self.on_endpoints),
                             self._sync_loop())

    async def on_service(self, kind: str, obj: Json) -> None:
        self._remember(self._services, kind, obj)

    async def on_endpoints(self, kind: str, obj: Json) -> None:
        self._remember(self._endpoints, kind, obj)

    def _remember(self, cache: dict[tuple[str, str], Json], kind: str, obj: Json) -> None:
        if kind == "DELETED":
            cache.pop(_key(obj), None)
        else:
            cache[_key(obj)] = obj
        self._changed.set()

    async def _list(self) -> None:
        """Both lists before the first sync, so it does not reject Services whose Endpoints are
        still on their way; if the server is not there, the watches (which retry) fill in."""
        try:
            services, endpoints = await asyncio.gather(self.client.get(path(SERVICES)),
                                                       self.client.get(path(ENDPOINTS)))
        except (ApiError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            log.warning("listing Services and Endpoints failed (%s); following the watches", e)
            return
        for obj in services.get("items", []):
            self._remember(self._services, "ADDED", obj)
        for obj in endpoints.get("items", []):
            self._remember(self._endpoints, "ADDED", obj)

    async def _sync_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._changed.wait()
            await asyncio.sleep(DEBOUNCE)  # let the rest of a burst land in the same transaction
            self._changed.clear()
            try:
                await self.sync()
                self._failures = 0
            except ProxyError as e:
                self._failures += 1
                delay = min(0.5 * 2 ** self._failures, RETRY_MAX)
                log.warning("service rules not applied (%s); retrying in %.0fs", e, delay)
                loop.call_later(delay, self._changed.set)

    async def sync(self) -> None:
        """Apply the rules for what the caches hold; nothing to do when the table already has them."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        new = plan(self._services.values(), self._endpoints.values(), self.node_ips, self.local_ips)
        due = {c for c, since in self._retired.items() if now - since >= STALE_CHAIN_DELAY}
        if new == self._applied and not due:
            return
        try:
            await self._apply(render(new, self.table, self._applied, due))
        except ProxyError:
            self._applied, self._retired = None, {}  # unknown state: the next sync replaces the table
            raise
        self._retired = {} if self._applied is None else retire(self._applied, new, self._retired, due, now)
        self._applied = new
        if self._retired:
            loop.call_later(STALE_CHAIN_DELAY, self._changed.set)

    async def cleanup(self) -> None:
        """Delete the table and undo the host changes of :meth:`run` (tinykube is stopping)."""
        await self._apply(delete_script(self.table))
        self._applied, self._retired = None, {}
        if self._localnet is not None:
            await self._exec("ip", "route", "replace", "unreachable", SERVICE_CIDR)
            await self._exec("sysctl", "-qw", f"{ROUTE_LOCALNET}={self._localnet}")
            self._localnet = None

    async def prepare_host(self) -> None:
        """Localhost NodePorts need route_localnet; host sockets need a route for the service CIDR."""
        if self._localnet is None:
            self._localnet = (await self._exec("sysctl", "-n", ROUTE_LOCALNET)).strip()
        await self._exec("sysctl", "-qw", f"{ROUTE_LOCALNET}=1")
        await self._exec("ip", "route", "replace", SERVICE_CIDR, "dev", "lo")

    async def _apply(self, script: str) -> None:
        await self._exec(self._nft, "-f", "-", stdin=script.encode())

    async def _exec(self, *args: str, stdin: bytes | None = None) -> str:
        """Run one command (in the namespace, if any); its stdout, or ProxyError with its stderr."""
        argv = (*self._prefix, *args)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            raise ProxyError(f"{argv[0]}: {e}") from e
        out, err = await proc.communicate(stdin)
        if proc.returncode != 0:
            raise ProxyError(f"{args[0]}: {err.decode(errors='replace').strip()}")
        return out.decode()
