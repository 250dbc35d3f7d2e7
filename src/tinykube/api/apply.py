"""Tracks field ownership in ``metadata.managedFields`` and merges server-side apply configurations.

This follows apimachinery's ``util/managedfields/internal`` decorator chain (version check,
last-applied manager and updater, skip-non-applied, build-manager-info, managed-fields updater,
strip-meta, structured merge) on top of a compact re-implementation of
``sigs.k8s.io/structured-merge-diff``: field sets, typed compare, merge and prune, with list and
map topology read from the upstream schemas (``x-kubernetes-list-type``/``-list-map-keys``/
``-map-type``, falling back to the patch strategy as kube-openapi's schemaconv does).

A field set is a Python set of paths; a path is a tuple of FieldsV1 path elements such as
``"f:spec"``, ``'k:{"name":"nginx"}'``, ``'v:"finalizer"'`` or ``"i:0"``.  All API versions
of a kind are assumed to share field paths (no conversion), and the cap of ten Update
managers (``capmanagers.go``) is not enforced.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from collections.abc import Iterator
from typing import Any

import orjson

from tinykube.api.errors import ApiError, bad_request
from tinykube.api.patch import field_schema, item_schema, schema_node
from tinykube.api.schemas import by_identity, definitions

Path = tuple[str, ...]
_Identity = tuple[str, str, str, str]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# stripmeta.go: paths never recorded in any manager's set.
_STRIPPED = frozenset(
    [("f:apiVersion",), ("f:kind",), ("f:metadata",)]
    + [
        ("f:metadata", "f:" + name)
        for name in ("name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields", "resourceVersion")
    ]
)
# The OpenAPI ``default`` of list-map key fields, which the bundled schemas do not carry;
# structured-merge-diff uses it to key items that omit the field (ports without protocol).
_KEY_DEFAULTS = {"protocol": "TCP"}
_VALUE_STRUCTS = frozenset({"metadata", "spec", "status", "template", "strategy", "updateStrategy"})
_ELEMENT_RANK = {".": 0, "f:": 1, "k:": 2, "v:": 3, "i:": 4}
_HTML_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))
_MISSING: Any = object()


@dataclass
class _Entry:
    """One managedFields entry, decoded."""

    manager: str
    operation: str
    api_version: str
    subresource: str = ""
    time: str | None = None
    fields: set[Path] = field(default_factory=set)

    @property
    def identity(self) -> _Identity:
        """BuildManagerIdentifier: appliers keep one entry across API versions, updaters do not."""
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)


@dataclass(frozen=True)
class _Scope:
    """What every ownership computation of one request shares."""

    node: dict[str, Any]
    ignored: tuple[Path, ...]
    now: str


class _Conflicts(Exception):
    """Fields another manager owns whose value the apply would change."""

    def __init__(self, owners: dict[_Identity, tuple[_Entry, set[Path]]]):
        super().__init__("apply conflicts")
        self.owners = owners

    def without(self, allowed: set[Path]) -> dict[_Identity, tuple[_Entry, set[Path]]]:
        remaining = {k: (e, paths - allowed) for k, (e, paths) in self.owners.items()}
        return {k: v for k, v in remaining.items() if v[1]}


# --- public API ---------------------------------------------------------------------------


def fields_of(obj: dict[str, Any], definition: str) -> dict[str, Any]:
    """The FieldsV1 set an applier of ``obj`` would own (status and identity fields excluded)."""
    node = _root(definition)
    current, _ = _split(obj)
    return _to_fields_v1(_strip(_without(_field_set(current, node), _ignored(node, ""))))


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    api_version: str,
    now: str,
    definition: str,
    subresource: str = "",
) -> None:
    """Record a create/update/patch by ``manager`` (operation Update) in ``new``'s managedFields.

    Call it on the decoded, defaulted object before admission mutates it, as the apiserver
    does.  The writer gains every field it added or changed; every manager loses the fields
    the write changed or removed.  ``managedFields`` sent in ``new`` replace the live ones
    (``[]`` resets them), except on subresources.
    """
    node = _root(definition)
    scope = _Scope(node, _ignored(node, subresource), now)
    before, live_managed = _split(old)
    requested = new.setdefault("metadata", {}).pop("managedFields", None)
    managed = live_managed if subresource else _requested_managed(requested, live_managed)
    writer = _Entry(manager or "unknown", "Update", api_version, subresource)
    _record(managed, before if old is not None else _zero(node), new, writer, scope)
    _store(new, managed)


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool,
    api_version: str,
    now: str,
    definition: str,
) -> dict[str, Any]:
    """Merge an applied configuration into ``live`` (None on create) and return the new object.

    Raises 409 Conflict when the apply would change a field another manager owns, unless
    ``force``.  The caller fills system metadata and runs defaulting afterwards.
    """
    node = _root(definition)
    scope = _Scope(node, _ignored(node, ""), now)
    _check_applied(applied, api_version, node)
    config = _drop_nulls(applied)
    current, managed = _split(live)
    if live is not None and not managed:
        _record(managed, _zero(node), current, _Entry("before-first-apply", "Update", api_version), scope)
    applier = _Entry(manager or "unknown", "Apply", api_version)
    try:
        merged, managed = _apply(current, config, managed, applier, force, scope)
    except _Conflicts as conflicts:
        allowed = _allowed_by_last_applied(current, node, api_version) if manager == "kubectl" else set()
        remaining = conflicts.without(allowed)
        if remaining:
            raise _conflict_error(remaining) from None
        merged, managed = _apply(current, config, managed, applier, True, scope)
    if manager == "kubectl":
        _sync_last_applied(merged, applied)
    _store(merged, managed)
    return merged


# --- the two operations ---------------------------------------------------------------------


def _record(managed: dict[_Identity, _Entry], before: dict[str, Any], after: dict[str, Any], writer: _Entry, scope: _Scope) -> None:
    """Updater.Update: everyone loses what changed; the writer gains what it added or changed."""
    changed, removed = _changes(before, after, scope)
    for entry in managed.values():
        entry.fields -= changed | removed
    gained = _strip(changed)
    if gained:
        entry = managed.setdefault(writer.identity, writer)
        entry.fields |= gained
        entry.time = scope.now
    _drop_empty(managed)


def _apply(
    live: dict[str, Any],
    config: dict[str, Any],
    managed: dict[_Identity, _Entry],
    applier: _Entry,
    force: bool,
    scope: _Scope,
) -> tuple[dict[str, Any], dict[_Identity, _Entry]]:
    """Updater.Apply: merge, prune what this applier dropped, then take ownership or conflict."""
    managed = {k: replace(e, fields=set(e.fields)) for k, e in managed.items()}
    previous = managed.pop(applier.identity, None)
    merged = _merge(live, config, scope.node)
    applied = _without(_field_set(config, scope.node), scope.ignored)
    if previous is not None:
        owned = applied.union(*(e.fields for e in managed.values()))
        merged = _prune(merged, scope.node, previous.fields, owned)
    changed, removed = _changes(live, merged, scope)
    conflicts = {k: (e, e.fields & changed) for k, e in managed.items() if e.fields & changed}
    if conflicts and not force:
        raise _Conflicts(conflicts)
    for entry in managed.values():
        entry.fields -= changed | removed
    unchanged = _same(live, merged)
    time = (previous.time if previous else None) if unchanged else scope.now
    managed[applier.identity] = replace(applier, time=time, fields=_strip(applied))
    _drop_empty(managed)
    return merged, managed


def _changes(before: dict[str, Any], after: dict[str, Any], scope: _Scope) -> tuple[set[Path], set[Path]]:
    """The (added or modified, removed) paths of a write, minus the strategy's reset fields."""
    added, modified, removed = _compare(before, after, scope.node)
    return _without(added | modified, scope.ignored), _without(removed, scope.ignored)


