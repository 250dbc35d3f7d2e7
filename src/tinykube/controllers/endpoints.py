"""The Endpoints and EndpointSlice controllers: which pod addresses stand behind each Service.

Three upstream components share one set of watches here:

- kube-controller-manager's endpoint controller (``pkg/controller/endpoint``): one Endpoints
  object per Service with a selector, ready pods in ``addresses`` and the others in
  ``notReadyAddresses`` (all in ``addresses`` under ``publishNotReadyAddresses``), ports
  resolved by number or by container port name, packed by ``RepackSubsets``;
- its endpointslice controller (``staging/src/k8s.io/endpointslice``): EndpointSlices named
  ``<service>-<random>``, owned by the Service, labelled ``kubernetes.io/service-name`` and
  ``endpointslice.kubernetes.io/managed-by``, one group of slices per set of ports, each
  endpoint carrying ready/serving/terminating conditions, a placeholder slice when there is none;
- kube-apiserver's lease endpoint reconciler for the ``kubernetes`` Service in ``default``: the
  address of every live API server (``masters``, from their leases in the store), reconciled
  on every change of the objects and every 10 s.  Endpoints validation refuses loopback
  addresses, so API servers bound to loopback (the default) publish the objects without any.

Everything is watch-driven: a pod's readiness flip enqueues the Services selecting it and the
sync writes within milliseconds.  The decisions are pure functions; the sync functions re-read
the current objects from the API (not from a cache), so a sync may run any number of times.
There is no garbage collector, so the slice controller deletes the slices of a deleted Service
itself (upstream leaves that to the ownerReference).  Not done: the 1000-address truncation of
Endpoints (``over-capacity``), topology hints, dual-stack (IPv4 only, like the cluster).
"""

from __future__ import annotations

import asyncio
import copy
import fcntl
import hashlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)

SERVICES = lookup("", "v1", "services")
PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
ENDPOINTS = lookup("", "v1", "endpoints")
SLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
assert SERVICES and PODS and NODES and ENDPOINTS and SLICES

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS = "service.kubernetes.io/headless"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
ZONE = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100  # kube-controller-manager's --max-endpoints-per-slice default
MASTER = "default/kubernetes"
MASTER_INTERVAL = 10.0  # seconds between reconciles of the kubernetes Endpoints (kube-apiserver's)
WORKERS = 4
PRIME_RETRY = 1.0  # seconds between attempts to load the cluster before the first sync

Obj = dict[str, Any]


# --- pods and services --------------------------------------------------------------------------


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def key_of(obj: Obj) -> str:
    return f"{_meta(obj).get('namespace', '')}/{_meta(obj).get('name', '')}"


def pod_ready(pod: Obj) -> bool:
    """``podutil.IsPodReady``: the Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_ips(pod: Obj) -> list[str]:
    """``status.podIPs`` (``status.podIP`` alone when a writer set only that)."""
    status = pod.get("status") or {}
    ips = [entry.get("ip", "") for entry in status.get("podIPs") or [] if entry.get("ip")]
    return ips or ([status["podIP"]] if status.get("podIP") else [])


def in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """``ShouldPodBeInEndpoints``: not terminal, has an IP, and (unless included) not terminating."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or not pod_ips(pod):
        return False
    return include_terminating or not _meta(pod).get("deletionTimestamp")


def selects(service: Obj, pod: Obj) -> bool:
    """The Service's selector (a plain label map) matches the pod in its namespace."""
    selector = _spec(service).get("selector") or {}
    labels = _meta(pod).get("labels") or {}
    return (bool(selector) and _meta(pod).get("namespace") == _meta(service).get("namespace")
            and all(labels.get(k) == v for k, v in selector.items()))


def has_cluster_ip(service: Obj) -> bool:
    """``IsServiceIPSet``: neither headless (``None``) nor unset."""
    return _spec(service).get("clusterIP") not in (None, "", "None")


def is_headless(service: Obj) -> bool:
    return _spec(service).get("clusterIP") == "None"


def publishes_not_ready(service: Obj) -> bool:
    return bool(_spec(service).get("publishNotReadyAddresses"))


