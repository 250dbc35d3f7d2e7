"""Applies the three PATCH bodies kube-apiserver accepts: JSON patch, merge patch and strategic merge patch.

Each function takes the current object and the decoded request body and returns the patched
object, or raises the :class:`ApiError` kube-apiserver would answer with
(``endpoints/handlers/patch.go``).  Strategic merge patch follows apimachinery's
``util/strategicpatch/patch.go`` server-side path (``StrategicMergeMapPatch``: parallel lists
merged, unmatched nulls ignored), reading the patch strategy and merge keys from the upstream
schemas instead of Go struct tags.  Where the Go code would keep a raw patch fragment that typed
decoding later cleans up (directives or nulls inside newly added values), the fragment is merged
into an empty value instead, which yields the object the apiserver would store.

The small schema helpers at the bottom (:func:`schema_node`, :func:`field_schema`,
:func:`item_schema`) are shared with server-side apply.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer
import orjson

from tinykube.api.errors import ApiError, bad_request, invalid, invalid_value, too_large
from tinykube.api.schemas import by_identity, definitions, resolve

MAX_JSON_PATCH_OPERATIONS = 10000

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_LIST = "$deleteFromPrimitiveList"
_SET_ORDER = "$setElementOrder"

# mergepatch.Err* values the handler maps to 400 (interpretStrategicMergePatchError).
_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
_BAD_SET_ORDER = "invalid patch format of setElementOrder list"

_GO_TYPES = {dict: "map[string]interface {}", list: "[]interface {}", str: "string", int: "int64", float: "float64", bool: "bool"}
_JSON_KINDS = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "bool"}


# --- JSON patch and merge patch ---------------------------------------------------------


def json_patch(obj: dict[str, Any], ops: Any) -> dict[str, Any]:
    """Apply an RFC 6902 patch; malformed bodies are 400, failing operations 422 as upstream."""
    if ops is None:
        return copy.deepcopy(obj)
    if not isinstance(ops, list):
        raise bad_request(f"json: cannot unmarshal {_json_kind(ops)} into Go value of type jsonpatch.Patch")
    malformed = [op for op in ops if op is not None and not isinstance(op, dict)]
    if malformed:
        raise bad_request(f"json: cannot unmarshal {_json_kind(malformed[0])} into Go value of type jsonpatch.Operation")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise too_large(f"Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    try:
        patched = jsonpatch.apply_patch(obj, ops, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, ValueError, KeyError, IndexError):
        # The apiserver wraps every apply failure in NewGenericServerResponse(422), which
        # replaces the library's message with a fixed one.
        raise _unprocessable() from None
    return _require_object(patched)


def merge_patch(obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply an RFC 7386 JSON merge patch (evanphx/json-patch ``MergePatch`` semantics)."""
    if isinstance(patch, list):
        return _require_object(_prune_nulls(patch))
    if not isinstance(patch, dict):
        raise bad_request("Invalid JSON Patch")
    return _merge_value(obj, patch)


def _merge_value(current: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return _prune_nulls(patch)
    merged = copy.deepcopy(current) if isinstance(current, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_value(merged.get(key), value)
    return merged


def _prune_nulls(value: Any) -> Any:
    """Drop null members of objects (not of arrays), as json-patch does for added values."""
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _require_object(patched: Any) -> dict[str, Any]:
    """A patch that turns the object into a non-object fails decoding, reported as 422."""
    if isinstance(patched, dict):
        return patched
    detail = (
        f"couldn't get version/kind; json parse error: json: cannot unmarshal {_json_kind(patched)} into Go value of type "
        'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }'
    )
    raise invalid("", "", [invalid_value("patch", orjson.dumps(patched).decode(), detail)])


# --- strategic merge patch ----------------------------------------------------------------


def strategic_merge_patch(obj: dict[str, Any], patch: Any, definition: str) -> dict[str, Any]:
    """Apply a strategic merge patch to an object whose schema is ``definition``.

    Unknown definitions (e.g. custom resources) have no patch metadata, so their lists are
    replaced and their maps merged, like a merge patch with directives.
    """
    if patch is None:
        return copy.deepcopy(obj)
    if not isinstance(patch, dict):
        raise bad_request(f"json: cannot unmarshal {_json_kind(patch)} into Go value of type map[string]interface {{}}")
    schema = definitions().get(definition, {})
    return _merge_map(copy.deepcopy(obj), copy.deepcopy(patch), schema)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """mergeMap: directives first, then each patch key into ``original`` (mutated)."""
    if _DIRECTIVE in patch:
        return _map_directive(patch, schema)
    node = schema_node(schema)
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, node)
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM_LIST):
            _delete_from_list(original, key, value, node)
        else:
            _merge_field(original, key, value, node)
    return original


