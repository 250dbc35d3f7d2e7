"""Validation of LimitRanges and ResourceQuotas, as ``pkg/apis/core/validation`` (v1.32) does it.

Field paths and messages are upstream's (``spec.limits[0].min[cpu]: Invalid value: "2": min value 2
is greater than max value 1``).  Where upstream prints a ``resource.Quantity`` struct with ``%#v``
(it has no value-receiver ``String``), the quantity's text is shown instead.
"""

from __future__ import annotations

from typing import Any

from tinykube.api.errors import FieldError, duplicate, forbidden_field, invalid_value, required
from tinykube.api.resourcelist import Amount, parse_list
from tinykube.api.validation import (m, name_is_dns_subdomain, overcommit_allowed, qualified_name, s,
                                     validate_container_resource_name, validate_object_meta,
                                     validate_object_meta_update, validate_resource_name,
                                     validate_resource_quantity_value)

Errors = list[FieldError]
Obj = dict[str, Any]

LIMIT_TYPES = ("Pod", "Container", "PersistentVolumeClaim")
QUOTA_SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
                "CrossNamespacePodAffinity")
_QUOTA_RESOURCES = frozenset({
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.storage",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage", "pods", "services",
    "replicationcontrollers", "resourcequotas", "secrets", "persistentvolumeclaims", "configmaps",
    "services.nodeports", "services.loadbalancers"})
_POD_COMPUTE = frozenset({"cpu", "memory", "limits.cpu", "limits.memory", "requests.cpu", "requests.memory"})
_EXISTS_ONLY = ("BestEffort", "NotBestEffort", "Terminating", "NotTerminating", "CrossNamespacePodAffinity")
_CONFLICTING = (("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating"))
_ITEM_LISTS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")


# --- LimitRange -------------------------------------------------------------------------------


def _limit_type(path: str, value: str) -> Errors:
    errs = qualified_name(path, value)
    if not errs and "/" not in value and value not in LIMIT_TYPES:
        errs.append(invalid_value(path, value, "must be a standard limit type or fully qualified"))
    return errs


def _item_resource_names(item: Obj, path: str) -> Errors:
    """Resource names of every list; a Pod item may not carry defaults."""
    kind = s(item, "type")
    check = validate_container_resource_name if kind in ("Pod", "Container") else validate_resource_name
    errs: Errors = []
    for key in _ITEM_LISTS:
        if kind == "Pod" and key in ("default", "defaultRequest"):
            if m(item, key):
                errs.append(forbidden_field(f"{path}.{key}", "may not be specified when `type` is 'Pod'"))
            continue
        for name in m(item, key):
            errs += check(name, f"{path}.{key}[{name}]")
    if kind == "PersistentVolumeClaim" and "storage" not in m(item, "min") and "storage" not in m(item, "max"):
        errs.append(required(f"{path}.limits", "either minimum or maximum storage value is required, but neither was provided"))
    return errs


def _ordered(path: str, name: str, lists: dict[str, dict[str, Amount]]) -> Errors:
    """min <= defaultRequest <= default <= max for one resource, each pair as upstream words it."""
    def get(key: str) -> Amount | None:
        return lists[key].get(name)
    low, high, limit, request = get("min"), get("max"), get("default"), get("defaultRequest")
    rules = (
        (low, high, "min", low, "min value {a} is greater than max value {b}"),
        (low, request, "defaultRequest", request, "min value {a} is greater than default request value {b}"),
        (request, high, "defaultRequest", request, "default request value {a} is greater than max value {b}"),
        (request, limit, "defaultRequest", request, "default request value {a} is greater than default limit value {b}"),
        (low, limit, "default", low, "min value {a} is greater than default value {b}"),
        (limit, high, "default", high, "default value {a} is greater than max value {b}"),
    )
    errs: Errors = []
    for a, b, key, shown, text in rules:
        if a is not None and b is not None and a.value > b.value:
            errs.append(invalid_value(f"{path}.{key}[{name}]", str(shown), text.format(a=a, b=b)))
    return errs


def _ratio(path: str, name: str, lists: dict[str, dict[str, Amount]]) -> Errors:
    ratio, low, high = (lists[key].get(name) for key in ("maxLimitRequestRatio", "min", "max"))
    if ratio is None:
        return []
    field = f"{path}.maxLimitRequestRatio[{name}]"
    errs = [invalid_value(field, str(ratio), f"ratio {ratio} is less than 1")] if ratio.value < 1 else []
    if low is not None and high is not None and low.value > 0:
        most = float(high.value) / float(low.value)
        if float(ratio.value) > most:
            errs.append(invalid_value(field, str(ratio), f"ratio {ratio} is greater than max/min = {most:f}"))
    return errs


def _item(item: Obj, path: str) -> Errors:
    errs = _item_resource_names(item, path)
    lists = {key: parse_list(m(item, key)) for key in _ITEM_LISTS}
    if s(item, "type") == "Pod":
        lists["default"], lists["defaultRequest"] = {}, {}
    for name in sorted(set().union(*lists.values())):
        errs += _ordered(path, name, lists) + _ratio(path, name, lists)
        limit, request = lists["default"].get(name), lists["defaultRequest"].get(name)
        if not overcommit_allowed(name) and limit is not None and request is not None and limit.value != request.value:
            errs.append(invalid_value(f"{path}.defaultRequest[{name}]", str(request),
                                      f"default value {limit} must equal to defaultRequest value {request} in {name}"))
    return errs


