"""Build the OpenAPI v3 documents that kubectl fetches from ``/openapi/v3``, one per group-version.

kubectl reads three things from them (kubectl-api-contract.md section 4): whether the PATCH
operation of a kind lists a ``fieldValidation`` parameter (server-side validation for
``apply``/``create``/``edit``), whether it accepts ``application/strategic-merge-patch+json``
(then merge keys come from ``components.schemas``), and the schemas themselves for ``explain``.
Paths are generated from :mod:`tinykube.api.registry` the way kube-apiserver's endpoint
installer names them (``patchCoreV1NamespacedPod``); schemas are the upstream definitions from
:mod:`tinykube.api.schemas`, converted from JSON Schema back to the OpenAPI 3.0 form that
kube-openapi serves (``allOf``-wrapped ``$ref``s under ``#/components/schemas/``).

Documents are built lazily, once per process, and identified by the upper-case SHA-512 of their
bytes, as kube-apiserver's ``/openapi/v3`` root does, so clients may cache them forever.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from tinykube.api.registry import RESOURCES, ResourceType
from tinykube.api.schemas import KUBERNETES_VERSION, definitions, ref_name

Schema = dict[str, Any]

_COMPONENTS = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_MEDIA_TYPES = ("application/json", "application/vnd.kubernetes.protobuf", "application/yaml")
_WATCH_MEDIA_TYPES = ("application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")
_STATUS_TEXT = {"200": "OK", "201": "Created", "202": "Accepted"}

# Query parameters: name -> (schema type, description).  Texts are kube-apiserver's; the
# delete-option ones are read from the DeleteOptions schema so they cannot drift from it.
_QUERY: dict[str, tuple[str, str]] = {
    "pretty": ("string", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent "
               "indicates a browser or command-line HTTP tool (curl and wget)."),
    "fieldManager": ("string", "fieldManager is a name associated with the actor or entity that is making these "
                     "changes. The value must be less than or 128 characters long, and only contain printable "
                     "characters, as defined by https://golang.org/pkg/unicode/#IsPrint."),
    "fieldValidation": ("string", "fieldValidation instructs the server on how to handle objects in the request "
                        "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This "
                        "will ignore any unknown fields that are silently dropped from the object, and will ignore "
                        "all but the last duplicate field that the decoder encounters. This is the default behavior "
                        "prior to v1.23. - Warn: This will send a warning via the standard warning response header "
                        "for each unknown field that is dropped from the object, and for each duplicate field that "
                        "is encountered. The request will still succeed if there are no other errors, and will only "
                        "persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will "
                        "fail the request with a BadRequest error if any unknown fields would be dropped from the "
                        "object, or if any duplicate fields are present. The error returned from the server will "
                        "contain all unknown and duplicate fields encountered."),
    "force": ("boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting "
              "fields owned by other people. Force flag must be unset for non-apply patch requests."),
    "allowWatchBookmarks": ("boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers "
                            "that do not implement bookmarks may ignore this flag and bookmarks are sent at the "
                            "server's discretion. Clients should not assume bookmarks are returned at any specific "
                            "interval, nor may they assume the server will send any BOOKMARK event during a "
                            "session. If this is not a watch, this field is ignored."),
    "continue": ("string", "The continue option should be set when retrieving more results from the server. Since "
                 "this value is server defined, clients may only use the continue value from a previous query "
                 "result with identical query parameters (except for the value of continue) and the server may "
                 "reject a continue value it does not recognize. If the specified continue value is no longer "
                 "valid whether due to expiration (generally five to fifteen minutes) or a configuration change on "
                 "the server, the server will respond with a 410 ResourceExpired error together with a continue "
                 "token.\n\nThis field is not supported when watch is true. Clients may start a watch from the last "
                 "resourceVersion value returned by the server and not miss any modifications."),
    "fieldSelector": ("string", "A selector to restrict the list of returned objects by their fields. Defaults to "
                      "everything."),
    "labelSelector": ("string", "A selector to restrict the list of returned objects by their labels. Defaults to "
                      "everything."),
    "limit": ("integer", "limit is a maximum number of responses to return for a list call. If more items exist, "
              "the server will set the `continue` field on the list metadata to a value that can be used with the "
              "same initial query to retrieve the next set of results. This field is not supported if watch is "
              "true."),
    "resourceVersion": ("string", "resourceVersion sets a constraint on what resource versions a request may be "
                        "served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/"
                        "#resource-versions for details.\n\nDefaults to unset"),
    "resourceVersionMatch": ("string", "resourceVersionMatch determines how resourceVersion is applied to list "
                             "calls. It is highly recommended that resourceVersionMatch be set for list calls where "
                             "resourceVersion is set See https://kubernetes.io/docs/reference/using-api/"
                             "api-concepts/#resource-versions for details.\n\nDefaults to unset"),
    "sendInitialEvents": ("boolean", "`sendInitialEvents=true` may be set together with `watch=true`. In that "
                          "case, the watch stream will begin with synthetic events to produce the current state of "
                          "objects in the collection. Once all such events have been sent, a synthetic "
                          "\"Bookmark\" event  will be sent."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call. This limits the duration of the call, "
                       "regardless of any activity or inactivity."),
    "watch": ("boolean", "Watch for changes to the described resources and return them as a stream of add, "
              "update, and remove notifications. Specify resourceVersion."),
}
_PATCH_FIELD_MANAGER = (" This field is required for apply requests (application/apply-patch) but optional for "
                        "non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).")
_DELETE_OPTIONS = ("dryRun", "gracePeriodSeconds", "ignoreStoreReadErrorWithClusterBreakingPotential",
                   "orphanDependents", "propagationPolicy")
_LIST = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
         "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
_WRITE = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_COLLECTION = tuple(sorted((*_DELETE_OPTIONS, *_LIST[1:-1])))  # list options minus the watch-only ones

# Upstream's 1.32 forms for the two types the JSON-Schema source writes as ``oneOf``.
_SPECIAL_SCHEMAS: dict[str, Schema] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
                       "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to "
                       "have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "type": "string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
                       "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.",
        "type": "string",
    },
}


@dataclass(frozen=True)
class _Action:
    """One kind of operation, as kube-apiserver's endpoint installer describes it."""

    method: str  # HTTP method, lower case: the key under the path item
    verb: str  # operationId prefix
    summary: str  # description; {of} becomes "status of " for the status subresource
    params: tuple[str, ...]
    codes: tuple[str, ...]  # success response codes
    body: str | None  # "object", "patch", "delete" or None
    returns: str  # "object", "list" or "status"