def should_set_hostname(pod: Obj, service: Obj) -> bool:
    """``ShouldSetHostname``: a pod whose ``subdomain`` names this Service, in its namespace."""
    spec = _spec(pod)
    return bool(spec.get("hostname")) and spec.get("subdomain") == _meta(service).get("name") \
        and _meta(pod).get("namespace") == _meta(service).get("namespace")


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """``FindPort``: a numeric targetPort as is; a name looked up in the containers, then sidecars."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol", "TCP")
    spec = _spec(pod)
    containers = (spec.get("containers") or []) + [c for c in spec.get("initContainers") or []
                                                   if c.get("restartPolicy") == "Always"]
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _is_ipv6(ip: str) -> bool:
    return ":" in ip


def _service_family_ipv6(service: Obj) -> bool:
    families = _spec(service).get("ipFamilies") or ["IPv4"]
    return families[0] == "IPv6"


# --- Endpoints ------------------------------------------------------------------------------------


def endpoint_address(service: Obj, pod: Obj) -> Obj | None:
    """``podToEndpointAddressForService``: the pod's IP of the Service's family, its node and itself."""
    ipv6 = _service_family_ipv6(service)
    ip = next((ip for ip in pod_ips(pod) if _is_ipv6(ip) == ipv6), None)
    if ip is None:
        return None
    meta = _meta(pod)
    address: Obj = {"ip": ip, "targetRef": {"kind": "Pod", "namespace": meta.get("namespace", ""),
                                             "name": meta.get("name", ""), "uid": meta.get("uid", "")}}
    if _spec(pod).get("nodeName"):
        address["nodeName"] = _spec(pod)["nodeName"]
    if should_set_hostname(pod, service):
        address["hostname"] = _spec(pod)["hostname"]
    return address


def endpoint_port(service_port: Obj, number: int) -> Obj:
    """``endpointPortFromServicePort``: the Service port's name, protocol and appProtocol."""
    port: Obj = {"port": number, "protocol": service_port.get("protocol", "TCP")}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    if service_port.get("appProtocol") is not None:
        port["appProtocol"] = service_port["appProtocol"]
    return port


def endpoint_subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    """The subsets ``syncService`` computes for the selected pods: one per address and port, repacked."""
    spec = _spec(service)
    tolerate = publishes_not_ready(service)
    subsets: list[Obj] = []
    for pod in pods:
        address = endpoint_address(service, pod) if in_endpoints(pod, tolerate) else None
        if address is None:
            continue
        field_name = "addresses" if tolerate or pod_ready(pod) else "notReadyAddresses"
        if not spec.get("ports"):
            if is_headless(service):  # a headless Service may have no ports
                subsets.append({field_name: [address]})
            continue
        for service_port in spec["ports"]:
            number = find_port(pod, service_port)
            if number is not None:
                subsets.append({field_name: [address], "ports": [endpoint_port(service_port, number)]})
    return repack_subsets(subsets)


def _frozen(obj: Obj) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(obj.items()))


def _address_key(address: Obj) -> tuple[str, str]:
    return address.get("ip", ""), (address.get("targetRef") or {}).get("uid", "")


def _address_order(address: Obj) -> tuple[bytes, bool, str]:
    """``LessEndpointAddress``: by IP (as bytes), then an address without a targetRef first, then uid."""
    ref = address.get("targetRef")
    return address.get("ip", "").encode(), ref is not None, (ref or {}).get("uid", "")


def repack_subsets(subsets: list[Obj]) -> list[Obj]:
    """``RepackSubsets``: addresses grouped by the exact set of ports they serve (not-ready wins
    over ready per port), deduplicated by IP and pod uid, sorted as upstream sorts them."""
    addresses: dict[tuple[str, str], Obj] = {}
    ready_by_port: dict[tuple[tuple[str, Any], ...] | None, dict[tuple[str, str], bool]] = {}
    for subset in subsets:
        for port in subset.get("ports") or [None]:  # None: the sentinel of a subset without ports
            ready = ready_by_port.setdefault(_frozen(port) if port else None, {})
            for field_name, is_ready in (("addresses", True), ("notReadyAddresses", False)):
                for address in subset.get(field_name) or []:
                    key = _address_key(address)
                    addresses.setdefault(key, address)
                    if ready.get(key, True):
                        ready[key] = is_ready
    groups: dict[frozenset[tuple[tuple[str, str], bool]], list[Obj]] = {}
    for port_key, ready in ready_by_port.items():
        ports = groups.setdefault(frozenset(ready.items()), [])
        if port_key is not None:
            ports.append(dict(port_key))
    return sort_subsets([_subset(addresses, dict(group), ports) for group, ports in groups.items()])


def _subset(addresses: dict[tuple[str, str], Obj], ready: dict[tuple[str, str], bool], ports: list[Obj]) -> Obj:
    subset: Obj = {}
    for field_name, wanted in (("addresses", True), ("notReadyAddresses", False)):
        chosen = [addresses[key] for key, is_ready in ready.items() if is_ready == wanted]
        if chosen:
            subset[field_name] = sorted(chosen, key=_address_order)
    if ports:
        subset["ports"] = ports
    return subset


def sort_subsets(subsets: list[Obj]) -> list[Obj]:
    """``SortSubsets``: addresses by IP and uid, ports and subsets by the md5 of their spew dump."""
    for subset in subsets:
        if subset.get("ports"):
            subset["ports"].sort(key=lambda p: _md5("(v1.EndpointPort)" + _spew_core_port(p)))
    return sorted(subsets, key=lambda s: _md5(_spew_subset(s)))


