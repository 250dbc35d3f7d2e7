"""The cluster DNS server: answers for Services and pods under ``cluster.local``, forwards the rest.

It behaves as CoreDNS with k3s' Corefile (``kubernetes cluster.local in-addr.arpa ip6.arpa
{ pods insecure; fallthrough in-addr.arpa ip6.arpa }`` then ``forward . /etc/resolv.conf``),
following the kubernetes plugin's ``parse.go``, ``kubernetes.go``, ``handler.go``, ``reverse.go``
and ``plugin/backend_lookup.go``:

- ``SVC.NS.svc.cluster.local``: the ClusterIP; for a headless Service one A per ready endpoint
  address; an ExternalName Service is a CNAME (its target resolved and appended);
- ``HOST.SVC.NS.svc.cluster.local``: one endpoint, by its hostname (pods with ``hostname`` and a
  ``subdomain`` naming the Service) or its dashed IP; ``_PORT._PROTO.SVC.NS.svc.cluster.local``
  and ``SVC.NS.svc.cluster.local`` answer SRV with the targets' A records in the additional section;
- ``1-2-3-4.NS.pod.cluster.local``: that address, in any existing namespace (``pods insecure``);
- PTR for Service IPs and endpoint addresses; beyond CoreDNS, the IP of a known pod answers its
  ``1-2-3-4.NS.pod.cluster.local`` name instead of being forwarded;
- names of the zone that do not exist are NXDOMAIN, names without data of the asked type
  NOERROR, both with the zone's SOA in the authority section; ``dns-version`` TXT and the
  ``ns.dns`` name as CoreDNS has them; zone transfers REFUSED;
- anything else (and reverse names it does not know) goes unchanged to the upstream resolvers
  (``/etc/resolv.conf`` unless given), over the protocol the client used.

The answers come from an in-memory copy of Namespaces, Services, EndpointSlices and Pods kept
by watches, so a change is answered as soon as its event arrives.  Not-ready endpoints are never
answered (``publishNotReadyAddresses`` makes the controller mark them ready).  The server listens
on UDP and TCP at ``10.43.0.10:53``, the ``nameserver`` of every pod's resolv.conf; the address is
put on the host's ``lo`` (no dummy interface module is needed; an orderly stop takes it off again)
and pods reach it through their default route, the bridge gateway, like any local address of
the host.  The service proxy lets it through: its filter only checks forwarded and host-sent
packets against the service CIDR, and these are delivered locally.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
from dnslib import AAAA, CNAME, EDNS0, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSError, DNSRecord

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.rest import Client, list_and_watch, path

log = logging.getLogger(__name__)

NAMESPACES = lookup("", "v1", "namespaces")
SERVICES = lookup("", "v1", "services")
SLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
PODS = lookup("", "v1", "pods")
assert NAMESPACES and SERVICES and SLICES and PODS

CLUSTER_DNS = ("10.43.0.10", 53)  # node/launch.py puts this address in every pod's resolv.conf
DOMAIN = "cluster.local"
TTL = 5  # the kubernetes plugin's default ttl, which k3s' Corefile keeps
DNS_SCHEMA_VERSION = "1.1.0"  # the Kubernetes DNS specification CoreDNS implements
FORWARD_TIMEOUT = 2.0  # seconds an upstream resolver gets before the next is tried
TCP_IDLE = 10.0  # seconds a client TCP connection may stay silent
BIND_RETRY = 5.0  # seconds between attempts to take the address while another server holds it
PRIME_RETRY = 1.0
ADDRESS_DEVICE = "lo"
SERVICE_NAME = "kubernetes.io/service-name"

Obj = dict[str, Any]
Address = tuple[str, int]


# --- the cache ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One ready endpoint address of a Service, as CoreDNS keeps it."""

    ip: str
    hostname: str  # the endpoint's hostname, or its dashed IP (``endpointHostname``)
    ports: tuple[tuple[str, int, str], ...]  # (name, port, protocol); one ("", -1, "") when the slice has none


