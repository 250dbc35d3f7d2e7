"""Parse and evaluate label and field selectors exactly as kube-apiserver does.

``kubectl get -l``/``--field-selector`` and every list/watch with ``labelSelector`` or
``fieldSelector`` pass through here, so the grammar, the per-resource field whitelist and the
error texts follow apimachinery's ``labels/selector.go``, ``fields/selector.go``,
``util/validation/validation.go``, ``runtime.DefaultMetaV1FieldSelectorConversion``, and the
field-label conversions and ``ToSelectableFields`` functions of ``pkg/apis/core/v1``,
``pkg/apis/events/v1`` and ``pkg/registry/core/*`` (Kubernetes 1.32).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinykube.api.errors import bad_request, format_value
from tinykube.api.formats import is_qualified_name, is_valid_label_value
from tinykube.api.registry import ResourceType

def _go_strings(values: tuple[str, ...] | None) -> str:
    """A ``[]string`` as Go's ``%#v`` prints it inside a field error."""
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(format_value(v) for v in values) + "}"


def _invalid(path: str, shown: str, detail: str) -> str:
    """``field.Invalid(...).Error()`` with the bad value already rendered."""
    return f"{path}: Invalid value: {shown}: {detail}"


def _aggregate(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(...).Error()``: one message, or ``[a, b]`` without duplicates."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


class _SelectorError(Exception):
    """A selector the apiserver rejects; the text is upstream's and becomes a 400 BadRequest."""


# --- label selectors (apimachinery/pkg/labels/selector.go) -----------------------------------

_SET_OPS = ("in", "notin")
_EXACT_OPS = ("=", "==", "!=")
_ORDER_OPS = ("gt", "lt")
_BINARY_OPS = ("in", "notin", "=", "==", "!=", "gt", "lt")
_UNARY_OPS = ("exists", "!")


@dataclass(frozen=True)
class Requirement:
    """One ``key op values`` term; ``op`` is a ``selection.Operator`` (``in``, ``!``, ``gt``, ...)."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        """``Requirement.Matches``: note that ``!=``/``notin`` match objects without the key."""
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op in ("notin", "!="):
            return self.key not in labels or labels[self.key] not in self.values
        if self.key not in labels:
            return False
        if self.op in _ORDER_OPS:
            return _compare(self.op, labels[self.key], self.values[0])
        return labels[self.key] in self.values


def _is_int64(text: str) -> bool:
    return re.fullmatch(r"[+-]?[0-9]+", text) is not None and -2**63 <= int(text) < 2**63


def _compare(op: str, actual: str, bound: str) -> bool:
    """``gt``/``lt`` compare as int64; a label value that is not an integer never matches."""
    if not _is_int64(actual):
        return False
    return int(actual) > int(bound) if op == "gt" else int(actual) < int(bound)


def _value_count_error(op: str, values: tuple[str, ...] | None) -> str | None:
    count = len(values or ())
    if op in _SET_OPS and count == 0:
        return _invalid("values", _go_strings(values), "for 'in', 'notin' operators, values set can't be empty")
    if op in _EXACT_OPS and count != 1:
        return _invalid("values", _go_strings(values), "exact-match compatibility requires one single value")
    if op in _UNARY_OPS and count != 0:
        return _invalid("values", _go_strings(values), "values set must be empty for exists and does not exist")
    if op in _ORDER_OPS and count != 1:
        return _invalid("values", _go_strings(values), "for 'Gt', 'Lt' operators, exactly one value is required")
    return None


def new_requirement(key: str, op: str, values: tuple[str, ...] | None) -> Requirement:
    """``labels.NewRequirement``: validates key, operator arity and every value, all errors at once.

    ``values=None`` stands for Go's nil slice, which prints differently in the error text.
    """
    errors: list[str] = []
    if key_errors := is_qualified_name(key):
        errors.append(_invalid("key", format_value(key), "; ".join(key_errors)))
    if count_error := _value_count_error(op, values):
        errors.append(count_error)
    vals = tuple(values or ())
    for i, value in enumerate(vals):
        if op in _ORDER_OPS and not _is_int64(value):
            errors.append(_invalid(f"values[{i}]", format_value(value),
                                   "for 'Gt', 'Lt' operators, the value must be an integer"))
    for i, value in enumerate(vals):
        if value_errors := is_valid_label_value(value):
            errors.append(_invalid(f"values[{i}][{key}]", format_value(value), "; ".join(value_errors)))
    if errors:
        raise _SelectorError(_aggregate(errors))
    return Requirement(key, op, vals)


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements, sorted by key; ``nothing`` selects no object at all."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: dict[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


# Lexer tokens: the literal operator text, or one of these names.
_ID, _EOS, _ERROR = "identifier", "end of string", "error"
_SPECIAL = frozenset("=!(),><")
_SYMBOLS = frozenset({")", ",", "!", "==", "=", ">", "<", "!=", "("})
_KEYWORDS = frozenset({"in", "notin"})
_WHITESPACE = " \t\r\n"


def _scan_special(text: str, pos: int) -> tuple[str, str, int]:
    """The longest operator at ``pos`` (``!=`` over ``!``), as ``Lexer.scanSpecialSymbol``."""
    buffer, last = "", ""
    while pos < len(text) and text[pos] in _SPECIAL:
        buffer += text[pos]
        if buffer in _SYMBOLS:
            last = buffer
        elif last:
            break
        pos += 1
    if not last:
        return _ERROR, f"error expected: keyword found '{buffer}'", pos
    return last, last, pos


def _scan_word(text: str, pos: int) -> tuple[str, str, int]:
    start = pos
    while pos < len(text) and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
        pos += 1
    word = text[start:pos]
    return (word if word in _KEYWORDS else _ID), word, pos


def _lex(text: str) -> list[tuple[str, str]]:
    """All tokens up to and including end of string (``Parser.scan``)."""
    items: list[tuple[str, str]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= len(text):
            items.append((_EOS, ""))
            return items
        scan = _scan_special if text[pos] in _SPECIAL else _scan_word
        token, literal, pos = scan(text, pos)
        items.append((token, literal))


class _LabelParser:
    """The recursive-descent parser of ``labels.Parse``, token for token, error text for error text."""

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        """The next token; in value context ``in``/``notin`` are plain identifiers."""
        token, literal = self.items[self.pos]
        return (_ID if values and token in _KEYWORDS else token), literal

    def take(self, values: bool = True) -> tuple[str, str]:
        item = self.peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token, literal = self.peek()
            if token == _EOS:
                return requirements
            if token not in (_ID, "!"):
                raise _SelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self.requirement())
            except _SelectorError as err:
                raise _SelectorError(f"unable to parse requirement: {err}") from None
            token, literal = self.take()
            if token == _EOS:
                return requirements
            if token != ",":
                raise _SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            token, literal = self.peek()
            if token not in (_ID, "!"):
                raise _SelectorError(f"found '{literal}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        key, op = self.key_and_implied_operator()
        if op:
            return new_requirement(key, op, ())
        op = self.operator()
        values = self.value_set() if op in _SET_OPS else self.exact_value()
        return new_requirement(key, op, tuple(sorted(values)))

    def key_and_implied_operator(self) -> tuple[str, str]:
        """The key, and ``exists``/``!`` when no binary operator follows it."""
        token, literal = self.take()
        op = ""
        if token == "!":
            op = "!"
            token, literal = self.take()
        if token != _ID:
            raise _SelectorError(f"found '{literal}', expected: identifier")
        if key_errors := is_qualified_name(literal):
            raise _SelectorError(_invalid("<nil>", format_value(literal), "; ".join(key_errors)))
        if not op and self.peek()[0] in (_EOS, ","):
            op = "exists"
        return literal, op

    def operator(self) -> str:
        token, literal = self.take(values=False)
        ops = {"in": "in", "notin": "notin", "=": "=", "==": "==", "!=": "!=", ">": "gt", "<": "lt"}
        if token not in ops:
            raise _SelectorError(f"found '{literal}', expected: {', '.join(_BINARY_OPS)}")
        return ops[token]

    def value_set(self) -> set[str]:
        token, literal = self.take()
        if token != "(":
            raise _SelectorError(f"found '{literal}' expected: '('")
        token, literal = self.peek()
        if token == ")":
            self.take()
            return {""}
        if token not in (_ID, ","):
            raise _SelectorError(f"found '{literal}', expected: ',', ')' or identifier")
        values = self.identifiers()
        if self.take()[0] != ")":
            raise _SelectorError(f"found '{literal}', expected: ')'")
        return values

    def identifiers(self) -> set[str]:
        """A comma list inside ``(...)`` where empty items are the empty string."""
        values: set[str] = set()
        while True:
            token, literal = self.take()
            if token == _ID:
                values.add(literal)
                follow, follow_literal = self.peek()
                if follow == ")":
                    return values
                if follow != ",":
                    raise _SelectorError(f"found '{follow_literal}', expected: ',' or ')'")
            elif token == ",":
                follow = self.peek()[0]
                if not values or follow in (")", ","):
                    values.add("")
                if follow == ")":
                    return values
            else:
                raise _SelectorError(f"found '{literal}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        if self.peek()[0] in (_EOS, ","):
            return {""}
        token, literal = self.take()
        if token != _ID:
            raise _SelectorError(f"found '{literal}', expected: identifier")
        return {literal}


def _selector(requirements: list[Requirement]) -> LabelSelector:
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a ``labelSelector`` query value; a bad one is a 400 with upstream's message."""
    try:
        return _selector(_LabelParser(text).parse())
    except _SelectorError as err:
        raise bad_request(str(err)) from None


_EXPRESSION_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def _expression(expr: dict[str, Any]) -> Requirement:
    operator = expr.get("operator", "")
    if operator not in _EXPRESSION_OPS:
        raise _SelectorError(f"{format_value(operator)} is not a valid label selector operator")
    values = expr.get("values")
    return new_requirement(expr.get("key", ""), _EXPRESSION_OPS[operator], tuple(values) if values else None)


def from_label_selector_object(sel: dict[str, Any] | None) -> LabelSelector:
    """``metav1.LabelSelectorAsSelector``: ``None`` selects nothing, ``{}`` selects everything."""
    if sel is None:
        return LabelSelector(nothing=True)
    try:
        requirements = [new_requirement(k, "=", (v,)) for k, v in (sel.get("matchLabels") or {}).items()]
        requirements += [_expression(e) for e in sel.get("matchExpressions") or []]
    except _SelectorError as err:
        raise bad_request(str(err)) from None
    return _selector(requirements)


# --- field selectors (apimachinery/pkg/fields/selector.go) -----------------------------------


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not backslash-escaped (escapes are kept for unescaping)."""
    terms, start, escaped = [], 0, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """Split at the first operator; ``!=`` and ``==`` win over ``=`` at the same position."""
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(value: str) -> str:
    """``fields.UnescapeValue``: ``\\\\``, ``\\,``, ``\\=`` are literal; a bare ``,``/``=`` is an error."""
    out, escaped = [], False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise _SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise _SelectorError(f"invalid field selector: unescaped character in value: {ord(char)}")
        else:
            out.append(char)
    if escaped:
        raise _SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _parse_terms(text: str) -> list[tuple[str, str, str]]:
    """``(field, "=" or "!=", value)`` for each term, in sorted term order as upstream."""
    terms = []
    for part in sorted(t for t in _split_terms(text) if t):
        split = _split_term(part)
        if split is None:
            raise _SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = split
        terms.append((field, "!=" if op == "!=" else "=", _unescape(value)))
    return terms


# Field-label conversions: the labels a client may use, mapped to the name matched below.
_META = ("metadata.name", "metadata.namespace")
_POD_FIELDS = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
               "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName")
_EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                 "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                 "reason", "reportingComponent", "source", "type")
_REFERENCE_FIELDS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")


def _same(*labels: str) -> dict[str, str]:
    return {label: label for label in labels}


_FIELD_LABELS: dict[tuple[str, str], dict[str, str]] = {
    ("", "pods"): {**_same(*_META, *_POD_FIELDS), "spec.host": "spec.nodeName"},
    ("", "nodes"): _same("metadata.name", "spec.unschedulable"),
    ("", "events"): _same(*_EVENT_FIELDS, *_META),
    ("", "namespaces"): _same("status.phase", "metadata.name"),
    ("", "secrets"): _same("type", *_META),
    ("", "services"): _same(*_META, "spec.clusterIP", "spec.type"),
    ("events.k8s.io", "events"): {
        **{f"regarding.{f}": f"involvedObject.{f}" for f in _REFERENCE_FIELDS},
        **_same("reason", "source", "type", *_META), "reportingController": "reportingComponent"},
}


def _convert_label(rt: ResourceType, label: str) -> str:
    """The conversion function kube-apiserver registers for this kind, or the metadata-only default."""
    labels = _FIELD_LABELS.get((rt.group, rt.resource))
    if labels is None:
        if label in _META:
            return label
        raise _SelectorError(f'{format_value(label)} is not a known field selector: only "metadata.name", '
                             f'"metadata.namespace"')
    if label not in labels:
        raise _SelectorError(f"field label not supported: {label}")
    return labels[label]


def _dig(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _text(obj: dict[str, Any], path: str) -> str:
    value = _dig(obj, path)
    return "" if value is None else str(value)


def _flag(obj: dict[str, Any], path: str) -> str:
    """A bool field as ``strconv.FormatBool`` (unset is ``false``)."""
    return "true" if _dig(obj, path) else "false"


def pod_ip(pod: dict[str, Any]) -> str:
    """The primary pod IP as the internal API sees it: ``status.podIP`` wins over ``podIPs[0]``."""
    status = pod.get("status") or {}
    ips = status.get("podIPs") or [{}]
    return status.get("podIP") or ips[0].get("ip") or ""


def _pod_fields(pod: dict[str, Any]) -> dict[str, str]:
    """``pod.ToSelectableFields``; ``status.podIPs`` is accepted but never set, so it matches ``""``."""
    fields = {f: _text(pod, f) for f in ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                         "spec.serviceAccountName", "status.phase", "status.nominatedNodeName")}
    return {**fields, "spec.hostNetwork": _flag(pod, "spec.hostNetwork"), "status.podIP": pod_ip(pod)}


def _event_fields(event: dict[str, Any], reference: str, source: str, controller: str) -> dict[str, str]:
    """``event.ToSelectableFields`` for an event whose parts sit at the given paths."""
    fields = {f"involvedObject.{f}": _text(event, f"{reference}.{f}") for f in _REFERENCE_FIELDS}
    reporter = _text(event, controller)
    return {**fields, "reason": _text(event, "reason"), "type": _text(event, "type"),
            "reportingComponent": reporter, "source": _text(event, source) or reporter}


_SELECTABLE: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, str]]] = {
    ("", "pods"): _pod_fields,
    ("", "events"): lambda e: _event_fields(e, "involvedObject", "source.component", "reportingComponent"),
    ("events.k8s.io", "events"): lambda e: _event_fields(e, "regarding", "deprecatedSource.component",
                                                          "reportingController"),
    ("", "nodes"): lambda n: {"spec.unschedulable": _flag(n, "spec.unschedulable")},
    ("", "namespaces"): lambda n: {"status.phase": _text(n, "status.phase")},
    ("", "secrets"): lambda s: {"type": _text(s, "type")},
    ("", "services"): lambda s: {"spec.clusterIP": _text(s, "spec.clusterIP"), "spec.type": _text(s, "spec.type")},
}


@dataclass(frozen=True)
class FieldSelector:
    """Parsed ``fieldSelector`` terms ``(field, "=" | "!=", value)`` with fields already converted."""

    kind: tuple[str, str]  # (group, resource) whose selectable fields are matched
    terms: tuple[tuple[str, str, str], ...] = ()

    def fields(self, obj: dict[str, Any]) -> dict[str, str]:
        """The object's selectable fields; a field the kind does not set compares as ``""``."""
        meta = {f: _text(obj, f) for f in _META}
        specific = _SELECTABLE.get(self.kind)
        return {**meta, **specific(obj)} if specific else meta

    def matches(self, obj: dict[str, Any]) -> bool:
        if not self.terms:
            return True
        fields = self.fields(obj)
        return all((fields.get(f, "") == v) == (op == "=") for f, op, v in self.terms)

    def exact_value(self, field: str) -> str | None:
        """``RequiresExactMatch``: the value an ``=`` term pins ``field`` to (converted field name)."""
        return next((v for f, op, v in self.terms if f == field and op == "="), None)


def parse_field_selector(text: str, rt: ResourceType) -> FieldSelector:
    """Parse a ``fieldSelector`` for ``rt``; bad syntax or an unsupported field is a 400 BadRequest."""
    try:
        terms = [(_convert_label(rt, f), op, v) for f, op, v in _parse_terms(text)]
    except _SelectorError as err:
        raise bad_request(str(err)) from None
    return FieldSelector((rt.group, rt.resource), tuple(terms))