def _check_applied(applied: dict[str, Any], api_version: str, node: dict[str, Any]) -> None:
    """The version check, managedFields and typed-conversion errors of an apply request."""
    kind = _expected_kind(node, api_version)
    if applied.get("apiVersion") != api_version or (kind and applied.get("kind") != kind):
        raise bad_request(f"invalid object type: {_gvk(applied)}")
    if (applied.get("metadata") or {}).get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    unknown = [_path_string(p) + ": field not declared in schema" for p in _undeclared(applied, node, ())]
    if unknown:
        detail = unknown[0] if len(unknown) == 1 else "errors:\n" + "\n".join("  " + u for u in unknown)
        metadata = applied.get("metadata") or {}
        subject = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}; {_gvk(applied)}"
        raise ApiError(500, "", f"failed to create typed patch object ({subject}): {detail}")


def _allowed_by_last_applied(live: dict[str, Any], node: dict[str, Any], api_version: str) -> set[Path]:
    """lastappliedmanager.go: fields kubectl's client-side apply set and still match live.

    They let ``kubectl apply --server-side`` take over from client-side apply without conflicts.
    """
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        last = json.loads(text) if text else None
    except ValueError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return set()
    added, modified, removed = _compare(last, live, node)
    return _field_set(last, node) - added - modified - removed


