"""The authorizer's decisions: masters, bootstrappers, and the Node authorizer's rules and messages."""

from __future__ import annotations

from typing import Any

import pytest

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.apiserver.auth import User
from tinykube.apiserver.authz import (CURRENT_USER, Attributes, Authorizer, attributes, node_restriction,
                                      pod_references)
from tinykube.apiserver.requests import request_info

NODE = User("system:node:n1", ("system:nodes", "system:authenticated"))
BOOTSTRAP = User("system:bootstrap:abcdef", ("system:bootstrappers",))
ADMIN = User("system:admin", ("system:masters",))
SERVICE_ACCOUNT = User("system:serviceaccount:default:x", ("system:serviceaccounts",))


def pod(name: str, node: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"nodeName": node, **spec}}


PODS = [pod("mine", "n1", volumes=[{"name": "v", "secret": {"secretName": "s1"}},
                                   {"name": "c", "persistentVolumeClaim": {"claimName": "claim"}}],
            containers=[{"name": "c", "envFrom": [{"configMapRef": {"name": "cm1"}}]}], serviceAccountName="sa1"),
        pod("theirs", "n2", volumes=[{"name": "v", "secret": {"secretName": "s2"}}])]
OBJECTS = {("pods", "ns", "mine"): PODS[0], ("pods", "ns", "theirs"): PODS[1],
           ("persistentvolumeclaims", "ns", "claim"): {"spec": {"volumeName": "pv1"}}}


async def list_pods(namespace: str | None) -> list[dict[str, Any]]:
    return [p for p in PODS if namespace in (None, p["metadata"]["namespace"])]


