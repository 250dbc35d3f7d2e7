"""The prober and lifecycle hooks: the pure parts, each action against real local servers on
127.0.0.1 (aiohttp, plain TCP, grpcio's own health server) or a small fake exec, and the probe
timing with short periods."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tinykube.node import hooks
from tinykube.node.grpcprobe import decode_response, encode_request, grpc_timeout
from tinykube.node.probes import (
    HttpRequest,
    Outcome,
    ProbeError,
    Prober,
    Tally,
    Timing,
    allowed_host,
    event,
    exec_command,
    exec_probe,
    grpc_probe,
    http_probe,
    http_request,
    resolve_port,
    tcp_probe,
)
from tinykube.node.runtime.containers import ContainerError, ExecResult, ExecTimeout

Obj = dict[str, Any]
LOCAL = "127.0.0.1"
POD = {"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}}


# ---- fakes and servers -----------------------------------------------------------------------

class FakeExec:
    """Runtime.exec with scripted results (the last one repeats); records every call."""

    def __init__(self, *results: ExecResult | Exception) -> None:
        self.results = list(results) or [ExecResult(0, b"", b"")]
        self.calls: list[tuple[str, list[str], float | None]] = []

    async def __call__(self, id: str, argv: list[str], *, timeout: float | None = None) -> ExecResult:
        self.calls.append((id, argv, timeout))
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, Exception):
            raise result
        return result


def ok(out: bytes = b"") -> ExecResult:
    return ExecResult(0, out, b"")


def bad(out: bytes = b"", err: bytes = b"") -> ExecResult:
    return ExecResult(1, out, err)


class Server:
    """An aiohttp server on 127.0.0.1 with a few paths; remembers the headers it saw."""

    def __init__(self) -> None:
        self.seen: list[Obj] = []
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(dict(request.headers) | {"path": request.path_qs})
        path = request.path
        if path == "/ok":
            return web.Response(text="fine")
        if path == "/fail":
            return web.Response(status=500, text="secret body")
        if path == "/hop":
            raise web.HTTPFound("/ok")
        if path == "/loop":
            raise web.HTTPFound("/loop")
        if path == "/away":
            return web.Response(status=302, headers={"Location": "http://127.0.0.2:1/"}, text="moved")
        if path == "/slow":
            await asyncio.sleep(0.3)
        return web.Response(status=404)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    runner = web.AppRunner(s.app())
    await runner.setup()
    site = web.TCPSite(runner, LOCAL, 0)
    await site.start()
    s.port = runner.addresses[0][1]
    yield s
    await runner.cleanup()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[int]:
    """The same app over HTTPS with a self-signed certificate (which probes must not verify)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pod")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    runner = web.AppRunner(Server().app())
    await runner.setup()
    await web.TCPSite(runner, LOCAL, 0, ssl_context=context).start()
    yield runner.addresses[0][1]
    await runner.cleanup()


def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    import socket
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, scheme: str = "HTTP", **extra: Any) -> HttpRequest:
    return http_request({"port": port, "path": path, "scheme": scheme, **extra}, {"name": "c"}, LOCAL, "probe")


# ---- pure parts ------------------------------------------------------------------------------

def test_ports_resolve_by_number_name_or_numeric_string_with_gos_errors() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port(81, container) == 81
    assert resolve_port("http", container) == 8080
    assert resolve_port("9090", container) == 9090
    with pytest.raises(ProbeError, match=r'^strconv.Atoi: parsing "web": invalid syntax$'):
        resolve_port("web", container)
    with pytest.raises(ProbeError, match="^invalid port number: 70000$"):
        resolve_port(70000, container)


def test_probes_connect_only_to_the_pod_ip_or_loopback() -> None:
    assert allowed_host("", "10.42.0.5") == "10.42.0.5"
    assert allowed_host("10.42.0.5", "10.42.0.5") == "10.42.0.5"
    assert allowed_host("127.0.0.1", "10.42.0.5") == "127.0.0.1"
    assert allowed_host("localhost", "10.42.0.5") == "127.0.0.1"
    for host in ("10.42.0.6", "8.8.8.8", "example.com", "169.254.169.254"):
        with pytest.raises(ProbeError, match=rf"^refusing to connect to {host}: .*pod's IP \(10.42.0.5\) or to loopback"):
            allowed_host(host, "10.42.0.5")
    with pytest.raises(ProbeError, match="no IP yet"):
        allowed_host("", "")


