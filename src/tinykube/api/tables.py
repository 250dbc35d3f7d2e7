"""Render objects as ``meta.k8s.io/v1`` Tables, cell for cell as kube-apiserver's printers do.

``kubectl get`` asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the cells
verbatim, so every column, every cell string and every quirk here follows
``pkg/printers/internalversion/printers.go`` (Kubernetes 1.32).  The server always prints the
wide cells (``GenerateOptions{Wide: true}``); kubectl hides priority-1 columns unless ``-o wide``.
Column descriptions are upstream's ``SwaggerDoc()`` texts, read from the bundled OpenAPI schemas.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tinykube.api import schemas
from tinykube.api.errors import bad_request, format_value
from tinykube.api import conversion
from tinykube.api.registry import ResourceType
from tinykube.api.selectors import pod_ip

Obj = dict[str, Any]

# --- durations and timestamps (apimachinery/pkg/util/duration) ------------------------------


def human_duration(seconds: float) -> str:
    """``duration.HumanDuration``: about two significant figures, ``<invalid>`` when far negative."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes, hours = secs // 60, secs // 3600
    if minutes < 10:
        return _two_units(minutes, "m", secs % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return _two_units(days, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return _two_units(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _two_units(major: int, major_unit: str, minor: int, minor_unit: str) -> str:
    return f"{major}{major_unit}{minor}{minor_unit}" if minor else f"{major}{major_unit}"


def _parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 ``Time``/``MicroTime``; missing or empty is Go's zero time (``None``)."""
    if not value:
        return None
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)  # nanosecond precision is more than datetime holds
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _utc(now: datetime) -> datetime:
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def _since(value: str | None, now: datetime) -> str:
    """``translateTimestampSince``: the age of a timestamp, ``<unknown>`` when it is unset."""
    then = _parse_time(value)
    if then is None:
        return "<unknown>"
    return human_duration((_utc(now) - then).total_seconds())


def _age(obj: Obj, now: datetime) -> str:
    return _since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _name(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("name", "")


# --- column definitions ----------------------------------------------------------------------

_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_CORE = "io.k8s.api.core.v1."


@dataclass(frozen=True)
class _Column:
    """One ``TableColumnDefinition``; ``doc`` is literal text or a ``(definition, property)`` ref."""

    name: str
    doc: str | tuple[str, str]
    type: str = "string"
    priority: int = 0
    format: str = ""

    def definition(self) -> dict[str, Any]:
        description = self.doc if isinstance(self.doc, str) else _swagger_doc(*self.doc)
        return {"name": self.name, "type": self.type, "format": self.format, "description": description,
                "priority": self.priority}


@functools.cache
def _swagger_doc(definition: str, prop: str) -> str:
    """``X{}.SwaggerDoc()[prop]``: the field's documentation, as in the OpenAPI schema."""
    return schemas.definitions()[definition]["properties"][prop].get("description", "")


def _core(kind: str, prop: str) -> tuple[str, str]:
    return (_CORE + kind, prop)


NAME = _Column("Name", (_META, "name"), format="name")
AGE = _Column("Age", (_META, "creationTimestamp"))


def _wide(name: str, doc: str | tuple[str, str]) -> _Column:
    return _Column(name, doc, priority=1)


_POD_COLUMNS = (
    NAME,
    _Column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _Column("Status", "The aggregate status of the containers in this pod."),
    _Column("Restarts", "The number of times the containers in this pod have been restarted and when the last "
                        "container in this pod has restarted."),
    AGE,
    _wide("IP", _core("PodStatus", "podIP")),
    _wide("Node", _core("PodSpec", "nodeName")),
    _wide("Nominated Node", _core("PodStatus", "nominatedNodeName")),
    _wide("Readiness Gates", _core("PodSpec", "readinessGates")),
)
_EVENT_COLUMNS = (
    _Column("Last Seen", _core("Event", "lastTimestamp")),
    _Column("Type", _core("Event", "type")),
    _Column("Reason", _core("Event", "reason")),
    _Column("Object", _core("Event", "involvedObject")),
    _wide("Subobject", _core("ObjectReference", "fieldPath")),
    _wide("Source", _core("Event", "source")),
    _Column("Message", _core("Event", "message")),
    _wide("First Seen", _core("Event", "firstTimestamp")),
    _wide("Count", _core("Event", "count")),
    _Column("Name", (_META, "name"), priority=1, format="name"),
)
_SERVICE_COLUMNS = (
    NAME,
    _Column("Type", _core("ServiceSpec", "type")),
    _Column("Cluster-IP", _core("ServiceSpec", "clusterIP")),
    _Column("External-IP", _core("ServiceSpec", "externalIPs")),
    _Column("Port(s)", _core("ServiceSpec", "ports")),
    AGE,
    _wide("Selector", _core("ServiceSpec", "selector")),
)
_PVC_COLUMNS = (
    NAME,
    _Column("Status", _core("PersistentVolumeClaimStatus", "phase")),
    _Column("Volume", _core("PersistentVolumeClaimSpec", "volumeName")),
    _Column("Capacity", _core("PersistentVolumeClaimStatus", "capacity")),
    _Column("Access Modes", _core("PersistentVolumeClaimStatus", "accessModes")),
    _Column("StorageClass", "StorageClass of the pvc"),
    _Column("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
    AGE,
    _wide("VolumeMode", _core("PersistentVolumeClaimSpec", "volumeMode")),
)
_PV_COLUMNS = (
    NAME,
    _Column("Capacity", _core("PersistentVolumeSpec", "capacity")),
    _Column("Access Modes", _core("PersistentVolumeSpec", "accessModes")),
    _Column("Reclaim Policy", _core("PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
    _Column("Status", _core("PersistentVolumeStatus", "phase")),
    _Column("Claim", _core("PersistentVolumeSpec", "claimRef")),
    _Column("StorageClass", "StorageClass of the pv"),
    _Column("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
    _Column("Reason", _core("PersistentVolumeStatus", "reason")),
    AGE,
    _wide("VolumeMode", _core("PersistentVolumeSpec", "volumeMode")),
)
_STORAGE = "io.k8s.api.storage.v1.StorageClass"
_STORAGE_CLASS_COLUMNS = (
    NAME,
    _Column("Provisioner", (_STORAGE, "provisioner")),
    _Column("ReclaimPolicy", (_STORAGE, "reclaimPolicy")),
    _Column("VolumeBindingMode", (_STORAGE, "volumeBindingMode")),
    _Column("AllowVolumeExpansion", (_STORAGE, "allowVolumeExpansion")),
    AGE,
)
_NODE_COLUMNS = (
    NAME,
    _Column("Status", "The status of the node"),
    _Column("Roles", "The roles of the node"),
    AGE,
    _Column("Version", _core("NodeSystemInfo", "kubeletVersion")),
    _wide("Internal-IP", _core("NodeStatus", "addresses")),
    _wide("External-IP", _core("NodeStatus", "addresses")),
    _wide("OS-Image", _core("NodeSystemInfo", "osImage")),
    _wide("Kernel-Version", _core("NodeSystemInfo", "kernelVersion")),
    _wide("Container-Runtime", _core("NodeSystemInfo", "containerRuntimeVersion")),
)
_SLICE = "io.k8s.api.discovery.v1.EndpointSlice"
_ENDPOINT_SLICE_COLUMNS = (
    _Column("AddressType", (_SLICE, "addressType")),
    _Column("Ports", (_SLICE, "ports")),
    _Column("Endpoints", (_SLICE, "endpoints")),
)
_RESOURCE_QUOTA_COLUMNS = (
    NAME,
    AGE,
    _Column("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
    _Column("Limit", "Limits control the maximum amount of cpu/memory that a container may use independent of "
                     "contention on the node."),
)
# rest.NewDefaultTableConvertor, for kinds without a printer.
_DEFAULT_COLUMNS = (NAME, _Column("Created At", (_META, "creationTimestamp"), type="date"))

# --- pods ------------------------------------------------------------------------------------


@dataclass
class _PodTally:
    """The running totals ``printPod`` keeps while it walks the container statuses."""

    reason: str
    ready: int = 0
    restarts: int = 0
    last_restart: datetime | None = None
    sidecar_restarts: int = 0
    sidecar_last_restart: datetime | None = None
    initializing: bool = False


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is not None and (current is None or current < candidate):
        return candidate
    return current


def _last_finished(status: Obj) -> datetime | None:
    terminated = (status.get("lastState") or {}).get("terminated")
    return _parse_time(terminated.get("finishedAt")) if terminated is not None else None


def _exit_reason(terminated: Obj, prefix: str) -> str:
    """``Signal:N``/``ExitCode:N`` for a termination that carries no reason."""
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _init_reason(state: Obj, index: int, total: int) -> str:
    terminated, waiting = state.get("terminated"), state.get("waiting") or {}
    if terminated is not None:
        return "Init:" + terminated["reason"] if terminated.get("reason") else _exit_reason(terminated, "Init:")
    if waiting.get("reason") and waiting["reason"] != "PodInitializing":
        return "Init:" + waiting["reason"]
    return f"Init:{index}/{total}"


def _sidecars(pod: Obj) -> set[str]:
    """Names of restartable (``restartPolicy: Always``) init containers."""
    return {c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []
            if c.get("restartPolicy") == "Always"}


def _tally_init_containers(pod: Obj, tally: _PodTally) -> None:
    """Walk init containers up to the first one still blocking startup, as ``printPod`` does."""
    sidecars = _sidecars(pod)
    total = len((pod.get("spec") or {}).get("initContainers") or [])
    for index, status in enumerate((pod.get("status") or {}).get("initContainerStatuses") or []):
        restarts, finished = status.get("restartCount", 0), _last_finished(status)
        tally.restarts += restarts
        tally.last_restart = _later(tally.last_restart, finished)
        sidecar = status.get("name") in sidecars
        if sidecar:
            tally.sidecar_restarts += restarts
            tally.sidecar_last_restart = _later(tally.sidecar_last_restart, finished)
        state = status.get("state") or {}
        terminated = state.get("terminated")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if sidecar and status.get("started"):
            tally.ready += 1 if status.get("ready") else 0
            continue
        tally.reason = _init_reason(state, index, total)
        tally.initializing = True
        return


def _container_reason(state: Obj) -> str:
    """The reason a container shows, or ``""`` when it is running (or has no state)."""
    waiting, terminated = state.get("waiting") or {}, state.get("terminated")
    if waiting.get("reason"):
        return waiting["reason"]
    if terminated is not None:
        return terminated.get("reason") or _exit_reason(terminated, "")
    return ""


def _condition_true(pod: Obj, kind: str) -> bool:
    """Whether the first condition of type ``kind`` is ``True``."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return False


def _tally_containers(pod: Obj, tally: _PodTally) -> None:
    """Count regular containers (last to first, so the first container's reason wins)."""
    tally.restarts, tally.last_restart = tally.sidecar_restarts, tally.sidecar_last_restart
    has_running = False
    for status in reversed((pod.get("status") or {}).get("containerStatuses") or []):
        tally.restarts += status.get("restartCount", 0)
        tally.last_restart = _later(tally.last_restart, _last_finished(status))
        state = status.get("state") or {}
        if reason := _container_reason(state):
            tally.reason = reason
        elif status.get("ready") and state.get("running") is not None:
            has_running = True
            tally.ready += 1
    if tally.reason == "Completed" and has_running:
        tally.reason = "Running" if _condition_true(pod, "Ready") else "NotReady"


def _pod_reason_start(pod: Obj) -> str:
    """The phase, overridden by ``status.reason`` and by a scheduling gate."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase", "")
    gated = any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
                for c in status.get("conditions") or [])
    return "SchedulingGated" if gated else reason


def _pod_tally(pod: Obj) -> _PodTally:
    tally = _PodTally(_pod_reason_start(pod))
    _tally_init_containers(pod, tally)
    if not tally.initializing or _condition_true(pod, "Initialized"):
        _tally_containers(pod, tally)
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            tally.reason = "Unknown"
        elif status.get("phase") not in ("Succeeded", "Failed"):
            tally.reason = "Terminating"
    return tally


def _readiness_gates(pod: Obj) -> str:
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    if not gates:
        return "<none>"
    conditions = (pod.get("status") or {}).get("conditions") or []
    passed = sum(1 for g in gates
                 if next((c.get("status") == "True" for c in conditions
                          if c.get("type") == g.get("conditionType")), False))
    return f"{passed}/{len(gates)}"


def _pod_cells(pod: Obj, now: datetime) -> list[Any]:
    tally = _pod_tally(pod)
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    restarts = str(tally.restarts)
    if tally.restarts and tally.last_restart is not None:
        restarts += f" ({human_duration((_utc(now) - tally.last_restart).total_seconds())} ago)"
    total = len(spec.get("containers") or []) + len(_sidecars(pod))
    return [_name(pod), f"{tally.ready}/{total}", tally.reason, restarts, _age(pod, now),
            pod_ip(pod) or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", _readiness_gates(pod)]


_COMPLETED = {"Succeeded": "The pod has completed successfully.", "Failed": "The pod failed."}


def _pod_conditions(pod: Obj) -> list[Obj]:
    """``podSuccessConditions``/``podFailedConditions``: terminal pods are marked Completed."""
    phase = (pod.get("status") or {}).get("phase")
    if phase not in _COMPLETED:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": _COMPLETED[phase]}]


# --- events ----------------------------------------------------------------------------------

def _event_source(event: Obj) -> str:
    """``formatEventSource``: component (or reporting controller), then ``, host`` when known."""
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    host = source.get("host") or event.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


def _event_times(event: Obj, now: datetime) -> tuple[str, str, int]:
    """Last seen, first seen and count; a series (new API) overrides the deprecated fields."""
    first = _since(event.get("firstTimestamp") or event.get("eventTime"), now)
    last = _since(event["lastTimestamp"], now) if event.get("lastTimestamp") else first
    series, count = event.get("series"), event.get("count") or 0
    if series is not None:
        return _since(series.get("lastObservedTime"), now), first, series.get("count", 0)
    return last, first, count or 1


def _event_cells(event: Obj, now: datetime) -> list[Any]:
    last, first, count = _event_times(event, now)
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [last, event.get("type", ""), event.get("reason", ""), target, involved.get("fieldPath", ""),
            _event_source(event), (event.get("message") or "").strip(), first, count, _name(event)]


# --- services, endpoints, nodes --------------------------------------------------------------


def _format_labels(labels: dict[str, str] | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` pairs, or ``<none>``."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def _load_balancer_ips(service: Obj) -> str:
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ",".join(sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")}))


def _external_ip(service: Obj) -> str:
    """``getServiceExternalIP`` with ``wide`` set, as the server always prints."""
    spec = service.get("spec") or {}
    external, kind = spec.get("externalIPs") or [], spec.get("type")
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        balancer = _load_balancer_ips(service)
        return ",".join(([balancer] if balancer else []) + external) or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _service_ports(ports: list[Obj]) -> str:
    pieces = []
    for port in ports:
        node_port = f":{port['nodePort']}" if port.get("nodePort") else ""
        pieces.append(f"{port.get('port', 0)}{node_port}/{port.get('protocol', 'TCP')}")
    return ",".join(pieces) or "<none>"


def _service_cells(service: Obj, now: datetime) -> list[Any]:
    spec = service.get("spec") or {}
    cluster_ip = (spec.get("clusterIPs") or ["<none>"])[0]
    return [_name(service), spec.get("type", ""), cluster_ip, _external_ip(service),
            _service_ports(spec.get("ports") or []), _age(service, now), _format_labels(spec.get("selector"))]


def _host_port(ip: str, port: int) -> str:
    """``net.JoinHostPort``: IPv6 hosts are bracketed."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _endpoint_addresses(endpoints: Obj) -> tuple[list[str], int]:
    """Every ``ip`` or ``ip:port`` of every subset, and how many there are."""
    shown: list[str] = []
    for subset in endpoints.get("subsets") or []:
        ips = [a.get("ip", "") for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        shown += ips if not ports else [_host_port(ip, p.get("port", 0)) for p in ports for ip in ips]
    return shown, len(shown)


def _format_endpoints(endpoints: Obj) -> str:
    """``formatEndpoints``: the first three addresses and ``+ N more...``; ``<none>`` without subsets."""
    if not endpoints.get("subsets"):
        return "<none>"
    shown, count = _endpoint_addresses(endpoints)
    text = ",".join(shown[:3])
    return f"{text} + {count - 3} more..." if count > 3 else text


def _list_with_more(shown: list[str], limit: int = 3) -> str:
    """``listWithMoreString``: the first three, ``+ N more...`` after them, ``<unset>`` for none."""
    text = ",".join(shown[:limit])
    if len(shown) > limit:
        return f"{text} + {len(shown) - limit} more..."
    return text or "<unset>"


def _discovery_port(port: Obj) -> str:
    """A port's number; its name when the number is unset (``*`` when both are: all ports)."""
    if port.get("port") is not None:
        return str(port["port"])
    return "*" if port.get("name") is None else str(port["name"])


def _endpoint_slice_cells(endpoint_slice: Obj) -> list[Any]:
    """``printEndpointSlice``: address type, ``formatDiscoveryPorts``, ``formatDiscoveryEndpoints``."""
    ports = [_discovery_port(p) for p in endpoint_slice.get("ports") or []]
    addresses = [a for e in endpoint_slice.get("endpoints") or [] for a in e.get("addresses") or []]
    return [endpoint_slice.get("addressType", ""), _list_with_more(ports), _list_with_more(addresses)]


def _node_status(node: Obj) -> str:
    ready = next((c for c in reversed((node.get("status") or {}).get("conditions") or [])
                  if c.get("type") == "Ready"), None)
    status = ["Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"]
    if (node.get("spec") or {}).get("unschedulable"):
        status.append("SchedulingDisabled")
    return ",".join(status)


def _node_roles(node: Obj) -> str:
    """``findNodeRoles``: ``node-role.kubernetes.io/<role>`` keys and ``kubernetes.io/role`` values."""
    roles = set()
    for key, value in ((node.get("metadata") or {}).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key != "node-role.kubernetes.io/":
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(node: Obj, kind: str) -> str:
    addresses = (node.get("status") or {}).get("addresses") or []
    return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")


def _node_cells(node: Obj, now: datetime) -> list[Any]:
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return [_name(node), _node_status(node), _node_roles(node), _age(node, now), info.get("kubeletVersion", ""),
            _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


# --- volumes ---------------------------------------------------------------------------------

_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))
_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"


def _access_modes(modes: list[str] | None) -> str:
    """``GetAccessModesAsString``: always in the order RWO, ROX, RWX, RWOP."""
    return ",".join(short for mode, short in _ACCESS_MODES if mode in (modes or []))


def _storage_class(obj: Obj) -> str:
    """The beta annotation wins over ``spec.storageClassName``."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if _BETA_STORAGE_CLASS in annotations:
        return annotations[_BETA_STORAGE_CLASS]
    return (obj.get("spec") or {}).get("storageClassName") or ""


def _phase(obj: Obj) -> str:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    return (obj.get("status") or {}).get("phase", "")


def _storage(resources: Obj | None) -> str:
    """The ``storage`` quantity as stored (already canonical); a missing one is Go's zero ``0``."""
    return str((resources or {}).get("storage", "0"))


def _pv_cells(pv: Obj, now: datetime) -> list[Any]:
    spec = pv.get("spec") or {}
    claim = spec.get("claimRef")
    claim_text = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim is not None else ""
    return [_name(pv), _storage(spec.get("capacity")), _access_modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy", ""), _phase(pv), claim_text, _storage_class(pv),
            spec.get("volumeAttributesClassName") or "<unset>", (pv.get("status") or {}).get("reason", ""),
            _age(pv, now), spec.get("volumeMode") or "<unset>"]


def _pvc_cells(pvc: Obj, now: datetime) -> list[Any]:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    bound = bool(spec.get("volumeName"))
    capacity = _storage(status.get("capacity")) if bound else ""
    modes = _access_modes(status.get("accessModes")) if bound else ""
    return [_name(pvc), _phase(pvc), spec.get("volumeName", ""), capacity, modes, _storage_class(pvc),
            spec.get("volumeAttributesClassName") or "<unset>", _age(pvc, now), spec.get("volumeMode") or "<unset>"]


_DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                              "storageclass.beta.kubernetes.io/is-default-class")


def _resource_quota_cells(quota: Obj, now: datetime) -> list[Any]:
    """``printResourceQuota``: ``name: used/hard`` of every hard resource, ``limits.*`` in the second column."""
    status = quota.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        (limits if name.startswith("limits.") else requests).append(f"{name}: {used.get(name, '0')}/{hard[name]}")
    return [_name(quota), _age(quota, now), ", ".join(requests), ", ".join(limits)]


def _storage_class_cells(sc: Obj, now: datetime) -> list[Any]:
    """``printStorageClass``: `` (default)`` after a default class's name; unset policies print their defaults."""
    annotations = (sc.get("metadata") or {}).get("annotations") or {}
    name = _name(sc)
    if any(annotations.get(key) == "true" for key in _DEFAULT_CLASS_ANNOTATIONS):
        name += " (default)"
    return [name, sc.get("provisioner", ""), sc.get("reclaimPolicy") or "Delete",
            sc.get("volumeBindingMode") or "Immediate", bool(sc.get("allowVolumeExpansion")), _age(sc, now)]


# --- the printer table -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Printer:
    """A column set and the function that turns one object into its cells."""

    columns: tuple[_Column, ...]
    cells: Callable[[Obj, datetime], list[Any]]
    conditions: Callable[[Obj], list[Obj]] = lambda obj: []


_CSR_SPEC = "io.k8s.api.certificates.v1.CertificateSigningRequestSpec"
_CSR_COLUMNS = (NAME, AGE, _Column("SignerName", (_CSR_SPEC, "signerName")), _Column("Requestor", (_CSR_SPEC, "request")),
                _Column("RequestedDuration", (_CSR_SPEC, "expirationSeconds")),
                _Column("Condition", ("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions")))


def _csr_condition(csr: Obj) -> str:
    """extractCSRStatus: Denied, Approved or Pending, then ``,Failed`` and ``,Issued``."""
    status = csr.get("status") or {}
    kinds = {c.get("type") for c in status.get("conditions") or []}
    text = "Denied" if "Denied" in kinds else "Approved" if "Approved" in kinds else "Pending"
    return text + (",Failed" if "Failed" in kinds else "") + (",Issued" if status.get("certificate") else "")


def _csr_cells(csr: Obj, now: datetime) -> list[Any]:
    spec = csr.get("spec") or {}
    seconds = spec.get("expirationSeconds")
    return [_name(csr), _age(csr, now), spec.get("signerName") or "<none>", spec.get("username", ""),
            human_duration(seconds) if seconds is not None else "<none>", _csr_condition(csr)]


def _simple(*columns: _Column) -> Callable[[Callable[[Obj], list[Any]]], _Printer]:
    """A printer for kinds whose row is ``name, <middle cells>, age``."""
    def build(middle: Callable[[Obj], list[Any]]) -> _Printer:
        return _Printer((NAME, *columns, AGE), lambda o, now: [_name(o), *middle(o), _age(o, now)])
    return build


def _count(obj: Obj, *fields: str) -> int:
    return sum(len(obj.get(f) or {}) for f in fields)


_PRINTERS: dict[tuple[str, str], _Printer] = {
    ("", "pods"): _Printer(_POD_COLUMNS, _pod_cells, _pod_conditions),
    ("", "events"): _Printer(_EVENT_COLUMNS, _event_cells),
    ("events.k8s.io", "events"): _Printer(_EVENT_COLUMNS, lambda e, now: _event_cells(conversion.core_event(e), now)),
    ("", "namespaces"): _simple(_Column("Status", "The status of the namespace"))(
        lambda ns: [(ns.get("status") or {}).get("phase", "")]),
    ("", "configmaps"): _simple(_Column("Data", _core("ConfigMap", "data")))(
        lambda cm: [_count(cm, "data", "binaryData")]),
    ("", "secrets"): _simple(_Column("Type", _core("Secret", "type")), _Column("Data", _core("Secret", "data")))(
        lambda s: [s.get("type", ""), _count(s, "data")]),
    ("", "serviceaccounts"): _simple(_Column("Secrets", _core("ServiceAccount", "secrets")))(
        lambda sa: [_count(sa, "secrets")]),
    ("", "services"): _Printer(_SERVICE_COLUMNS, _service_cells),
    ("", "endpoints"): _simple(_Column("Endpoints", _core("Endpoints", "subsets")))(
        lambda ep: [_format_endpoints(ep)]),
    ("", "persistentvolumeclaims"): _Printer(_PVC_COLUMNS, _pvc_cells),
    ("", "persistentvolumes"): _Printer(_PV_COLUMNS, _pv_cells),
    ("", "nodes"): _Printer(_NODE_COLUMNS, _node_cells),
    ("storage.k8s.io", "storageclasses"): _Printer(_STORAGE_CLASS_COLUMNS, _storage_class_cells),
    ("", "resourcequotas"): _Printer(_RESOURCE_QUOTA_COLUMNS, _resource_quota_cells),
    ("discovery.k8s.io", "endpointslices"): _simple(*_ENDPOINT_SLICE_COLUMNS)(_endpoint_slice_cells),
    ("certificates.k8s.io", "certificatesigningrequests"): _Printer(_CSR_COLUMNS, _csr_cells),
    ("coordination.k8s.io", "leases"): _simple(
        _Column("Holder", ("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")))(
        lambda lease: [(lease.get("spec") or {}).get("holderIdentity") or ""]),
}

_DEFAULT_PRINTER = _Printer(_DEFAULT_COLUMNS, lambda o, now: [
    _name(o), _rfc3339((o.get("metadata") or {}).get("creationTimestamp"))])


def _rfc3339(value: str | None) -> str:
    """``Time.UTC().Format(time.RFC3339)``; Go's zero time when unset."""
    then = _parse_time(value)
    return then.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if then else "0001-01-01T00:00:00Z"


def _printer(rt: ResourceType) -> _Printer:
    return _PRINTERS.get((rt.group, rt.resource), _DEFAULT_PRINTER)


def column_definitions(rt: ResourceType) -> list[dict[str, Any]]:
    """The ``columnDefinitions`` of ``rt``'s Table, wide columns included (priority 1)."""
    return [c.definition() for c in _printer(rt).columns]


# --- rows and tables -------------------------------------------------------------------------

INCLUDE_OBJECT = ("None", "Metadata", "Object")


def _row_object(rt: ResourceType, obj: Obj, include_object: str) -> Obj:
    if include_object == "Object":
        return {"kind": rt.kind, "apiVersion": rt.group_version, **obj}
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def row(rt: ResourceType, obj: Obj, now: datetime, include_object: str = "Metadata") -> dict[str, Any]:
    """One ``TableRow``; ``include_object`` is the ``includeObject`` query value (empty = Metadata)."""
    include_object = include_object or "Metadata"
    if include_object not in INCLUDE_OBJECT:
        raise bad_request(f"unrecognized includeObject value: {format_value(include_object)}")
    printer = _printer(rt)
    result: dict[str, Any] = {"cells": printer.cells(obj, now)}
    if conditions := printer.conditions(obj):
        result["conditions"] = conditions
    if include_object != "None":
        result["object"] = _row_object(rt, obj, include_object)
    return result


def table(rt: ResourceType, objs: list[Obj], now: datetime, include_object: str = "Metadata",
          resource_version: str = "", continue_token: str = "", remaining: int | None = None,
          no_headers: bool = False) -> dict[str, Any]:
    """The whole ``Table``; ``no_headers`` (``TableOptions.NoHeaders``, set by watch after its first
    event) leaves ``columnDefinitions`` null as upstream does."""
    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": None if no_headers else column_definitions(rt),
            "rows": [row(rt, o, now, include_object) for o in objs]}
