"""The prober: runs each container's startup, liveness and readiness probes and reports results.

It follows the kubelet's ``prober/`` (worker, prober) and ``prober/results``: probes *report*,
only the pod worker acts.  Per probe one asyncio task waits ``initialDelaySeconds`` from the
container's start (liveness and readiness also wait for the startup probe), probes, and sleeps
``periodSeconds``; timers only, no polling.  A result changes after ``successThreshold`` or
``failureThreshold`` consecutive outcomes; a failed liveness or startup probe puts its probe on
hold until the container is replaced (a new runtime id).  Readiness starts out False, liveness
True, startup unknown; :meth:`Prober.started` and :meth:`Prober.ready` read the results the way
the kubelet's ``UpdatePodStatus`` does.

Each failed run is also an ``Unhealthy`` event worded as the kubelet words it
(``pkg/probe/{exec,http,tcp,grpc}``), a redirect to another host a ``ProbeWarning``.

Network safety: probes connect only to the pod's own IP or to loopback.  A ``host`` set to
anything else is refused (the kubelet would connect): the probe errors with a message saying so.
gRPC probes have no ``host``: they call the pod's IP (:mod:`tinykube.node.grpcprobe`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

import aiohttp
import yarl

from tinykube.api.formats import go_quote
from tinykube.node.containerspec import expand
from tinykube.node.grpcprobe import health_check
from tinykube.node.runtime.containers import ContainerError, ExecResult, ExecTimeout

__all__ = ["ExecFn", "HttpError", "HttpRequest", "Kind", "Outcome", "ProbeError", "Prober", "Tally", "Timing",
           "allowed_host", "event", "exec_command", "exec_probe", "grpc_probe", "http_get", "http_probe",
           "http_request", "join_host_port", "resolve_port", "tcp_probe"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Kind = Literal["startup", "liveness", "readiness"]
KINDS: tuple[Kind, ...] = ("startup", "liveness", "readiness")

KUBE_VERSION = "1.32"  # in the User-Agent: kube-probe/1.32, kube-lifecycle/1.32
MAX_OUTPUT = 10 * 1024  # bytes of exec output and HTTP body the kubelet keeps (maxReadLength, maxRespBodyLength)
MAX_RETRIES = 3  # a probe that *errors* is retried at once this many times (maxProbeRetries)
MAX_REDIRECTS = 10  # Go's http.Client stops after ten
REDIRECTS = frozenset({301, 302, 303, 307, 308})
LINGER = struct.pack("ii", 1, 1)  # SO_LINGER 1 s, as the kubelet's probe dialer: no TIME_WAIT pile-up


class ExecFn(Protocol):
    """What the prober needs of the runtime: :meth:`Runtime.exec`."""

    async def __call__(self, id: str, argv: list[str], *, timeout: float | None = None) -> ExecResult: ...


ResultCallback = Callable[[str, Kind, bool, str], None]  # runtime id, kind, ok, message
EventCallback = Callable[[str, str, str], None]  # runtime id, reason, message (all are Warning events)


class ProbeError(Exception):
    """The probe could not be run (bad port, refused host, runtime error): its result is unknown."""


class HttpError(Exception):
    """An HTTP GET failed before a response, worded as Go's client (``Get "URL": cause``)."""

    def __init__(self, message: str, plain_http: bool = False):
        super().__init__(message)
        self.plain_http = plain_http  # an HTTPS request answered in plain HTTP (lifecycle hooks retry)


@dataclass(frozen=True)
class Outcome:
    """One probe run: ``success``, ``warning``, ``failure`` or ``unknown`` with its output or error."""

    result: Literal["success", "warning", "failure", "unknown"]
    output: str = ""
    error: str = ""


@dataclass(frozen=True)
class Timing:
    """A probe's numbers, defaulted as the API server defaults them."""

    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, probe: Obj) -> Timing:
        return cls(probe.get("initialDelaySeconds") or 0, probe.get("periodSeconds") or 10,
                   probe.get("timeoutSeconds") or 1, probe.get("successThreshold") or 1,
                   probe.get("failureThreshold") or 3)


@dataclass(frozen=True)
class HttpRequest:
    """An ``httpGet`` action resolved against a container and pod IP (``NewRequestForHTTPGetAction``)."""

    url: str  # as Go prints it in errors
    headers: tuple[tuple[str, str], ...]


# ---- pure parts ------------------------------------------------------------------------------

def resolve_port(port: int | str, container: Obj) -> int:
    """A port by number or by the name of a container port (``probe.ResolveContainerPort``)."""
    if isinstance(port, str):
        named = next((p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port), None)
        if named is None and not port.lstrip("+-").isdigit():
            raise ProbeError(f"strconv.Atoi: parsing {go_quote(port)}: invalid syntax")
        port = named if named is not None else int(port)
    if 0 < port < 65536:
        return port
    raise ProbeError(f"invalid port number: {port}")


