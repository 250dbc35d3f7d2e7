"""The node agent's streaming endpoints: exec, attach and port-forward, as the kubelet serves them.

Only the API server calls them, relaying kubectl's upgraded connection byte for byte.  Each
request is checked first (options, the pod, a running container), and refused in plain text
as the kubelet refuses; then the connection is upgraded (:mod:`remotecommand`,
:mod:`portforward`) and the command runs with its I/O tied to the client's streams.  The agent
supplies :class:`Targets`, which finds the container or the pod's network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from aiohttp import web

from tinykube.node import portforward
from tinykube.node.remotecommand import (Abandoned, Options, Refused, Session, Status, exit_status, internal_error,
                                         is_websocket, negotiate, open_session, parse_options, require_spdy_upgrade,
                                         success)
from tinykube.node.runtime import execs
from tinykube.node.runtime import attach
from tinykube.node.runtime.attach import open_attachment
from tinykube.node.runtime.containers import Runtime
from tinykube.node.runtime.execs import Exec
from tinykube.streams.channels import STDERR, STDOUT
from tinykube.streams.upgrade import ByteStream, WebSocketBytes, accept, header_values

__all__ = ["ContainerRef", "Refused", "SandboxRef", "TARGETS", "Targets", "add_routes"]

log = logging.getLogger(__name__)

TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"  # kubectl's SPDY-in-WebSocket port-forward
PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
OUTPUT_DRAIN = 2.0  # seconds for output to close once the command is gone (a leaked fd must not hang us)
START_POLL = 0.005  # seconds between looks for runc's pid file while early output waits


@dataclass(frozen=True)
class ContainerRef:
    """A running container: the runtime that runs it, its id, and whether it has a terminal."""

    runtime: Runtime
    id: str
    tty: bool


@dataclass(frozen=True)
class SandboxRef:
    """A pod's network namespace (its uid names it in messages, as a sandbox id does)."""

    uid: str
    netns: Path


class Targets(Protocol):
    """How the streaming server finds what a request names; raises :class:`Refused` with the kubelet's words."""

    def container(self, namespace: str, pod: str, container: str) -> ContainerRef: ...

    def sandbox(self, namespace: str, pod: str) -> SandboxRef: ...


TARGETS: web.AppKey[Targets] = web.AppKey("targets")


def add_routes(app: web.Application, targets: Targets) -> None:
    """The kubelet's paths (GET for WebSocket, POST for SPDY; both accepted for each)."""
    app[TARGETS] = targets
    for method in ("GET", "POST"):
        app.router.add_route(method, "/exec/{namespace}/{pod}/{container}", exec_handler)
        app.router.add_route(method, "/attach/{namespace}/{pod}/{container}", attach_handler)
        app.router.add_route(method, "/portForward/{namespace}/{pod}", port_forward_handler)


# ---- exec ----------------------------------------------------------------------------------------

async def exec_handler(request: web.Request) -> web.StreamResponse:
    argv = request.query.getall("command", [])
    return await _remote_command(request, lambda ref, options: options, lambda ref, s: run_exec(ref, argv, s))


async def attach_handler(request: web.Request) -> web.StreamResponse:
    # the terminal is the container's, not the request's: whether it has one cannot change after its start
    return await _remote_command(request, lambda ref, options: replace(options, tty=ref.tty), run_attach)


async def _remote_command(request: web.Request, adjust: Callable[[ContainerRef, Options], Options],
                          run: Callable[[ContainerRef, Session], Awaitable[Status]]) -> web.StreamResponse:
    """Check, upgrade, run, and end with the run's Status (the kubelet's ``ServeExec``/``ServeAttach``)."""
    mi = request.match_info
    try:
        options = parse_options(request.query)
        ref = request.app[TARGETS].container(mi["namespace"], mi["pod"], mi["container"])
        session = await open_session(request, adjust(ref, options))
    except Refused as e:
        return e.response()
    except Abandoned as e:
        return e.response
    await session.finish(await run(ref, session))
    return session.response


async def run_exec(ref: ContainerRef, argv: list[str], session: Session) -> Status:
    """Run ``argv`` in the container with the session's streams; the Status to end with."""
    tty = session.options.tty
    rt, bundle = ref.runtime, ref.runtime.bundles / ref.id
    spec = execs.process_spec(execs.container_process(bundle), argv, tty=tty, env={"TERM": "xterm"} if tty else None)
    try:
        ex = await execs.start(rt.runc, rt.runc_root, bundle, ref.id, spec, stdin=session.options.stdin)
    except OSError as e:
        return internal_error(f"error executing command in container: {e}")
    try:
        code = await _drive(ex, session)
        error = ex.runc_error()
    finally:
        ex.discard_files()
    if error:
        return internal_error(f"error executing command in container: OCI runtime exec failed: {error}: unknown")
    return success() if code == 0 else exit_status(argv, code)


