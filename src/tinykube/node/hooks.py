"""Lifecycle hooks: run a container's postStart and preStop handlers and word their failures.

Follows the kubelet's ``lifecycle/handlers.go`` (exec, httpGet, sleep) and, for the preStop
time budget, ``kuberuntime_container.go`` (``executePreStopHook``, ``killContainer``).  Like the
prober it only reports: the pod worker records the events (``FailedPostStartHook``,
``FailedPreStopHook``, ``LifecycleHTTPFallback``) and kills the container after a failed postStart.

An exec hook has no timeout (the kubelet passes none); an HTTP hook succeeds on *any* response,
as the kubelet's does.  The same network rule as probes holds: only the pod's IP or loopback.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tinykube.api.formats import go_quote
from tinykube.node.probes import ExecFn, HttpError, HttpRequest, ProbeError, http_get, http_request
from tinykube.node.runtime.containers import ContainerError

__all__ = ["MIN_GRACE_SECONDS", "HookResult", "post_start", "pre_stop", "run_handler"]

Obj = dict[str, Any]

MIN_GRACE_SECONDS = 2  # the kubelet leaves every container at least this long to stop (minimumGracePeriodInSeconds)
PRE_STOP_FAILED = "PreStopHook failed"  # the kubelet's whole FailedPreStopHook message: it may hold secrets


@dataclass(frozen=True)
class HookResult:
    """What a hook left for the pod worker to record."""

    message: str = ""  # "" when the hook succeeded; else the FailedPostStartHook / FailedPreStopHook message
    fallback: str = ""  # a LifecycleHTTPFallback message (Warning, on the pod) when HTTPS fell back to HTTP


async def post_start(pod: Obj, container: Obj, runtime_id: str, exec_fn: ExecFn, pod_ip: str) -> HookResult:
    """Run the container's postStart handler, if any, to its end (the kubelet waits for it too).

    On failure the kubelet records ``FailedPostStartHook`` with ``message``, kills the container
    (a ``Killing`` event whose message is ``FailedPostStartHook``) and shows it waiting with reason
    ``PostStartHookError``.
    """
    handler = (container.get("lifecycle") or {}).get("postStart")
    if not handler:
        return HookResult()
    return await run_handler(handler, pod=pod, container=container, runtime_id=runtime_id, exec_fn=exec_fn,
                             pod_ip=pod_ip)


async def pre_stop(pod: Obj, container: Obj, runtime_id: str, exec_fn: ExecFn, pod_ip: str,
                   grace_seconds: float) -> tuple[float, HookResult]:
    """Run the preStop handler within ``grace_seconds``; return the grace left for the stop and the result.

    A hook still running when the grace period ends is abandoned (killed) without an event;
    what is left is never under MIN_GRACE_SECONDS.  A failure's message is only
    ``PreStopHook failed``: the kubelet keeps the details out of events.
    """
    handler = (container.get("lifecycle") or {}).get("preStop")
    if not handler or grace_seconds <= 0:
        return max(grace_seconds, MIN_GRACE_SECONDS), HookResult()
    loop = asyncio.get_running_loop()
    begun = loop.time()
    task = asyncio.ensure_future(run_handler(handler, pod=pod, container=container, runtime_id=runtime_id,
                                             exec_fn=exec_fn, pod_ip=pod_ip))
    done, _ = await asyncio.wait({task}, timeout=grace_seconds)
    result = HookResult()
    if done:
        ran = task.result()
        result = HookResult(PRE_STOP_FAILED if ran.message else "", ran.fallback)
    else:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    left = grace_seconds - int(loop.time() - begun)  # whole seconds spent, as the kubelet counts them
    return max(left, MIN_GRACE_SECONDS), result


async def run_handler(handler: Obj, *, pod: Obj, container: Obj, runtime_id: str, exec_fn: ExecFn,
                      pod_ip: str) -> HookResult:
    """Run one lifecycle handler: ``handlerRunner.Run``, with its failure messages."""
    where = f"for Container {go_quote(container['name'])} in Pod {go_quote(_pod_name(pod))} failed - error:"
    if "exec" in handler:
        command = list(handler["exec"].get("command") or [])
        error, output = await _exec(exec_fn, runtime_id, command)
        return HookResult(f"Exec lifecycle hook ([{' '.join(command)}]) {where} {error}, message: {go_quote(output)}"
                          if error else "")
    if "httpGet" in handler:
        error, fallback = await _http(handler["httpGet"], container, pod_ip)
        path = handler["httpGet"].get("path", "")
        return HookResult(f"HTTP lifecycle hook ({path}) {where} {error}" if error else "", fallback)
    if "sleep" in handler:
        await asyncio.sleep(handler["sleep"]["seconds"])
        return HookResult()
    return HookResult(f"Cannot run handler: invalid handler: {handler}")


async def _exec(exec_fn: ExecFn, runtime_id: str, command: list[str]) -> tuple[str, str]:
    """(error, combined output) as the CRI's ExecSync words them; error "" on exit 0."""
    try:
        result = await exec_fn(runtime_id, command)
    except ContainerError as e:
        return str(e), ""
    output = (result.stdout + result.stderr).decode(errors="replace")
    if result.exit_code == 0:
        return "", output
    stderr = result.stderr.decode(errors="replace")
    return f"command '{' '.join(command)}' exited with {result.exit_code}: {stderr}", output


async def _http(action: Obj, container: Obj, pod_ip: str) -> tuple[str, str]:
    """(error, fallback message) of an HTTP hook; an HTTPS hook answered in plain HTTP is retried in HTTP."""
    try:
        request = http_request(action, container, pod_ip, "lifecycle")
        await http_get(request, timeout=None)
    except ProbeError as e:
        return str(e), ""
    except HttpError as e:
        if not e.plain_http:
            return str(e), ""
        return await _retry_in_http(request, str(e))
    return "", ""


async def _retry_in_http(request: HttpRequest, error: str) -> tuple[str, str]:
    """The kubelet's fallback: the same GET in HTTP, without Authorization; the first error if it fails too."""
    url = "http" + request.url.removeprefix("https")
    headers = tuple((n, v) for n, v in request.headers if n != "Authorization")
    try:
        await http_get(HttpRequest(url, headers), timeout=None)
    except HttpError:
        return error, ""
    host = url.removeprefix("http://").partition("/")[0].partition("?")[0]
    return "", f"request to HTTPS lifecycle hook {host} got HTTP response, retry with HTTP succeeded"


def _pod_name(pod: Obj) -> str:
    """The kubelet's ``format.Pod``: ``name_namespace(uid)``."""
    meta = pod["metadata"]
    return f"{meta['name']}_{meta['namespace']}({meta['uid']})"
