"""Server-side Table printing: cells must equal what kube-apiserver 1.32's printers produce."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tinykube.api.errors import ApiError
from tinykube.api.registry import RESOURCES, lookup
from tinykube.api.tables import column_definitions, human_duration, row, table

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
PODS = lookup("", "v1", "pods")


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-1.5, "0s"), (0, "0s"), (45, "45s"), (119, "119s"), (150, "2m30s"), (180, "3m"),
    (599, "9m59s"), (600, "10m"), (12 * 60, "12m"), (179 * 60, "179m"), (3 * 3600, "3h"),
    (3 * 3600 + 20 * 60, "3h20m"), (8 * 3600, "8h"), (30 * 3600, "30h"), (47 * 3600 + 59 * 60, "47h"),
    (2 * 86400, "2d"), (3 * 86400 + 4 * 3600, "3d4h"), (8 * 86400, "8d"), (20 * 86400, "20d"),
    (729 * 86400, "729d"), (2 * 365 * 86400 + 3 * 86400, "2y3d"), (3 * 365 * 86400, "3y"),
    (9 * 365 * 86400 + 40 * 86400, "9y"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def pod(phase: str = "Running", containers: int = 1, statuses: list[dict[str, Any]] | None = None,
        init: list[dict[str, Any]] | None = None, init_statuses: list[dict[str, Any]] | None = None,
        conditions: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "containerStatuses": statuses or [], "conditions": conditions or []}
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    status.update(extra.pop("status", {}))
    return {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(minutes=5),
                         **extra.pop("metadata", {})},
            "spec": {"containers": [{"name": f"c{i}"} for i in range(containers)], "initContainers": init or [],
                     **extra.pop("spec", {})},
            "status": status}


def running(ready: bool = True, restarts: int = 0, **last: Any) -> dict[str, Any]:
    status = {"name": "c0", "ready": ready, "restartCount": restarts, "state": {"running": {}}}
    if last:
        status["lastState"] = {"terminated": last}
    return status


def waiting(reason: str) -> dict[str, Any]:
    return {"name": "c0", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": reason}}}


def terminated(reason: str = "", exit_code: int = 1, signal: int = 0, name: str = "c0") -> dict[str, Any]:
    state = {"exitCode": exit_code, "reason": reason, **({"signal": signal} if signal else {})}
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": state}}


def cells(obj: dict[str, Any], resource: str = "pods", group: str = "") -> list[Any]:
    rt = next(r for r in RESOURCES if r.group == group and r.resource == resource)
    return row(rt, obj, NOW, "None")["cells"]


def status_of(obj: dict[str, Any]) -> str:
    return cells(obj)[2]


INITS = [{"name": "i0"}, {"name": "i1"}]


@pytest.mark.parametrize("obj,expected", [
    (pod("Pending"), "Pending"),
    (pod("Pending", statuses=[waiting("ContainerCreating")]), "ContainerCreating"),
    (pod("Pending", init=INITS, init_statuses=[waiting("PodInitializing") | {"name": "i0"}]), "Init:0/2"),
    (pod("Pending", init=INITS, init_statuses=[terminated("Completed", 0, name="i0"),
                                               {"name": "i1", "state": {"running": {}}}]), "Init:1/2"),
    (pod("Pending", init=INITS, init_statuses=[terminated("Error", name="i0")]), "Init:Error"),
    (pod("Pending", init=INITS, init_statuses=[terminated(exit_code=3, name="i0")]), "Init:ExitCode:3"),
    (pod("Pending", init=INITS, init_statuses=[terminated(signal=9, name="i0")]), "Init:Signal:9"),
    (pod("Pending", init=INITS, init_statuses=[waiting("CrashLoopBackOff") | {"name": "i0"}]),
     "Init:CrashLoopBackOff"),
    (pod("Pending", init=INITS, statuses=[waiting("PodInitializing")],
         init_statuses=[terminated("Completed", 0, name="i0"), terminated("Completed", 0, name="i1")]),
     "PodInitializing"),
    (pod(statuses=[running()], conditions=[{"type": "Ready", "status": "True"}]), "Running"),
    (pod(statuses=[waiting("CrashLoopBackOff")]), "CrashLoopBackOff"),
    (pod("Succeeded", statuses=[terminated("Completed", 0)]), "Completed"),
    (pod("Failed", statuses=[terminated("Error")]), "Error"),
    (pod("Failed", statuses=[terminated("OOMKilled", 137)]), "OOMKilled"),
    (pod("Failed", statuses=[terminated(exit_code=2)]), "ExitCode:2"),
    (pod("Failed", statuses=[terminated(signal=15)]), "Signal:15"),
    (pod(containers=2, statuses=[running(), terminated("Completed", 0, name="c1")],
         conditions=[{"type": "Ready", "status": "True"}]), "Running"),
    (pod(containers=2, statuses=[running(), terminated("Completed", 0, name="c1")]), "NotReady"),
    (pod(statuses=[running()], metadata={"deletionTimestamp": ago(seconds=3)}), "Terminating"),
    (pod("Succeeded", statuses=[terminated("Completed", 0)], metadata={"deletionTimestamp": ago(seconds=3)}),
     "Completed"),
    (pod(statuses=[running()], metadata={"deletionTimestamp": ago(seconds=3)}, status={"reason": "NodeLost"}),
     "Unknown"),
    (pod("Failed", status={"reason": "Evicted"}), "Evicted"),
    (pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
     "SchedulingGated"),
])
def test_pod_status(obj: dict[str, Any], expected: str) -> None:
    assert status_of(obj) == expected


def test_pod_ready_restarts_and_wide_cells() -> None:
    obj = pod(containers=2, statuses=[running(restarts=2, finishedAt=ago(minutes=2)),
                                      running(ready=False, restarts=1, finishedAt=ago(minutes=9)) | {"name": "c1"}],
              spec={"nodeName": "node-1", "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]},
              conditions=[{"type": "x", "status": "True"}, {"type": "y", "status": "False"}],
              status={"podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}]})
    assert cells(obj) == ["web", "1/2", "Running", "3 (2m ago)", "5m", "10.0.0.7", "node-1", "<none>", "1/2"]


def test_pod_restarts_without_finish_time_and_unknown_age() -> None:
    obj = pod(statuses=[running(restarts=4)])
    del obj["metadata"]["creationTimestamp"]
    assert cells(obj)[3:5] == ["4", "<unknown>"]


def test_sidecar_init_containers_count_as_containers() -> None:
    sidecar = {"name": "i0", "restartPolicy": "Always"}
    obj = pod(init=[sidecar], statuses=[running()],
              init_statuses=[running(restarts=1, finishedAt=ago(minutes=1)) | {"name": "i0", "started": True}],
              conditions=[{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}])
    assert cells(obj)[1:4] == ["2/2", "Running", "1 (60s ago)"]


def test_terminal_pods_carry_completed_row_condition() -> None:
    completed = {"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}
    assert row(PODS, pod("Succeeded"), NOW, "None")["conditions"] == [completed]
    assert row(PODS, pod("Failed"), NOW, "None")["conditions"][0]["message"] == "The pod failed."
    assert "conditions" not in row(PODS, pod(), NOW, "None")


def test_include_object_variants() -> None:
    obj = pod()
    meta = row(PODS, obj, NOW, "Metadata")["object"]
    assert meta == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    full = row(PODS, obj, NOW, "Object")["object"]
    assert full["kind"] == "Pod" and full["apiVersion"] == "v1" and full["spec"] == obj["spec"]
    assert "object" not in row(PODS, obj, NOW, "None")
    with pytest.raises(ApiError) as err:
        row(PODS, obj, NOW, "Bogus")
    assert err.value.code == 400 and err.value.message == 'unrecognized includeObject value: "Bogus"'


def test_table_envelope() -> None:
    result = table(PODS, [pod()], NOW, "None", resource_version="42", continue_token="abc", remaining=3)
    assert list(result) == ["kind", "apiVersion", "metadata", "columnDefinitions", "rows"]
    assert result["kind"] == "Table" and result["apiVersion"] == "meta.k8s.io/v1"
    assert result["metadata"] == {"resourceVersion": "42", "continue": "abc", "remainingItemCount": 3}
    assert [c["name"] for c in result["columnDefinitions"]] == [
        "Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
    assert result["columnDefinitions"][0]["format"] == "name"
    assert result["columnDefinitions"][0]["description"].startswith("Name must be unique within a namespace.")
    assert [c["priority"] for c in result["columnDefinitions"]] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert table(PODS, [], NOW, no_headers=True)["columnDefinitions"] is None


def test_every_resource_has_columns_matching_its_cells() -> None:
    for rt in RESOURCES:
        columns = column_definitions(rt)
        assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in columns)
        assert all(c["description"] for c in columns), rt.resource
        assert len(row(rt, {"metadata": {"name": "x"}}, NOW, "None")["cells"]) == len(columns), rt.resource


def core_event(**extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c0}"},
            "reason": "BackOff", "message": "Back-off restarting failed container\n", "type": "Warning",
            "source": {"component": "kubelet", "host": "node-1"}, "firstTimestamp": ago(minutes=30),
            "lastTimestamp": ago(minutes=2), "count": 7, **extra}


def test_event_row() -> None:
    assert [c["name"] for c in column_definitions(lookup("", "v1", "events"))] == [
        "Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count", "Name"]
    assert cells(core_event(), "events") == [
        "2m", "Warning", "BackOff", "pod/web", "spec.containers{c0}", "kubelet, node-1",
        "Back-off restarting failed container", "30m", 7, "web.17a"]


def test_event_series_and_event_time() -> None:
    series = {"count": 4, "lastObservedTime": ago(seconds=31).replace("Z", ".500000Z")}  # 30.5s: truncated
    event = core_event(firstTimestamp=None, lastTimestamp=None, count=0, source={}, series=series,
                       eventTime="2025-01-01T11:00:00.000000Z", reportingComponent="scheduler")
    printed = cells(event, "events")
    assert [printed[0], printed[5], printed[7], printed[8]] == ["30s", "scheduler", "60m", 4]
    single = core_event(firstTimestamp=None, lastTimestamp=None, count=None, eventTime=ago(seconds=10))
    assert cells(single, "events")[7:9] == ["10s", 1] and cells(single, "events")[0] == "10s"


def test_events_k8s_io_event_row() -> None:
    event = {"metadata": {"name": "e1", "namespace": "default"}, "regarding": {"kind": "Node", "name": "n1"},
             "note": "Node n1 status is now: NodeReady", "reason": "NodeReady", "type": "Normal",
             "eventTime": ago(minutes=3), "reportingController": "kubelet", "reportingInstance": "n1"}
    assert cells(event, "events", "events.k8s.io") == [
        "3m", "Normal", "NodeReady", "node/n1", "", "kubelet, n1", "Node n1 status is now: NodeReady", "3m", 1,
        "e1"]


def meta(name: str = "x", **extra: Any) -> dict[str, Any]:
    return {"name": name, "creationTimestamp": ago(hours=30), **extra}


def test_simple_resources() -> None:
    assert cells({"metadata": meta("default"), "status": {"phase": "Active"}}, "namespaces") == [
        "default", "Active", "30h"]
    assert cells({"metadata": meta(), "data": {"a": "1"}, "binaryData": {"b": "AA=="}}, "configmaps") == [
        "x", 2, "30h"]
    assert cells({"metadata": meta(), "type": "Opaque", "data": {"a": "MQ=="}}, "secrets") == [
        "x", "Opaque", 1, "30h"]
    assert cells({"metadata": meta()}, "serviceaccounts") == ["x", 0, "30h"]
    assert cells({"metadata": meta(), "spec": {"holderIdentity": "node-1"}}, "leases", "coordination.k8s.io") == [
        "x", "node-1", "30h"]


def test_service_row() -> None:
    svc = {"metadata": meta("web"), "spec": {
        "type": "NodePort", "clusterIPs": ["10.96.0.10"], "selector": {"b": "2", "a": "1"},
        "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}
    assert cells(svc, "services") == ["web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53/UDP", "30h",
                                      "a=1,b=2"]
    lb = {"metadata": meta(), "spec": {"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]},
          "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "5.6.7.8"}]}}}
    assert cells(lb, "services")[2:5] == ["<none>", "5.6.7.8,lb.example,1.2.3.4", "<none>"]
    assert cells({"metadata": meta(), "spec": {"type": "LoadBalancer"}}, "services")[3] == "<pending>"
    assert cells({"metadata": meta(), "spec": {"type": "ExternalName", "externalName": "a.b"}}, "services")[3] == "a.b"


def test_endpoints_row() -> None:
    subsets = [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}], "ports": [{"port": 80}, {"port": 443}]}]
    assert cells({"metadata": meta(), "subsets": subsets}, "endpoints")[1] == (
        "10.0.0.1:80,[fd00::2]:80,10.0.0.1:443 + 1 more...")
    assert cells({"metadata": meta(), "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}, "endpoints")[1] == "10.0.0.1"
    assert cells({"metadata": meta()}, "endpoints")[1] == "<none>"


def test_node_row() -> None:
    node = {"metadata": meta("n1", labels={"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "gpu"}),
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "False"}],
                       "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian"}}}
    assert cells(node, "nodes") == ["n1", "NotReady,SchedulingDisabled", "control-plane,gpu", "30h", "v1.32.0",
                                    "192.0.2.1", "<none>", "Debian", "<unknown>", "<unknown>"]
    assert cells({"metadata": meta()}, "nodes")[1:3] == ["Unknown", "<none>"]


def test_volume_rows() -> None:
    pv = {"metadata": meta("pv1", annotations={"volume.beta.kubernetes.io/storage-class": "beta"}),
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                   "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "ns", "name": "c"},
                   "storageClassName": "std", "volumeMode": "Filesystem"},
          "status": {"phase": "Bound"}}
    assert cells(pv, "persistentvolumes") == ["pv1", "1Gi", "RWO,RWX", "Retain", "Bound", "ns/c", "beta", "<unset>",
                                              "", "30h", "Filesystem"]
    pending = {"metadata": meta("c"), "spec": {"storageClassName": "std"}, "status": {"phase": "Pending"}}
    assert cells(pending, "persistentvolumeclaims") == ["c", "Pending", "", "", "", "std", "<unset>", "30h",
                                                        "<unset>"]
    bound = {"metadata": meta("c", deletionTimestamp=ago(seconds=1)),
             "spec": {"volumeName": "pv1", "volumeMode": "Block"},
             "status": {"phase": "Bound", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOncePod"]}}
    assert cells(bound, "persistentvolumeclaims") == ["c", "Terminating", "pv1", "5Gi", "RWOP", "", "<unset>", "30h",
                                                      "Block"]