def allowed_host(host: str, pod_ip: str) -> str:
    """``host`` (default: the pod's IP) when it is the pod's IP or loopback; else ProbeError.

    The kubelet connects wherever ``host`` points; tinykube connects only inside the pod
    network it made and to the node's loopback, and never resolves names.
    """
    host = host or pod_ip
    if not host:
        raise ProbeError("the pod has no IP yet")
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and (address.is_loopback or (pod_ip and address == ipaddress.ip_address(pod_ip))):
        return host
    raise ProbeError(f"refusing to connect to {host}: tinykube probes and hooks connect only to the pod's IP "
                     f"({pod_ip or 'none yet'}) or to loopback")


def join_host_port(host: str, port: int) -> str:
    """Go's ``net.JoinHostPort``: IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_request(action: Obj, container: Obj, pod_ip: str, purpose: str) -> HttpRequest:
    """The GET for an ``httpGet`` action; ``purpose`` names the User-Agent (``probe``, ``lifecycle``)."""
    scheme = (action.get("scheme") or "HTTP").lower()
    host = allowed_host(action.get("host", ""), pod_ip)
    port = resolve_port(action["port"], container)
    path, sep, query = (action.get("path") or "").partition("?")
    path = path.partition("#")[0]
    if path and not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{join_host_port(host, port)}{quote(path, safe='/:@!$&()*+,;=~%')}{sep}{query}"
    headers: list[tuple[str, str]] = [(_canonical(h["name"]), h["value"]) for h in action.get("httpHeaders") or []]
    names = {name for name, _ in headers}
    if "User-Agent" not in names:
        headers.append(("User-Agent", f"kube-{purpose}/{KUBE_VERSION}"))
    if "Accept" not in names:
        headers.append(("Accept", "*/*"))
    elif all(value == "" for name, value in headers if name == "Accept"):
        headers = [(n, v) for n, v in headers if n != "Accept"]  # an empty Accept means "send none"
    return HttpRequest(url, tuple(headers))


def _canonical(name: str) -> str:
    """Go's canonical header key: ``x-custom-header`` → ``X-Custom-Header``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def exec_command(action: Obj, container: Obj) -> list[str]:
    """The probe's command with ``$(VAR)`` expanded from the container's literal env only."""
    env = {e["name"]: e.get("value", "") for e in container.get("env") or []}
    return [expand(arg, env) for arg in action.get("command") or []]


def event(kind: Kind, outcome: Outcome) -> tuple[str, str] | None:
    """The kubelet's event for one probe run as (reason, message), or None for a quiet one."""
    name = kind.capitalize()
    if outcome.error:
        return "Unhealthy", f"{name} probe errored and resulted in {outcome.result} state: {outcome.error}"
    if outcome.result == "failure":
        return "Unhealthy", f"{name} probe failed: {outcome.output}"
    if outcome.result == "warning":
        return "ProbeWarning", f"{name} probe warning: {outcome.output}"
    return None


@dataclass
class Tally:
    """Consecutive identical outcomes of one probe (the kubelet worker's lastResult/resultRun)."""

    last: bool | None = None
    run: int = 0

    def add(self, ok: bool, timing: Timing) -> bool | None:
        """Count ``ok``; the result to set once its threshold is reached, else None (keep the old one)."""
        self.run = self.run + 1 if self.last == ok else 1
        self.last = ok
        return ok if self.run >= (timing.success_threshold if ok else timing.failure_threshold) else None


# ---- one probe run ---------------------------------------------------------------------------

