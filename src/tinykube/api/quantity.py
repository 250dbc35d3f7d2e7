"""Parse and re-serialize resource quantities exactly as apimachinery's ``resource.Quantity`` does.

Clients see quantities only after the API server decoded and re-encoded them, so ``0.5`` comes
back as ``500m`` and ``1024Ki`` as ``1Mi``; kubectl diffs and ``kubectl get -o yaml`` rely on
that.  This module follows ``staging/src/k8s.io/apimachinery/pkg/api/resource``
(quantity.go, amount.go, suffix.go) including its quirks: a string that is already in canonical
form is kept verbatim (``+1`` and ``1.500`` serialize unchanged), BinarySI values that are not
whole or are below 1024 are shown as DecimalSI, BinarySI is capped at 2^63-1, and every value is
rounded up (away from zero) to a whole nano.

Values are computed with Python integers, so nothing overflows; exponents beyond
:data:`MAX_EXPONENT` are rejected because materializing ``1e1000000000`` would exhaust memory.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from fractions import Fraction

FORMAT_REGEX = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ERR_FORMAT = f"quantities must match the regular expression '{FORMAT_REGEX}'"
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

MAX_EXPONENT = 10_000  # deliberate guards: upstream has no bounds (and would try to allocate)
MAX_DIGITS = 1_000

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {e: s for s, e in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXPONENT = {e: s for s, e in _BINARY_SUFFIXES.items()}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
_EXPONENT = re.compile(r"[+-]?0*[0-9]{1,19}")  # bounded so int() stays cheap
_MAX_INT64_FACTORS = 18
_NANO = -9
_MILLI = -3
_MAX_ALLOWED = 2**63 - 1

QuantityLike = str | int | float  # what JSON decoding can hand us


class QuantityError(ValueError):
    """A string that ``resource.ParseQuantity`` rejects; ``str()`` is upstream's error text."""


@dataclass(frozen=True)
class _Amount:
    """A parsed quantity: ``unscaled * 10**exponent`` in ``format``, plus the verbatim string
    upstream caches when the input was already canonical."""

    unscaled: int
    exponent: int
    format: str
    cached: str | None = None

    def fraction(self) -> Fraction:
        if self.exponent >= 0:
            return Fraction(self.unscaled * 10**self.exponent)
        return Fraction(self.unscaled, 10**-self.exponent)


@dataclass(frozen=True)
class _Parts:
    """The pieces ``parseQuantityString`` splits a quantity into."""

    positive: bool
    value: str  # sign, integer and fraction digits as written
    num: str  # integer digits without leading zeros ("0" when none)
    denom: str  # fraction digits
    suffix: str