def test_http_request_is_built_as_the_kubelet_builds_it() -> None:
    req = http_request({"port": "http", "path": "healthz?full=1",
                        "httpHeaders": [{"name": "x-custom", "value": "a"}, {"name": "accept", "value": ""}]},
                       {"ports": [{"name": "http", "containerPort": 8080}]}, "10.42.0.5", "probe")
    assert req.url == "http://10.42.0.5:8080/healthz?full=1"
    assert req.headers == (("X-Custom", "a"), ("User-Agent", "kube-probe/1.32"))  # an empty Accept sends none
    hook = http_request({"port": 80, "scheme": "HTTPS", "httpHeaders": [{"name": "User-Agent", "value": "me"}]},
                        {}, "10.42.0.5", "lifecycle")
    assert hook.url == "https://10.42.0.5:80" and hook.headers == (("User-Agent", "me"), ("Accept", "*/*"))


def test_thresholds_count_consecutive_outcomes() -> None:
    timing = Timing(success_threshold=2, failure_threshold=3)
    tally = Tally()
    assert [tally.add(x, timing) for x in (False, False, True, False, False, False, False)] == \
        [None, None, None, None, None, False, False]
    assert [tally.add(x, timing) for x in (True, True, True)] == [None, True, True]


def test_event_messages_are_the_kubelets() -> None:
    assert event("liveness", Outcome("failure", "HTTP probe failed with statuscode: 500")) == \
        ("Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500")
    assert event("readiness", Outcome("warning", "Probe terminated redirects, Response body: x")) == \
        ("ProbeWarning", "Readiness probe warning: Probe terminated redirects, Response body: x")
    assert event("startup", Outcome("unknown", error="invalid port number: 0")) == \
        ("Unhealthy", "Startup probe errored and resulted in unknown state: invalid port number: 0")
    assert event("liveness", Outcome("success")) is None


def test_exec_command_expands_only_literal_env() -> None:
    container = {"env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {}}}]}
    assert exec_command({"command": ["echo", "$(A)", "$(B)", "$(C)", "$$(A)"]}, container) == \
        ["echo", "1", "", "$(C)", "$(A)"]


# ---- one probe run ---------------------------------------------------------------------------

async def test_http_probe_success_failure_and_headers(server: Server) -> None:
    assert (await http_probe(get(server.port, "/ok"), 1)).result == "success"
    assert await http_probe(get(server.port, "/fail"), 1) == Outcome("failure", "HTTP probe failed with statuscode: 500")
    seen = server.seen[0]
    assert seen["User-Agent"] == "kube-probe/1.32" and seen["Accept"] == "*/*" and seen["path"] == "/ok"


async def test_http_probe_redirects_as_the_kubelet(server: Server) -> None:
    assert (await http_probe(get(server.port, "/hop"), 1)).result == "success"  # same host: followed
    assert await http_probe(get(server.port, "/away"), 1) == \
        Outcome("warning", "Probe terminated redirects, Response body: moved")  # another host: not followed
    looped = await http_probe(get(server.port, "/loop"), 1)
    assert looped == Outcome("failure", f'Get "http://127.0.0.1:{server.port}/loop": stopped after 10 redirects')
    assert len([s for s in server.seen if s["path"] == "/loop"]) == 10


async def test_http_probe_transport_errors_in_gos_words(server: Server) -> None:
    port = closed_port()
    assert (await http_probe(get(port, "/x"), 1)).output == \
        f'Get "http://127.0.0.1:{port}/x": dial tcp 127.0.0.1:{port}: connect: connection refused'
    assert (await http_probe(get(server.port, "/slow"), 0.1)).output == \
        f'Get "http://127.0.0.1:{server.port}/slow": context deadline exceeded ' \
        "(Client.Timeout exceeded while awaiting headers)"
    assert (await http_probe(get(server.port, "/ok", "HTTPS"), 1)).output == \
        f'Get "https://127.0.0.1:{server.port}/ok": http: server gave HTTP response to HTTPS client'


async def test_https_probe_does_not_verify_the_certificate(tls_server: int) -> None:
    assert (await http_probe(get(tls_server, "/ok", "HTTPS"), 1)).result == "success"


async def test_tcp_probe(server: Server) -> None:
    assert await tcp_probe(LOCAL, server.port, 1) == Outcome("success")
    port = closed_port()
    assert await tcp_probe(LOCAL, port, 1) == Outcome("failure", f"dial tcp 127.0.0.1:{port}: connect: connection refused")


async def test_exec_probe_outcomes() -> None:
    assert await exec_probe(FakeExec(ok(b"fine")), "c1", ["true"], 1) == Outcome("success", "fine")
    assert await exec_probe(FakeExec(bad(b"out ", b"err")), "c1", ["false"], 1) == Outcome("failure", "out err")
    timed = await exec_probe(FakeExec(ExecTimeout("slow")), "c1", ["sh", "-c", "sleep 5"], 1)
    assert timed == Outcome("failure", 'command "sh -c sleep 5" timed out')
    assert await exec_probe(FakeExec(ContainerError("gone")), "c1", ["x"], 1) == Outcome("unknown", error="gone")


# ---- the prober's timing ---------------------------------------------------------------------

class Recorder:
    """The pod worker's side: results and events as they arrive."""

    def __init__(self) -> None:
        self.results: list[tuple[str, str, bool, str]] = []
        self.events: list[tuple[str, str, str]] = []
        self.changed = asyncio.Event()
        self.cursor = 0

    def on_result(self, rid: str, kind: str, ok: bool, message: str) -> None:
        self.results.append((rid, kind, ok, message))
        self.changed.set()

    def on_event(self, rid: str, reason: str, message: str) -> None:
        self.events.append((rid, reason, message))

    async def next_result(self, timeout: float = 2.0) -> tuple[str, str, bool, str]:
        while len(self.results) == self.cursor:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), timeout)
        self.cursor += 1
        return self.results[self.cursor - 1]


