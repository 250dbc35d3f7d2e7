"""Quota evaluation: what an object costs a ResourceQuota, and whether a new one still fits.

A port of ``pkg/quota/v1/evaluator/core`` (pods, services, persistentvolumeclaims), the generic
object-count evaluator of ``k8s.io/apiserver/pkg/quota/v1/generic`` (``count/<resource>[.<group>]``,
plus the legacy names ``configmaps``, ``secrets`` and ``resourcequotas``), ``CalculateUsage`` (what
the quota controller writes into ``status.used``) and the admission plugin's ``CheckRequest``
(``plugin/pkg/admission/resourcequota/controller.go``), with upstream's refusal texts.  Pure: the
callers bring the objects and the clock.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from tinykube.api.defaults import qos_class
from tinykube.api.registry import RESOURCES, ResourceType
from tinykube.api.resourcelist import (Amount, ResourceList, add, add_into, equal, exceeding, is_zero, mask, negative,
                                       parse_list, pod_limits, pod_requests, pretty, render, subtract_non_negative)
from tinykube.api.validation import is_native_resource

Obj = dict[str, Any]
GroupResource = tuple[str, str]
ONE = Amount.of(1)
ZERO = Amount.of(0)

# Events are never charged (install.DefaultIgnoredResources); events.k8s.io Events are the same objects.
IGNORED: frozenset[GroupResource] = frozenset({("", "events"), ("events.k8s.io", "events")})
_LEGACY_ALIASES = {"configmaps": "configmaps", "secrets": "secrets", "resourcequotas": "resourcequotas"}
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"
_BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


class Refused(Exception):
    """A request a quota refuses; ``str()`` is upstream's reason (what follows ``is forbidden: ``)."""


def count_name(group: str, resource: str) -> str:
    """``ObjectCountQuotaResourceNameFor``: ``count/pods``, ``count/leases.coordination.k8s.io``."""
    return f"count/{resource}.{group}" if group else f"count/{resource}"


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- evaluators ------------------------------------------------------------------------------


class ObjectCount:
    """``generic.objectCountEvaluator``: one of each object, charged on create, never scoped."""

    def __init__(self, group: str, resource: str, alias: str = ""):
        self.group_resource: GroupResource = (group, resource)
        self.names: tuple[str, ...] = (count_name(group, resource), *((alias,) if alias else ()))

    def matching_resources(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name in self.names]

    def usage(self, obj: Obj, now: datetime) -> ResourceList:
        return {name: ONE for name in self.names}

    def constraints(self, required: list[str], obj: Obj) -> str:
        """Why ``obj`` may not be charged to a quota tracking ``required`` ("" when it may)."""
        return ""

    def handles(self, obj: Obj, old: Obj | None) -> bool:
        """Whether the write can change usage: creates only, here."""
        return old is None

    def matches_scope(self, selector: Obj, obj: Obj) -> bool:
        """``MatchesNoScopeFunc``: a scoped quota counts none of these."""
        return False


class ServiceEvaluator(ObjectCount):
    """Services: their count, node ports and load balancers; a type change moves usage."""

    def __init__(self) -> None:
        super().__init__("", "services")
        self.names = (*self.names, "services", "services.nodeports", "services.loadbalancers")

    def usage(self, obj: Obj, now: datetime) -> ResourceList:
        spec = obj.get("spec") or {}
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        node_ports, balancers = ZERO, ZERO
        if spec.get("type") == "NodePort":
            node_ports = Amount.of(len(ports))
        elif spec.get("type") == "LoadBalancer":
            explicit = spec.get("allocateLoadBalancerNodePorts") is False
            node_ports = Amount.of(sum(1 for p in ports if p.get("nodePort")) if explicit else len(ports))
            balancers = ONE
        return {"count/services": ONE, "services": ONE, "services.nodeports": node_ports,
                "services.loadbalancers": balancers}

    def handles(self, obj: Obj, old: Obj | None) -> bool:
        return True