async def get_object(resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((resource, namespace or "", name))


AUTHZ = Authorizer(list_pods, get_object)


async def decide(user: User, verb: str, resource: str, group: str = "", **kw: str) -> str | None:
    """None when allowed, else the 403 message."""
    try:
        await AUTHZ.authorize(user, Attributes(verb, group, resource, **kw))
    except ApiError as e:
        assert e.code == 403
        return e.message
    return None


async def test_masters_and_other_users_may_do_anything() -> None:
    assert await decide(ADMIN, "delete", "nodes", name="n2") is None
    assert await decide(SERVICE_ACCOUNT, "list", "secrets") is None  # no RBAC yet


async def test_bootstrappers_may_only_ask_for_certificates() -> None:
    assert await decide(BOOTSTRAP, "create", "certificatesigningrequests", "certificates.k8s.io") is None
    assert await decide(BOOTSTRAP, "get", "certificatesigningrequests", "certificates.k8s.io", name="x") is None
    assert await decide(BOOTSTRAP, "list", "pods", namespace="ns") == (
        'pods is forbidden: User "system:bootstrap:abcdef" cannot list resource "pods" in API group "" '
        'in the namespace "ns"')


async def test_a_node_may_write_nodes_and_leaves_the_name_to_node_restriction() -> None:
    assert await decide(NODE, "patch", "nodes", name="n1", subresource="status") is None
    assert await decide(NODE, "update", "nodes", name="n2") is None  # NodeRestriction refuses it
    assert await decide(NODE, "delete", "nodes", name="n1") == (
        'nodes "n1" is forbidden: User "system:node:n1" cannot delete resource "nodes" in API group "" at the '
        "cluster scope")
    assert await decide(NODE, "list", "nodes") is None


async def test_a_node_reads_only_what_its_pods_reference() -> None:
    assert await decide(NODE, "get", "secrets", namespace="ns", name="s1") is None
    assert await decide(NODE, "watch", "configmaps", namespace="ns", name="cm1") is None
    assert await decide(NODE, "get", "secrets", namespace="ns", name="s2") == (
        'secrets "s2" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the '
        "namespace \"ns\": no relationship found between node 'n1' and this object")
    assert (await decide(NODE, "list", "secrets") or "").endswith(": can only read namespaced object of this type")
    assert (await decide(NODE, "list", "secrets", namespace="ns") or "").endswith(": No Object name found")
    assert await decide(NODE, "update", "secrets", namespace="ns", name="s1") is not None
    assert await decide(NODE, "get", "persistentvolumeclaims", namespace="ns", name="claim") is None
    assert await decide(NODE, "get", "persistentvolumes", name="pv1") is None
    assert await decide(NODE, "get", "persistentvolumes", name="pv2") is not None
    assert await decide(NODE, "create", "serviceaccounts", namespace="ns", name="sa1", subresource="token") is None
    assert await decide(NODE, "create", "serviceaccounts", namespace="ns", name="default", subresource="token")


async def test_a_node_deletes_only_pods_bound_to_it() -> None:
    assert await decide(NODE, "patch", "pods", namespace="ns", name="theirs", subresource="status") is None  # admission
    assert await decide(NODE, "delete", "pods", namespace="ns", name="mine") is None
    assert await decide(NODE, "delete", "pods", namespace="ns", name="theirs") == (
        'pods "theirs" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself')
    assert await decide(NODE, "create", "pods", "", namespace="ns", name="theirs", subresource="eviction") is not None
    assert await decide(NODE, "create", "pods", namespace="ns") is not None
    assert await decide(NODE, "update", "pods", namespace="ns", name="mine") is not None
    assert await decide(NODE, "list", "pods") is None


async def test_leases_and_static_rules() -> None:
    group = "coordination.k8s.io"
    assert await decide(NODE, "update", "leases", group, namespace="kube-node-lease", name="n1") is None
    assert (await decide(NODE, "update", "leases", group, namespace="kube-node-lease", name="n2") or "").endswith(
        ": can only access node lease with the same name as the requesting node")
    assert (await decide(NODE, "get", "leases", group, namespace="default", name="n1") or "").endswith(
        ': can only access leases in the "kube-node-lease" system namespace')
    assert await decide(NODE, "create", "events", namespace="ns") is None
    assert await decide(NODE, "watch", "endpointslices", "discovery.k8s.io") is None
    assert await decide(NODE, "delete", "services", namespace="ns", name="x") is not None


def test_attributes_name_a_list_by_its_metadata_name_selector() -> None:
    info = request_info("", "v1", "namespaces/ns/secrets")
    attrs = attributes("GET", info, {"watch": "true", "fieldSelector": "metadata.name=s1"})
    assert (attrs.verb, attrs.namespace, attrs.name) == ("watch", "ns", "s1")
    assert attributes("DELETE", info, {}).verb == "deletecollection"
    assert attributes("PATCH", request_info("", "v1", "nodes/n1/status"), {}).subresource == "status"


def test_pod_references() -> None:
    assert pod_references(PODS[0]) == {("serviceaccounts", "sa1"), ("secrets", "s1"), ("configmaps", "cm1"),
                                       ("persistentvolumeclaims", "claim")}


async def test_node_restriction() -> None:
    nodes, leases, pods = (lookup(g, "v1", r) for g, r in (("", "nodes"), ("coordination.k8s.io", "leases"),
                                                           ("", "pods")))
    assert nodes and leases and pods
    token = CURRENT_USER.set(NODE)
    try:
        await node_restriction(nodes, {"metadata": {"name": "n1"}}, None)
        await node_restriction(pods, PODS[0], PODS[0])
        with pytest.raises(ApiError, match='^nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"$'):
            await node_restriction(nodes, {"metadata": {"name": "n2"}}, {"metadata": {"name": "n2"}})
        with pytest.raises(ApiError, match="can only access node lease with the same name"):
            await node_restriction(leases, {"metadata": {"name": "n2", "namespace": "kube-node-lease"}}, None)
        with pytest.raises(ApiError, match='^pods "theirs" is forbidden: node "n1" can only update pod status for '
                                           "pods with spec.nodeName set to itself$"):
            await node_restriction(pods, PODS[1], PODS[1])
    finally:
        CURRENT_USER.reset(token)
    await node_restriction(nodes, {"metadata": {"name": "n2"}}, None)  # not a node: nothing to restrict