async def http_get(request: HttpRequest, timeout: float | None) -> tuple[int, bytes]:
    """GET with the kubelet's client: no TLS verification, no proxy, no cookies, no keep-alive;
    redirects followed only to the same host, at most ten (one to another host ends them with
    its 3xx: ``RedirectChecker(false)``).  Returns the status and the body's first 10 KiB.
    """
    url, headers = request.url, list(request.headers)
    first_host = yarl.URL(url).host
    connector = aiohttp.TCPConnector(ssl=False, force_close=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     auto_decompress=False) as session:
        try:
            async with asyncio.timeout(timeout):
                hops = 0
                while True:
                    async with session.get(yarl.URL(url, encoded=True), headers=headers, allow_redirects=False) as resp:
                        body = await _read_at_most(resp, MAX_OUTPUT)
                        location = resp.headers.get("Location", "") if resp.status in REDIRECTS else ""
                    target = str(yarl.URL(url).join(yarl.URL(location))) if location else ""
                    if not target or yarl.URL(target).host != first_host:
                        return resp.status, body
                    hops += 1
                    if hops == MAX_REDIRECTS:
                        raise HttpError(f"Get {go_quote(target)}: stopped after {MAX_REDIRECTS} redirects")
                    if yarl.URL(location).is_absolute():  # Go keeps a custom Host only across relative redirects
                        headers = [(n, v) for n, v in headers if n != "Host"]
                    url = target
        except TimeoutError:
            raise HttpError(f"Get {go_quote(url)}: context deadline exceeded "
                            "(Client.Timeout exceeded while awaiting headers)") from None
        except aiohttp.ClientError as e:
            raise _http_error(url, e) from None


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body up to ``limit`` bytes (the rest is dropped with the connection)."""
    body = b""
    while len(body) < limit:
        chunk = await resp.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return body


def _http_error(url: str, e: aiohttp.ClientError) -> HttpError:
    """aiohttp's exception in Go's words: ``Get "URL": dial tcp H:P: connect: connection refused``."""
    where = f"Get {go_quote(url)}: "
    if isinstance(e, aiohttp.ClientConnectorSSLError) and "WRONG_VERSION_NUMBER" in str(e):
        return HttpError(where + "http: server gave HTTP response to HTTPS client", plain_http=True)
    if isinstance(e, aiohttp.ClientConnectorError) and e.os_error.errno:
        return HttpError(where + _dial_error(join_host_port(e.host, e.port), e.os_error))
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return HttpError(where + "EOF")
    return HttpError(where + str(e))


def _dial_error(address: str, e: OSError) -> str:
    """Go's dial error: ``dial tcp 10.42.0.5:81: connect: connection refused``."""
    if isinstance(e, TimeoutError) or not e.errno:
        return f"dial tcp {address}: i/o timeout"
    reason = os.strerror(e.errno)
    return f"dial tcp {address}: connect: {reason[:1].lower()}{reason[1:]}"


async def http_probe(request: HttpRequest, timeout: float) -> Outcome:
    """``pkg/probe/http``: 2xx success, 3xx (a redirect not followed) warning, else failure."""
    try:
        status, body = await http_get(request, timeout)
    except HttpError as e:
        return Outcome("failure", str(e))
    if 200 <= status < 300:
        return Outcome("success", body.decode(errors="replace"))
    if 300 <= status < 400:
        return Outcome("warning", f"Probe terminated redirects, Response body: {body.decode(errors='replace')}")
    return Outcome("failure", f"HTTP probe failed with statuscode: {status}")


async def tcp_probe(host: str, port: int, timeout: float) -> Outcome:
    """``pkg/probe/tcp``: success when a connection opens; the dial error otherwise."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except OSError as e:  # TimeoutError included
            return Outcome("failure", _dial_error(join_host_port(host, port), e))
    return Outcome("success")


async def grpc_probe(host: str, port: int, service: str, timeout: float) -> Outcome:
    """``pkg/probe/grpc``: success only when the service answers SERVING; any other answer fails."""
    ok, output = await health_check(host, port, service, timeout, f"kube-probe/{KUBE_VERSION}")
    return Outcome("success" if ok else "failure", output)


async def exec_probe(exec_fn: ExecFn, runtime_id: str, argv: list[str], timeout: float) -> Outcome:
    """``pkg/probe/exec``: exit 0 success, else failure with stdout+stderr (the first 10 KiB)."""
    try:
        result = await exec_fn(runtime_id, argv, timeout=timeout)
    except ExecTimeout:
        return Outcome("failure", f"command {go_quote(' '.join(argv))} timed out")
    except (ContainerError, OSError) as e:  # the runtime's refusal: unknown, as a CRI error is
        return Outcome("unknown", error=str(e))
    output = (result.stdout + result.stderr)[:MAX_OUTPUT].decode(errors="replace")
    return Outcome("success" if result.exit_code == 0 else "failure", output)


# ---- the prober ------------------------------------------------------------------------------

@dataclass
class _Container:
    """One container instance's probes, results and tasks."""

    runtime_id: str
    pod_uid: str
    spec: Obj
    born: float  # loop time of start(): initialDelaySeconds counts from here
    started: asyncio.Event = field(default_factory=asyncio.Event)
    results: dict[Kind, bool] = field(default_factory=dict)
    tasks: dict[Kind, asyncio.Task[None]] = field(default_factory=dict)