def _scan_digits(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _DIGITS:
        pos += 1
    return pos


def _split(text: str) -> _Parts:
    """Port of ``parseQuantityString``: deliberately permissive, the suffix is checked later."""
    positive = not text.startswith("-")
    start = 1 if text[:1] in ("-", "+") else 0
    pos = start
    while pos < len(text) and text[pos] == "0":
        pos += 1
    if pos == len(text):
        return _Parts(positive, "0", "0", "", "")
    end = _scan_digits(text, pos)
    num = text[pos:end] or "0"
    denom = ""
    if end < len(text) and text[end] == ".":
        denom_end = _scan_digits(text, end + 1)
        denom, end = text[end + 1:denom_end], denom_end
    value, suffix_start = text[:end], end
    while end < len(text) and text[end] in _SUFFIX_CHARS:
        end += 1
    if end < len(text) and text[end] in "+-":
        end += 1
    if _scan_digits(text, end) != len(text):
        raise QuantityError(ERR_FORMAT)
    return _Parts(positive, value, num, denom, text[suffix_start:])


def _interpret(suffix: str) -> tuple[int, int, str]:
    """``(base, exponent, format)`` for a suffix, as ``suffixHandler.interpret``."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE" and _EXPONENT.fullmatch(suffix[1:]):
        exponent = int(suffix[1:])
        if -(2**63) <= exponent < 2**63:  # strconv.ParseInt(..., 64)
            if abs(exponent) > MAX_EXPONENT:
                raise QuantityError(ERR_NUMERIC)
            return 10, exponent, DECIMAL_EXPONENT
    raise QuantityError(ERR_SUFFIX)


def _fast_path(parts: _Parts, text: str, exponent: int, fmt: str) -> _Amount | None:
    """The int64 fast path of ``ParseQuantity``; None when upstream falls back to inf.Dec."""
    multiplier = 1
    if fmt == BINARY_SI:
        if exponent < 0 or parts.denom:
            return None
        multiplier = 1 << exponent
        precision = 15 - len(parts.num) - (exponent * 3 // 10) - 1
        scale = 0
    else:
        precision = _MAX_INT64_FACTORS - len(parts.num) - len(parts.denom)
        scale = exponent
    scale -= len(parts.denom)
    if precision < 0 or scale < _NANO:
        return None
    shifted = parts.num + parts.denom
    digits = int(shifted)
    result = digits * multiplier if parts.positive else -digits * multiplier
    if fmt == BINARY_SI:
        keep = exponent % 10 == 0 and digits & 0x07 != 0
    else:
        keep = scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"
    return _Amount(result, scale, fmt, text if keep else None)


def _decimal_value(value: str) -> tuple[int, int]:
    """``inf.Dec.SetString`` of the numeric part: ``(unscaled, inf scale)``."""
    sign = -1 if value.startswith("-") else 1
    whole, _, frac = value.lstrip("+-").partition(".")
    if not (whole + frac) or len(whole + frac) > MAX_DIGITS:
        raise QuantityError(ERR_NUMERIC)
    return sign * int(whole + frac or "0"), len(frac)


def _round_up_to_nano(magnitude: int, exponent: int) -> tuple[int, int]:
    """Round a non-negative ``magnitude * 10**exponent`` up to a whole nano."""
    if exponent >= _NANO or magnitude == 0:
        return magnitude, exponent
    divisor = 10 ** (_NANO - exponent)
    return -(-magnitude // divisor), _NANO


def _slow_path(parts: _Parts, base: int, exponent: int, fmt: str) -> _Amount:
    """The inf.Dec path of ``ParseQuantity``: exact, rounded up to nano, BinarySI capped."""
    unscaled, frac_digits = _decimal_value(parts.value)
    exp10 = -frac_digits
    if base == 10:
        exp10 += exponent
    else:
        unscaled <<= exponent
    sign = -1 if unscaled < 0 else 1
    magnitude, exp10 = _round_up_to_nano(abs(unscaled), exp10)
    amount = _Amount(magnitude, exp10, fmt)
    if fmt == BINARY_SI and amount.fraction() > _MAX_ALLOWED:
        amount = _Amount(_MAX_ALLOWED, 0, fmt)
    if fmt == BINARY_SI and 0 < amount.fraction() < 1:
        fmt = DECIMAL_SI
    return _Amount(sign * amount.unscaled, amount.exponent, fmt)


def _text(value: QuantityLike) -> str:
    """The JSON text a decoder hands to ``UnmarshalJSON`` (whitespace trimmed, as upstream)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value).strip()


def _parse(value: QuantityLike) -> _Amount:
    """Port of ``ParseQuantity``."""
    text = _text(value)
    if not text:
        raise QuantityError(ERR_FORMAT)
    if text == "0":
        return _Amount(0, 0, DECIMAL_SI, text)
    parts = _split(text)
    base, exponent, fmt = _interpret(parts.suffix)
    return _fast_path(parts, text, exponent, fmt) or _slow_path(parts, base, exponent, fmt)


@functools.lru_cache(maxsize=4096)
def parse_quantity(value: QuantityLike) -> Fraction:
    """The exact numeric value of a quantity (after upstream's nano rounding and BinarySI cap).

    Raises :class:`QuantityError` with upstream's message when the text does not parse.  Cached:
    a cluster uses a few distinct quantities, and the scheduler parses each pod's on every event.
    """
    return _parse(value).fraction()