def dashed(ip: str) -> str:
    return ip.replace(".", "-") if "." in ip else ip.replace(":", "-")


def slice_endpoints(endpoint_slice: Obj) -> list[Endpoint]:
    """``EndpointSliceToEndpoints``: ready endpoints (an unset condition counts as ready)."""
    ports = tuple((p.get("name") or "", p["port"] if p.get("port") is not None else -1, p.get("protocol") or "")
                  for p in endpoint_slice.get("ports") or []) or (("", -1, ""),)
    out = []
    for endpoint in endpoint_slice.get("endpoints") or []:
        if (endpoint.get("conditions") or {}).get("ready") is False:
            continue
        for ip in endpoint.get("addresses") or []:
            out.append(Endpoint(ip, endpoint.get("hostname") or dashed(ip), ports))
    return out


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


@dataclass
class ClusterCache:
    """Namespaces, Services, EndpointSlices and pods as the watches last reported them."""

    namespaces: set[str] = field(default_factory=set)
    services: dict[tuple[str, str], Obj] = field(default_factory=dict)
    slices: dict[tuple[str, str], Obj] = field(default_factory=dict)
    pods: dict[tuple[str, str], Obj] = field(default_factory=dict)
    serial: int = field(default_factory=lambda: int(time.time()))  # the SOA serial: the last change
    _service_ips: dict[str, tuple[str, str]] = field(default_factory=dict)
    _pod_ips: dict[str, tuple[str, str]] = field(default_factory=dict)

    def apply(self, resource: str, kind: str, obj: Obj) -> None:
        """One watch event for ``resource`` (``namespaces``, ``services``, ``endpointslices``, ``pods``)."""
        self.serial = int(time.time())
        key = _key(obj)
        if resource == "namespaces":
            if kind == "DELETED":
                self.namespaces.discard(key[1])
            else:
                self.namespaces.add(key[1])
            return
        store = {"services": self.services, "endpointslices": self.slices, "pods": self.pods}[resource]
        index = {"services": self._service_ips, "pods": self._pod_ips}.get(resource)
        old = store.pop(key, None)
        if index is not None and old is not None:
            for ip in _ips(resource, old):
                if index.get(ip) == key:
                    del index[ip]
        if kind == "DELETED":
            return
        store[key] = obj
        if index is not None:
            index.update({ip: key for ip in _ips(resource, obj)})

    def endpoints(self, namespace: str, service: str) -> list[Endpoint]:
        return [e for (ns, _), s in self.slices.items()
                if ns == namespace and ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME) == service
                for e in slice_endpoints(s)]

    def service_at(self, ip: str) -> Obj | None:
        key = self._service_ips.get(ip)
        return self.services.get(key) if key else None

    def pod_at(self, ip: str) -> Obj | None:
        key = self._pod_ips.get(ip)
        return self.pods.get(key) if key else None


def _ips(resource: str, obj: Obj) -> list[str]:
    """The addresses a Service (cluster IPs) or pod (pod IPs) is found by."""
    if resource == "services":
        spec = obj.get("spec") or {}
        return [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]
    status = obj.get("status") or {}
    return [e["ip"] for e in status.get("podIPs") or [] if e.get("ip")] or ([status["podIP"]] if status.get("podIP") else [])


# --- names of the zone ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """``recordRequest``: the parts of ``[_port._proto.|endpoint.]service.namespace.svc|pod.zone``."""

    pod_or_svc: str = ""
    namespace: str = ""
    service: str = ""
    endpoint: str = ""
    port: str = "*"
    protocol: str = "*"