# ``dump.ForHash`` (go-spew ``%#v``, pointer addresses off) of the Go structs, field by field, so
# that ports and subsets come out in the order kube-controller-manager writes them.

def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _pointer(go_type: str, value: Any) -> str:
    return f"(*{go_type}){'<nil>' if value is None else value}"


def _slice(go_type: str, bodies: list[str]) -> str:
    return f"([]{go_type})" + (f"[{' '.join(bodies)}]" if bodies else "<nil>")


def _spew_core_port(port: Obj) -> str:
    return (f"{{Name:(string){port.get('name', '')} Port:(int32){port.get('port', 0)} "
            f"Protocol:(v1.Protocol){port.get('protocol', '')} AppProtocol:{_pointer('string', port.get('appProtocol'))}}}")


def _spew_address(address: Obj) -> str:
    ref = address.get("targetRef")
    ref_text = "(*v1.ObjectReference)<nil>" if ref is None else (
        f"(*v1.ObjectReference){{Kind:(string){ref.get('kind', '')} Namespace:(string){ref.get('namespace', '')} "
        f"Name:(string){ref.get('name', '')} UID:(types.UID){ref.get('uid', '')} APIVersion:(string) "
        f"ResourceVersion:(string) FieldPath:(string)}}")
    return (f"{{IP:(string){address.get('ip', '')} Hostname:(string){address.get('hostname', '')} "
            f"NodeName:{_pointer('string', address.get('nodeName'))} TargetRef:{ref_text}}}")


def _spew_subset(subset: Obj) -> str:
    return ("(v1.EndpointSubset){"
            f"Addresses:{_slice('v1.EndpointAddress', [_spew_address(a) for a in subset.get('addresses') or []])} "
            f"NotReadyAddresses:{_slice('v1.EndpointAddress', [_spew_address(a) for a in subset.get('notReadyAddresses') or []])} "
            f"Ports:{_slice('v1.EndpointPort', [_spew_core_port(p) for p in subset.get('ports') or []])}}}")


def _without_ref_versions(subsets: list[Obj] | None) -> list[Obj]:
    """Subsets compared as ``endpointSubsetsEqualIgnoreResourceVersion`` does."""
    out = copy.deepcopy(subsets or [])
    for subset in out:
        for field_name in ("addresses", "notReadyAddresses"):
            for address in subset.get(field_name) or []:
                (address.get("targetRef") or {}).pop("resourceVersion", None)
    return out