def claim_class(pvc: Obj) -> str:
    """``GetPersistentVolumeClaimClass``: the beta annotation wins over ``spec.storageClassName``."""
    annotations = (pvc.get("metadata") or {}).get("annotations") or {}
    if _BETA_CLASS_ANNOTATION in annotations:
        return str(annotations[_BETA_CLASS_ANNOTATION])
    return str((pvc.get("spec") or {}).get("storageClassName") or "")


class ClaimEvaluator(ObjectCount):
    """PersistentVolumeClaims: their count and storage, also per storage class."""

    _RESOURCES = ("persistentvolumeclaims", "requests.storage")

    def __init__(self) -> None:
        super().__init__("", "persistentvolumeclaims")

    def matching_resources(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name in self.names or name in self._RESOURCES
                or any(name.endswith(STORAGE_CLASS_SUFFIX + r) for r in self._RESOURCES)]

    def usage(self, obj: Obj, now: datetime) -> ResourceList:
        out: ResourceList = {"persistentvolumeclaims": ONE, "count/persistentvolumeclaims": ONE}
        klass = claim_class(obj)
        if klass:
            out[klass + STORAGE_CLASS_SUFFIX + "persistentvolumeclaims"] = ONE
        storage = _claim_storage(obj)
        if storage is not None:
            out["requests.storage"] = storage
            if klass:
                out[klass + STORAGE_CLASS_SUFFIX + "requests.storage"] = storage
        return out

    def handles(self, obj: Obj, old: Obj | None) -> bool:
        return True


def _round_up(amount: Amount) -> Amount:
    """``RoundUp(0)``: storage is charged in whole bytes."""
    whole = -(-amount.value // 1)
    return amount if whole == amount.value else Amount(whole, amount.format)


def _claim_storage(pvc: Obj) -> Amount | None:
    """The request, or the allocated size when that is larger (RecoverVolumeExpansionFailure)."""
    requested = parse_list(((pvc.get("spec") or {}).get("resources") or {}).get("requests")).get("storage")
    allocated = parse_list((pvc.get("status") or {}).get("allocatedResources")).get("storage")
    if requested is None:
        return None
    if allocated is not None and allocated.value > requested.value:
        return _round_up(allocated)
    return _round_up(requested)


_POD_RESOURCES = ("count/pods", "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
                  "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage", "pods")
# The mistake upstream keeps for compatibility: quota on these makes every container state them.
_VALIDATION_SET = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})


def _compute_usage(requests: ResourceList, limits: ResourceList) -> ResourceList:
    """``podComputeUsageHelper``: requests and limits under their quota names."""
    out: ResourceList = {"pods": ONE}
    for name in ("cpu", "memory", "ephemeral-storage"):
        if name in requests:
            out[name] = out[f"requests.{name}"] = requests[name]
        if name in limits:
            out[f"limits.{name}"] = limits[name]
    for name, amount in requests.items():
        if name.startswith("hugepages-"):
            out[name] = out[f"requests.{name}"] = amount
        elif not is_native_resource(name) and not name.startswith("requests."):  # extended resources
            out[f"requests.{name}"] = amount
    return out


def charged(pod: Obj, now: datetime) -> bool:
    """``QuotaV1Pod``: terminal pods and pods past their deletion grace cost no compute."""
    if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
        return False
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") is not None:
        deadline = _parse_time(meta["deletionTimestamp"]) + timedelta(seconds=meta["deletionGracePeriodSeconds"])
        return now <= deadline
    return True


def terminating(pod: Obj) -> bool:
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    return deadline is not None and deadline >= 0