_ACTIONS = {
    "get": _Action("get", "read", "read {of}the specified {kind}", (), ("200",), None, "object"),
    "list": _Action("get", "list", "list or watch objects of kind {kind}", _LIST, ("200",), None, "list"),
    "post": _Action("post", "create", "create{article}{kind}", _WRITE, ("200", "201", "202"), "object", "object"),
    "put": _Action("put", "replace", "replace {of}the specified {kind}", _WRITE, ("200", "201"), "object", "object"),
    "patch": _Action("patch", "patch", "partially update {of}the specified {kind}", (*_WRITE, "force"),
                     ("200", "201"), "patch", "object"),
    "delete": _Action("delete", "delete", "delete{article}{kind}", _DELETE_OPTIONS, ("200", "202"), "delete",
                      "object"),
    "deletecollection": _Action("delete", "delete", "delete collection of {kind}", _DELETE_COLLECTION, ("200",),
                                "delete", "status"),
}
# Registry verb -> action, per path: the collection, one object, and one object's status.
_COLLECTION_ACTIONS = (("list", "list"), ("create", "post"), ("deletecollection", "deletecollection"))
_ITEM_ACTIONS = (("get", "get"), ("update", "put"), ("patch", "patch"), ("delete", "delete"))
_STATUS_ACTIONS = (("get", "get"), ("update", "put"), ("patch", "patch"))


def root() -> dict[str, Any]:
    """The ``/openapi/v3`` discovery document: one ``serverRelativeURL`` per served group-version."""
    return {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={_build(path)[1]}"}
                      for path in _group_versions()}}


def document(gv_path: str) -> tuple[bytes, str] | None:
    """The serialized document for ``api/v1`` or ``apis/<group>/<version>`` and its hash; None if unknown."""
    if gv_path not in _group_versions():
        return None
    return _build(gv_path)


def component_schemas() -> dict[str, Schema]:
    """Every schema the served group-versions' documents hold, by name (the Swagger 2.0 source)."""
    return _components(_roots(RESOURCES))


def group_version_key(rt: ResourceType) -> str:
    """The key a group-version has in the root document: ``api/v1``, ``apis/coordination.k8s.io/v1``."""
    return f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"


@functools.cache
def _group_versions() -> dict[str, tuple[ResourceType, ...]]:
    grouped: dict[str, list[ResourceType]] = {}
    for rt in RESOURCES:
        grouped.setdefault(group_version_key(rt), []).append(rt)
    return {path: tuple(rts) for path, rts in grouped.items()}