def prober(fake: FakeExec, rec: Recorder, ip: str = LOCAL) -> Prober:
    return Prober(fake, lambda uid: ip, rec.on_result, rec.on_event)


def probe(action: Obj, period: float = 0.02, **timing: Any) -> Obj:
    return {**action, "periodSeconds": period, "timeoutSeconds": 1, **timing}


EXEC = {"exec": {"command": ["check"]}}


async def test_liveness_fails_after_the_threshold_then_holds() -> None:
    fake, rec = FakeExec(ok(), bad(b"boom"), bad(b"boom"), ok(), bad(b"boom"), bad(b"boom"), bad(b"boom")), Recorder()
    p = prober(fake, rec)
    p.start(POD, {"name": "c", "livenessProbe": probe(EXEC, failureThreshold=3)}, "c1")
    assert await rec.next_result() == ("c1", "liveness", False, "Liveness probe failed: boom")
    await asyncio.sleep(0.1)
    assert len(fake.calls) == 7 and fake.calls[0] == ("c1", ["check"], 1)  # on hold: no more probes
    assert [e[2] for e in rec.events] == ["Liveness probe failed: boom"] * 5  # every failed run is an event
    p.stop("c1")


async def test_readiness_starts_false_and_follows_its_thresholds() -> None:
    fake, rec = FakeExec(bad(), ok(), ok(), bad(), ok(), bad(), bad(), ok()), Recorder()
    p = prober(fake, rec)
    p.start(POD, {"name": "c", "readinessProbe": probe(EXEC, successThreshold=2, failureThreshold=2)}, "c1")
    assert p.started("c1") and not p.ready("c1")
    assert await rec.next_result() == ("c1", "readiness", True, "")
    assert p.ready("c1")
    assert await rec.next_result() == ("c1", "readiness", False, "Readiness probe failed: ")
    assert not p.ready("c1")
    p.stop("c1")
    assert p.ready("c1")  # a container the prober does not know has no probes


async def test_startup_gates_liveness_and_readiness() -> None:
    startup_exec = FakeExec(bad(), bad(), ok())
    rec = Recorder()

    async def exec_fn(id: str, argv: list[str], *, timeout: float | None = None) -> ExecResult:
        if argv == ["startup"]:
            return await startup_exec(id, argv, timeout=timeout)
        assert p.started("c1"), f"{argv[0]} ran before the container started"
        return ok()
    p = Prober(exec_fn, lambda uid: LOCAL, rec.on_result, rec.on_event)
    p.start(POD, {"name": "c", "startupProbe": probe({"exec": {"command": ["startup"]}}, failureThreshold=5),
                  "livenessProbe": probe({"exec": {"command": ["live"]}}),
                  "readinessProbe": probe({"exec": {"command": ["ready"]}})}, "c1")
    assert not p.started("c1") and not p.ready("c1")
    assert await rec.next_result() == ("c1", "startup", True, "")
    assert await rec.next_result() == ("c1", "readiness", True, "")
    assert p.started("c1") and p.ready("c1") and len(startup_exec.calls) == 3
    p.stop("c1")