def parse_request(base: str) -> Request | None:
    """``parseRequest`` of the name below the zone; None for a name that cannot exist (NXDOMAIN).

    One label left of the service is an endpoint, two are ``_port._protocol`` (underscores
    optional), more are too many.
    """
    if base in ("", "svc", "pod"):
        return Request()  # the apex and the two subzones exist but hold nothing
    segments = base.split(".")
    if segments[-1] not in ("svc", "pod") or len(segments) > 5:
        return None
    service = segments[-3] if len(segments) >= 3 else ""
    request = Request(segments[-1], segments[-2], service)
    if len(segments) == 4:
        return dataclasses.replace(request, endpoint=segments[0])
    if len(segments) == 5:
        return dataclasses.replace(request, port=segments[0].removeprefix("_"), protocol=segments[1].removeprefix("_"))
    return request


def _wildcard(text: str) -> bool:
    return text in ("*", "any")


def _matches(wanted: str, actual: str) -> bool:
    return _wildcard(wanted) or wanted.lower() == actual.lower()


@dataclass(frozen=True)
class Record:
    """One ``msg.Service``: an address (or, for ExternalName, a host name), a port, its own name."""

    host: str
    port: int
    name: str


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


class Records:
    """The kubernetes plugin's ``Records``: what a name of the zone stands for.

    ``find`` returns None for a name error (NXDOMAIN) and a list, perhaps empty, otherwise.
    """

    def __init__(self, cache: ClusterCache, domain: str = DOMAIN):
        self.cache = cache
        self.domain = domain

    def find(self, base: str) -> list[Record] | None:
        request = parse_request(base)
        if request is None:
            return None
        if not request.pod_or_svc:
            return []
        if request.namespace not in self.cache.namespaces:
            return None
        if request.pod_or_svc == "pod":
            return self._pods(request)
        return self._services(request)

    def _pods(self, request: Request) -> list[Record] | None:
        """``findPods`` in insecure mode: the dashed address is the answer, once it parses."""
        if not request.service:
            return []
        name = request.service
        ip = name.replace("-", ".") if name.count("-") == 3 and "--" not in name else name.replace("-", ":")
        if not is_ip(ip):
            return None
        return [Record(ip, 0, f"{name}.{request.namespace}.pod.{self.domain}")]

    def _services(self, request: Request) -> list[Record] | None:
        if not request.service:
            return []
        service = self.cache.services.get((request.namespace, request.service))
        if service is None:
            return None
        spec = service.get("spec") or {}
        name = f"{request.service}.{request.namespace}.svc.{self.domain}"
        if spec.get("type") == "ExternalName":
            target = str(spec.get("externalName") or "").rstrip(".")
            return [Record(target, 0, name)] if target and not request.endpoint and not is_ip(target) else None
        if spec.get("clusterIP") == "None" or request.endpoint:
            return self._endpoint_records(request, name) or None
        return [Record(ip, p.get("port", 0), name) for p in spec.get("ports") or []
                if _matches(request.port, p.get("name") or "") and _matches(request.protocol, p.get("protocol") or "TCP")
                for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]] or None

    def _endpoint_records(self, request: Request, name: str) -> list[Record]:
        return [Record(e.ip, port, f"{e.hostname}.{name}")
                for e in self.cache.endpoints(request.namespace, request.service)
                if not request.endpoint or request.endpoint == e.hostname.lower()
                for port_name, port, protocol in e.ports
                if _matches(request.port, port_name) and _matches(request.protocol, protocol)]

    def reverse(self, ip: str) -> list[str]:
        """``serviceRecordForIP``: a Service's name, else endpoint names, else (ours) a pod's name."""
        service = self.cache.service_at(ip)
        if service is not None:
            namespace, name = _key(service)
            return [f"{name}.{namespace}.svc.{self.domain}"]
        names = [f"{e.hostname}.{(s['metadata'].get('labels') or {}).get(SERVICE_NAME)}.{ns}.svc.{self.domain}"
                 for (ns, _), s in self.cache.slices.items() if (s['metadata'].get('labels') or {}).get(SERVICE_NAME)
                 for e in slice_endpoints(s) if e.ip == ip]
        pod = self.cache.pod_at(ip)
        if not names and pod is not None:
            names = [f"{dashed(ip)}.{_key(pod)[0]}.pod.{self.domain}"]
        return names


