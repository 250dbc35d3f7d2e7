"""The cluster DNS server: CoreDNS's answers from a hand-filled cache, and forwarding to a loopback server.

Every query goes to 127.0.0.1 only; the upstream is a fake resolver this test runs on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord, EDNS0

from tinykube.node.dns import ClusterDns, parse_request, resolv_conf_upstreams, reverse_address

UPSTREAM_ANSWER = "192.0.2.10"


def service(name: str, cluster_ip: str, ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports or [], **spec}}


def endpoint(ip: str, ready: bool = True, hostname: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": False}}
    if hostname:
        out["hostname"] = hostname
    return out


def endpoint_slice(name: str, service_name: str, endpoints: list[dict[str, Any]],
                   ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name, "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}


class FakeUpstream(asyncio.DatagramProtocol):
    """A loopback resolver: every name is 192.0.2.10, except names starting with ``missing``."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[str] = []

    def answer(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        self.queries.append(str(request.q.qname))
        reply = request.reply()
        if str(request.q.qname).startswith("missing"):
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=60, rdata=A(UPSTREAM_ANSWER)))
        return reply.pack()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's and asyncio's are not subclasses

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.transport.sendto(self.answer(data), addr)

    async def serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        reply = self.answer(await reader.readexactly(size))
        writer.write(struct.pack("!H", len(reply)) + reply)
        await writer.drain()
        writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeUpstream, int]]:
    fake = FakeUpstream()
    server = await asyncio.start_server(fake.serve_tcp, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: fake, local_addr=("127.0.0.1", port))
    yield fake, port
    transport.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def dns(upstream: tuple[FakeUpstream, int]) -> ClusterDns:
    server = ClusterDns(None, listen=("127.0.0.1", 0), upstreams=[("127.0.0.1", upstream[1])])
    cache = server.cache
    cache.apply("namespaces", "ADDED", {"metadata": {"name": "default"}})
    cache.apply("services", "ADDED", service("web", "10.43.0.5", [
        {"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]))
    cache.apply("services", "ADDED", service("db", "None", [{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    cache.apply("services", "ADDED", service("bare", "None"))
    cache.apply("services", "ADDED", {"metadata": {"namespace": "default", "name": "ext"},
                                      "spec": {"type": "ExternalName", "externalName": "example.org"}})
    cache.apply("endpointslices", "ADDED", endpoint_slice("db-abcde", "db", [
        endpoint("10.42.0.7", hostname="db-0"), endpoint("10.42.0.8"), endpoint("10.42.0.9", ready=False)],
        [{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    cache.apply("endpointslices", "ADDED", endpoint_slice("web-fghij", "web", [endpoint("10.42.0.5")],
                                                          [{"name": "http", "port": 8080, "protocol": "TCP"}]))
    cache.apply("endpointslices", "ADDED", endpoint_slice("bare-xyz", "bare", [endpoint("10.42.0.11")]))
    cache.apply("pods", "ADDED", {"metadata": {"namespace": "default", "name": "client"},
                                  "status": {"podIP": "10.42.0.20", "podIPs": [{"ip": "10.42.0.20"}]}})
    return server


async def ask(dns: ClusterDns, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    raw = await dns.handle(DNSRecord.question(name, qtype).pack(), tcp=tcp)
    assert raw is not None
    return DNSRecord.parse(raw)


def rdatas(reply: DNSRecord, section: str = "rr") -> list[str]:
    return sorted(str(rr.rdata) for rr in getattr(reply, section))


async def test_service_name_is_its_cluster_ip_with_the_question_case_kept(dns: ClusterDns) -> None:
    reply = await ask(dns, "Web.Default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1 and reply.header.ra == 0
    assert [(str(rr.rname), rr.ttl, str(rr.rdata)) for rr in reply.rr] == [("Web.Default.svc.cluster.local.", 5, "10.43.0.5")]


async def test_aaaa_of_an_ipv4_service_is_nodata_with_the_soa(dns: ClusterDns) -> None:
    reply = await ask(dns, "web.default.svc.cluster.local", "AAAA")
    assert reply.header.rcode == RCODE.NOERROR and not reply.rr
    soa = reply.auth[0]
    assert str(soa.rname) == "cluster.local." and soa.rtype == QTYPE.SOA
    assert str(soa.rdata).split()[:2] == ["ns.dns.cluster.local.", "hostmaster.cluster.local."]
    assert str(soa.rdata).split()[3:] == ["7200", "1800", "86400", "5"]


async def test_unknown_names_in_the_zone_are_nxdomain_with_the_soa(dns: ClusterDns) -> None:
    for name in ("nope.default.svc.cluster.local", "web.default.svc.cluster.local.default.svc.cluster.local",
                 "web.nons.svc.cluster.local", "foo.cluster.local", "a.b.c.web.default.svc.cluster.local"):
        reply = await ask(dns, name)
        assert reply.header.rcode == RCODE.NXDOMAIN, name
        assert reply.auth[0].rtype == QTYPE.SOA and reply.header.aa == 1


async def test_existing_names_without_records_are_nodata(dns: ClusterDns) -> None:
    for name in ("cluster.local", "svc.cluster.local", "default.svc.cluster.local", "pod.cluster.local"):
        reply = await ask(dns, name)
        assert reply.header.rcode == RCODE.NOERROR and not reply.rr, name
    assert (await ask(dns, "web.default.svc.cluster.local", "MX")).header.rcode == RCODE.NOERROR
    assert (await ask(dns, "nope.default.svc.cluster.local", "MX")).header.rcode == RCODE.NXDOMAIN


async def test_headless_service_has_one_a_per_ready_endpoint(dns: ClusterDns) -> None:
    assert rdatas(await ask(dns, "db.default.svc.cluster.local")) == ["10.42.0.7", "10.42.0.8"]
    assert rdatas(await ask(dns, "bare.default.svc.cluster.local")) == ["10.42.0.11"]  # no ports: still answered


async def test_endpoints_by_hostname_and_dashed_ip(dns: ClusterDns) -> None:
    assert rdatas(await ask(dns, "db-0.db.default.svc.cluster.local")) == ["10.42.0.7"]
    assert rdatas(await ask(dns, "10-42-0-8.db.default.svc.cluster.local")) == ["10.42.0.8"]
    assert rdatas(await ask(dns, "10-42-0-5.web.default.svc.cluster.local")) == ["10.42.0.5"]
    assert (await ask(dns, "10-42-0-9.db.default.svc.cluster.local")).header.rcode == RCODE.NXDOMAIN  # not ready


async def test_srv_for_named_ports(dns: ClusterDns) -> None:
    reply = await ask(dns, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert [str(rr.rdata) for rr in reply.rr] == ["0 100 80 web.default.svc.cluster.local."]
    assert [(str(rr.rname), str(rr.rdata)) for rr in reply.ar] == [("web.default.svc.cluster.local.", "10.43.0.5")]
    assert rdatas(await ask(dns, "_dns._udp.web.default.svc.cluster.local", "SRV")) == [
        "0 100 53 web.default.svc.cluster.local."]
    assert rdatas(await ask(dns, "web.default.svc.cluster.local", "SRV")) == [
        "0 50 53 web.default.svc.cluster.local.", "0 50 80 web.default.svc.cluster.local."]
    headless = await ask(dns, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert rdatas(headless) == ["0 50 5432 10-42-0-8.db.default.svc.cluster.local.",
                                "0 50 5432 db-0.db.default.svc.cluster.local."]
    assert sorted((str(rr.rname), str(rr.rdata)) for rr in headless.ar) == [
        ("10-42-0-8.db.default.svc.cluster.local.", "10.42.0.8"), ("db-0.db.default.svc.cluster.local.", "10.42.0.7")]
    assert (await ask(dns, "_http._udp.web.default.svc.cluster.local", "SRV")).header.rcode == RCODE.NXDOMAIN


async def test_pod_names_resolve_in_existing_namespaces(dns: ClusterDns) -> None:
    assert rdatas(await ask(dns, "10-42-0-99.default.pod.cluster.local")) == ["10.42.0.99"]
    assert (await ask(dns, "10-42-0-99.nons.pod.cluster.local")).header.rcode == RCODE.NXDOMAIN
    assert (await ask(dns, "not-an-ip.default.pod.cluster.local")).header.rcode == RCODE.NXDOMAIN


async def test_ptr_for_services_endpoints_and_pods(dns: ClusterDns) -> None:
    assert rdatas(await ask(dns, "5.0.43.10.in-addr.arpa", "PTR")) == ["web.default.svc.cluster.local."]
    assert rdatas(await ask(dns, "7.0.42.10.in-addr.arpa", "PTR")) == ["db-0.db.default.svc.cluster.local."]
    assert rdatas(await ask(dns, "20.0.42.10.in-addr.arpa", "PTR")) == ["10-42-0-20.default.pod.cluster.local."]


async def test_other_names_and_unknown_reverse_names_are_forwarded(dns: ClusterDns,
                                                                   upstream: tuple[FakeUpstream, int]) -> None:
    assert rdatas(await ask(dns, "example.org")) == [UPSTREAM_ANSWER]
    assert rdatas(await ask(dns, "example.org", tcp=True)) == [UPSTREAM_ANSWER]
    assert (await ask(dns, "missing.example.org")).header.rcode == RCODE.NXDOMAIN
    assert (await ask(dns, "1.2.0.192.in-addr.arpa", "PTR")).header.rcode == RCODE.NOERROR
    assert upstream[0].queries == ["example.org.", "example.org.", "missing.example.org.", "1.2.0.192.in-addr.arpa."]


async def test_no_upstream_answer_is_servfail(dns: ClusterDns) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    dns.forwarder.upstreams = [("127.0.0.1", dead)]
    dns.forwarder.timeout = 0.5
    assert (await ask(dns, "example.org")).header.rcode == RCODE.SERVFAIL


async def test_external_name_is_a_cname_followed_upstream(dns: ClusterDns) -> None:
    reply = await ask(dns, "ext.default.svc.cluster.local")
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [("CNAME", "example.org."), ("A", UPSTREAM_ANSWER)]
    assert [str(rr.rdata) for rr in (await ask(dns, "ext.default.svc.cluster.local", "CNAME")).rr] == ["example.org."]


async def test_coredns_special_names(dns: ClusterDns) -> None:
    assert rdatas(await ask(dns, "dns-version.cluster.local", "TXT")) == ['"1.1.0"']
    ns = await ask(dns, "cluster.local", "NS")
    assert rdatas(ns) == ["ns.dns.cluster.local."] and rdatas(ns, "ar") == ["127.0.0.1"]
    assert (await ask(dns, "cluster.local", "SOA")).rr[0].rtype == QTYPE.SOA
    assert (await ask(dns, "cluster.local", "AXFR", tcp=True)).header.rcode == RCODE.REFUSED


async def test_changes_are_answered_as_soon_as_the_event_arrives(dns: ClusterDns) -> None:
    dns.cache.apply("endpointslices", "MODIFIED", endpoint_slice("db-abcde", "db", [
        endpoint("10.42.0.7", ready=False, hostname="db-0"), endpoint("10.42.0.8"), endpoint("10.42.0.9")],
        [{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    assert rdatas(await ask(dns, "db.default.svc.cluster.local")) == ["10.42.0.8", "10.42.0.9"]
    dns.cache.apply("services", "DELETED", service("web", "10.43.0.5"))
    assert (await ask(dns, "web.default.svc.cluster.local")).header.rcode == RCODE.NXDOMAIN
    assert (await ask(dns, "5.0.43.10.in-addr.arpa", "PTR")).header.rcode == RCODE.NOERROR  # forwarded now


async def test_large_answers_are_truncated_over_udp_only(dns: ClusterDns) -> None:
    many = [endpoint(f"10.42.1.{i}") for i in range(1, 60)]
    dns.cache.apply("endpointslices", "MODIFIED", endpoint_slice("db-abcde", "db", many))
    udp = await ask(dns, "db.default.svc.cluster.local")
    assert udp.header.tc == 1 and len(udp.pack()) <= 512
    assert len((await ask(dns, "db.default.svc.cluster.local", tcp=True)).rr) == 59
    query = DNSRecord.question("db.default.svc.cluster.local")
    query.add_ar(EDNS0(udp_len=4096))
    raw = await dns.handle(query.pack(), tcp=False)
    assert raw is not None and len(DNSRecord.parse(raw).rr) == 59


async def test_serves_udp_and_tcp_on_loopback(dns: ClusterDns) -> None:
    await dns.start()
    try:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[bytes] = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                got.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", dns.port))
        transport.sendto(DNSRecord.question("web.default.svc.cluster.local").pack())
        assert rdatas(DNSRecord.parse(await asyncio.wait_for(got, 2))) == ["10.43.0.5"]
        transport.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", dns.port)
        for name in ("web.default.svc.cluster.local", "db.default.svc.cluster.local"):  # two on one connection
            query = DNSRecord.question(name).pack()
            writer.write(struct.pack("!H", len(query)) + query)
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            assert DNSRecord.parse(await reader.readexactly(size)).header.rcode == RCODE.NOERROR
        writer.close()
    finally:
        await dns.stop()


def test_request_parsing() -> None:
    assert parse_request("web.default.svc") is not None
    request = parse_request("_http._tcp.web.default.svc")
    assert request is not None and (request.port, request.protocol, request.service) == ("http", "tcp", "web")
    request = parse_request("db-0.db.default.svc")
    assert request is not None and request.endpoint == "db-0"
    assert parse_request("x.a.b.web.default.svc") is None and parse_request("web.default.foo") is None


def test_reverse_names_and_resolv_conf() -> None:
    assert reverse_address("5.0.43.10.in-addr.arpa") == "10.43.0.5"
    assert reverse_address("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa") == "::1"
    assert reverse_address("0.43.10.in-addr.arpa") is None
    text = "search lan\nnameserver 10.43.0.10\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions ndots:1\n"
    assert resolv_conf_upstreams(text) == [("192.0.2.53", 53), ("fe80::1", 53)]