def _map_directive(patch: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``$patch: replace`` keeps only the patch, ``$patch: delete`` empties the map."""
    directive = patch[_DIRECTIVE]
    if directive == "replace":
        rest = {k: v for k, v in patch.items() if k != _DIRECTIVE}
        return _merge_map({}, rest, schema)
    if directive == "delete":
        return {}
    raise _server_error(f"unknown patch type: {_go_repr(directive)} in map: {_go_repr(patch)}")


def _merge_field(original: dict[str, Any], key: str, value: Any, node: dict[str, Any]) -> None:
    """Merge one patch member: null deletes, maps and lists recurse, anything else replaces."""
    if value is None:
        original.pop(key, None)
        return
    child = field_schema(node, key)
    current = original.get(key)
    if isinstance(value, dict) and isinstance(current, dict) and _strategy(schema_node(child)) != "replace":
        original[key] = _merge_map(current, value, child)
    elif isinstance(value, list) and isinstance(current, list):
        original[key] = _merge_list_field(current, value, child)
    else:
        original[key] = _fresh(value, child)


def _fresh(value: Any, schema: dict[str, Any]) -> Any:
    """A patch value with no live counterpart, cleaned of directives and nulls.

    Go stores such values raw and lets typed decoding drop what is not a field; merging into
    an empty value gives the same stored object.
    """
    if isinstance(value, dict):
        return _merge_map({}, value, schema)
    if isinstance(value, list):
        item = item_schema(schema_node(schema))
        return [_fresh(v, item) for v in value if not (isinstance(v, dict) and _DIRECTIVE in v)]
    return value


def _merge_list_field(current: list[Any], patch: list[Any], schema: dict[str, Any], deleting: bool = False) -> list[Any]:
    """mergeSliceHandler: lists with patch strategy "merge" merge, all others are replaced."""
    node = schema_node(schema)
    if _strategy(node) != "merge":
        item = item_schema(node)
        return [_fresh(v, item) for v in patch]
    return _merge_slice(current, patch, node, deleting)


def _merge_slice(original: list[Any], patch: list[Any], node: dict[str, Any], deleting: bool) -> list[Any]:
    """mergeSlice: union primitives (or delete them), merge maps by merge key, then reorder."""
    if not original and not patch:
        return original
    kind = _element_type(original, patch)
    key = node.get("x-kubernetes-patch-merge-key", "")
    if kind != dict:
        if deleting:
            doomed = {_scalar_key(v) for v in patch}
            return [v for v in original if _scalar_key(v) not in doomed]
        return _normalize_order(_dedupe(original + patch), patch, original, "")
    if not key:
        raise _server_error("cannot merge lists without merge key for type struct")
    original, patch = _apply_item_directives(original, patch, key, node)
    merged = _merge_items(original, patch, key, item_schema(node))
    return _normalize_order(merged, patch, original, key)


def _apply_item_directives(original: list[Any], patch: list[Any], key: str, node: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """mergeSliceWithSpecialElements: ``$patch: delete`` removes items, ``replace`` the whole list."""
    kept: list[Any] = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            kept.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if key not in item:
                raise _no_merge_key(item, key)
            original = [o for o in original if _find([o], key, item[key]) is None]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _server_error("merging lists cannot yet be specified in the patch")
        else:
            raise _server_error(f"unknown patch type: {_go_repr(directive)} in map: {_go_repr(item)}")
    if replace:
        item = item_schema(node)
        return [_fresh(v, item) for v in kept], []
    return original, kept


def _merge_items(original: list[Any], patch: list[Any], key: str, schema: dict[str, Any]) -> list[Any]:
    """mergeSliceWithoutSpecialElements: merge into the item with the same key, else append."""
    merged = list(original)
    for item in patch:
        if key not in item:
            raise _no_merge_key(item, key)
        index = _find(merged, key, item[key])
        if index is None:
            merged.append(_fresh(item, schema))
        else:
            merged[index] = _merge_map(merged[index], item, schema)
    return merged


def _delete_from_list(original: dict[str, Any], directive: str, value: Any, node: dict[str, Any]) -> None:
    """``$deleteFromPrimitiveList/<field>``: remove the listed values from a merging list."""
    field = _directive_target(directive, _DELETE_FROM_LIST, _BAD_PRIMITIVE_LIST)
    if value is None:
        original.pop(field, None)
        return
    current = original.get(field)
    if isinstance(current, list):
        original[field] = _merge_list_field(current, _expect_list(value), field_schema(node, field), deleting=True)


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """``$retainKeys``: clear every live key not listed; the patch may only set listed keys."""
    if _RETAIN_KEYS not in patch:
        return
    retain = patch.pop(_RETAIN_KEYS)
    if not isinstance(retain, list):
        raise bad_request(_BAD_RETAIN_KEYS)
    allowed = {k for k in retain if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_FROM_LIST, _SET_ORDER)):
            continue
        if key not in allowed:
            raise bad_request(_BAD_RETAIN_KEYS)
    for key in [k for k in original if k not in allowed]:
        del original[key]


def _merge_ordered_lists(original: dict[str, Any], patch: dict[str, Any], node: dict[str, Any]) -> None:
    """mergePatchIntoOriginal: merge each list that has a ``$setElementOrder`` and apply its order.

    Precedence is $setElementOrder, then the patch order, then the live order.
    """
    for directive in [k for k in patch if k.startswith(_SET_ORDER)]:
        order = _expect_list(patch.pop(directive))
        field = _directive_target(directive, _SET_ORDER, _BAD_SET_ORDER)
        current = _expect_list(original[field]) if original.get(field) is not None else None
        patch_list = _expect_list(patch.pop(field)) if patch.get(field) is not None else None
        schema = field_schema(node, field)
        key = schema_node(schema).get("x-kubernetes-patch-merge-key", "")
        _validate_order(patch_list or [], order, key)
        if patch_list is None and current is None:
            continue
        if patch_list is None:
            merged = current
        elif current is None:
            merged = _fresh(patch_list, schema)
        else:
            merged = _merge_list_field(current, patch_list, schema)
        original[field] = _normalize_order(merged, order, current or [], key)


def _validate_order(patch_list: list[Any], order: list[Any], key: str) -> None:
    """validatePatchWithSetOrderList: patch items must appear in the order list, in its order."""
    if not patch_list or not order:
        return
    items = [i for i in patch_list if not (key and _is_map(i) and i.get(_DIRECTIVE) == "delete")]
    pi = si = 0
    while pi < len(items) and si < len(order):
        if isinstance(items[pi], dict) and _DIRECTIVE in items[pi]:
            pi += 1
            continue
        if _merge_key_equal(items[pi], order[si], key):
            pi += 1
        si += 1
    if pi < len(items) and si >= len(order):
        raise _server_error(f"The order in patch list:\n{_go_repr(patch_list)}\n doesn't match {_SET_ORDER} list:\n{_go_repr(order)}\n")


def _normalize_order(merged: list[Any], patch_order: list[Any], server_order: list[Any], key: str) -> list[Any]:
    """normalizeElementOrder: patch items in patch order, server-only items in live order, interleaved."""
    if key:
        _require_keys([*merged, *patch_order, *server_order], key)
    in_patch = [item for item in merged if _index(patch_order, item, key) >= 0]
    server_only = [item for item in merged if _index(patch_order, item, key) < 0]
    in_patch.sort(key=lambda item: _index(patch_order, item, key))
    server_only.sort(key=lambda item: _rank(server_order, item, key))
    return _interleave(server_only, in_patch, server_order, key)


def _interleave(server_only: list[Any], in_patch: list[Any], server_order: list[Any], key: str) -> list[Any]:
    """mergeSortedSlice: a server-only item goes first only if it precedes the next patch item live."""
    result: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if j >= len(in_patch):
            result.append(server_only[i])
            i += 1
            continue
        if i < len(server_only):
            left, right = _index(server_order, server_only[i], key), _index(server_order, in_patch[j], key)
            if left >= 0 and right >= 0 and left < right:
                result.append(server_only[i])
                i += 1
                continue
        result.append(in_patch[j])
        j += 1
    return result


# --- small helpers ------------------------------------------------------------------------


def _strategy(node: dict[str, Any]) -> str:
    """The patch strategy without ``retainKeys`` ("merge", "replace" or "")."""
    strategies = [s for s in node.get("x-kubernetes-patch-strategy", "").split(",") if s and s != "retainKeys"]
    return strategies[0] if strategies else ""


def _directive_target(directive: str, prefix: str, error: str) -> str:
    """The list a parallel directive such as ``$setElementOrder/containers`` applies to."""
    head, sep, field = directive.partition("/")
    if not sep or head != prefix:
        raise bad_request(error)
    return field


def _element_type(original: list[Any], patch: list[Any]) -> type:
    """sliceElementType: all items must share one type, and lists of lists are refused (422)."""
    items = original + patch
    if not items:
        raise _server_error("no elements in any of the given slices")
    if isinstance(items[0], list):
        raise _unprocessable()
    if any(type(v) is not type(items[0]) for v in items):
        raise _server_error(f"list element types are not identical: {_go_repr([original, patch])}")
    return type(items[0])


def _scalar_key(value: Any) -> tuple[str, Any]:
    """Go interface equality: 1 (int64) and 1.0 (float64) or true differ."""
    return (type(value).__name__, value if not isinstance(value, (dict, list)) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def _dedupe(items: list[Any]) -> list[Any]:
    seen: set[tuple[str, Any]] = set()
    unique = []
    for item in items:
        if _scalar_key(item) not in seen:
            seen.add(_scalar_key(item))
            unique.append(item)
    return unique


def _item_id(item: Any, key: str) -> tuple[str, Any]:
    """What identifies a list item: its merge key value for maps, itself for primitives."""
    return _scalar_key(item.get(key) if key and _is_map(item) else item)


def _index(items: list[Any], item: Any, key: str) -> int:
    wanted = _item_id(item, key)
    return next((i for i, candidate in enumerate(items) if _item_id(candidate, key) == wanted), -1)


def _rank(items: list[Any], item: Any, key: str) -> int:
    """Sort position by ``items`` order; unknown items sort last, stably."""
    index = _index(items, item, key)
    return index if index >= 0 else len(items)


def _find(items: list[Any], key: str, value: Any) -> int | None:
    """findMapInSliceBasedOnKeyValue."""
    for index, item in enumerate(items):
        if not _is_map(item):
            raise _server_error(f"value for key {index} is not a map.")
        if key in item and _scalar_key(item[key]) == _scalar_key(value):
            return index
    return None


def _merge_key_equal(left: Any, right: Any, key: str) -> bool:
    if not key:
        return _scalar_key(left) == _scalar_key(right)
    _require_keys([left, right], key)
    return _scalar_key(left[key]) == _scalar_key(right[key])


def _require_keys(items: list[Any], key: str) -> None:
    """Every item of a merging list of maps must be a map carrying the merge key."""
    for item in items:
        if not _is_map(item):
            raise _server_error(_bad_arg_type(dict, item))
        if key not in item:
            raise _no_merge_key(item, key)


def _is_map(value: Any) -> bool:
    return isinstance(value, dict)


def _expect_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _server_error(_bad_arg_type(list, value))
    return value


def _bad_arg_type(expected: type, actual: Any) -> str:
    return f"expected a {_GO_TYPES[expected]}, but received a {_GO_TYPES.get(type(actual), '%!s(<nil>)')}"


def _no_merge_key(item: dict[str, Any], key: str) -> ApiError:
    return _server_error(f"map: {_go_repr(item)} does not contain declared merge key: {key}")


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), "null")


def _go_repr(value: Any) -> str:
    """Go's ``%v`` rendering of decoded JSON, used verbatim in upstream error messages."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_repr(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_repr(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _unprocessable() -> ApiError:
    """NewGenericServerResponse(422, ...): the upstream message hides the underlying error."""
    return ApiError(422, "Invalid", "the server rejected our request due to an error in our request", {})


def _server_error(message: str) -> ApiError:
    """A plain Go error reaching the handler: 500 with an empty (Unknown) reason."""
    return ApiError(500, "", message)


# --- schema navigation (shared with server-side apply) ------------------------------------


@by_identity
def schema_node(schema: dict[str, Any]) -> dict[str, Any]:
    """The definition a field schema points to, carrying the field's own ``x-kubernetes-*``.

    List and patch extensions sit on the referring property, map-type on the definition;
    merging both lets callers ask one dict.
    """
    target = resolve(schema)
    extensions = {k: v for k, v in schema.items() if k.startswith("x-kubernetes-")}
    return {**target, **extensions} if extensions and target is not schema else target


def field_schema(node: dict[str, Any], key: str) -> dict[str, Any]:
    """The schema of member ``key`` of an object node: a property, a map value, or ``{}`` (unknown)."""
    properties = node.get("properties")
    if properties and key in properties:
        return properties[key]
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


def item_schema(node: dict[str, Any]) -> dict[str, Any]:
    """The schema of a list node's items, or ``{}`` when unknown."""
    items = node.get("items")
    return items if isinstance(items, dict) else {}