# --- answers --------------------------------------------------------------------------------------

Lookup = Callable[[str, int], Awaitable[list[RR] | None]]
MAX_CNAME_CHAIN = 7


def reverse_address(name: str) -> str | None:
    """``ExtractAddressFromReverse`` for a full ``in-addr.arpa``/``ip6.arpa`` name."""
    labels = name.rstrip(".").split(".")
    if name.endswith(".in-addr.arpa") and len(labels) == 6:
        text = ".".join(reversed(labels[:4]))
    elif name.endswith(".ip6.arpa") and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        text = ":".join(nibbles[i:i + 4] for i in range(0, 32, 4))
    else:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class Resolver:
    """Turns a query into CoreDNS's response, or None when the query is to be forwarded."""

    def __init__(self, cache: ClusterCache, lookup: Lookup, domain: str = DOMAIN, ttl: int = TTL,
                 nameserver: str = CLUSTER_DNS[0]):
        self.records = Records(cache, domain)
        self.cache = cache
        self.lookup = lookup
        self.domain = domain
        self.ttl = ttl
        self.nameserver = nameserver

    async def answer(self, request: DNSRecord) -> DNSRecord | None:
        question = request.q
        name = str(question.qname).rstrip(".").lower()
        if name == self.domain or name.endswith("." + self.domain):
            return await self._zone(request, name[:-len(self.domain)].rstrip("."))
        address = reverse_address(name) if question.qtype == QTYPE.PTR else None
        targets = self.records.reverse(address) if address else []
        if not targets:
            return None
        reply = self._reply(request)
        for target in targets:
            reply.add_answer(RR(question.qname, QTYPE.PTR, ttl=self.ttl, rdata=PTR(target + ".")))
        return reply

    def _reply(self, request: DNSRecord, rcode: int = RCODE.NOERROR) -> DNSRecord:
        reply = request.reply(ra=0, aa=1)
        reply.header.rcode = rcode
        return reply

    def soa(self) -> RR:
        """The zone's SOA as ``plugin.SOA`` builds it (serial: the cache's last change)."""
        rdata = SOA(f"ns.dns.{self.domain}.", f"hostmaster.{self.domain}.",
                    (self.cache.serial, 7200, 1800, 86400, self.ttl))
        return RR(self.domain + ".", QTYPE.SOA, ttl=min(self.ttl, 300), rdata=rdata)

    def _empty(self, request: DNSRecord, name_error: bool) -> DNSRecord:
        """``BackendError``: NXDOMAIN or NODATA, with the SOA as authority."""
        reply = self._reply(request, RCODE.NXDOMAIN if name_error else RCODE.NOERROR)
        reply.add_auth(self.soa())
        return reply

    async def _zone(self, request: DNSRecord, base: str) -> DNSRecord:
        qtype = request.q.qtype
        if qtype in (QTYPE.AXFR, QTYPE.IXFR):
            return self._reply(request, RCODE.REFUSED)
        answers, extra, name_error = await self._lookup_zone(request, base, qtype)
        if name_error or not answers:
            return self._empty(request, name_error)
        reply = self._reply(request)
        for rr in answers:
            reply.add_answer(rr)
        for rr in extra:
            reply.add_ar(rr)
        return reply

    async def _lookup_zone(self, request: DNSRecord, base: str, qtype: int) -> tuple[list[RR], list[RR], bool]:
        """(answers, additional records, name error) as ServeDNS dispatches on the type."""
        qname = request.q.qname
        if qtype == QTYPE.SOA:
            return ([self.soa()] if not base else []), [], False
        if qtype == QTYPE.NS and not base:
            return [RR(qname, QTYPE.NS, ttl=self.ttl, rdata=NS(f"ns.dns.{self.domain}."))], \
                [RR(f"ns.dns.{self.domain}.", QTYPE.A, ttl=self.ttl, rdata=A(self.nameserver))], False
        if base == "ns.dns":
            return ([RR(qname, QTYPE.A, ttl=self.ttl, rdata=A(self.nameserver))] if qtype == QTYPE.A else []), [], False
        if qtype == QTYPE.TXT and base == "dns-version":
            return [RR(qname, QTYPE.TXT, ttl=28800, rdata=TXT(DNS_SCHEMA_VERSION))], [], False
        records = self.records.find(base)
        if records is None:
            return [], [], True
        if qtype in (QTYPE.A, QTYPE.AAAA):
            return await self._addresses(qname, qtype, records, 0), [], False
        if qtype == QTYPE.SRV:
            answers, extra = self._srv(qname, [r for r in records if is_ip(r.host)])
            return answers, extra, False
        if qtype == QTYPE.CNAME and records and not is_ip(records[0].host):
            return [RR(qname, QTYPE.CNAME, ttl=self.ttl, rdata=CNAME(records[0].host + "."))], [], False
        return [], [], False

    async def _addresses(self, qname: Any, qtype: int, records: list[Record], depth: int) -> list[RR]:
        """``plugin.A``/``AAAA``: each address once; a CNAME followed in the zone or upstream."""
        answers: list[RR] = []
        seen: set[str] = set()
        for record in records:
            if is_ip(record.host):
                if (":" in record.host) == (qtype == QTYPE.AAAA) and record.host not in seen:
                    seen.add(record.host)
                    rdata = AAAA(record.host) if qtype == QTYPE.AAAA else A(record.host)
                    answers.append(RR(qname, qtype, ttl=self.ttl, rdata=rdata))
            elif record.host.lower() != str(qname).rstrip(".").lower() and depth < MAX_CNAME_CHAIN:
                answers += await self._follow(qname, qtype, record.host, depth)
        return answers

    async def _follow(self, qname: Any, qtype: int, target: str, depth: int) -> list[RR]:
        cname = RR(qname, QTYPE.CNAME, ttl=self.ttl, rdata=CNAME(target + "."))
        lowered = target.lower()
        if lowered == self.domain or lowered.endswith("." + self.domain):
            found = self.records.find(lowered[:-len(self.domain)].rstrip("."))
            rest = await self._addresses(target + ".", qtype, found, depth + 1) if found else []
            return [cname, *rest] if rest else []
        upstream = await self.lookup(target + ".", qtype)
        return [cname, *upstream] if upstream is not None else []

    def _srv(self, qname: Any, records: list[Record]) -> tuple[list[RR], list[RR]]:
        """``plugin.SRV``: priority 0, the weight split evenly, targets' addresses as extra."""
        weight = int(100 / len(records)) if records else 0
        answers: list[RR] = []
        extra: list[RR] = []
        seen: set[tuple[str, str, int]] = set()
        for record in records:
            target = record.name + "."
            if (target, "", record.port) not in seen:
                seen.add((target, "", record.port))
                answers.append(RR(qname, QTYPE.SRV, ttl=self.ttl, rdata=SRV(0, weight, record.port, target)))
            if (target, record.host, 0) not in seen:
                seen.add((target, record.host, 0))
                rtype, rdata = (QTYPE.AAAA, AAAA(record.host)) if ":" in record.host else (QTYPE.A, A(record.host))
                extra.append(RR(target, rtype, ttl=self.ttl, rdata=rdata))
        return answers, extra


