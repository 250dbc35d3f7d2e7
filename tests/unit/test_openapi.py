"""The OpenAPI v3 documents carry what kubectl reads: fieldValidation support, patch metadata, schemas.

Each check mirrors a kubectl code path (kubectl-api-contract.md section 4):
``cli-runtime/pkg/resource/query_param_verifier_v3.go`` for apply/create/edit, the apply patcher's
strategic-merge lookup, and ``kubectl explain``'s walk through ``components.schemas``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tinykube.api import openapi, schemas
from tinykube.api.registry import RESOURCES

CORE = "#/components/schemas/io.k8s.api.core.v1."
QUANTITY = "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"


def load(path: str) -> dict[str, Any]:
    built = openapi.document(path)
    assert built is not None
    return orjson.loads(built[0])


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for url, item in doc["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                yield url, method, op


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` / single ``allOf`` the way kubectl explain does."""
    while True:
        if "$ref" in node:
            node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
        elif len(node.get("allOf", ())) == 1:
            node = node["allOf"][0]
        else:
            return node


def all_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from all_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_nodes(value)


def test_build_api_v1_is_fast() -> None:
    openapi._build.cache_clear()
    schemas.definitions.cache_clear()
    start = time.perf_counter()
    openapi.document("api/v1")
    assert time.perf_counter() - start < 1.5


def test_root_lists_every_group_version_with_content_hash() -> None:
    paths = openapi.root()["paths"]
    assert set(paths) == {openapi.group_version_key(rt) for rt in RESOURCES}
    assert {"api/v1", "apis/coordination.k8s.io/v1", "apis/events.k8s.io/v1"} <= set(paths)
    data, digest = openapi.document("api/v1")  # type: ignore[misc]
    assert digest == hashlib.sha512(data).hexdigest().upper()
    assert paths["api/v1"] == {"serverRelativeURL": f"/openapi/v3/api/v1?hash={digest}"}


def test_documents_are_built_once() -> None:
    assert openapi.document("api/v1") is openapi.document("api/v1")


@pytest.mark.parametrize("path", ["api/v2", "apis/apps/v1", "", "api/v1/"])
def test_unknown_group_version(path: str) -> None:
    assert openapi.document(path) is None


def test_document_header() -> None:
    doc = load("api/v1")
    assert doc["openapi"] == "3.0.0"
    assert doc["info"] == {"title": "Kubernetes", "version": "v1.32.0"}


