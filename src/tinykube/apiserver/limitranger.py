"""LimitRanger admission: a namespace's LimitRanges default and bound what pods and claims ask for.

A port of ``plugin/pkg/admission/limitranger/admission.go`` (v1.32).  It has two halves, run at the
two admission stages of kube-apiserver:

- :meth:`LimitRanger.mutate` (``Admit``), before validation, on pod create: every container and init
  container gets the ``default`` limits and ``defaultRequest`` requests of each ``Container`` item
  it does not set, and the pod is annotated ``kubernetes.io/limit-ranger: LimitRanger plugin set:
  cpu, memory request for container app; ...``.  The pod's ``status.qosClass`` is computed again,
  since upstream computes it (``PrepareForCreate``) only after mutating admission;
- :meth:`LimitRanger.validate` (``Validate``), after validation: ``min``, ``max`` and
  ``maxLimitRequestRatio`` of ``Container`` and ``Pod`` items on pod create, ``min``/``max``
  storage of ``PersistentVolumeClaim`` items on claim create and update, refused with 403
  ``pods "x" is forbidden: maximum cpu usage per Container is 1, but limit is 2``.

A request's own defaults (a limit without a request is also the request) were already applied by
defaulting, as upstream applies them on decode.  Upstream skips writes to subresources; the
admission hook cannot see the subresource, so claim updates that leave the spec unchanged (status
and metadata writes) are skipped instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tinykube.api.defaults import fill_missing, qos_class
from tinykube.api.errors import forbidden
from tinykube.api.quantity import milli_value, value
from tinykube.api.registry import ResourceType, lookup
from tinykube.api.resourcelist import Amount, ResourceList, aggregate, parse_list

Obj = dict[str, Any]
ListInNamespace = Callable[[ResourceType, str], Awaitable[list[Obj]]]
"""(resource, namespace) → the objects of that resource in the namespace."""

LIMIT_RANGES = lookup("", "v1", "limitranges")
assert LIMIT_RANGES is not None

ANNOTATION = "kubernetes.io/limit-ranger"
MAX_MILLI_VALUE = (2**63 - 1) // 1000  # resource.MaxMilliValue


# --- defaults ----------------------------------------------------------------------------------


def container_defaults(limit_range: Obj) -> tuple[Obj, Obj]:
    """``defaultContainerResourceRequirements``: (requests, limits) of the Container items."""
    requests: Obj = {}
    limits: Obj = {}
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") == "Container":
            requests.update(item.get("defaultRequest") or {})
            limits.update(item.get("default") or {})
    return requests, limits


def _merge_container(container: Obj, requests: Obj, limits: Obj, prefix: str) -> list[str]:
    """``mergeContainerResources``: what was set, as annotation phrases."""
    resources = container.get("resources")
    if not isinstance(resources, dict):
        resources = container["resources"] = {}
    set_limits = fill_missing(resources, "limits", limits)
    set_requests = fill_missing(resources, "requests", requests)
    phrases = []
    if set_requests:
        phrases.append(f"{', '.join(set_requests)} request for {prefix} {container.get('name', '')}")
    if set_limits:
        phrases.append(f"{', '.join(set_limits)} limit for {prefix} {container.get('name', '')}")
    return phrases


def apply_defaults(limit_range: Obj, pod: Obj) -> bool:
    """``PodMutateLimitFunc``: default every container from one LimitRange; whether anything was set."""
    requests, limits = container_defaults(limit_range)
    spec = pod.setdefault("spec", {})
    phrases: list[str] = []
    for key, prefix in (("containers", "container"), ("initContainers", "init container")):
        for container in spec.get(key) or []:
            phrases += _merge_container(container, requests, limits, prefix)
    if phrases:
        annotations = pod.setdefault("metadata", {}).get("annotations") or {}
        pod["metadata"]["annotations"] = {**annotations, ANNOTATION: "LimitRanger plugin set: " + "; ".join(phrases)}
    return bool(phrases)


# --- constraints -------------------------------------------------------------------------------


def _comparable(*amounts: Amount | None) -> list[int]:
    """``requestLimitEnforcedValues``: milli-units when none overflows them, else whole units (0 when unset)."""
    values = [value(a.value) if a else 0 for a in amounts]
    if all(v <= MAX_MILLI_VALUE for v in values):
        return [milli_value(a.value) if a else 0 for a in amounts]
    return values


def min_violation(kind: str, name: str, enforced: Amount, requests: ResourceList, limits: ResourceList) -> str:
    """``minConstraint``: the request (and a limit, when set) at least ``enforced``."""
    req, lim = requests.get(name), limits.get(name)
    observed_req, observed_lim, bound = _comparable(req, lim, enforced)
    if req is None:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if observed_req < bound:
        return f"minimum {name} usage per {kind} is {enforced}, but request is {req}"
    if lim is not None and observed_lim < bound:
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
    return ""


def max_violation(kind: str, name: str, enforced: Amount, requests: ResourceList, limits: ResourceList) -> str:
    """``maxConstraint``: a limit is required and, like a request, at most ``enforced``."""
    req, lim = requests.get(name), limits.get(name)
    observed_req, observed_lim, bound = _comparable(req, lim, enforced)
    if lim is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if observed_lim > bound:
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
    if req is not None and observed_req > bound:
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return ""


def max_request_violation(kind: str, name: str, enforced: Amount, requests: ResourceList) -> str:
    """``maxRequestConstraint``: for claims, whose limits mean nothing."""
    req = requests.get(name)
    observed_req, _, bound = _comparable(req, None, enforced)
    if req is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No request is specified"
    if observed_req > bound:
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return ""


def ratio_violation(kind: str, name: str, enforced: Amount, requests: ResourceList, limits: ResourceList) -> str:
    """``limitRequestRatioConstraint``: limit / request at most ``enforced``."""
    req, lim = requests.get(name), limits.get(name)
    observed_req, observed_lim, _ = _comparable(req, lim, enforced)
    if req is None or observed_req == 0:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
    if lim is None or observed_lim == 0:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
    ratio = observed_lim / observed_req
    if value(enforced.value) <= MAX_MILLI_VALUE:
        exceeded = ratio * 1000 > milli_value(enforced.value)
    else:
        exceeded = ratio > value(enforced.value)
    return f"{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:f}" if exceeded else ""


def _bounds(item: Obj, kind: str, requests: ResourceList, limits: ResourceList) -> list[str]:
    """min, max and ratio of one item against one set of requests and limits."""
    checks = (("min", min_violation), ("max", max_violation), ("maxLimitRequestRatio", ratio_violation))
    out = []
    for key, check in checks:
        for name, enforced in sorted(parse_list(item.get(key)).items()):
            out.append(check(kind, name, enforced, requests, limits))
    return [reason for reason in out if reason]


def _own(container: Obj, key: str) -> ResourceList:
    return parse_list((container.get("resources") or {}).get(key))


def pod_violations(limit_range: Obj, pod: Obj) -> list[str]:
    """``PodValidateLimitFunc``: every container against Container items, the pod's totals against Pod items."""
    spec = pod.get("spec") or {}
    out: list[str] = []
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") == "Container":
            for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
                out += _bounds(item, "Container", _own(container, "requests"), _own(container, "limits"))
        elif item.get("type") == "Pod":
            out += _bounds(item, "Pod", aggregate(spec, "requests"), aggregate(spec, "limits"))
    return out