# --- forwarding -----------------------------------------------------------------------------------


def resolv_conf_upstreams(text: str, exclude: str = CLUSTER_DNS[0]) -> list[Address]:
    """The ``nameserver`` lines of a resolv.conf, port 53, without our own address (no loops)."""
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and fields[1].split("%")[0] != exclude:
            servers.append((fields[1].split("%")[0], 53))
    return servers


class _Exchange(asyncio.DatagramProtocol):
    """One UDP query to one upstream: the first datagram with the query's ID is the answer."""

    def __init__(self, query_id: int):
        self.query_id = query_id
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == self.query_id and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error (nothing listens there): try the next upstream without waiting."""
        if not self.answer.done():
            self.answer.set_exception(exc)


class Forwarder:
    """The forward plugin: the query as it came, to each upstream in turn until one answers."""

    def __init__(self, upstreams: list[Address], timeout: float = FORWARD_TIMEOUT):
        self.upstreams = upstreams
        self.timeout = timeout

    async def forward(self, packet: bytes, tcp: bool) -> bytes | None:
        for upstream in self.upstreams:
            try:
                return await asyncio.wait_for(self._tcp(packet, upstream) if tcp else self._udp(packet, upstream),
                                              self.timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                log.debug("upstream %s:%d: %s", upstream[0], upstream[1], e)
        return None

    async def _udp(self, packet: bytes, upstream: Address) -> bytes:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Exchange(struct.unpack("!H", packet[:2])[0]), remote_addr=upstream)
        try:
            transport.sendto(packet)
            return await protocol.answer
        finally:
            transport.close()

    async def _tcp(self, packet: bytes, upstream: Address) -> bytes:
        reader, writer = await asyncio.open_connection(*upstream)
        try:
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            return await reader.readexactly(size)
        finally:
            writer.close()

    async def lookup(self, name: str, qtype: int) -> list[RR] | None:
        """Resolve a name upstream (an ExternalName's target): its answers, None on failure."""
        raw = await self.forward(DNSRecord.question(name, QTYPE[qtype]).pack(), tcp=False)
        if raw is None:
            return None
        try:
            reply = DNSRecord.parse(raw)
        except DNSError:
            return None
        return list(reply.rr) if reply.header.rcode == RCODE.NOERROR else None


# --- the server -----------------------------------------------------------------------------------


def _udp_limit(request: DNSRecord) -> int:
    """The client's EDNS0 buffer size, 512 bytes without one."""
    return max((rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT), default=512) or 512


def fit(reply: DNSRecord, limit: int) -> bytes:
    """The packed reply, records dropped from the end and TC set if it is larger than ``limit``."""
    data = reply.pack()
    if len(data) <= limit:
        return data
    reply.header.tc = 1
    reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    while len(data := reply.pack()) > limit and (reply.auth or reply.rr):
        (reply.auth or reply.rr).pop()
    return data


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, dns: ClusterDns):
        self.dns = dns
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's and asyncio's are not subclasses

    def datagram_received(self, data: bytes, addr: Any) -> None:
        task = asyncio.create_task(self._respond(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _respond(self, data: bytes, addr: Any) -> None:
        reply = await self.dns.handle(data, tcp=False)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    return proc.returncode or 0, err.decode(errors="replace").strip()


async def ensure_address(ip: str, device: str = ADDRESS_DEVICE) -> bool:
    """Put ``ip/32`` on ``device`` so the host owns the cluster DNS address; True if we added it."""
    code, err = await _ip("addr", "add", f"{ip}/32", "dev", device)
    if code != 0 and "File exists" not in err and "already assigned" not in err:
        raise OSError(f"ip addr add {ip}/32 dev {device}: {err}")
    return code == 0


async def remove_address(ip: str, device: str = ADDRESS_DEVICE) -> None:
    await _ip("addr", "del", f"{ip}/32", "dev", device)


class ClusterDns:
    """The node's cluster DNS server (``run`` watches the API and serves until cancelled).

    ``upstreams`` default to the host's ``/etc/resolv.conf`` nameservers; ``client`` may be None
    for a server whose cache is filled by hand (tests).
    """

    def __init__(self, client: Client | None, listen: Address = CLUSTER_DNS, upstreams: list[Address] | None = None,
                 domain: str = DOMAIN, ttl: int = TTL):
        self.client = client
        self.listen = listen
        self.cache = ClusterCache()
        if upstreams is None:
            upstreams = resolv_conf_upstreams(_read("/etc/resolv.conf"), exclude=listen[0])
        self.forwarder = Forwarder(upstreams)
        self.resolver = Resolver(self.cache, self.forwarder.lookup, domain, ttl, nameserver=listen[0])
        self.port = listen[1]  # the bound port once started (listen port 0 picks one)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._added_address = False

    async def run(self) -> None:
        """Load the cluster, listen, then follow the watches; an orderly stop takes the address
        back off the host if this server put it there."""
        assert self.client is not None
        await self._prime()
        await self._start_retrying()
        try:
            await asyncio.gather(*(list_and_watch(self.client, path(rt), self._handler(rt.resource))
                                   for rt in (NAMESPACES, SERVICES, SLICES, PODS)))
        finally:
            await self.stop()
            if self._added_address:
                await remove_address(self.listen[0])

    def _handler(self, resource: str) -> Callable[[str, Obj], Awaitable[None]]:
        async def on_event(kind: str, obj: Obj) -> None:
            self.cache.apply(resource, kind, obj)
        return on_event

    async def _prime(self) -> None:
        """Fill the cache before the first answer, so a name that exists is never NXDOMAIN."""
        assert self.client is not None
        while True:
            try:
                listed = [(rt.resource, await self.client.get(path(rt))) for rt in (NAMESPACES, SERVICES, SLICES, PODS)]
                break
            except (ApiError, aiohttp.ClientError, OSError) as e:
                log.warning("cluster DNS: cannot load the cluster yet: %s", e)
                await asyncio.sleep(PRIME_RETRY)
        for resource, result in listed:
            for obj in result.get("items", []):
                self.cache.apply(resource, "ADDED", obj)

    async def _start_retrying(self) -> None:
        """Own the address and bind; while another server (another node agent on this host)
        holds the port, or took the address away when it stopped, try again."""
        address = ipaddress.ip_address(self.listen[0])
        while True:
            try:
                if not (address.is_loopback or address.is_unspecified):
                    self._added_address = await ensure_address(self.listen[0]) or self._added_address
                await self.start()
                return
            except OSError as e:
                log.error("cluster DNS cannot listen on %s:%d (%s); retrying", self.listen[0], self.listen[1], e)
                await asyncio.sleep(BIND_RETRY)

    async def start(self) -> None:
        """Listen on TCP, then UDP on the same port (a free TCP port is rarely a busy UDP one)."""
        self._tcp = await asyncio.start_server(self._serve_tcp, self.listen[0], self.listen[1])
        self.port = self._tcp.sockets[0].getsockname()[1]
        try:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _UdpServer(self), local_addr=(self.listen[0], self.port))
        except OSError:
            await self.stop()
            raise
        self._udp = transport

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE))[0]
                reply = await self.handle(await reader.readexactly(size), tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def handle(self, data: bytes, tcp: bool) -> bytes | None:
        """The response to one DNS message (None: nothing to send back)."""
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None
        if request.header.qr:
            return None  # a response: ignored, as miekg/dns's DefaultMsgAcceptFunc does
        if request.header.opcode != 0 or len(request.questions) != 1:
            reply = request.reply(ra=0, aa=0)
            reply.header.rcode = RCODE.NOTIMP if request.header.opcode != 0 else RCODE.FORMERR
            return reply.pack()
        reply = await self.resolver.answer(request)
        if reply is None:
            return await self._forwarded(request, data, tcp)
        if any(rr.rtype == QTYPE.OPT for rr in request.ar):
            reply.add_ar(EDNS0(udp_len=_udp_limit(request)))
        return reply.pack() if tcp else fit(reply, _udp_limit(request))

    async def _forwarded(self, request: DNSRecord, data: bytes, tcp: bool) -> bytes:
        answer = await self.forwarder.forward(data, tcp)
        if answer is not None:
            return answer
        reply = request.reply(ra=1, aa=0)
        reply.header.rcode = RCODE.SERVFAIL
        return reply.pack()


def _read(path_name: str) -> str:
    try:
        with open(path_name) as f:
            return f.read()
    except OSError:
        return ""