def test_pod_patch_supports_field_validation_and_strategic_merge() -> None:
    """What query_param_verifier_v3 and the apply patcher look for."""
    op = load("api/v1")["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert op["operationId"] == "patchCoreV1NamespacedPod"
    assert op["x-kubernetes-action"] == "patch"
    assert op["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert [p["name"] for p in op["parameters"]] == ["dryRun", "fieldManager", "fieldValidation", "force"]
    assert set(op["requestBody"]["content"]) == {
        "application/apply-patch+yaml", "application/json-patch+json",
        "application/merge-patch+json", "application/strategic-merge-patch+json",
    }


def test_every_patch_operation_lists_field_validation() -> None:
    """kubectl stops at the first PATCH op of a GVK (map order), so all of them must have it."""
    for path in openapi.root()["paths"]:
        for url, method, op in operations(load(path)):
            if method == "patch":
                assert "fieldValidation" in [p["name"] for p in op["parameters"]], url


def test_operation_ids_follow_upstream_names() -> None:
    ids = {op["operationId"]: (url, method, op["x-kubernetes-action"])
           for path in openapi.root()["paths"] for url, method, op in operations(load(path))}
    assert ids["listCoreV1PodForAllNamespaces"] == ("/api/v1/pods", "get", "list")
    assert ids["listCoreV1NamespacedPod"] == ("/api/v1/namespaces/{namespace}/pods", "get", "list")
    assert ids["createCoreV1NamespacedPod"] == ("/api/v1/namespaces/{namespace}/pods", "post", "post")
    assert ids["deleteCoreV1CollectionNamespacedPod"] == ("/api/v1/namespaces/{namespace}/pods", "delete",
                                                          "deletecollection")
    assert ids["replaceCoreV1NamespacedPod"][1:] == ("put", "put")
    assert ids["readCoreV1NamespacedPodStatus"][0] == "/api/v1/namespaces/{namespace}/pods/{name}/status"
    assert ids["patchCoreV1NamespacedPodStatus"][1] == "patch"
    assert ids["readCoreV1Namespace"][0] == "/api/v1/namespaces/{name}"
    assert ids["listCoreV1Node"][0] == "/api/v1/nodes"
    assert ids["patchCoordinationV1NamespacedLease"][0] == \
        "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
    assert ids["listEventsV1EventForAllNamespaces"][0] == "/apis/events.k8s.io/v1/events"
    assert "deleteCoreV1CollectionNamespace" not in ids  # namespaces do not serve deletecollection
    assert "listCoreV1NodeForAllNamespaces" not in ids


def test_operation_details() -> None:
    doc = load("api/v1")
    item = doc["paths"]["/api/v1/namespaces/{namespace}/events/{name}"]
    assert item["delete"]["description"] == "delete an Event"
    assert doc["paths"]["/api/v1/namespaces/{namespace}/endpoints"]["post"]["description"] == "create Endpoints"
    assert [p["name"] for p in item["parameters"]] == ["name", "namespace", "pretty"]
    assert item["put"]["requestBody"]["content"]["*/*"]["schema"]["$ref"] == CORE + "Event"
    assert item["get"]["tags"] == ["core_v1"]
    listing = doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"]
    assert listing["responses"]["200"]["content"]["application/json;stream=watch"]["schema"]["$ref"] == \
        CORE + "PodList"
    assert "watch" in [p["name"] for p in listing["parameters"]]
    status = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"]["put"]
    assert status["description"] == "replace status of the specified Pod"
    assert status["x-kubernetes-group-version-kind"]["kind"] == "Pod"


def test_kinds_carry_group_version_kind_lists() -> None:
    components = load("api/v1")["components"]["schemas"]
    assert components["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"] == \
        [{"group": "", "kind": "Pod", "version": "v1"}]
    lease = load("apis/coordination.k8s.io/v1")["components"]["schemas"]["io.k8s.api.coordination.v1.Lease"]
    assert lease["x-kubernetes-group-version-kind"] == [{"group": "coordination.k8s.io", "kind": "Lease",
                                                         "version": "v1"}]


def test_explain_pod_spec_containers_resolves() -> None:
    doc = load("api/v1")
    pod = next(s for s in doc["components"]["schemas"].values()
               if {"group": "", "kind": "Pod", "version": "v1"} in s.get("x-kubernetes-group-version-kind", []))
    spec_field = pod["properties"]["spec"]
    assert spec_field["allOf"] == [{"$ref": CORE + "PodSpec"}]
    assert spec_field["description"].startswith("Specification of the desired behavior of the pod")
    pod_spec = resolve(doc, spec_field)
    assert pod_spec["required"] == ["containers"]
    containers = pod_spec["properties"]["containers"]
    assert containers["type"] == "array"
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"allOf": [{"$ref": CORE + "Container"}], "default": {}}
    container = resolve(doc, containers["items"])
    assert container["description"] == "A single application container that you want to run within a pod."
    assert container["properties"]["image"]["type"] == "string"
    for name in ("Pod", "PodSpec", "Container"):
        assert doc["components"]["schemas"]["io.k8s.api.core.v1." + name]["description"]


def test_schemas_are_openapi_3_and_closed_under_refs() -> None:
    for path in openapi.root()["paths"]:
        data, _ = openapi.document(path)  # type: ignore[misc]
        assert b"$defs" not in data
        doc = orjson.loads(data)
        components = doc["components"]["schemas"]
        for node in all_nodes(doc):
            if isinstance(node.get("$ref"), str):
                assert node["$ref"].removeprefix("#/components/schemas/") in components, node["$ref"]
                assert set(node) == {"$ref"}
            assert not isinstance(node.get("type"), list)
            assert node.get("additionalProperties") is not False


def test_special_and_map_schemas() -> None:
    components = load("api/v1")["components"]["schemas"]
    int_or_string = components["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert (int_or_string["type"], int_or_string["format"]) == ("string", "int-or-string")
    assert components["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    assert components["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"] == "date-time"
    limits = components["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"] == {"$ref": QUANTITY}
    labels = components["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["labels"]
    assert labels["additionalProperties"] == {"type": "string"}
    assert "enum" not in components["io.k8s.api.core.v1.Pod"]["properties"]["apiVersion"]
    for name in ("Patch", "Status", "DeleteOptions"):
        assert "io.k8s.apimachinery.pkg.apis.meta.v1." + name in components
