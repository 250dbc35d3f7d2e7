"""metrics.k8s.io/v1beta1 (PodMetrics, NodeMetrics), read from the node agents as metrics-server reads kubelets.

Nothing is stored.  A request lists the pods or nodes it names from storage (label and field
selectors applied as metrics-server applies them to its informer caches), asks each node
involved for its ``/stats/summary`` through the API server's kubelet client, and answers with
the usage of those that have some: CPU in nanocores (``1523417n``), the memory working set as
BinarySI (``7436Ki``), the sampling window and when it ended.  An object without metrics is left
out of lists and is NotFound by name (metrics-server's ``pkg/api/pod.go``, ``pkg/api/node.go``,
``pkg/storage/storage.go``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tinykube.client.clock import now as _now
from tinykube.api.errors import ApiError, method_not_allowed, not_found
from tinykube.api.quantity import canonical
from tinykube.api.registry import ResourceType, lookup
from tinykube.apiserver.listing import list_page
from tinykube.apiserver.nodeproxy import NodeProxy, node_url
from tinykube.apiserver.requests import RequestInfo, json_response, query_flag
from tinykube.apiserver.rest import filter_from
from tinykube.apiserver.storage import Storage

log = logging.getLogger(__name__)

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
SUMMARY_TIMEOUT = 5.0  # seconds a node may take to answer; a silent node just has no metrics

Obj = dict[str, Any]


def _core(resource: str) -> ResourceType:
    rt = lookup("", "v1", resource)
    assert rt is not None
    return rt


PODS, NODES = _core("pods"), _core("nodes")


# ---- pure: summaries to metrics objects -------------------------------------------------------

def cpu_quantity(nanocores: int) -> str:
    """``resource.NewScaledQuantity(n, -9).String()``: ``1523417n``, ``2m``."""
    return canonical(f"{nanocores}n")


def memory_quantity(size: int) -> str:
    """``resource.NewQuantity(n, BinarySI).String()``: ``7436Ki``, ``1Mi``; not a whole KiB: decimal."""
    return canonical(f"{size // 1024}Ki") if size and size % 1024 == 0 else canonical(str(size))


def usage(stats: Obj) -> dict[str, str]:
    """A summary entry's ``cpu`` and ``memory`` as a metrics ``usage`` ResourceList."""
    return {"cpu": cpu_quantity(stats["cpu"].get("usageNanoCores", 0)),
            "memory": memory_quantity(stats["memory"].get("workingSetBytes", 0))}


def _metadata(obj: Obj, now: str) -> Obj:
    """Name, namespace and labels of the measured object; created now, as metrics-server stamps them."""
    meta = obj["metadata"]
    out: Obj = {"name": meta["name"]}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    out["creationTimestamp"] = now
    if meta.get("labels"):
        out["labels"] = meta["labels"]
    return out


def pod_metrics(pod: Obj, stats: Obj, window: str, now: str) -> Obj:
    """A PodMetrics from one pod's summary entry (``statsapi.PodStats``)."""
    return {"kind": "PodMetrics", "apiVersion": API_VERSION, "metadata": _metadata(pod, now),
            "timestamp": stats["cpu"]["time"], "window": window,
            "containers": [{"name": c["name"], "usage": usage(c)} for c in stats["containers"]]}


def node_metrics(node: Obj, summary: Obj, now: str) -> Obj:
    """A NodeMetrics from a node's summary."""
    stats = summary["node"]
    return {"kind": "NodeMetrics", "apiVersion": API_VERSION, "metadata": _metadata(node, now),
            "timestamp": stats["cpu"]["time"], "window": summary["window"], "usage": usage(stats)}


def pods_with_metrics(pods: list[Obj], summaries: dict[str, Obj], now: str) -> list[Obj]:
    """PodMetrics of the pods whose node reported them (matched by UID: a recreated pod is another pod)."""
    entries = {s["podRef"]["uid"]: (s, summary["window"]) for summary in summaries.values() for s in summary["pods"]}
    found = (entries.get(p["metadata"]["uid"]) for p in pods)
    return [pod_metrics(p, *entry, now) for p, entry in zip(pods, found) if entry is not None]