@functools.cache
def _build(path: str) -> tuple[bytes, str]:
    """Build, serialize and hash one document; cached because documents never change in a process."""
    resources = _group_versions()[path]
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
        "paths": {url: item for rt in resources for url, item in _resource_paths(rt)},
        "components": {
            "schemas": _components(_roots(resources)),
            "securitySchemes": {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                                                "name": "authorization", "type": "apiKey"}},
        },
    }
    data = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return data, hashlib.sha512(data).hexdigest().upper()


# --- paths ------------------------------------------------------------------------------------


def _resource_paths(rt: ResourceType) -> Iterator[tuple[str, Schema]]:
    """The path items of one resource: collection, object, status, and the all-namespaces list."""
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    scope = "/namespaces/{namespace}" if rt.namespaced else ""
    collection = f"{base}{scope}/{rt.resource}"
    item = collection + "/{name}"
    yield collection, _path_item(rt, _COLLECTION_ACTIONS, named=False)
    yield item, _path_item(rt, _ITEM_ACTIONS, named=True)
    if "status" in rt.subresources:
        yield item + "/status", _path_item(rt, _STATUS_ACTIONS, named=True, subresource="status")
    if rt.namespaced and "list" in rt.verbs:
        yield f"{base}/{rt.resource}", _path_item(rt, (("list", "list"),), named=False, all_namespaces=True)


def _path_item(rt: ResourceType, actions: Iterable[tuple[str, str]], *, named: bool, subresource: str = "",
               all_namespaces: bool = False) -> Schema:
    """One path: its operations (only for verbs the resource supports) and its path-level parameters."""
    namespaced = rt.namespaced and not all_namespaces
    item: Schema = {}
    for verb, name in actions:
        if verb in rt.verbs:
            action = _ACTIONS[name]
            item[action.method] = _operation(rt, name, action, namespaced, subresource, all_namespaces)
    params = [_path_param("name", f"name of the {rt.kind}")] if named else []
    if namespaced:
        params.append(_path_param("namespace", "object name and auth scope, such as for teams and projects"))
    item["parameters"] = [*params, _query_param("pretty")]
    return item


def _operation(rt: ResourceType, name: str, action: _Action, namespaced: bool, subresource: str,
               all_namespaces: bool) -> Schema:
    """One operation with the vendor extensions kubectl keys on (action and an *object* GVK)."""
    op: Schema = {
        "description": action.summary.format(kind=rt.kind, article=_article(rt.kind),
                                             of=f"{subresource} of " if subresource else ""),
        "operationId": _operation_id(rt, name, action, namespaced, subresource, all_namespaces),
        "responses": _responses(rt, action),
        "tags": [f"{_group_word(rt.group, capital=False)}_{rt.version}"],
        "x-kubernetes-action": name,
        "x-kubernetes-group-version-kind": {"group": rt.group, "kind": rt.kind, "version": rt.version},
    }
    if action.params:
        op["parameters"] = [_query_param(p, patch=name == "patch") for p in action.params]
    if action.body:
        op["requestBody"] = _request_body(rt, action.body)
    return op


def _operation_id(rt: ResourceType, name: str, action: _Action, namespaced: bool, subresource: str,
                  all_namespaces: bool) -> str:
    """E.g. ``patchCoreV1NamespacedPodStatus``, ``deleteCoreV1CollectionNamespacedPod``."""
    return "".join((
        action.verb,
        _group_word(rt.group, capital=True),
        rt.version.capitalize(),
        "Collection" if name == "deletecollection" else "",
        "Namespaced" if namespaced else "",
        rt.kind,
        subresource.capitalize(),
        "ForAllNamespaces" if all_namespaces else "",
    ))


def _group_word(group: str, *, capital: bool) -> str:
    """The group as kube-openapi spells it in ids and tags: ``core``, ``coordination``, ``rbacAuthorization``."""
    words = group.removesuffix(".k8s.io").split(".") if group else ["core"]
    word = words[0] + "".join(w.capitalize() for w in words[1:])
    return word[0].upper() + word[1:] if capital else word


def _article(kind: str) -> str:
    """apiserver's GetArticleForNoun: plurals like Endpoints take none, vowels take "an"."""
    if kind.endswith("s") and not kind.endswith("ss"):
        return " "
    return " an " if kind[0] in "AEIOU" else " a "