async def test_failed_startup_reports_once_and_never_starts_the_others() -> None:
    fake, rec = FakeExec(bad(b"no")), Recorder()
    p = prober(fake, rec)
    p.start(POD, {"name": "c", "startupProbe": probe(EXEC, failureThreshold=2),
                  "livenessProbe": probe({"exec": {"command": ["live"]}})}, "c1")
    assert await rec.next_result() == ("c1", "startup", False, "Startup probe failed: no")
    await asyncio.sleep(0.1)
    assert {tuple(c[1]) for c in fake.calls} == {("check",)} and len(fake.calls) == 2
    p.stop("c1")


async def test_initial_delay_postpones_the_first_probe() -> None:
    fake, rec = FakeExec(), Recorder()
    p = prober(fake, rec)
    p.start(POD, {"name": "c", "readinessProbe": probe(EXEC, initialDelaySeconds=0.2)}, "c1")
    await asyncio.sleep(0.1)
    assert fake.calls == []
    await rec.next_result()
    p.stop("c1")


async def test_stop_ends_probing_and_start_is_idempotent() -> None:
    fake, rec = FakeExec(), Recorder()
    p = prober(fake, rec)
    container = {"name": "c", "livenessProbe": probe(EXEC)}
    p.start(POD, container, "c1")
    p.start(POD, container, "c1")
    await asyncio.sleep(0.05)
    p.stop("c1")
    calls = len(fake.calls)
    await asyncio.sleep(0.05)
    assert len(fake.calls) == calls and rec.results == []  # liveness starts out as success: no change


async def test_probe_errors_are_retried_reported_and_thrown_away() -> None:
    fake, rec = FakeExec(ContainerError("container c1 is not running")), Recorder()
    p = prober(fake, rec)
    p.start(POD, {"name": "c", "livenessProbe": probe(EXEC, period=10, failureThreshold=1)}, "c1")
    await asyncio.sleep(0.05)
    assert len(fake.calls) == 3 and rec.results == []
    assert rec.events == [("c1", "Unhealthy",
                           "Liveness probe errored and resulted in unknown state: container c1 is not running")]
    p.stop("c1")


async def test_probe_hosts_other_than_the_pod_are_refused_without_connecting() -> None:
    rec = Recorder()
    p = prober(FakeExec(), rec, ip="10.42.0.5")
    p.start(POD, {"name": "c", "readinessProbe": probe({"httpGet": {"host": "8.8.8.8", "port": 80}}, period=10),
                  "livenessProbe": probe({"tcpSocket": {"host": "1.1.1.1", "port": 53}}, period=10)}, "c1")
    await asyncio.sleep(0.05)
    assert sorted(e[2].split(":")[0] for e in rec.events) == [
        "Liveness probe errored and resulted in unknown state", "Readiness probe errored and resulted in unknown state"]
    assert all("refusing to connect to" in e[2] for e in rec.events) and not p.ready("c1")
    p.stop("c1")


async def test_http_and_tcp_probes_through_the_prober(server: Server) -> None:
    rec = Recorder()
    p = prober(FakeExec(), rec)
    p.start(POD, {"name": "c", "ports": [{"name": "web", "containerPort": server.port}],
                  "readinessProbe": probe({"httpGet": {"path": "/ok", "port": "web"}}),
                  "livenessProbe": probe({"tcpSocket": {"port": closed_port()}}, failureThreshold=1)}, "c1")
    results = {(await rec.next_result())[1:3], (await rec.next_result())[1:3]}
    assert results == {("readiness", True), ("liveness", False)}
    assert any("connect: connection refused" in e[2] for e in rec.events)
    p.stop("c1")


# ---- gRPC ------------------------------------------------------------------------------------

class SlowHealth(health.HealthServicer):
    """grpcio's health servicer, answering only after half a second."""

    def Check(self, request: Any, context: Any) -> Any:
        time.sleep(0.5)
        return super().Check(request, context)