def _remove_factors(value: int, factor: int) -> tuple[int, int]:
    times = 0
    while value != 0 and value % factor == 0:
        value //= factor
        times += 1
    return value, times


def _decimal_canonical(amount: _Amount, fmt: str) -> str:
    """``AsCanonicalBytes`` + suffix: exponent moved to a multiple of 3, no fraction digits."""
    mantissa, times = _remove_factors(amount.unscaled, 10)
    exponent = amount.exponent + times
    shift = exponent % 3
    mantissa, exponent = mantissa * 10**shift, exponent - shift
    if fmt == DECIMAL_EXPONENT:
        suffix = f"e{exponent}" if exponent else ""
    else:
        suffix = _DECIMAL_BY_EXPONENT.get(exponent, "")  # upstream emits no suffix past E
    return f"{mantissa}{suffix}"


def _format(amount: _Amount) -> str:
    """Port of ``CanonicalizeBytes``."""
    exact = amount.fraction()
    if exact == 0:
        return "0"
    if amount.format == BINARY_SI and (-1024 < exact < 1024 or exact.denominator != 1):
        return _decimal_canonical(amount, DECIMAL_SI)
    if amount.format == BINARY_SI:
        mantissa, times = _remove_factors(int(exact), 1024)
        return f"{mantissa}{_BINARY_BY_EXPONENT.get(times * 10, '')}"
    return _decimal_canonical(amount, amount.format)


def canonical(value: QuantityLike) -> str:
    """The string the API server serializes for ``value`` (``Quantity.String()``)."""
    amount = _parse(value)
    return amount.cached if amount.cached is not None else _format(amount)


def round_up_milli(value: QuantityLike) -> str:
    """The string stored after ``SetDefaults_ResourceList``: ``RoundUp(-3)`` then ``String()``.

    Resource lists are rounded up to milli precision on decode (``0.1m`` becomes ``1m``); a
    value that already fits keeps its verbatim canonical string, as upstream keeps its cache.
    """
    amount = _parse(value)
    if amount.exponent < _MILLI:
        divisor = 10 ** (_MILLI - amount.exponent)
        magnitude = -(-abs(amount.unscaled) // divisor)
        amount = _Amount(magnitude if amount.unscaled > 0 else -magnitude, _MILLI, amount.format)
    return amount.cached if amount.cached is not None else _format(amount)


def scaled_value(q: QuantityLike | Fraction, scale: int) -> int:
    """``ceil(q / 10**scale)`` as ``Quantity.ScaledValue``, without int64 overflow.

    Accepts an already parsed :class:`Fraction` so callers summing quantities parse once.
    """
    exact = q if isinstance(q, Fraction) else parse_quantity(q)
    return math.ceil(exact / Fraction(10) ** scale)


def value(q: QuantityLike | Fraction) -> int:
    """``Quantity.Value()``: the quantity rounded up to a whole number."""
    return scaled_value(q, 0)


def milli_value(q: QuantityLike | Fraction) -> int:
    """``Quantity.MilliValue()``: ``ceil(q * 1000)``, e.g. ``100m`` of CPU is 100."""
    return scaled_value(q, -3)


def parse_with_format(value: QuantityLike) -> tuple[Fraction, str]:
    """The exact value and the format (``DecimalSI``, ``BinarySI``, ``DecimalExponent``) it was written in.

    Sums keep a format (``Quantity.Add`` takes the right operand's when the left is zero), so
    code that adds quantities and prints the total, as quota does, needs both.
    """
    amount = _parse(value)
    return amount.fraction(), amount.format


def format_quantity(exact: Fraction, fmt: str) -> str:
    """``String()`` of a computed quantity (a sum or a difference) held in ``fmt``.

    The value is rounded up to a whole nano first, as every quantity upstream is.
    """
    unscaled = math.ceil(exact * 10**-_NANO)
    return _format(_Amount(unscaled, _NANO, fmt))