async def _drive(ex: Exec, session: Session) -> int:
    """Tie the exec's I/O to the session until its output ends (or the client leaves: then kill it)."""
    helpers = [asyncio.create_task(_feed_stdin(ex, session))] if session.options.stdin else []
    if ex.pty is not None:
        helpers.append(asyncio.create_task(_follow_resizes(session, ex.resize)))
    output = asyncio.create_task(_copy_output(ex, session))
    gone = asyncio.create_task(session.gone.wait())
    try:
        await asyncio.wait({output, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not output.done():
            await execs.stop(ex)
        code = await ex.proc.wait()
        await asyncio.wait({output}, timeout=OUTPUT_DRAIN)
        return code
    except BaseException:
        await asyncio.shield(execs.stop(ex))
        raise
    finally:
        for task in (*helpers, output, gone):
            task.cancel()
        await asyncio.gather(*helpers, output, gone, return_exceptions=True)


async def _copy_output(ex: Exec, session: Session) -> None:
    """The command's output to the client: the terminal on stdout, or stdout and stderr apart.

    runc prints its own failure ("exec failed: ...") on the command's stderr; that message
    belongs in the final Status only, so nothing is sent before the command is known to run.
    """
    outputs = [(ex.pty, STDOUT)] if ex.pty is not None else [(ex.stdout, STDOUT), (ex.stderr, STDERR)]
    ex.stdout = ex.stderr = None  # read_chunks owns (and closes) them now; the pty stays for resizes until then

    async def copy(fd: int, channel: int) -> None:
        ran: bool | None = None
        async for chunk in execs.read_chunks(fd):
            ran = await _ran(ex) if ran is None else ran
            if ran:
                await session.write(channel, chunk)
    try:
        await asyncio.gather(*(copy(fd, channel) for fd, channel in outputs if fd is not None))
    finally:
        ex.pty = None  # closed with its reader: no resize may touch the number again


async def _ran(ex: Exec) -> bool:
    """True once runc has started the command, False when runc exited without (its own failure).

    Polls only in the instant between output arriving and runc writing its pid file.
    """
    while not ex.started():
        if ex.proc.returncode is not None:
            return ex.started()
        await asyncio.sleep(START_POLL)
    return True


async def _feed_stdin(ex: Exec, session: Session) -> None:
    """The client's input to the command; its end closes the pipe (a terminal gets ^D)."""
    fd = os.dup(ex.pty) if ex.pty is not None else ex.stdin
    ex.stdin = None
    try:
        while data := await session.read_stdin():
            if fd is not None:
                try:
                    await execs.write_all(fd, data)
                except OSError:  # the command closed its input: drain the rest
                    os.close(fd)
                    fd = None
        if fd is not None and ex.pty is not None:
            with contextlib.suppress(OSError):
                await execs.write_all(fd, execs.VEOF)
    finally:
        if fd is not None:
            os.close(fd)


async def _follow_resizes(session: Session, resize: Callable[[int, int], None]) -> None:
    async for size in session.resizes():
        if size.width > 0 and size.height > 0:  # the kubelet skips empty sizes
            with contextlib.suppress(OSError):
                resize(size.width, size.height)


# ---- attach --------------------------------------------------------------------------------------

async def run_attach(ref: ContainerRef, session: Session) -> Status:
    """Copy the main process's output to the client and its input to the process, via conmon."""
    sockets, bundle = ref.runtime.sockets, ref.runtime.bundles / ref.id
    try:
        attachment = await open_attachment(sockets, bundle, ref.id)
    except OSError as e:
        return internal_error(f"failed to connect to container {ref.id} attach socket: {sockets / ref.id / 'attach'}: {e}")

    async def copy_output() -> None:
        async for pipe, data in attachment.output():
            await session.write(STDOUT if pipe == attach.STDOUT else STDERR, data)

    async def feed_stdin() -> None:
        while data := await session.read_stdin():
            with contextlib.suppress(OSError):
                await attachment.write(data)
        attachment.close_stdin()

    helpers = [feed_stdin()] if session.options.stdin else []
    if session.options.tty:
        helpers.append(_follow_resizes(session, attachment.resize))
    try:
        await _until_first(copy_output(), session.gone.wait(), *helpers)
    finally:
        attachment.close()
    return success()


async def _until_first(main: Awaitable[None], gone: Awaitable[object], *helpers: Awaitable[None]) -> None:
    """Run ``main`` with ``helpers`` until ``main`` or ``gone`` completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in (main, gone, *helpers)]
    try:
        await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ---- port-forward --------------------------------------------------------------------------------

async def port_forward_handler(request: web.Request) -> web.StreamResponse:
    mi = request.match_info
    try:
        ref = request.app[TARGETS].sandbox(mi["namespace"], mi["pod"])
        io, response = await _port_forward_transport(request)
    except Refused as e:
        return e.response()
    await portforward.serve(io, ref.uid, ref.netns)
    return response


async def _port_forward_transport(request: web.Request) -> tuple[ByteStream, web.StreamResponse]:
    """SPDY tunnelled in a WebSocket (kubectl 1.30+), or a direct SPDY upgrade."""
    if is_websocket(request):
        if TUNNEL_PROTOCOL not in header_values(request, "Sec-WebSocket-Protocol"):
            raise Refused(400, f"unable to upgrade: port-forward over WebSocket needs subprotocol {TUNNEL_PROTOCOL}")
        ws = web.WebSocketResponse(protocols=[TUNNEL_PROTOCOL], max_msg_size=0, compress=False)
        await ws.prepare(request)
        return WebSocketBytes(ws), ws
    negotiate(header_values(request, "X-Stream-Protocol-Version"), (PORT_FORWARD_PROTOCOL,))
    require_spdy_upgrade(request)
    conn = await accept(request, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                  "X-Stream-Protocol-Version": PORT_FORWARD_PROTOCOL})
    return conn, conn.response