def _cross_namespace_affinity(pod: Obj) -> bool:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        rules = affinity.get(kind) or {}
        terms = list(rules.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [w.get("podAffinityTerm") or {} for w in rules.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms):
            return True
    return False


def _priority_class_matches(selector: Obj, pod: Obj) -> bool:
    """The scope as a label selector over ``{"PriorityClass": <the pod's class>}``."""
    name = (pod.get("spec") or {}).get("priorityClassName") or ""
    op, values = selector.get("operator"), selector.get("values") or []
    if op == "Exists":
        return bool(name)
    if op == "DoesNotExist":
        return not name
    if op == "In":
        return bool(name) and name in values
    return op == "NotIn" and (not name or name not in values)


class PodEvaluator(ObjectCount):
    """Pods: their count and compute (requests and limits of cpu, memory, storage, huge pages...)."""

    def __init__(self) -> None:
        super().__init__("", "pods")

    def matching_resources(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name in _POD_RESOURCES
                or name.startswith(("hugepages-", "requests.hugepages-"))
                or (not is_native_resource(name) and name.startswith("requests."))]

    def usage(self, obj: Obj, now: datetime) -> ResourceList:
        out: ResourceList = {"count/pods": ONE}
        if charged(obj, now):
            add_into(out, _compute_usage(pod_requests(obj), pod_limits(obj)))
        return out

    def constraints(self, required: list[str], obj: Obj) -> str:
        """``must specify requests.cpu for: a,b; limits.memory for: c`` for containers leaving them unset."""
        wanted = _VALIDATION_SET.intersection(required)
        missing: dict[str, set[str]] = {}
        spec = obj.get("spec") or {}
        for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
            resources = container.get("resources") or {}
            present = _compute_usage(parse_list(resources.get("requests")), parse_list(resources.get("limits")))
            for name in wanted - present.keys():
                missing.setdefault(name, set()).add(container.get("name", ""))
        if not missing:
            return ""
        return "must specify " + "; ".join(f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing))

    def handles(self, obj: Obj, old: Obj | None) -> bool:
        return old is None or terminating(old) != terminating(obj)

    def matches_scope(self, selector: Obj, obj: Obj) -> bool:
        """``podMatchesScopeFunc``."""
        scope = selector.get("scopeName")
        if scope in ("Terminating", "NotTerminating"):
            return terminating(obj) == (scope == "Terminating")
        if scope in ("BestEffort", "NotBestEffort"):
            return (qos_class(obj) == "BestEffort") == (scope == "BestEffort")
        if scope == "PriorityClass":
            return _priority_class_matches(selector, obj)
        return scope == "CrossNamespacePodAffinity" and _cross_namespace_affinity(obj)


def _evaluators() -> dict[GroupResource, ObjectCount]:
    special: list[ObjectCount] = [PodEvaluator(), ServiceEvaluator(), ClaimEvaluator()]
    out = {ev.group_resource: ev for ev in special}
    for rt in RESOURCES:
        key = (rt.group, rt.resource)
        if rt.namespaced and key not in IGNORED and key not in out:
            out[key] = ObjectCount(rt.group, rt.resource, "" if rt.group else _LEGACY_ALIASES.get(rt.resource, ""))
    return out


EVALUATORS = _evaluators()


def evaluator_for(rt: ResourceType) -> ObjectCount | None:
    """The evaluator charging ``rt``'s objects; None for cluster-scoped and ignored kinds."""
    return EVALUATORS.get((rt.group, rt.resource))


# --- quotas ----------------------------------------------------------------------------------


def scope_selectors(quota: Obj) -> list[Obj]:
    """``getScopeSelectorsFromQuota``: ``spec.scopes`` as ``Exists`` selectors, then ``spec.scopeSelector``."""
    spec = quota.get("spec") or {}
    selectors = [{"scopeName": scope, "operator": "Exists"} for scope in spec.get("scopes") or []]
    return selectors + list((spec.get("scopeSelector") or {}).get("matchExpressions") or [])


def matches(evaluator: ObjectCount, quota: Obj, obj: Obj) -> bool:
    """``generic.Matches``: the quota tracks one of the evaluator's resources and every scope matches."""
    hard = (quota.get("status") or {}).get("hard") or {}
    if not evaluator.matching_resources(hard):
        return False
    return all(evaluator.matches_scope(selector, obj) for selector in scope_selectors(quota))


def _has_usage_stats(quota: Obj, names: list[str]) -> bool:
    used = (quota.get("status") or {}).get("used") or {}
    return all(name in used for name in names)