def _sync_last_applied(merged: dict[str, Any], applied: dict[str, Any]) -> None:
    """lastappliedupdater.go: keep an existing last-applied annotation equal to what kubectl applied."""
    annotations = (merged.get("metadata") or {}).get("annotations") or {}
    if not annotations.get(LAST_APPLIED):
        return
    body = copy.deepcopy(applied)
    applied_annotations = (body.get("metadata") or {}).get("annotations")
    if isinstance(applied_annotations, dict):
        applied_annotations.pop(LAST_APPLIED, None)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in _HTML_ESCAPES:
        text = text.replace(char, escape)
    annotations[LAST_APPLIED] = text + "\n"


def _conflict_error(owners: dict[_Identity, tuple[_Entry, set[Path]]]) -> ApiError:
    """conflict.go's NewConflictError: one cause per field, message grouped by manager."""
    groups = [(_print_manager(entry), sorted(paths, key=_path_order)) for _, (entry, paths) in sorted(owners.items())]
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {who}", "field": _path_string(path)}
        for who, paths in groups
        for path in paths
    ]
    if len(causes) == 1:
        message = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
    else:
        lines = [line for who, paths in groups for line in [f"conflicts with {who}:", *(f"- {_path_string(p)}" for p in paths)]]
        message = f"Apply failed with {len(causes)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


def _print_manager(entry: _Entry) -> str:
    text = orjson.dumps(entry.manager).decode()
    if entry.subresource:
        text += f" with subresource {orjson.dumps(entry.subresource).decode()}"
    if entry.operation == "Update":
        text += f" using {entry.api_version}"
    return text


# --- schema topology (structured-merge-diff's view of the OpenAPI) ------------------------


def _root(definition: str) -> dict[str, Any]:
    """The schema of a kind; unknown kinds (custom resources) are fully untyped."""
    return schema_node(definitions().get(definition, {}))


@by_identity
def _kind(node: dict[str, Any]) -> str:
    """Classify a node as "struct", "map", "list", "scalar" or "untyped" (free-form JSON)."""
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "array" in types or "items" in node:
        return "list"
    if "properties" in node:
        return "struct"
    if isinstance(node.get("additionalProperties"), dict):
        return "map"
    if "oneOf" in node or {"string", "integer", "number", "boolean"} & set(types):
        return "scalar"
    return "untyped"


def _list_keys(node: dict[str, Any]) -> tuple[str, ...] | None:
    """Keys of an associative list (``()`` for a set), or None for an atomic list."""
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        return tuple(node.get("x-kubernetes-list-map-keys", ()))
    if list_type == "set":
        return ()
    if list_type is None and "merge" in node.get("x-kubernetes-patch-strategy", "").split(","):
        key = node.get("x-kubernetes-patch-merge-key")
        return (key,) if key else ()
    return None


def _granular(value: Any, node: dict[str, Any]) -> bool:
    """Whether a value is tracked member by member rather than as one leaf."""
    if isinstance(value, dict):
        return _granularity(node)[0]
    if isinstance(value, list):
        return _granularity(node)[1]
    return False


@by_identity
def _granularity(node: dict[str, Any]) -> tuple[bool, bool]:
    """Whether an object, and whether a list, under this node is walked member by member."""
    kind = _kind(node)
    return (kind in ("struct", "map", "untyped") and node.get("x-kubernetes-map-type") != "atomic",
            kind == "list" and _list_keys(node) is not None)