def metrics_list(kind: str, items: list[Obj]) -> bytes:
    return orjson.dumps({"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items})


# ---- I/O: asking the nodes ------------------------------------------------------------------

async def fetch_summary(proxy: NodeProxy, node: Obj) -> Obj | None:
    """The node's ``/stats/summary``; None (and a log line) when it cannot answer, as metrics-server skips it."""
    url = f"{node_url(node)}/stats/summary"
    try:
        async with proxy.session().get(url, timeout=aiohttp.ClientTimeout(total=SUMMARY_TIMEOUT)) as resp:
            if resp.status != 200:
                log.warning("stats of node %s: %s answered %d", node["metadata"]["name"], url, resp.status)
                return None
            body: Obj = orjson.loads(await resp.read())
            return body
    except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as e:
        log.warning("stats of node %s: %s: %s", node["metadata"]["name"], url, e)
        return None


async def _summaries(proxy: NodeProxy, nodes: list[Obj]) -> dict[str, Obj]:
    """The summaries of the nodes that answer, by node name, fetched concurrently."""
    answers = await asyncio.gather(*(fetch_summary(proxy, n) for n in nodes))
    return {n["metadata"]["name"]: s for n, s in zip(nodes, answers) if s is not None}


async def _hosts(storage: Storage, pods: list[Obj]) -> list[Obj]:
    """The nodes the pods are bound to (a node deleted meanwhile has nothing to say)."""
    found = []
    for name in sorted({p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")}):
        try:
            found.append((await storage.get(NODES, None, name))[0])
        except ApiError as e:
            if e.code != 404:
                raise
    return found


async def _listed(request: web.Request, storage: Storage, info: RequestInfo, rt: ResourceType) -> list[Obj]:
    """The pods or nodes a LIST names, with its selectors (fields: metadata only, as metrics-server's)."""
    page = await list_page(storage.store, rt, info.namespace, filter_from(request, info), 0, "")
    return [i.decoded() for i in page.items]


async def _pods(request: web.Request, storage: Storage, proxy: NodeProxy, info: RequestInfo) -> web.Response:
    if info.name:
        pods = [(await storage.get(PODS, info.namespace, info.name))[0]]
    else:
        pods = await _listed(request, storage, info, PODS)
    summaries = await _summaries(proxy, await _hosts(storage, pods))
    single = info.name and f"{info.namespace}/{info.name}"  # metrics-server's NotFound name
    return _answer("PodMetrics", pods_with_metrics(pods, summaries, _now()), single)


async def _nodes(request: web.Request, storage: Storage, proxy: NodeProxy, info: RequestInfo) -> web.Response:
    nodes = [await _node(storage, info.name)] if info.name else await _listed(request, storage, info, NODES)
    summaries = await _summaries(proxy, nodes)
    now = _now()
    items = [node_metrics(n, summaries[name], now) for n in nodes if (name := n["metadata"]["name"]) in summaries]
    return _answer("NodeMetrics", items, info.name)


def _answer(kind: str, items: list[Obj], single: str) -> web.Response:
    """A list, or the one object asked for by name (``single``, as metrics-server names it in NotFound)."""
    if not single:
        return json_response(metrics_list(kind, items))
    if not items:
        raise not_found(kind.lower(), single, GROUP)
    return json_response(orjson.dumps(items[0]))


async def _node(storage: Storage, name: str) -> Obj:
    """The node, or NotFound in the node lister's words (``node "x" not found``)."""
    try:
        return (await storage.get(NODES, None, name))[0]
    except ApiError as e:
        if e.code == 404:
            raise not_found("node", name) from None
        raise


async def serve(request: web.Request, storage: Storage, proxy: NodeProxy, info: RequestInfo) -> web.Response:
    """GET one or LIST PodMetrics / NodeMetrics; they have no other verbs."""
    if request.method != "GET":
        raise method_not_allowed()
    if not info.name and query_flag(request, "watch"):
        raise method_not_allowed(f'watch is not supported on resources of kind "{info.rt.resource}.{GROUP}"')
    if info.rt.resource == "pods":
        return await _pods(request, storage, proxy, info)
    return await _nodes(request, storage, proxy, info)