def grpc_server(servicer: health.HealthServicer | None) -> tuple[grpc.Server, int]:
    """A real grpcio server on loopback, with ``servicer`` as its grpc.health.v1.Health (or none at all)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    if servicer is not None:
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{LOCAL}:0")
    server.start()
    return server, port


@pytest.fixture
def health_server() -> Iterator[int]:
    """grpcio-health-checking's servicer: "" and "web" SERVING, "db" NOT_SERVING."""
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("web", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
    server, port = grpc_server(servicer)
    yield port
    server.stop(None)


def test_health_messages_are_encoded_as_protobuf_in_grpc_frames() -> None:
    assert encode_request("") == b"\0\0\0\0\0"
    framed = encode_request("web")
    assert framed[:5] == b"\0\0\0\0\x05" and health_pb2.HealthCheckRequest.FromString(framed[5:]).service == "web"
    long = encode_request("s" * 200)  # a two-byte varint length
    assert health_pb2.HealthCheckRequest.FromString(long[5:]).service == "s" * 200
    for status in (0, 1, 2, 3):
        message = health_pb2.HealthCheckResponse(status=status).SerializeToString()
        assert decode_response(b"\0" + len(message).to_bytes(4, "big") + message) == status
    unknown_fields = b"\x08\x02\x12\x03abc\x1d\0\0\0\0"  # status=2, then a string and a fixed32 to skip
    assert decode_response(b"\0" + len(unknown_fields).to_bytes(4, "big") + unknown_fields) == 2


def test_grpc_timeout_header_is_encoded_as_grpc_go_does() -> None:
    assert [grpc_timeout(s) for s in (0, 0.05, 1, 99, 100, 1e6)] == ["0n", "50000000n", "1000000u", "99000000u",
                                                                     "100000m", "1000000S"]


async def test_grpc_probe_against_grpcios_health_server(health_server: int) -> None:
    assert await grpc_probe(LOCAL, health_server, "", 1) == Outcome("success", "service healthy")
    assert await grpc_probe(LOCAL, health_server, "web", 1) == Outcome("success", "service healthy")
    assert await grpc_probe(LOCAL, health_server, "db", 1) == Outcome(
        "failure", 'service unhealthy (responded with "NOT_SERVING")')
    assert await grpc_probe(LOCAL, health_server, "nope", 1) == Outcome(
        "failure", "error: health rpc probe failed: rpc error: code = NotFound desc = ")


async def test_grpc_probe_timeouts_are_worded_as_the_kubelet() -> None:
    port = closed_port()
    started = time.monotonic()
    outcome = await grpc_probe(LOCAL, port, "", 0.3)
    assert outcome == Outcome("failure", f'timeout: failed to connect service "{LOCAL}:{port}" within 300ms: '
                                         "context deadline exceeded")
    assert time.monotonic() - started >= 0.3  # a blocking dial waits out the timeout, as grpc-go's
    server, port = grpc_server(SlowHealth())
    try:
        assert await grpc_probe(LOCAL, port, "", 0.2) == Outcome(
            "failure", "timeout: health rpc did not complete within 200ms")
    finally:
        server.stop(None)


async def test_grpc_probe_of_a_server_without_the_health_service_or_http2(server: Server) -> None:
    grpc_only, port = grpc_server(None)
    try:
        outcome = await grpc_probe(LOCAL, port, "", 1)
    finally:
        grpc_only.stop(None)
    assert outcome.result == "failure" and outcome.output.startswith(
        "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "), outcome
    outcome = await grpc_probe(LOCAL, server.port, "", 0.2)  # HTTP/1.1 only: the HTTP/2 handshake never completes
    assert outcome.output.startswith("timeout: failed to connect service"), outcome


async def test_grpc_liveness_through_the_prober(health_server: int) -> None:
    rec = Recorder()
    p = prober(FakeExec(), rec)
    p.start(POD, {"name": "c", "readinessProbe": probe({"grpc": {"port": health_server, "service": "web"}}),
                  "livenessProbe": probe({"grpc": {"port": health_server, "service": "db"}}, failureThreshold=1)},
            "c1")
    results = {(await rec.next_result())[1:3], (await rec.next_result())[1:3]}
    assert results == {("readiness", True), ("liveness", False)}
    assert rec.events[0][1:] == ("Unhealthy", 'Liveness probe failed: service unhealthy (responded with "NOT_SERVING")')
    p.stop("c1")


# ---- lifecycle hooks -------------------------------------------------------------------------

def with_hook(when: str, handler: Obj, **container: Any) -> Obj:
    return {"name": "app", "lifecycle": {when: handler}, **container}


async def test_exec_hook_failure_message() -> None:
    fake = FakeExec(ExecResult(1, b"out", b"err"))
    result = await hooks.post_start(POD, with_hook("postStart", {"exec": {"command": ["sh", "-c", "exit 1"]}}),
                                    "c1", fake, LOCAL)
    assert result.message == ('Exec lifecycle hook ([sh -c exit 1]) for Container "app" in Pod "web_default(u-1)" '
                              "failed - error: command 'sh -c exit 1' exited with 1: err, message: \"outerr\"")
    assert fake.calls == [("c1", ["sh", "-c", "exit 1"], None)]  # hooks have no timeout
    assert (await hooks.post_start(POD, with_hook("postStart", EXEC), "c1", FakeExec(), LOCAL)).message == ""
    assert await hooks.post_start(POD, {"name": "app"}, "c1", FakeExec(), LOCAL) == hooks.HookResult()


async def test_http_hook_any_response_succeeds_and_errors_are_worded(server: Server) -> None:
    fail = with_hook("postStart", {"httpGet": {"path": "/fail", "port": server.port}})
    assert await hooks.post_start(POD, fail, "c1", FakeExec(), LOCAL) == hooks.HookResult()
    assert server.seen[-1]["User-Agent"] == "kube-lifecycle/1.32"
    port = closed_port()
    refused = await hooks.post_start(POD, with_hook("postStart", {"httpGet": {"path": "/x", "port": port}}),
                                     "c1", FakeExec(), LOCAL)
    assert refused.message == (f'HTTP lifecycle hook (/x) for Container "app" in Pod "web_default(u-1)" failed - error: '
                               f'Get "http://127.0.0.1:{port}/x": dial tcp 127.0.0.1:{port}: connect: connection refused')
    away = await hooks.post_start(POD, with_hook("postStart", {"httpGet": {"host": "8.8.8.8", "port": 80}}),
                                  "c1", FakeExec(), "10.42.0.5")
    assert "failed - error: refusing to connect to 8.8.8.8" in away.message


async def test_https_hook_answered_in_http_falls_back(server: Server) -> None:
    hook = with_hook("postStart", {"httpGet": {"path": "/ok", "port": server.port, "scheme": "HTTPS",
                                               "httpHeaders": [{"name": "Authorization", "value": "t"}]}})
    result = await hooks.post_start(POD, hook, "c1", FakeExec(), LOCAL)
    assert result == hooks.HookResult(
        fallback=f"request to HTTPS lifecycle hook 127.0.0.1:{server.port} got HTTP response, retry with HTTP succeeded")
    assert "Authorization" not in server.seen[-1]


async def test_pre_stop_spends_the_grace_period() -> None:
    grace, result = await hooks.pre_stop(POD, with_hook("preStop", {"sleep": {"seconds": 0}}), "c1", FakeExec(), LOCAL, 30)
    assert (grace, result) == (30, hooks.HookResult())
    grace, result = await hooks.pre_stop(POD, with_hook("preStop", EXEC), "c1", FakeExec(bad()), LOCAL, 30)
    assert (grace, result.message) == (30, "PreStopHook failed")  # no details: they may hold secrets
    assert await hooks.pre_stop(POD, {"name": "app"}, "c1", FakeExec(), LOCAL, 0) == (2, hooks.HookResult())


async def test_pre_stop_outliving_the_grace_period_is_abandoned() -> None:
    cancelled = asyncio.Event()

    async def hang(id: str, argv: list[str], *, timeout: float | None = None) -> ExecResult:
        try:
            await asyncio.sleep(10)
        finally:
            cancelled.set()
        raise AssertionError("not reached")
    grace, result = await asyncio.wait_for(hooks.pre_stop(POD, with_hook("preStop", EXEC), "c1", hang, LOCAL, 0.1), 5)
    assert cancelled.is_set() and result == hooks.HookResult() and grace == 2  # the 2 s minimum is left
