"""Arithmetic on resource lists (``{"cpu": "500m", ...}``) that prints its results as upstream does.

Quota and LimitRange messages print sums (``requested: requests.memory=384Mi``), and a sum's text
depends on the *format* Go's ``resource.Quantity`` carries along: ``Add`` keeps the left operand's
format unless the left is zero, in which case it takes the right one's, and an unchanged quantity
prints the text it was parsed from.  :class:`Amount` carries exactly that.  The list helpers are
``k8s.io/apiserver/pkg/quota/v1`` (Add, Mask, LessThanOrEqual...); :func:`pod_requests` and
:func:`pod_limits` are ``component-helpers/resource`` PodRequests/PodLimits (init containers,
sidecars, overhead).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import functools
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tinykube.api import quantity

Obj = dict[str, Any]


@dataclass(frozen=True)
class Amount:
    """One ``resource.Quantity``: its exact value, its format, and the text it was parsed from."""

    value: Fraction
    format: str = quantity.DECIMAL_SI
    text: str | None = None  # upstream's cached string: kept until the quantity changes

    @classmethod
    def parse(cls, raw: Any) -> Amount:
        """Raises :class:`~tinykube.api.quantity.QuantityError` (or TypeError) when ``raw`` is no quantity."""
        return _parse_amount(raw)

    @classmethod
    def of(cls, value: int | Fraction) -> Amount:
        """``resource.NewQuantity(value, DecimalSI)``."""
        return cls(Fraction(value))

    def __str__(self) -> str:
        return self.text if self.text is not None else quantity.format_quantity(self.value, self.format)

    def plus(self, other: Amount) -> Amount:
        """``Quantity.Add``: a zero left operand takes the right one's format."""
        return Amount(self.value + other.value, other.format if self.value == 0 else self.format)

    def minus(self, other: Amount) -> Amount:
        """``Quantity.Sub``, with the same format rule."""
        return Amount(self.value - other.value, other.format if self.value == 0 else self.format)


ResourceList = dict[str, Amount]


@functools.lru_cache(maxsize=4096)
def _parse_amount(raw: Any) -> Amount:
    """Amounts are immutable and a cluster uses few distinct quantities: the scheduler and quota
    parse every pod's on every event."""
    exact, fmt = quantity.parse_with_format(raw)
    return Amount(exact, fmt, quantity.canonical(raw))
ZERO = Amount(Fraction(0), text="0")


def parse_list(raw: Any) -> ResourceList:
    """A decoded ``ResourceList``; entries that do not parse are skipped (decoding reported them)."""
    out: ResourceList = {}
    for name, value in (raw or {}).items() if isinstance(raw, dict) else ():
        try:
            out[name] = Amount.parse(value)
        except (quantity.QuantityError, TypeError):
            continue
    return out


def render(resources: ResourceList) -> dict[str, str]:
    """The JSON form, keys sorted as Go's encoder writes a map."""
    return {name: str(resources[name]) for name in sorted(resources)}


def add(a: ResourceList, b: ResourceList) -> ResourceList:
    """``quota.Add``: the sum of both lists, keys of either."""
    out = dict(a)
    add_into(out, b)
    return out


def add_into(into: ResourceList, more: ResourceList) -> None:
    """``addResourceList``: ``more`` added into ``into`` in place."""
    for name, amount in more.items():
        into[name] = into[name].plus(amount) if name in into else amount


def max_into(into: ResourceList, other: ResourceList) -> None:
    """``maxResourceList``: every entry of ``into`` raised to ``other``'s where that is larger."""
    for name, amount in other.items():
        if name not in into or amount.value > into[name].value:
            into[name] = amount


def subtract_non_negative(a: ResourceList, b: ResourceList) -> ResourceList:
    """``quota.SubtractWithNonNegativeResult``: ``a - b``, never below zero, keys of either."""
    out: ResourceList = {}
    for name, amount in a.items():
        diff = amount.minus(b[name]) if name in b else amount
        out[name] = diff if diff.value > 0 else ZERO
    return {**{name: ZERO for name in b if name not in out}, **out}


def mask(resources: ResourceList, names: Iterable[str]) -> ResourceList:
    """``quota.Mask``: only the entries named."""
    keep = set(names)
    return {name: amount for name, amount in resources.items() if name in keep}


def exceeding(used: ResourceList, hard: ResourceList) -> list[str]:
    """``quota.LessThanOrEqual``'s second result: names where ``used`` is above ``hard``."""
    return sorted(name for name, limit in hard.items() if name in used and used[name].value > limit.value)


def is_zero(resources: ResourceList) -> bool:
    return all(amount.value == 0 for amount in resources.values())


def negative(resources: ResourceList) -> list[str]:
    """``quota.IsNegative``: the names of negative entries."""
    return sorted(name for name, amount in resources.items() if amount.value < 0)


def equal(a: ResourceList, b: ResourceList) -> bool:
    """``quota.Equals``: same names, same values (formats may differ)."""
    return a.keys() == b.keys() and all(a[name].value == b[name].value for name in a)


def pretty(resources: ResourceList) -> str:
    """``prettyPrint``: ``name=value`` sorted by name, comma separated."""
    return ",".join(f"{name}={resources[name]}" for name in sorted(resources))


# --- what a pod asks for ---------------------------------------------------------------------


def _container_list(container: Obj, kind: str, defaults: ResourceList) -> ResourceList:
    own = parse_list(((container.get("resources") or {}) if isinstance(container, dict) else {}).get(kind))
    return {**defaults, **own} if defaults else own


def _containers(spec: Mapping[str, Any], key: str) -> list[Obj]:
    return [c for c in spec.get(key) or [] if isinstance(c, dict)]


def aggregate(spec: Mapping[str, Any], kind: str, defaults: ResourceList | None = None) -> ResourceList:
    """``AggregateContainerRequests``/``Limits``: app containers and sidecars summed, at least the
    largest init step (each init container plus the sidecars started before it).

    ``defaults`` stand in for what a container does not set (the scheduler's non-zero requests).
    """
    total: ResourceList = {}
    for container in _containers(spec, "containers"):
        add_into(total, _container_list(container, kind, defaults or {}))
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for container in _containers(spec, "initContainers"):
        own = _container_list(container, kind, defaults or {})
        if container.get("restartPolicy") == "Always":
            add_into(total, own)
            add_into(sidecars, own)
            step = dict(sidecars)
        else:
            step = dict(own)
            add_into(step, sidecars)
        max_into(init_peak, step)
    max_into(total, init_peak)
    return total


def pod_requests(pod: Obj, defaults: ResourceList | None = None) -> ResourceList:
    """``resourcehelper.PodRequests``: the aggregate plus the pod's overhead."""
    spec = pod.get("spec") or {}
    total = aggregate(spec, "requests", defaults)
    add_into(total, parse_list(spec.get("overhead")))
    return total


def pod_limits(pod: Obj) -> ResourceList:
    """``resourcehelper.PodLimits``: the aggregate, overhead added only to limits that are set."""
    spec = pod.get("spec") or {}
    total = aggregate(spec, "limits")
    for name, amount in parse_list(spec.get("overhead")).items():
        if name in total:
            total[name] = total[name].plus(amount)
    return total