def desired_endpoints(service: Obj, subsets: list[Obj], current: Obj | None, trigger_time: str) -> Obj | None:
    """The Endpoints object to write for ``service``, or None when ``current`` already says it.

    As ``syncService``: the Service's labels (plus ``service.kubernetes.io/headless`` for a
    headless one), the trigger-time annotation of this change, the subsets.
    """
    labels = dict(_meta(service).get("labels") or {})
    if current is not None:
        current_labels = {k: v for k, v in (_meta(current).get("labels") or {}).items() if k != HEADLESS}
        if (_without_ref_versions(current.get("subsets")) == _without_ref_versions(subsets) and current_labels == labels
                and OVER_CAPACITY not in (_meta(current).get("annotations") or {})):
            return None
    new = copy.deepcopy(current) if current is not None else {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": _meta(service)["name"], "namespace": _meta(service).get("namespace")}}
    meta = new["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in (TRIGGER_TIME, OVER_CAPACITY)}
    if trigger_time:
        annotations[TRIGGER_TIME] = trigger_time
    if not has_cluster_ip(service):
        labels[HEADLESS] = ""
    _set_or_drop(meta, "annotations", annotations)
    _set_or_drop(meta, "labels", labels)
    _set_or_drop(new, "subsets", subsets)
    return new


def _set_or_drop(obj: Obj, key: str, value: Any) -> None:
    """Go's ``omitempty``: an empty map or list is not written at all."""
    if value:
        obj[key] = value
    else:
        obj.pop(key, None)


@dataclass
class TriggerTimes:
    """``TriggerTimeTracker``: when the oldest change a sync publishes happened.

    The first sync of a Service reports its creation; later ones the earliest Ready-condition
    transition (or Service creation) that changed since the previous sync.  Timestamps are the
    API's RFC 3339 strings (second precision, UTC), which order as text.
    """

    seen: dict[str, tuple[dict[str, str], str]] = field(default_factory=dict)

    def compute(self, service: Obj, pods: list[Obj]) -> str:
        key = key_of(service)
        pod_times = {_meta(p).get("name", ""): _ready_transition(p) for p in pods}
        service_time = _meta(service).get("creationTimestamp") or ""
        previous = self.seen.get(key)
        self.seen[key] = (pod_times, service_time)
        if previous is None:
            return service_time
        old_pods, old_service = previous
        changed = [t for name, t in pod_times.items() if t and old_pods.get(name, "") != t]
        if service_time != old_service and service_time:
            changed.append(service_time)
        return min(changed, default="")

    def forget(self, key: str) -> None:
        self.seen.pop(key, None)


def _ready_transition(pod: Obj) -> str:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("lastTransitionTime") or "")
    return ""


# --- EndpointSlices -------------------------------------------------------------------------------


def slice_endpoint(pod: Obj, node: Obj | None, service: Obj) -> Obj | None:
    """``podToEndpoint``: the pod's IPv4 addresses and conditions; None without an address.

    ``ready`` is never true for a terminating pod unless the Service publishes not-ready ones.
    """
    serving = pod_ready(pod)
    terminating = bool(_meta(pod).get("deletionTimestamp"))
    addresses = [ip for ip in pod_ips(pod) if not _is_ipv6(ip)]
    if not addresses:
        return None
    meta = _meta(pod)
    endpoint: Obj = {
        "addresses": addresses,
        "conditions": {"ready": publishes_not_ready(service) or (serving and not terminating),
                       "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                      "uid": meta.get("uid", "")},
    }
    if _spec(pod).get("nodeName"):
        endpoint["nodeName"] = _spec(pod)["nodeName"]
    zone = (_meta(node).get("labels") or {}).get(ZONE) if node is not None else None
    if zone:
        endpoint["zone"] = zone
    if should_set_hostname(pod, service):
        endpoint["hostname"] = _spec(pod)["hostname"]
    return endpoint


def slice_ports(service: Obj, pod: Obj) -> list[Obj]:
    """``getEndpointPorts`` for one pod, in ``NewPortMapKey``'s order (md5 of each port's dump)."""
    ports = []
    for service_port in _spec(service).get("ports") or []:
        number = find_port(pod, service_port)
        if number is None:
            continue
        port: Obj = {"name": service_port.get("name", ""), "port": number,
                     "protocol": service_port.get("protocol", "TCP")}
        if service_port.get("appProtocol") is not None:
            port["appProtocol"] = service_port["appProtocol"]
        ports.append(port)
    return sorted(ports, key=lambda p: _md5(_spew_discovery_port(p)))


def _spew_discovery_port(port: Obj) -> str:
    return (f"(v1.EndpointPort){{Name:{_pointer('string', port.get('name'))} "
            f"Protocol:{_pointer('v1.Protocol', port.get('protocol'))} Port:{_pointer('int32', port.get('port'))} "
            f"AppProtocol:{_pointer('string', port.get('appProtocol'))}}}")


PortKey = tuple[tuple[tuple[str, Any], ...], ...]


def port_key(ports: list[Obj] | None) -> PortKey:
    """Slices are grouped by their exact set of ports (``PortMapKey``)."""
    return tuple(sorted(_frozen(p) for p in ports or []))


def endpoint_identity(endpoint: Obj) -> tuple[tuple[str, ...], str, str, str]:
    """``hashEndpoint``: addresses, hostname and the target's namespace/name identify an endpoint."""
    ref = endpoint.get("targetRef") or {}
    return (tuple(sorted(endpoint.get("addresses") or [])), endpoint.get("hostname") or "",
            ref.get("namespace", ""), ref.get("name", ""))


_RESERVED_LABELS = (SERVICE_NAME, MANAGED_BY, HEADLESS)


def _user_labels(labels: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (labels or {}).items() if k not in _RESERVED_LABELS}


def slice_labels(service: Obj) -> dict[str, str]:
    """``setEndpointSliceLabels``: the Service's own labels, the headless mark, the reserved two."""
    labels = _user_labels(_meta(service).get("labels"))
    if not has_cluster_ip(service):
        labels[HEADLESS] = ""
    return {**labels, SERVICE_NAME: _meta(service)["name"], MANAGED_BY: CONTROLLER_NAME}


def owner_reference(service: Obj) -> Obj:
    """``metav1.NewControllerRef`` for the Service."""
    meta = _meta(service)
    return {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def owned_by(endpoint_slice: Obj, service: Obj) -> bool:
    uid = _meta(service).get("uid")
    return any(o.get("uid") == uid and o.get("kind") == "Service" and o.get("apiVersion") == "v1"
               for o in _meta(endpoint_slice).get("ownerReferences") or [])


def new_slice(service: Obj, ports: list[Obj]) -> Obj:
    """``newEndpointSlice``: ``generateName: <service>-``, owned by and labelled for the Service."""
    meta = _meta(service)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{meta['name']}-", "namespace": meta.get("namespace"),
                         "labels": slice_labels(service), "ownerReferences": [owner_reference(service)]},
            "addressType": "IPv4", "endpoints": [], "ports": copy.deepcopy(ports)}


@dataclass
class SlicePlan:
    """What one reconcile writes: new slices, replaced slices, slices to delete."""

    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


def _desired(service: Obj, pods: list[Obj], nodes: dict[str, Obj]) -> dict[PortKey, tuple[list[Obj], dict[Any, Obj]]]:
    """Desired endpoints grouped by port set: pods on an unknown node are skipped unless the
    Service publishes not-ready addresses (upstream retries them when the node appears)."""
    desired: dict[PortKey, tuple[list[Obj], dict[Any, Obj]]] = {}
    for pod in pods:
        if not in_endpoints(pod, True):
            continue
        ports = slice_ports(service, pod)
        group = desired.setdefault(port_key(ports), (ports, {}))
        node = nodes.get(_spec(pod).get("nodeName") or "")
        if node is None and not publishes_not_ready(service):
            continue
        endpoint = slice_endpoint(pod, node, service)
        if endpoint is not None:
            group[1][endpoint_identity(endpoint)] = endpoint
    return desired


def plan_slices(service: Obj, pods: list[Obj], nodes: dict[str, Obj], existing: list[Obj],
                max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> SlicePlan:
    """``Reconciler.reconcileByAddressType`` for IPv4: keep, update, fill, create and delete slices
    so that every desired endpoint is in exactly one slice of its port set."""
    plan = SlicePlan(delete=[s for s in existing if s.get("addressType") != "IPv4" or not owned_by(s, service)])
    by_ports: dict[PortKey, list[Obj]] = {}
    for endpoint_slice in existing:
        if not any(endpoint_slice is d for d in plan.delete):
            by_ports.setdefault(port_key(endpoint_slice.get("ports")), []).append(endpoint_slice)
    desired = _desired(service, pods, nodes)
    for key, (ports, endpoints) in desired.items():
        _reconcile_port_group(service, by_ports.get(key, []), dict(endpoints), ports, max_per_slice, plan)
    for key, slices in by_ports.items():
        if key not in desired:
            plan.delete += slices
    if len(existing) == len(plan.delete) and not plan.create:
        _placeholder(service, plan)
    _reuse_deleted_names(service, plan)
    return plan


def _reconcile_port_group(service: Obj, existing: list[Obj], desired: dict[Any, Obj], ports: list[Obj],
                          limit: int, plan: SlicePlan) -> None:
    """``reconcileByPortMapping``: prune and refresh existing slices, then fill, then create."""
    unchanged: list[Obj] = []
    updated: list[Obj] = []
    for endpoint_slice in existing:
        kept = [desired.pop(endpoint_identity(e)) for e in endpoint_slice.get("endpoints") or []
                if endpoint_identity(e) in desired]
        old = endpoint_slice.get("endpoints") or []
        labels_changed = _user_labels(_meta(endpoint_slice).get("labels")) != _user_labels(_meta(service).get("labels"))
        if kept != old and not kept:
            plan.delete.append(endpoint_slice)
        elif kept != old or labels_changed:
            updated.append(_with(endpoint_slice, service, kept))
        else:
            unchanged.append(endpoint_slice)
    remaining = sorted(desired.values(), key=lambda e: endpoint_identity(e))
    for endpoint_slice in sorted(updated, key=lambda s: -len(s["endpoints"])):
        _fill(endpoint_slice, remaining, limit)
    while remaining:
        target = _slice_to_fill(unchanged, len(remaining), limit) if len(remaining) < limit else None
        if target is None:
            target = new_slice(service, ports)
            plan.create.append(target)
        else:
            unchanged.remove(target)
            target = _with(target, service, list(target.get("endpoints") or []))
            updated.append(target)
        _fill(target, remaining, limit)
    plan.update += updated


def _with(endpoint_slice: Obj, service: Obj, endpoints: list[Obj]) -> Obj:
    """A copy of an existing slice with these endpoints and the Service's current labels."""
    new = copy.deepcopy(endpoint_slice)
    new["endpoints"] = endpoints
    new["metadata"]["labels"] = slice_labels(service)
    return new


def _fill(endpoint_slice: Obj, remaining: list[Obj], limit: int) -> None:
    while remaining and len(endpoint_slice["endpoints"]) < limit:
        endpoint_slice["endpoints"].append(remaining.pop(0))


def _slice_to_fill(slices: list[Obj], count: int, limit: int) -> Obj | None:
    """``getSliceToFill``: the unchanged slice that ends up closest to full with ``count`` more."""
    best, best_gap = None, limit
    for endpoint_slice in slices:
        gap = limit - (count + len(endpoint_slice.get("endpoints") or []))
        if 0 <= gap < best_gap:
            best, best_gap = endpoint_slice, gap
    return best


def _placeholder(service: Obj, plan: SlicePlan) -> None:
    """A Service without endpoints keeps one empty slice; an existing placeholder is left alone."""
    placeholder = new_slice(service, [])
    if len(plan.delete) == 1 and _same_placeholder(plan.delete[0], placeholder):
        plan.delete.clear()
    else:
        plan.create.append(placeholder)


def _same_placeholder(existing: Obj, placeholder: Obj) -> bool:
    """``placeholderSliceCompare``: namespace, labels, owners and content (nil equals empty)."""
    return (_meta(existing).get("namespace") == _meta(placeholder).get("namespace")
            and (_meta(existing).get("labels") or {}) == _meta(placeholder)["labels"]
            and (_meta(existing).get("ownerReferences") or []) == _meta(placeholder)["ownerReferences"]
            and existing.get("addressType") == placeholder["addressType"]
            and not existing.get("endpoints") and not existing.get("ports"))


def _reuse_deleted_names(service: Obj, plan: SlicePlan) -> None:
    """``finalize``: a slice to create takes over one of ours that was to be deleted (an update)."""
    index = 0
    while index < len(plan.delete) and plan.create:
        doomed = plan.delete[index]
        if doomed.get("addressType") == "IPv4" and owned_by(doomed, service):
            replacement = plan.create.pop()
            replacement["metadata"]["name"] = _meta(doomed)["name"]
            replacement["metadata"]["resourceVersion"] = _meta(doomed).get("resourceVersion", "")
            plan.update.append(replacement)
            plan.delete.pop(index)
        else:
            index += 1


def with_trigger_time(endpoint_slice: Obj, trigger_time: str) -> Obj:
    """``addTriggerTimeAnnotation``; and empty lists written as the null upstream stores them."""
    meta = endpoint_slice["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != TRIGGER_TIME}
    if trigger_time:
        annotations[TRIGGER_TIME] = trigger_time
    _set_or_drop(meta, "annotations", annotations)
    for key in ("endpoints", "ports"):
        endpoint_slice[key] = endpoint_slice.get(key) or None
    return endpoint_slice


# --- the API server's own endpoints ---------------------------------------------------------------


def _default_route_interface(route_table: str) -> str | None:
    """The interface of the IPv4 default route in ``/proc/net/route`` text."""
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
            return fields[0]
    return None


def _interface_address(name: str) -> str | None:
    """The IPv4 address of an interface (``SIOCGIFADDR``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def advertise_address(bind: str) -> str | None:
    """The address the API server publishes for the ``kubernetes`` Service, or None.

    An unspecified bind address means the default route's interface (``ChooseHostInterface``);
    loopback, link-local and unspecified addresses are not valid endpoints, so they give None.
    """
    try:
        ip = ipaddress.ip_address(bind)
    except ValueError:  # a host name: not an address to publish
        return None
    if ip.is_unspecified:
        try:
            with open("/proc/net/route") as f:
                interface = _default_route_interface(f.read())
        except OSError:
            interface = None
        chosen = _interface_address(interface) if interface else None
        return advertise_address(chosen) if chosen and chosen != bind else None
    if ip.is_loopback or ip.is_link_local or ip.is_multicast:
        return None
    return str(ip)


def master_endpoints(ips: list[str], port: int, current: Obj | None) -> Obj | None:
    """The ``kubernetes`` Endpoints as the lease endpoint reconciler writes them, or None if ``current`` is.

    One subset: every live API server's address (sorted, as ``RepackSubsets`` leaves them) and the port.
    """
    addresses = [{"ip": ip} for ip in sorted(ips)]
    subsets = [{"addresses": addresses, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}] if ips else []
    labels = {SKIP_MIRROR: "true"}
    if current is not None and (current.get("subsets") or []) == subsets and _meta(current).get("labels") == labels:
        return None
    new = copy.deepcopy(current) if current is not None else {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default"}}
    new["metadata"]["labels"] = labels
    _set_or_drop(new, "subsets", subsets)
    return new


def master_slice(ips: list[str], port: int, current: Obj | None) -> Obj | None:
    """The ``kubernetes`` EndpointSlice of the endpoints adapter, or None if ``current`` is it."""
    endpoints = [{"addresses": [ip], "conditions": {"ready": True}} for ip in sorted(ips)] or None
    ports = [{"name": "https", "port": port, "protocol": "TCP"}]
    labels = {SERVICE_NAME: "kubernetes"}
    if current is not None and (current.get("endpoints") or None) == endpoints and current.get("ports") == ports \
            and _meta(current).get("labels") == labels:
        return None
    new = copy.deepcopy(current) if current is not None else {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default"}}
    new["metadata"]["labels"] = labels
    new.update({"addressType": "IPv6" if ips and _is_ipv6(ips[0]) else "IPv4", "endpoints": endpoints, "ports": ports})
    return new


# --- the controller -------------------------------------------------------------------------------


def _relevant(pod: Obj) -> tuple[Any, ...]:
    """What of a pod can change its Services' endpoints (``podEndpointsChanged``)."""
    spec = _spec(pod)
    containers = [(c.get("restartPolicy"), c.get("ports")) for c in
                  (spec.get("containers") or []) + (spec.get("initContainers") or [])]
    return (_meta(pod).get("labels"), pod_ips(pod), pod_ready(pod), _ready_transition(pod),
            bool(_meta(pod).get("deletionTimestamp")), (pod.get("status") or {}).get("phase"),
            spec.get("hostname"), spec.get("subdomain"), spec.get("nodeName"), containers)


class EndpointsController:
    """Endpoints and EndpointSlices of every Service with a selector, and the ``kubernetes`` ones.

    ``apiserver_bind`` and ``apiserver_port`` are the API server's ``--bind`` and ``--port``;
    ``masters`` lists the addresses of every live API server (by default: this one's, if any).
    """

    def __init__(self, client: Client, apiserver_bind: str = "127.0.0.1", apiserver_port: int = 6443,
                 masters: Callable[[], Awaitable[list[str]]] | None = None):
        self.client = client
        self.master_ip = advertise_address(apiserver_bind)
        self.master_port = apiserver_port
        self.masters = masters or self._own_address
        self.services: dict[str, Obj] = {}
        self.pods: dict[str, Obj] = {}
        self.nodes: dict[str, Obj] = {}
        self.endpoint_times = TriggerTimes()
        self.slice_times = TriggerTimes()
        self.endpoints_queue = WorkQueue(self.sync_endpoints, "endpoint-controller")
        self.slices_queue = WorkQueue(self.sync_slices, "endpointslice-controller")
        self.master_queue = WorkQueue(self.sync_master, "endpoint-reconciler")

    async def run(self) -> None:
        if self.master_ip is None:
            log.info("the API server is bound to a loopback address: the kubernetes Service gets no endpoints")
        await self._prime()
        self.master_queue.add(MASTER)
        await asyncio.gather(
            list_and_watch(self.client, path(SERVICES), self._on_service),
            list_and_watch(self.client, path(PODS), self._on_pod),
            list_and_watch(self.client, path(NODES), self._on_node),
            list_and_watch(self.client, path(ENDPOINTS), self._on_endpoints),
            list_and_watch(self.client, path(SLICES), self._on_slice),
            self.endpoints_queue.run(WORKERS), self.slices_queue.run(WORKERS), self.master_queue.run(),
            self._reconcile_masters_periodically())

    async def _own_address(self) -> list[str]:
        return [self.master_ip] if self.master_ip else []

    async def _reconcile_masters_periodically(self) -> None:
        """The reconciler's interval: API servers come and go without any watch event."""
        while True:
            await asyncio.sleep(MASTER_INTERVAL)
            self.master_queue.add(MASTER)

    async def _prime(self) -> None:
        """Load Services, pods and nodes before the first sync (``WaitForCacheSync``): a sync on an
        empty cache would delete every Endpoints.  Endpoints of Services gone while we were away
        are queued for deletion (``checkLeftoverEndpoints``)."""
        while True:
            try:
                listed = [await self.client.get(path(rt)) for rt in (SERVICES, PODS, NODES, ENDPOINTS)]
                break
            except (ApiError, aiohttp.ClientError, OSError) as e:
                log.warning("endpoint controller: cannot load the cluster yet: %s", e)
                await asyncio.sleep(PRIME_RETRY)
        services, pods, nodes, endpoints = (result.get("items", []) for result in listed)
        self.services = {key_of(s): s for s in services}
        self.pods = {key_of(p): p for p in pods}
        self.nodes = {_meta(n)["name"]: n for n in nodes}
        for ep in endpoints:
            if key_of(ep) not in self.services and LEADER_ANNOTATION not in (_meta(ep).get("annotations") or {}):
                self.endpoints_queue.add(key_of(ep))

    # --- events: only keys ---------------------------------------------------------------------

    def _enqueue(self, key: str) -> None:
        self.endpoints_queue.add(key)
        self.slices_queue.add(key)

    async def _on_service(self, kind: str, service: Obj) -> None:
        key = key_of(service)
        if kind == "DELETED":
            self.services.pop(key, None)
        else:
            self.services[key] = service
        self._enqueue(key)

    async def _on_pod(self, kind: str, pod: Obj) -> None:
        key = key_of(pod)
        old = self.pods.pop(key, None) if kind == "DELETED" else self.pods.get(key)
        if kind != "DELETED":
            self.pods[key] = pod
            if old is not None and _relevant(old) == _relevant(pod):
                return
        for service_key in self._services_of(pod) | (self._services_of(old) if old is not None else set()):
            self._enqueue(service_key)

    def _services_of(self, pod: Obj) -> set[str]:
        return {key for key, service in self.services.items() if selects(service, pod)}

    async def _on_node(self, kind: str, node: Obj) -> None:
        name = _meta(node)["name"]
        old = self.nodes.pop(name, None) if kind == "DELETED" else self.nodes.get(name)
        if kind != "DELETED":
            self.nodes[name] = node
        zone = ((_meta(old).get("labels") or {}).get(ZONE) if old is not None else None,
                (_meta(node).get("labels") or {}).get(ZONE))
        if kind == "MODIFIED" and zone[0] == zone[1]:
            return
        for pod in self.pods.values():
            if _spec(pod).get("nodeName") == name:
                for service_key in self._services_of(pod):
                    self.slices_queue.add(service_key)

    async def _on_endpoints(self, kind: str, endpoints: Obj) -> None:
        key = key_of(endpoints)
        if key == MASTER:
            self.master_queue.add(MASTER)
        elif kind == "DELETED":
            self.endpoints_queue.add(key)

    async def _on_slice(self, kind: str, endpoint_slice: Obj) -> None:
        labels = _meta(endpoint_slice).get("labels") or {}
        namespace = _meta(endpoint_slice).get("namespace", "")
        if labels.get(MANAGED_BY) == CONTROLLER_NAME and labels.get(SERVICE_NAME):
            self.slices_queue.add(f"{namespace}/{labels[SERVICE_NAME]}")
        elif key_of(endpoint_slice) == MASTER:
            self.master_queue.add(MASTER)

    # --- syncs ---------------------------------------------------------------------------------

    def _selected(self, service: Obj) -> list[Obj]:
        return [pod for pod in self.pods.values() if selects(service, pod)]

    async def _get(self, url: str) -> Obj | None:
        obj: Obj | None = await self.client.get_or_none(url)
        return obj

    async def _delete(self, url: str) -> None:
        try:
            await self.client.delete(url)
        except ApiError as e:
            if e.code != 404:
                raise

    @staticmethod
    def _managed(service: Obj | None) -> bool:
        """Services without a selector, and ExternalName ones, get no endpoints from the controllers."""
        return service is not None and _spec(service).get("type") != "ExternalName" \
            and _spec(service).get("selector") is not None

    async def sync_endpoints(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        service = self.services.get(key)
        if service is None:
            await self._delete(path(ENDPOINTS, namespace, name))
            self.endpoint_times.forget(key)
            return
        if not self._managed(service):
            return
        pods = self._selected(service)
        trigger = self.endpoint_times.compute(service, pods)
        current = await self._get(path(ENDPOINTS, namespace, name))
        new = desired_endpoints(service, endpoint_subsets(service, pods), current, trigger)
        if new is None:
            return
        try:
            if current is None:
                await self.client.create(path(ENDPOINTS, namespace), new)
            else:
                await self.client.update(path(ENDPOINTS, namespace, name), new)
        except ApiError as e:
            if not (current is None and e.code == 403):  # the namespace is terminating
                raise

    async def sync_slices(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        selector = {"labelSelector": f"{SERVICE_NAME}={name},{MANAGED_BY}={CONTROLLER_NAME}"}
        service = self.services.get(key)
        if service is None:
            self.slice_times.forget(key)
            existing = (await self.client.get(path(SLICES, namespace), selector))["items"]
            for endpoint_slice in existing:
                await self._delete(path(SLICES, namespace, _meta(endpoint_slice)["name"]))
            return
        if not self._managed(service):
            return
        pods = self._selected(service)
        trigger = self.slice_times.compute(service, pods)
        existing = (await self.client.get(path(SLICES, namespace), selector))["items"]
        await self._apply(service, plan_slices(service, pods, self.nodes, existing), trigger)

    async def _apply(self, service: Obj, plan: SlicePlan, trigger: str) -> None:
        """``finalize``: creates (not while the Service is being deleted), updates, deletes."""
        namespace = _meta(service).get("namespace", "")
        if not _meta(service).get("deletionTimestamp"):
            for endpoint_slice in plan.create:
                try:
                    await self.client.create(path(SLICES, namespace), with_trigger_time(endpoint_slice, trigger))
                except ApiError as e:
                    if e.code == 403:  # the namespace is terminating
                        return
                    raise
        for endpoint_slice in plan.update:
            await self.client.update(path(SLICES, namespace, _meta(endpoint_slice)["name"]),
                                     with_trigger_time(endpoint_slice, trigger))
        for endpoint_slice in plan.delete:
            await self._delete(path(SLICES, namespace, _meta(endpoint_slice)["name"]))

    async def sync_master(self, key: str) -> None:
        """The API server's reconciler: the ``kubernetes`` Endpoints and EndpointSlice."""
        current = await self._get(path(ENDPOINTS, "default", "kubernetes"))
        ips = await self.masters()
        endpoints = master_endpoints(ips, self.master_port, current)
        if endpoints is not None:
            await self._write(path(ENDPOINTS, "default"), "kubernetes", endpoints, current is None)
        current = await self._get(path(SLICES, "default", "kubernetes"))
        endpoint_slice = master_slice(ips, self.master_port, current)
        if endpoint_slice is not None:
            await self._write(path(SLICES, "default"), "kubernetes", endpoint_slice, current is None)

    async def _write(self, collection: str, name: str, obj: Obj, create: bool) -> None:
        if create:
            await self.client.create(collection, obj)
        else:
            await self.client.update(f"{collection}/{name}", obj)
