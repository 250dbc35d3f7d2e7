"""The Endpoints and EndpointSlice decisions (pure), the ``kubernetes`` endpoints, and their printers."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tinykube.api import tables
from tinykube.api.registry import lookup
from tinykube.controllers.endpoints import (
    CONTROLLER_NAME, HEADLESS, MANAGED_BY, SERVICE_NAME, SKIP_MIRROR, TRIGGER_TIME, SlicePlan, TriggerTimes, advertise_address,
    desired_endpoints, endpoint_subsets, master_endpoints, master_slice, plan_slices, repack_subsets, slice_endpoint,
    with_trigger_time)

Obj = dict[str, Any]
CREATED = "2025-01-01T00:00:00Z"


def service(name: str = "web", ports: list[Obj] | None = None, cluster_ip: str = "10.43.0.5", **spec: Any) -> Obj:
    return {"metadata": {"namespace": "default", "name": name, "uid": f"uid-{name}", "creationTimestamp": CREATED,
                         "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": cluster_ip, "ipFamilies": ["IPv4"],
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}] if ports is None else ports,
                     **spec}}


def pod(name: str, ip: str | None, ready: bool = True, node: str = "node-1", **extra: Any) -> Obj:
    status: Obj = {"phase": extra.pop("phase", "Running"),
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                   "lastTransitionTime": extra.pop("since", CREATED)}]}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    meta = {"namespace": "default", "name": name, "uid": f"uid-{name}", "labels": {"app": "web"}}
    if extra.pop("deleting", False):
        meta["deletionTimestamp"] = CREATED
    spec = {"nodeName": node, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 9000,
                                                                        "protocol": "TCP"}]}], **extra}
    return {"metadata": meta, "spec": spec, "status": status}


NODES = {"node-1": {"metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "z1"}}}}


def ips(subset: Obj, field: str = "addresses") -> list[str]:
    return [a["ip"] for a in subset.get(field) or []]


# --- Endpoints ----------------------------------------------------------------------------------


def test_ready_and_not_ready_addresses_with_their_pods() -> None:
    subsets = endpoint_subsets(service(), [pod("b", "10.42.0.6"), pod("a", "10.42.0.5"), pod("c", "10.42.0.7", ready=False)])
    assert len(subsets) == 1
    assert ips(subsets[0]) == ["10.42.0.5", "10.42.0.6"] and ips(subsets[0], "notReadyAddresses") == ["10.42.0.7"]
    assert subsets[0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert subsets[0]["addresses"][0] == {"ip": "10.42.0.5", "nodeName": "node-1",
                                          "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}


def test_pods_without_ip_terminal_or_terminating_are_left_out() -> None:
    pods = [pod("a", None), pod("b", "10.42.0.6", phase="Succeeded"), pod("c", "10.42.0.7", deleting=True),
            pod("d", "10.42.0.8")]
    assert [ips(s) for s in endpoint_subsets(service(), pods)] == [["10.42.0.8"]]
    tolerant = endpoint_subsets(service(publishNotReadyAddresses=True), [*pods, pod("e", "10.42.0.9", ready=False)])
    assert ips(tolerant[0]) == ["10.42.0.7", "10.42.0.8", "10.42.0.9"]


def test_named_target_port_resolves_per_pod() -> None:
    named = service(ports=[{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    other = pod("b", "10.42.0.6")
    other["spec"]["containers"][0]["ports"][0]["containerPort"] = 9001
    missing = pod("c", "10.42.0.7")
    missing["spec"]["containers"][0]["ports"] = []
    subsets = endpoint_subsets(named, [pod("a", "10.42.0.5"), other, missing])
    assert sorted((s["ports"][0]["port"], ips(s)[0]) for s in subsets) == [(9000, "10.42.0.5"), (9001, "10.42.0.6")]


def test_headless_service_without_ports_and_hostnames() -> None:
    headless = service("db", ports=[], cluster_ip="None")
    member = pod("db-0", "10.42.0.5", hostname="db-0", subdomain="db")
    stranger = pod("x", "10.42.0.6", hostname="x", subdomain="other")
    subsets = endpoint_subsets(headless, [member, stranger])
    assert subsets == [{"addresses": [
        {"ip": "10.42.0.5", "hostname": "db-0", "nodeName": "node-1",
         "targetRef": {"kind": "Pod", "namespace": "default", "name": "db-0", "uid": "uid-db-0"}},
        {"ip": "10.42.0.6", "nodeName": "node-1",
         "targetRef": {"kind": "Pod", "namespace": "default", "name": "x", "uid": "uid-x"}}]}]
    assert endpoint_subsets(service(ports=[]), [member]) == []  # a ClusterIP Service without ports gets none


def test_repack_groups_addresses_by_their_ports_and_not_ready_wins() -> None:
    a, b = {"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}
    p80, p81 = {"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}
    subsets = repack_subsets([{"addresses": [a], "ports": [p80]}, {"addresses": [b], "ports": [p80]},
                              {"addresses": [a], "ports": [p81]}, {"notReadyAddresses": [a], "ports": [p81]}])
    assert sorted((tuple(ips(s)), tuple(ips(s, "notReadyAddresses")), s["ports"][0]["port"]) for s in subsets) == [
        ((), ("10.0.0.1",), 81), (("10.0.0.1", "10.0.0.2"), (), 80)]
    two = repack_subsets([{"addresses": [a], "ports": [p81]}, {"addresses": [a], "ports": [p80]}])
    assert len(two) == 1 and {p["port"] for p in two[0]["ports"]} == {80, 81}
    assert repack_subsets([{"addresses": [a], "ports": [p80, p81]}]) == two  # one canonical order


def test_endpoints_object_labels_annotation_and_no_op() -> None:
    svc = service()
    subsets = endpoint_subsets(svc, [pod("a", "10.42.0.5")])
    created = desired_endpoints(svc, subsets, None, CREATED)
    assert created is not None and created["metadata"] == {
        "name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {TRIGGER_TIME: CREATED}}
    stored = {**created, "metadata": {**created["metadata"], "resourceVersion": "7"}}
    stored["subsets"][0]["addresses"][0]["targetRef"]["resourceVersion"] = "3"
    assert desired_endpoints(svc, subsets, stored, "") is None
    update = desired_endpoints(svc, [], stored, "")
    assert update is not None and "subsets" not in update and update["metadata"]["resourceVersion"] == "7"
    assert TRIGGER_TIME not in (update["metadata"].get("annotations") or {})
    headless = desired_endpoints(service(cluster_ip="None"), [], None, CREATED)
    assert headless is not None and headless["metadata"]["labels"] == {"app": "web", HEADLESS: ""}


def test_trigger_time_is_creation_first_then_the_oldest_change() -> None:
    times = TriggerTimes()
    svc = service()
    assert times.compute(svc, [pod("a", "10.42.0.5", since="2025-01-02T00:00:00Z")]) == CREATED
    assert times.compute(svc, [pod("a", "10.42.0.5", since="2025-01-02T00:00:00Z")]) == ""
    changed = [pod("a", "10.42.0.5", since="2025-01-04T00:00:00Z"), pod("b", "10.42.0.6", since="2025-01-03T00:00:00Z")]
    assert times.compute(svc, changed) == "2025-01-03T00:00:00Z"


# --- EndpointSlices -----------------------------------------------------------------------------


def test_slice_endpoint_conditions() -> None:
    svc = service()
    assert slice_endpoint(pod("a", "10.42.0.5"), NODES["node-1"], svc) == {
        "addresses": ["10.42.0.5"], "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"},
        "nodeName": "node-1", "zone": "z1"}
    terminating = slice_endpoint(pod("a", "10.42.0.5", deleting=True), None, svc)
    assert terminating is not None and terminating["conditions"] == {"ready": False, "serving": True, "terminating": True}
    tolerant = slice_endpoint(pod("a", "10.42.0.5", ready=False), None, service(publishNotReadyAddresses=True))
    assert tolerant is not None and tolerant["conditions"]["ready"] is True


def stored(plan_slice: Obj, name: str) -> Obj:
    """A created slice as the server would return it."""
    out = with_trigger_time(plan_slice, CREATED)
    out["metadata"] = {**out["metadata"], "name": name, "resourceVersion": "1"}
    out["metadata"].pop("generateName")
    return out


def test_new_service_gets_one_slice_owned_and_labelled() -> None:
    plan = plan_slices(service(), [pod("b", "10.42.0.6"), pod("a", "10.42.0.5", ready=False)], NODES, [])
    assert not plan.update and not plan.delete and len(plan.create) == 1
    created = plan.create[0]
    assert created["metadata"]["generateName"] == "web-"
    assert created["metadata"]["labels"] == {"app": "web", SERVICE_NAME: "web", MANAGED_BY: CONTROLLER_NAME}
    assert created["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                       "uid": "uid-web", "controller": True, "blockOwnerDeletion": True}]
    assert created["addressType"] == "IPv4" and created["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert [(e["addresses"], e["conditions"]["ready"]) for e in created["endpoints"]] == [
        (["10.42.0.5"], False), (["10.42.0.6"], True)]


def test_readiness_change_updates_the_slice_in_place() -> None:
    svc = service()
    existing = stored(plan_slices(svc, [pod("a", "10.42.0.5")], NODES, []).create[0], "web-abcde")
    assert plan_slices(svc, [pod("a", "10.42.0.5")], NODES, [existing]) == SlicePlan()
    plan = plan_slices(svc, [pod("a", "10.42.0.5", ready=False)], NODES, [existing])
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["metadata"]["name"] == "web-abcde"
    assert plan.update[0]["endpoints"][0]["conditions"]["ready"] is False


def test_no_endpoints_left_turns_the_slice_into_the_placeholder() -> None:
    svc = service()
    existing = stored(plan_slices(svc, [pod("a", "10.42.0.5")], NODES, []).create[0], "web-abcde")
    plan = plan_slices(svc, [], NODES, [existing])
    assert not plan.create and not plan.delete
    assert [(s["metadata"]["name"], s["endpoints"], s["ports"]) for s in plan.update] == [("web-abcde", [], [])]
    placeholder = stored(plan_slices(svc, [], NODES, []).create[0], "web-fghij")
    assert placeholder["endpoints"] is None and placeholder["ports"] is None  # as upstream stores them
    assert plan_slices(svc, [], NODES, [placeholder]) == SlicePlan()


def test_foreign_slices_unknown_nodes_and_the_per_slice_limit() -> None:
    svc = service()
    foreign = stored(plan_slices(service(), [pod("a", "10.42.0.5")], NODES, []).create[0], "web-old")
    foreign["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-web"
    pods = [pod(f"p{i}", f"10.42.0.{i}") for i in range(1, 6)] + [pod("lost", "10.42.0.99", node="gone")]
    plan = plan_slices(svc, pods, NODES, [foreign], max_per_slice=2)
    assert [s["metadata"]["name"] for s in plan.delete] == ["web-old"]
    assert sorted(len(s["endpoints"]) for s in plan.create) == [1, 2, 2]
    assert "10.42.0.99" not in {a for s in plan.create for e in s["endpoints"] for a in e["addresses"]}


def test_slices_follow_the_service_labels_and_port_sets() -> None:
    svc = service()
    existing = stored(plan_slices(svc, [pod("a", "10.42.0.5")], NODES, []).create[0], "web-abcde")
    relabelled = service()
    relabelled["metadata"]["labels"] = {"app": "web", "tier": "front"}
    plan = plan_slices(relabelled, [pod("a", "10.42.0.5")], NODES, [existing])
    assert [s["metadata"]["labels"]["tier"] for s in plan.update] == ["front"]
    new_port = service(ports=[{"name": "http", "port": 80, "targetPort": 9999, "protocol": "TCP"}])
    plan = plan_slices(new_port, [pod("a", "10.42.0.5")], NODES, [existing])
    assert [s["metadata"]["name"] for s in plan.update] == ["web-abcde"] and not plan.delete and not plan.create
    assert plan.update[0]["ports"][0]["port"] == 9999


# --- the kubernetes Service -----------------------------------------------------------------------


def test_advertise_address_refuses_what_endpoints_validation_refuses() -> None:
    assert advertise_address("127.0.0.1") is None and advertise_address("::1") is None
    assert advertise_address("169.254.0.9") is None and advertise_address("localhost") is None
    assert advertise_address("192.0.2.7") == "192.0.2.7"


def test_master_endpoints_and_slice() -> None:
    endpoints = master_endpoints(["192.0.2.7"], 6443, None)
    assert endpoints == {"apiVersion": "v1", "kind": "Endpoints",
                         "metadata": {"name": "kubernetes", "namespace": "default", "labels": {SKIP_MIRROR: "true"}},
                         "subsets": [{"addresses": [{"ip": "192.0.2.7"}],
                                      "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}
    assert master_endpoints(["192.0.2.7"], 6443, endpoints) is None
    empty = master_endpoints([], 6443, endpoints)
    assert empty is not None and "subsets" not in empty
    endpoint_slice = master_slice(["192.0.2.7"], 6443, None)
    assert endpoint_slice is not None and endpoint_slice["metadata"]["labels"] == {SERVICE_NAME: "kubernetes"}
    assert endpoint_slice["endpoints"] == [{"addresses": ["192.0.2.7"], "conditions": {"ready": True}}]
    assert master_slice(["192.0.2.7"], 6443, endpoint_slice) is None
    without = master_slice([], 6443, None)
    assert without is not None and without["endpoints"] is None


def test_master_endpoints_list_every_live_api_server_in_one_sorted_subset() -> None:
    endpoints = master_endpoints(["192.0.2.9", "192.0.2.10"], 6443, None)
    assert endpoints is not None
    assert endpoints["subsets"] == [{"addresses": [{"ip": "192.0.2.10"}, {"ip": "192.0.2.9"}],
                                     "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    assert master_endpoints(["192.0.2.10"], 6443, endpoints) is not None  # one server gone: rewritten
    endpoint_slice = master_slice(["192.0.2.9", "192.0.2.10"], 6443, None)
    assert endpoint_slice is not None and [e["addresses"] for e in endpoint_slice["endpoints"]] == [
        ["192.0.2.10"], ["192.0.2.9"]]


# --- printing -------------------------------------------------------------------------------------


def test_endpoint_slice_rows() -> None:
    rt = lookup("discovery.k8s.io", "v1", "endpointslices")
    assert rt is not None and rt.namespaced and rt.kind == "EndpointSlice"
    assert [c["name"] for c in tables.column_definitions(rt)] == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    now = datetime(2025, 1, 1, 0, 1, tzinfo=timezone.utc)
    meta = {"name": "web-abcde", "creationTimestamp": CREATED}
    many = {"metadata": meta, "addressType": "IPv4",
            "ports": [{"name": "a", "port": 80}, {"name": "b"}, {}, {"port": 3}],
            "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)]}
    assert tables.row(rt, many, now)["cells"] == [
        "web-abcde", "IPv4", "80,b,* + 1 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...", "60s"]
    empty = {"metadata": meta, "addressType": "IPv4", "ports": None, "endpoints": None}
    assert tables.row(rt, empty, now)["cells"][2:4] == ["<unset>", "<unset>"]
