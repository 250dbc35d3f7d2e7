"""Proxying ``pods/log``, ``exec``, ``attach`` and ``portforward`` to the node agent that runs the pod.

As kube-apiserver proxies to the kubelet: the pod and container are checked here
(``pkg/registry/core/pod/strategy.go`` LogLocation, ExecLocation, AttachLocation,
PortForwardLocation); the node's address and port come from its Node status; a log body streams
through unchanged and an upgraded stream is relayed byte for byte (:mod:`upgradeproxy`).  The
API server authenticates to the agent with its kubelet-client certificate.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web
from multidict import MultiMapping

from tinykube.api.errors import ApiError, bad_request
from tinykube.api.registry import lookup
from tinykube.apiserver import upgradeproxy
from tinykube.apiserver.requests import RequestInfo
from tinykube.apiserver.storage import Storage

NODES = lookup("", "v1", "nodes")
assert NODES is not None
_LOG_PARAMS = ("follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes")
_STREAM_FLAGS = ("stdin", "stdout", "stderr", "tty")


class NodeProxy:
    """One connection pool to every node agent."""

    def __init__(self, cert_file: str, key_file: str):
        ctx = ssl.create_default_context()
        ctx.load_cert_chain(cert_file, key_file)
        # As kube-apiserver without --kubelet-certificate-authority: node serving certificates are
        # self-signed until TLS bootstrap signs them, so they are not verified (the node verifies us).
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ctx

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl),
                                                  timeout=aiohttp.ClientTimeout(total=None, connect=5))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def logs(self, request: web.Request, storage: Storage, info: RequestInfo) -> web.StreamResponse:
        pod, _ = await storage.get(info.rt, info.namespace, info.name)
        container = pick_container(pod, request.query.get("container", ""))
        node_name = pod["spec"].get("nodeName")
        if not node_name:
            return web.Response(body=b"", content_type="text/plain")  # not scheduled: nothing to show yet
        node, _ = await storage.get(NODES, None, node_name)
        query = {k: v for k, v in request.query.items() if k in _LOG_PARAMS}
        url = f"{node_url(node)}/containerLogs/{info.namespace}/{info.name}/{container}"
        try:
            async with self.session().get(url, params=query) as upstream:
                response = web.StreamResponse(status=upstream.status,
                                              headers={"Content-Type": upstream.headers.get("Content-Type", "text/plain")})
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError as e:
            raise ApiError(500, "InternalError", f'Get "{url}": {e}') from None

    async def stream(self, request: web.Request, storage: Storage, info: RequestInfo) -> web.StreamResponse:
        """``exec``, ``attach`` or ``portforward``: checked here, then relayed to the node's kubelet path."""
        pod, _ = await storage.get(info.rt, info.namespace, info.name)
        if info.subresource == "portforward":
            path = f"/portForward/{info.namespace}/{info.name}"
        else:
            container = pick_container(pod, request.query.get("container", ""))
            path = f"/{info.subresource}/{info.namespace}/{info.name}/{container}"
        node_name = pod["spec"].get("nodeName")
        if not node_name:
            raise bad_request(f"pod {info.name} does not have a host assigned")
        node, _ = await storage.get(NODES, None, node_name)
        url = urlsplit(node_url(node))
        query = urlencode(stream_params(info.subresource, request.query), doseq=True)
        return await upgradeproxy.relay(request, self._ssl, url.hostname or "", url.port or 10250,
                                        f"{path}?{query}" if query else path)


def node_url(node: dict[str, Any]) -> str:
    status = node.get("status", {})
    address = next((a["address"] for a in status.get("addresses", []) if a.get("type") == "InternalIP"), "")
    port = status.get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port", 10250)
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}:{port}"


def pick_container(pod: dict[str, Any], wanted: str) -> str:
    """The container a log/exec request means, with the apiserver's errors."""
    spec = pod["spec"]
    names = [c["name"] for c in spec.get("initContainers", []) + spec.get("containers", [])]
    name = pod["metadata"]["name"]
    if not wanted:
        if len(spec.get("containers", [])) == 1:
            return str(spec["containers"][0]["name"])
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                          f"[{' '.join(c['name'] for c in spec.get('containers', []))}]")
    if wanted not in names:
        raise bad_request(f"container {wanted} is not valid for pod {name}")
    return wanted


def stream_params(subresource: str, query: MultiMapping[str]) -> list[tuple[str, str]]:
    """The kubelet's query for a stream (``streamParams``): flags as "1", each argv element, the ports."""
    if subresource == "portforward":
        ports = [p for value in query.getall("ports", []) for p in value.split(",") if p]
        return [("port", ",".join(ports))] if ports else []
    params = [(flag, "1") for flag in _STREAM_FLAGS if _flag(query.getall(flag, []))]
    if subresource == "exec":
        params += [("command", c) for c in query.getall("command", [])]
    return params


def _flag(values: list[str]) -> bool:
    """A boolean query parameter as the apiserver converts it: present and not "0" or "false"."""
    return bool(values) and values[0] != "0" and values[0].lower() != "false"