def _query_param(name: str, *, patch: bool = False) -> Schema:
    kind, description = _QUERY.get(name) or _delete_option(name)
    if patch and name == "fieldManager":
        description += _PATCH_FIELD_MANAGER
    return {"description": description, "in": "query", "name": name,
            "schema": {"type": kind, "uniqueItems": True}}


def _delete_option(name: str) -> tuple[str, str]:
    """Type and description of a DeleteOptions field used as a query parameter (``dryRun`` is a string there)."""
    prop = definitions()[_META + "DeleteOptions"]["properties"][name]
    kind = "string" if name == "dryRun" else _single_type(prop["type"])
    return kind, prop["description"]


def _path_param(name: str, description: str) -> Schema:
    return {"description": description, "in": "path", "name": name, "required": True,
            "schema": {"type": "string", "uniqueItems": True}}


def _request_body(rt: ResourceType, body: str) -> Schema:
    if body == "patch":
        return {"content": {t: _ref_schema(_META + "Patch") for t in _PATCH_TYPES}, "required": True}
    if body == "delete":
        return {"content": {"*/*": _ref_schema(_META + "DeleteOptions")}}
    return {"content": {"*/*": _ref_schema(rt.definition)}, "required": True}


def _responses(rt: ResourceType, action: _Action) -> Schema:
    target = {"object": rt.definition, "list": rt.definition + "List", "status": _META + "Status"}[action.returns]
    media = _MEDIA_TYPES + (_WATCH_MEDIA_TYPES if action.returns == "list" else ())
    responses: Schema = {
        code: {"content": {m: _ref_schema(target) for m in media}, "description": _STATUS_TEXT[code]}
        for code in action.codes
    }
    responses["401"] = {"description": "Unauthorized"}
    return responses


def _ref_schema(name: str) -> Schema:
    return {"schema": {"$ref": _COMPONENTS + name}}


# --- components.schemas -----------------------------------------------------------------------


def _roots(resources: Iterable[ResourceType]) -> list[str]:
    """Schemas the paths refer to; everything else is reached through them."""
    names = [_META + "Patch", _META + "Status", _META + "DeleteOptions"]
    for rt in resources:
        names += [rt.definition, rt.definition + "List"]
    return names


def _components(roots: Iterable[str]) -> dict[str, Schema]:
    """Every definition reachable from ``roots``, converted, keyed by name."""
    out: dict[str, Schema] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name not in out:
            out[name] = _definition(name)
            pending.extend(_refs(out[name]))
    return out


def _definition(name: str) -> Schema:
    return _SPECIAL_SCHEMAS.get(name) or _schema(definitions()[name])


def _refs(node: Any) -> Iterator[str]:
    """Names of all components a converted schema refers to."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield ref_name(value)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _schema(node: Schema) -> Schema:
    """Convert one JSON-Schema node to OpenAPI 3.0, as kube-openapi writes it.

    A ``$ref`` with siblings (a property's description) becomes ``allOf: [{$ref}]`` because
    OpenAPI 3.0 ignores siblings of ``$ref``; ``["string", "null"]`` types lose the null (the
    strict schemas added it); the ``additionalProperties: false`` the strict schemas add to every
    object is dropped, while map value schemas are kept.
    """
    out: Schema = {}
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "type":
            out[key] = _single_type(value)
        elif key == "properties":
            out[key] = {name: _property(name, sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _item(value)
        elif key in ("additionalProperties", "not") and isinstance(value, dict):
            out[key] = _schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_schema(sub) for sub in value]
        elif not (key == "additionalProperties" and value is False):
            out[key] = value
    if "$ref" in node:
        target = {"$ref": _COMPONENTS + ref_name(node["$ref"])}
        return {"allOf": [target], **out} if out else target
    return out


def _item(node: Schema) -> Schema:
    """An array item; struct items are wrapped as kube-openapi does (``allOf`` plus ``default: {}``)."""
    converted = _schema(node)
    if "$ref" in converted and "object" in definitions()[ref_name(node["$ref"])].get("type", ()):
        return {"allOf": [converted], "default": {}}
    return converted


def _property(name: str, node: Schema) -> Schema:
    """A property schema; the ``enum`` the JSON-Schema generator pins on apiVersion/kind is not upstream's."""
    if name in ("apiVersion", "kind") and "enum" in node:
        node = {k: v for k, v in node.items() if k != "enum"}
    return _schema(node)


def _single_type(value: str | list[str]) -> str:
    if isinstance(value, str):
        return value
    return next(t for t in value if t != "null")