def _interesting(quotas: list[Obj], evaluator: ObjectCount, obj: Obj) -> list[int]:
    """Indexes of the quotas that apply; refuses on missing container constraints or unknown status."""
    out = []
    for i, quota in enumerate(quotas):
        if not matches(evaluator, quota, obj):
            continue
        name = quota["metadata"]["name"]
        restricted = evaluator.matching_resources((quota.get("status") or {}).get("hard") or {})
        reason = evaluator.constraints(restricted, obj)
        if reason:
            raise Refused(f"failed quota: {name}: {reason}")
        if not _has_usage_stats(quota, restricted):
            raise Refused(f"status unknown for quota: {name}, resources: {','.join(sorted(restricted))}")
        out.append(i)
    return out


def _delta(evaluator: ObjectCount, obj: Obj, old: Obj | None, now: datetime) -> ResourceList:
    usage = evaluator.usage(obj, now)
    if negative(usage):
        raise Refused(f"quota usage is negative for resource(s): {','.join(negative(usage))}")
    return usage if old is None else subtract_non_negative(usage, evaluator.usage(old, now))


def _charge(quota: Obj, delta: ResourceList) -> Obj:
    """The quota with ``delta`` added to ``status.used``, or :class:`Refused` when that passes ``hard``."""
    status = quota.get("status") or {}
    hard, used = parse_list(status.get("hard")), parse_list(status.get("used"))
    requested = mask(delta, hard)
    total = add(used, requested)
    over = exceeding(mask(total, requested), hard)
    if over:
        raise Refused(f"exceeded quota: {quota['metadata']['name']}, requested: {pretty(mask(requested, over))}, "
                      f"used: {pretty(mask(used, over))}, limited: {pretty(mask(hard, over))}")
    charged_quota = copy.deepcopy(quota)
    charged_quota["status"]["used"] = render(total)
    return charged_quota


def check_request(quotas: list[Obj], evaluator: ObjectCount, obj: Obj, old: Obj | None, now: datetime) -> list[Obj]:
    """``CheckRequest``: the quotas whose ``status.used`` the write raises, already charged.

    Raises :class:`Refused` with upstream's reason when a quota does not allow the write.
    """
    indexes = _interesting(quotas, evaluator, obj)
    delta = _delta(evaluator, obj, old, now)
    if is_zero(delta):
        return []
    changed = []
    for i in indexes:
        quota = _charge(quotas[i], delta)
        if not equal(parse_list(quota["status"]["used"]), parse_list((quotas[i].get("status") or {}).get("used"))):
            changed.append(quota)
    return changed


# --- the controller's view -------------------------------------------------------------------


def tracked(quota: Obj) -> list[ObjectCount]:
    """The evaluators whose objects make up the quota's usage."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    return [ev for ev in EVALUATORS.values() if ev.matching_resources(hard)]


def calculate_usage(quota: Obj, objects: Mapping[GroupResource, list[Obj]], now: datetime) -> ResourceList:
    """``quota.CalculateUsage``: the usage of every tracked resource, zero when nothing uses it."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    selectors = scope_selectors(quota)
    used: ResourceList = {}
    for evaluator in tracked(quota):
        names = evaluator.matching_resources(hard)
        stats: ResourceList = {name: Amount.of(0) for name in names}
        for obj in objects.get(evaluator.group_resource, []):
            if all(evaluator.matches_scope(selector, obj) for selector in selectors):
                add_into(stats, mask(evaluator.usage(obj, now), names))
        used = add(used, stats)
    return used


def synced_status(quota: Obj, usage: ResourceList) -> Obj | None:
    """``syncResourceQuota``: the status to write (``hard`` from the spec, fresh ``used``), or None
    when the stored one already says that."""
    status = quota.get("status") or {}
    hard = parse_list((quota.get("spec") or {}).get("hard"))
    old_used = parse_list(status.get("used"))
    used = mask({**old_used, **usage}, hard)
    dirty = status.get("hard") is None or status.get("used") is None
    if dirty or not equal(hard, parse_list(status.get("hard"))) or not equal(used, old_used):
        return {"hard": render(hard), "used": render(used)}
    return None