def validate_limit_range(obj: Obj) -> Errors:
    """``ValidateLimitRange``: one item per type, known resource names, consistent bounds."""
    errs = validate_object_meta(m(obj, "metadata"), True, name_is_dns_subdomain)
    seen: set[str] = set()
    for i, item in enumerate((m(obj, "spec").get("limits") or [])):
        path = f"spec.limits[{i}]"
        item = item if isinstance(item, dict) else {}
        errs += _limit_type(f"{path}.type", s(item, "type"))
        if s(item, "type") in seen:
            errs.append(duplicate(f"{path}.type", s(item, "type")))
        seen.add(s(item, "type"))
        errs += _item(item, path)
    return errs


# --- ResourceQuota ----------------------------------------------------------------------------


def _quota_resource_name(name: str, path: str) -> Errors:
    """``ValidateResourceQuotaResourceName``."""
    if name.startswith("requests.hugepages-"):
        return qualified_name(path, name)
    errs = validate_resource_name(name, path)
    if "/" not in name and name not in _QUOTA_RESOURCES and not name.startswith("hugepages-"):
        errs.append(invalid_value(path, name, "must be a standard resource for quota"))
    return errs


def _resource_list(resources: Obj, path: str) -> Errors:
    errs: Errors = []
    for name in sorted(resources):
        errs += _quota_resource_name(name, f"{path}[{name}]")
        errs += validate_resource_quantity_value(name, resources[name], f"{path}[{name}]")
    return errs


def scope_valid_for(scope: str, resource: str) -> bool:
    """``IsResourceQuotaScopeValidForResource``: pod scopes only go with pod resources."""
    if scope == "BestEffort":
        return resource == "pods"
    if scope in ("Terminating", "NotTerminating", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity"):
        return resource == "pods" or resource in _POD_COMPUTE
    return True


def _scopes_for_hard(scope: str, hard: Obj) -> bool:
    return all(scope_valid_for(scope, name) for name in hard if name in _QUOTA_RESOURCES or name.startswith("hugepages-"))


def _scopes(spec: Obj) -> Errors:
    scopes, hard = spec.get("scopes") or [], m(spec, "hard")
    errs: Errors = []
    for scope in scopes:
        if scope not in QUOTA_SCOPES:
            errs.append(invalid_value("spec.scopes", scopes, "unsupported scope"))
        if not _scopes_for_hard(scope, hard):
            errs.append(invalid_value("spec.scopes", scopes, "unsupported scope applied to resource"))
    errs += [invalid_value("spec.scopes", scopes, "conflicting scopes") for pair in _CONFLICTING if set(pair) <= set(scopes)]
    return errs


def _selector_operator(req: Obj, path: str) -> Errors:
    op, values = s(req, "operator"), req.get("values") or []
    errs: Errors = []
    if s(req, "scopeName") in _EXISTS_ONLY and op != "Exists":
        errs.append(invalid_value(f"{path}.operator", op, "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, "
                                  "ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, "
                                  "ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity"))
    if op in ("In", "NotIn") and not values:
        errs.append(required(f"{path}.values", "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"))
    elif op in ("Exists", "DoesNotExist") and values:
        errs.append(invalid_value(f"{path}.values", values, "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector"))
    elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
        errs.append(invalid_value(f"{path}.operator", op, "not a valid selector operator"))
    return errs


def _scope_selector(spec: Obj) -> Errors:
    """``validateScopedResourceSelectorRequirement``."""
    selector = spec.get("scopeSelector")
    if not isinstance(selector, dict):
        return []
    path, hard, names = "spec.scopeSelector.matchExpressions", m(spec, "hard"), set()
    errs: Errors = []
    for req in selector.get("matchExpressions") or []:
        scope = s(req, "scopeName")
        if scope not in QUOTA_SCOPES:
            errs.append(invalid_value(f"{path}.scopeName", scope, "unsupported scope"))
        if not _scopes_for_hard(scope, hard):
            errs.append(invalid_value(path, selector, "unsupported scope applied to resource"))
        errs += _selector_operator(req, path)
        names.add(scope)
    errs += [invalid_value(path, spec.get("scopes") or [], "conflicting scopes") for pair in _CONFLICTING if set(pair) <= names]
    return errs


def _quota_spec(spec: Obj) -> Errors:
    return _resource_list(m(spec, "hard"), "spec.hard") + _scopes(spec) + _scope_selector(spec)


def _quota_status(status: Obj) -> Errors:
    return _resource_list(m(status, "hard"), "status.hard") + _resource_list(m(status, "used"), "status.used")


def validate_resource_quota(obj: Obj) -> Errors:
    """``ValidateResourceQuota``."""
    return (validate_object_meta(m(obj, "metadata"), True, name_is_dns_subdomain) + _quota_spec(m(obj, "spec"))
            + _quota_status(m(obj, "status")))


def validate_resource_quota_update(new: Obj, old: Obj) -> Errors:
    """``ValidateResourceQuotaUpdate``: the spec is checked again; its scopes may not change."""
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata")) + _quota_spec(m(new, "spec"))
    scopes = m(new, "spec").get("scopes") or []
    if set(scopes) != set(m(old, "spec").get("scopes") or []):
        errs.append(invalid_value("spec.scopes", scopes, "field is immutable"))
    return errs


def validate_resource_quota_status_update(new: Obj, old: Obj) -> Errors:
    """``ValidateResourceQuotaStatusUpdate``."""
    errs = validate_object_meta_update(m(new, "metadata"), m(old, "metadata"))
    if not s(m(new, "metadata"), "resourceVersion"):
        errs.append(required("resourceVersion"))
    return errs + _quota_status(m(new, "status"))