def _children(value: dict[str, Any] | list[Any], node: dict[str, Any]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The members of a granular value by path element, each with its schema node."""
    if isinstance(value, dict):
        return {"f:" + key: (child, schema_node(field_schema(node, key))) for key, child in value.items()}
    keys = _list_keys(node) or ()
    item = schema_node(item_schema(node))
    children: dict[str, tuple[Any, dict[str, Any]]] = {}
    for index, child in enumerate(value):
        children.setdefault(_item_element(child, keys, index), (child, item))
    return children


def _item_element(item: Any, keys: tuple[str, ...], index: int) -> str:
    """listItemToPathElement: ``k:`` by key fields, ``v:`` for set values, ``i:`` otherwise."""
    if not keys:
        return "v:" + _json(item)
    if isinstance(item, dict):
        fields = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in keys if k in item or k in _KEY_DEFAULTS}
        return "k:" + _json(fields)
    return f"i:{index}"


def _ignored(node: dict[str, Any], subresource: str) -> tuple[Path, ...]:
    """The strategy's reset fields: status for the main resource, spec for /status."""
    if subresource == "status":
        return (("f:spec",),)
    return (("f:status",),) if "status" in node.get("properties", {}) else ()


def _expected_kind(node: dict[str, Any], api_version: str) -> str | None:
    for gvk in node.get("x-kubernetes-group-version-kind", []):
        version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
        if version == api_version:
            return gvk["kind"]
    return None


@by_identity
def _zero(node: dict[str, Any]) -> dict[str, Any]:
    """The Go zero value of a kind, which a create is compared against (shared: never modify it).

    Non-pointer structs serialize as objects and fields without ``omitempty`` (OpenAPI
    ``required``) as null, so they are not "added" and get no ``"."`` in FieldsV1.  The schema
    does not say which structs are pointers; the conventional value-typed names stand in.
    """
    zero: dict[str, Any] = {}
    for name, prop in node.get("properties", {}).items():
        child = schema_node(prop)
        if name in _VALUE_STRUCTS and _kind(child) == "struct":
            zero[name] = _zero(child)
        elif name in node.get("required", []):
            zero[name] = None
    return zero


# --- typed value operations ---------------------------------------------------------------


def _field_set(value: Any, node: dict[str, Any]) -> set[Path]:
    """ToFieldSet: leaves, map entries and list items of a value (struct fields only as prefixes)."""
    paths: set[Path] = set()
    _collect(value, node, (), paths)
    return paths


def _collect(value: Any, node: dict[str, Any], path: Path, paths: set[Path]) -> None:
    if not _granular(value, node):
        paths.add(path)
        return
    declared = node.get("properties", {})
    for element, (child, child_node) in _children(value, node).items():
        child_path = path + (element,)
        _collect(child, child_node, child_path, paths)
        if not (element.startswith("f:") and element[2:] in declared):
            paths.add(child_path)


def _undeclared(value: Any, node: dict[str, Any], path: Path) -> Iterator[Path]:
    """Paths of struct members the schema does not declare."""
    if not _granular(value, node):
        return
    declared = node.get("properties")
    for element, (child, child_node) in _children(value, node).items():
        child_path = path + (element,)
        if declared is not None and element[2:] not in declared:
            yield child_path
        else:
            yield from _undeclared(child, child_node, child_path)


def _compare(lhs: Any, rhs: Any, node: dict[str, Any]) -> tuple[set[Path], set[Path], set[Path]]:
    """TypedValue.Compare: the (added, modified, removed) paths from ``lhs`` to ``rhs``."""
    result: tuple[set[Path], set[Path], set[Path]] = (set(), set(), set())
    _compare_at(lhs, rhs, node, (), result)
    return result


def _compare_at(lhs: Any, rhs: Any, node: dict[str, Any], path: Path, result: tuple[set[Path], set[Path], set[Path]]) -> None:
    added, modified, removed = result
    if _is_leaf(lhs, rhs, node):
        if lhs is not _MISSING and rhs is not _MISSING and not _same(lhs, rhs):
            modified.add(path)
    else:
        for element, left, right, child_node in _pairs(lhs, rhs, node):
            _compare_at(left, right, child_node, path + (element,), result)
    if lhs is _MISSING:
        added.add(path)
    elif rhs is _MISSING:
        removed.add(path)


def _pairs(lhs: Any, rhs: Any, node: dict[str, Any]) -> Iterator[tuple[str, Any, Any, dict[str, Any]]]:
    """The members of two values side by side.

    Go's value-typed structs (status, spec, ...) always exist, so where one side of a present
    object lacks one it compares as empty rather than as added or removed.
    """
    left = {} if _absent(lhs) else _children(lhs, node)
    right = {} if _absent(rhs) else _children(rhs, node)
    both_objects = isinstance(lhs, dict) and isinstance(rhs, dict)
    for element in left.keys() | right.keys():
        left_value, child_node = left.get(element, (_MISSING, None))
        right_value, child_node = right.get(element, (_MISSING, child_node))
        if both_objects and element.startswith("f:") and element[2:] in _VALUE_STRUCTS and _kind(child_node) == "struct":
            left_value = {} if left_value is _MISSING else left_value
            right_value = {} if right_value is _MISSING else right_value
        yield element, left_value, right_value, child_node


def _is_leaf(lhs: Any, rhs: Any, node: dict[str, Any]) -> bool:
    """Scalars, atomics and pairs of empty (or null) containers compare as one value.

    (Written out rather than over a list of the present sides: it runs for every member of
    every object written.)"""
    left, right = not _absent(lhs), not _absent(rhs)
    if (left and not _granular(lhs, node)) or (right and not _granular(rhs, node)):
        return True
    return not ((left and bool(lhs)) or (right and bool(rhs)))


def _absent(value: Any) -> bool:
    """Missing or null: a null container is walked as an empty one."""
    return value is _MISSING or value is None


def _merge(lhs: Any, rhs: Any, node: dict[str, Any]) -> Any:
    """TypedValue.Merge: the applied value wins at leaves; granular values merge member by member."""
    if rhs is _MISSING:
        return lhs
    if _absent(lhs) or _is_leaf(lhs, rhs, node):
        return copy.deepcopy(rhs)
    if isinstance(rhs, dict):
        merged = dict(lhs)
        for key, value in rhs.items():
            merged[key] = _merge(lhs.get(key, _MISSING), value, schema_node(field_schema(node, key)))
        return merged
    return _merge_list(lhs, rhs, node)


def _merge_list(lhs: list[Any], rhs: list[Any], node: dict[str, Any]) -> list[Any]:
    """Merge associative lists keeping the applied order for shared items, live items in place."""
    left, right = _children(lhs, node), _children(rhs, node)
    left_order, right_order = list(left), list(right)
    shared = [e for e in right_order if e in left]
    upcoming = shared.pop(0) if shared else None
    merged: list[Any] = []
    li = ri = 0
    while li < len(left_order) or ri < len(right_order):
        if li < len(left_order) and ri < len(right_order):
            element = left_order[li]
            if element == right_order[ri]:
                merged.append(_merge(left[element][0], right[element][0], right[element][1]))
                li, ri = li + 1, ri + 1
                upcoming = shared.pop(0) if shared else None
                continue
            if element in right and upcoming is not None and upcoming != element:
                li += 1
                continue
        if li < len(left_order) and left_order[li] not in right:
            merged.append(left[left_order[li]][0])
            li += 1
            continue
        if ri < len(right_order):
            element = right_order[ri]
            merged.append(_merge(left.get(element, (_MISSING,))[0], right[element][0], right[element][1]))
            ri += 1
            if element == upcoming:
                upcoming = shared.pop(0) if shared else None
    return merged


def _prune(merged: dict[str, Any], node: dict[str, Any], last: set[Path], owned: set[Path]) -> dict[str, Any]:
    """Updater.prune: drop what this applier applied last time, unless someone owns it now."""
    doomed = _with_named_fields(last) - _with_named_fields(owned)
    inside = {p[:i] for p in doomed for i in range(len(p))}
    return _remove(merged, node, (), doomed, inside)


def _remove(value: Any, node: dict[str, Any], path: Path, doomed: set[Path], inside: set[Path]) -> Any:
    """RemoveItems: drop members whose path is doomed; containers emptied this way disappear."""
    kept = {}
    for element, (child, child_node) in _children(value, node).items():
        child_path = path + (element,)
        if child_path in doomed:
            continue
        if child_path in inside and _granular(child, child_node):
            pruned = _remove(child, child_node, child_path, doomed, inside)
            if child and not pruned:
                continue
            child = pruned
        kept[element] = child
    if isinstance(value, dict):
        return {element[2:]: child for element, child in kept.items()}
    return list(kept.values())


# --- field sets and managedFields encoding --------------------------------------------------


def _without(paths: set[Path], prefixes: tuple[Path, ...]) -> set[Path]:
    """RecursiveDifference: drop paths at or under any of ``prefixes``."""
    return {p for p in paths if not any(p[: len(q)] == q for q in prefixes)}


def _strip(paths: set[Path]) -> set[Path]:
    return paths - _STRIPPED


def _with_named_fields(paths: set[Path]) -> set[Path]:
    """EnsureNamedFieldsAreMembers: a field with owned children counts as owned itself."""
    named = {p[:i] for p in paths for i in range(1, len(p)) if p[i - 1].startswith("f:")}
    return paths | named


def _to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    """Encode a set as FieldsV1: nested elements, ``"."`` marking a member that has children."""
    tree: dict[str, Any] = {}
    for path in paths:
        branch = tree
        for element in path:
            branch = branch.setdefault(element, {})
        branch["."] = {}
    return _finish(tree)


def _finish(branch: dict[str, Any]) -> dict[str, Any]:
    if len(branch) == 1 and "." in branch:
        return {}
    return {k: {} if k == "." else _finish(v) for k, v in sorted(branch.items(), key=_element_order)}


def _element_order(item: tuple[str, Any]) -> tuple[int, str]:
    return _ELEMENT_RANK.get(item[0][:2], 0), item[0]


def _from_fields_v1(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for element, child in fields.items():
        if element == ".":
            paths.add(prefix)
        elif isinstance(child, dict) and child:
            paths |= _from_fields_v1(child, prefix + (element,))
        else:
            paths.add(prefix + (element,))
    return paths


def _path_order(path: Path) -> tuple[tuple[int, str], ...]:
    return tuple((_ELEMENT_RANK.get(e[:2], 0), e) for e in path)


def _path_string(path: Path) -> str:
    """fieldpath.Path.String: ``.spec.containers[name="nginx"].image``."""
    return "".join(_element_string(e) for e in path)


def _element_string(element: str) -> str:
    kind, body = element[:2], element[2:]
    if kind == "f:":
        return "." + body
    if kind == "k:":
        return "[" + ",".join(f"{k}={_json(v)}" for k, v in json.loads(body).items()) + "]"
    if kind == "v:":
        return f"[={body}]"
    return f"[{body}]"


def _split(obj: dict[str, Any] | None) -> tuple[dict[str, Any], dict[_Identity, _Entry]]:
    """A copy of an object without managedFields, and its decoded entries."""
    if obj is None:
        return {}, {}
    current = copy.deepcopy(obj)
    raw = (current.get("metadata") or {}).pop("managedFields", None)
    return current, _decode(raw) or {}


def _requested_managed(requested: Any, live: dict[_Identity, _Entry]) -> dict[_Identity, _Entry]:
    """decodeLiveOrNew: a client may reset ([] or [{}]) or replace managedFields in a write."""
    if requested == [] or requested == [{}]:
        return {}
    return _decode(requested) or live


def _decode(raw: Any) -> dict[_Identity, _Entry] | None:
    """DecodeManagedFields; None when any entry is invalid (the whole list is then ignored)."""
    if raw is not None and not isinstance(raw, list):
        return None
    managed = {}
    for item in raw or []:
        if not isinstance(item, dict) or item.get("operation") not in ("Apply", "Update"):
            return None
        if not item.get("apiVersion") or item.get("fieldsType") != "FieldsV1" or not isinstance(item.get("fieldsV1") or {}, dict):
            return None
        entry = _Entry(
            item.get("manager") or "",
            item["operation"],
            item["apiVersion"],
            item.get("subresource") or "",
            item.get("time"),
            _from_fields_v1(item.get("fieldsV1") or {}),
        )
        managed[entry.identity] = entry
    return managed


def _store(obj: dict[str, Any], managed: dict[_Identity, _Entry]) -> None:
    """Encode entries sorted as upstream: Apply first, then by time, manager, version, subresource."""
    entries = sorted(managed.values(), key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    metadata = obj.setdefault("metadata", {})
    if entries:
        metadata["managedFields"] = [_encode(e) for e in entries]
    else:
        metadata.pop("managedFields", None)


def _encode(entry: _Entry) -> dict[str, Any]:
    encoded: dict[str, Any] = {"manager": entry.manager, "operation": entry.operation, "apiVersion": entry.api_version}
    if entry.time:
        encoded["time"] = entry.time
    encoded["fieldsType"] = "FieldsV1"
    encoded["fieldsV1"] = _to_fields_v1(entry.fields)
    if entry.subresource:
        encoded["subresource"] = entry.subresource
    return encoded


def _drop_empty(managed: dict[_Identity, _Entry]) -> None:
    for identity in [k for k, e in managed.items() if not e.fields]:
        del managed[identity]


# --- small helpers --------------------------------------------------------------------------


def _drop_nulls(value: Any) -> Any:
    """Nulls in an applied configuration set nothing."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    """Deep equality that, like Go's, tells 1 from 1.0 and true."""
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _gvk(obj: dict[str, Any]) -> str:
    """schema.GroupVersionKind.String of an object's apiVersion and kind."""
    group, _, version = str(obj.get("apiVersion") or "").rpartition("/")
    return f"{group}/{version}, Kind={obj.get('kind') or ''}"