def claim_violations(limit_range: Obj, pvc: Obj) -> list[str]:
    """``PersistentVolumeClaimValidateLimitFunc``: the storage request between min and max."""
    requests = parse_list(((pvc.get("spec") or {}).get("resources") or {}).get("requests"))
    out: list[str] = []
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") != "PersistentVolumeClaim":
            continue
        for name, enforced in sorted(parse_list(item.get("min")).items()):
            out.append(min_violation("PersistentVolumeClaim", name, enforced, requests, {}))
        for name, enforced in sorted(parse_list(item.get("max")).items()):
            out.append(max_request_violation("PersistentVolumeClaim", name, enforced, requests))
    return [reason for reason in out if reason]


def aggregate_message(reasons: list[str]) -> str:
    """``utilerrors.NewAggregate(...).Error()``: one reason bare, several deduplicated in brackets."""
    unique = list(dict.fromkeys(reasons))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# --- the admission hooks -----------------------------------------------------------------------


def _is_pod(rt: ResourceType) -> bool:
    return not rt.group and rt.kind == "Pod"


def _is_claim(rt: ResourceType) -> bool:
    return not rt.group and rt.kind == "PersistentVolumeClaim"


class LimitRanger:
    """Both admission hooks (see :class:`~tinykube.apiserver.storage.Storage`); LimitRanges are read
    through ``list_in_namespace`` so a watch-fed cache can stand behind it."""

    def __init__(self, list_in_namespace: ListInNamespace):
        self._list = list_in_namespace

    async def mutate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Pod create: apply every LimitRange's container defaults, then recompute the QoS class."""
        if not _is_pod(rt) or old is not None:
            return
        changed = False
        for limit_range in await self._list(LIMIT_RANGES, obj["metadata"]["namespace"]):
            changed = apply_defaults(limit_range, obj) or changed
        if changed and isinstance(obj.get("status"), dict):
            obj["status"]["qosClass"] = qos_class(obj)

    async def validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Pod create and claim writes: refuse what breaks a LimitRange (the first one that objects)."""
        check = self._check(rt, obj, old)
        if check is None:
            return
        for limit_range in await self._list(LIMIT_RANGES, obj["metadata"]["namespace"]):
            reasons = check(limit_range, obj)
            if reasons:
                name = obj["metadata"].get("name", "")
                raise forbidden(f'{rt.resource} "{name}" is forbidden: {aggregate_message(reasons)}', rt.resource, name)

    @staticmethod
    def _check(rt: ResourceType, obj: Obj, old: Obj | None) -> Callable[[Obj, Obj], list[str]] | None:
        if old is not None and (old.get("metadata") or {}).get("deletionTimestamp"):
            return None  # objects being deleted are left alone
        if _is_pod(rt) and old is None:
            return pod_violations
        if _is_claim(rt) and (old is None or obj.get("spec") != old.get("spec")):
            return claim_violations
        return None