class Prober:
    """Probes running containers and reports results through callbacks; never acts on a container."""

    def __init__(self, runtime_exec: ExecFn, pod_ip_getter: Callable[[str], str], on_result: ResultCallback,
                 on_event: EventCallback | None = None) -> None:
        self._exec = runtime_exec
        self._pod_ip = pod_ip_getter  # pod UID → its IP ("" while it has none)
        self._on_result = on_result
        self._on_event = on_event
        self._containers: dict[str, _Container] = {}

    def start(self, pod: Obj, container: Obj, runtime_id: str) -> None:
        """Probe a container that just started (idempotent per runtime id)."""
        if runtime_id in self._containers:
            return
        c = _Container(runtime_id, pod["metadata"]["uid"], container, asyncio.get_running_loop().time())
        self._containers[runtime_id] = c
        if container.get("livenessProbe"):
            c.results["liveness"] = True  # alive until the probe says otherwise
        if container.get("readinessProbe"):
            c.results["readiness"] = False  # not ready until the probe says so
        if not container.get("startupProbe"):
            c.started.set()
        for kind in KINDS:
            probe = container.get(f"{kind}Probe")
            if probe:
                c.tasks[kind] = asyncio.create_task(self._run(c, kind, probe), name=f"probe {kind} {runtime_id}")

    def stop(self, runtime_id: str, kinds: Iterable[Kind] = KINDS) -> None:
        """Stop probing (an in-flight exec is killed); all kinds forget the container."""
        c = self._containers.get(runtime_id)
        if c is None:
            return
        for kind in kinds:
            task = c.tasks.pop(kind, None)
            if task is not None:
                task.cancel()
        if set(kinds) >= set(KINDS):
            del self._containers[runtime_id]

    def started(self, runtime_id: str) -> bool:
        """The container status's ``started``: its startup probe succeeded, or it has none."""
        c = self._containers.get(runtime_id)
        return c is None or c.started.is_set()

    def ready(self, runtime_id: str) -> bool:
        """The container status's ``ready``: started, and its readiness probe (if any) succeeded."""
        c = self._containers.get(runtime_id)
        return c is None or (c.started.is_set() and c.results.get("readiness", True))

    async def _run(self, c: _Container, kind: Kind, probe: Obj) -> None:
        """One probe's life: initial delay, startup gate, then probe every period until on hold."""
        timing = Timing.of(probe)
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, c.born + timing.initial_delay - loop.time()))
        if kind != "startup":
            await c.started.wait()
        tally = Tally()
        while True:
            try:
                outcome = await self._probe_with_retries(c, kind, probe, timing)
                if not outcome.error and self._settle(c, kind, outcome, tally, timing):
                    return
            except Exception:  # a bug in one run must not end the probe (the kubelet's HandleCrash)
                log.exception("%s probe of container %s failed", kind, c.runtime_id)
            await asyncio.sleep(timing.period)

    def _settle(self, c: _Container, kind: Kind, outcome: Outcome, tally: Tally, timing: Timing) -> bool:
        """Count the outcome, set a result that crossed its threshold; True when the probe is done."""
        ok = outcome.result in ("success", "warning")
        result = tally.add(ok, timing)
        if result is None:
            return False
        if c.results.get(kind) != result:
            c.results[kind] = result
            self._on_result(c.runtime_id, kind, result, "" if ok else _failure_message(kind, outcome))
        if kind == "startup" and result:
            c.started.set()
            return True  # started for good: the kubelet's startup worker idles from here
        if kind in ("startup", "liveness") and not result:
            return True  # on hold: the pod worker replaces the container, which gets new probes
        return False

    async def _probe_with_retries(self, c: _Container, kind: Kind, probe: Obj, timing: Timing) -> Outcome:
        """Run once, again (up to three times) while it errors; report the run as an event."""
        outcome = Outcome("unknown")
        for _ in range(MAX_RETRIES):
            outcome = await self._probe_once(c, probe, timing)
            if not outcome.error:
                break
        reported = event(kind, outcome)
        if reported is not None and self._on_event is not None:
            self._on_event(c.runtime_id, *reported)
        return outcome

    async def _probe_once(self, c: _Container, probe: Obj, timing: Timing) -> Outcome:
        try:
            if "exec" in probe:
                return await exec_probe(self._exec, c.runtime_id, exec_command(probe["exec"], c.spec), timing.timeout)
            pod_ip = self._pod_ip(c.pod_uid)
            if "httpGet" in probe:
                return await http_probe(http_request(probe["httpGet"], c.spec, pod_ip, "probe"), timing.timeout)
            if "tcpSocket" in probe:
                action = probe["tcpSocket"]
                host = allowed_host(action.get("host", ""), pod_ip)
                return await tcp_probe(host, resolve_port(action["port"], c.spec), timing.timeout)
            if "grpc" in probe:
                action = probe["grpc"]
                return await grpc_probe(allowed_host("", pod_ip), resolve_port(action["port"], c.spec),
                                        action.get("service") or "", timing.timeout)
            raise ProbeError(f"missing probe handler for container {c.spec.get('name', '')}")
        except ProbeError as e:
            return Outcome("unknown", error=str(e))


def _failure_message(kind: Kind, outcome: Outcome) -> str:
    reported = event(kind, outcome)
    return reported[1] if reported else outcome.output

