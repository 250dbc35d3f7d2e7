"""The control plane as kubectl users see it: the tutorial's commands that need no container."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from tests.e2e.cluster import EXAMPLES, Cluster

pytestmark = pytest.mark.slow

TUTORIAL = ["nginx-pod.yaml", "web-app.yaml", "init-demo.yaml", "pod-1-and-pod-2.yaml", "storage-pod.yaml",
            "resource-pod.yaml", "security-pod.yaml"]


def _storage_prereqs(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "create", "configmap", "nginx-config", "--from-literal=default.conf=server{}")
    cluster.kubectl("-n", ns, "create", "secret", "generic", "app-secret", "--from-literal=password=s3cret")
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-pvc"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(pvc))


def test_version_reports_1_32(cluster: Cluster) -> None:
    out = cluster.kubectl("version", "-o", "json").stdout
    assert json.loads(out)["serverVersion"]["minor"] == "32"


def test_apply_every_tutorial_manifest(cluster: Cluster, ns: str) -> None:
    _storage_prereqs(cluster, ns)
    for manifest in TUTORIAL:
        out = cluster.kubectl("-n", ns, "apply", "-f", manifest).stdout
        assert "created" in out, out
    for manifest in TUTORIAL:
        out = cluster.kubectl("-n", ns, "apply", "-f", manifest).stdout
        # As on a real cluster, a pod listing volumes re-applies as "configured": its live volumes also hold the
        # injected kube-api-access one, so kubectl's three-way patch carries $setElementOrder directives.
        again = "configured" if "volumes:" in (EXAMPLES / manifest).read_text() else "unchanged"
        assert again in out and "created" not in out, out
    names = cluster.kubectl("-n", ns, "get", "pods", "-o", "name").stdout.split()
    assert len(names) == 8


def test_apply_configured_changes_label(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "nginx-pod.yaml")
    doc = yaml.safe_load((EXAMPLES / "nginx-pod.yaml").read_text())
    doc["metadata"]["labels"]["app"] = "nginx2"
    out = cluster.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(doc)).stdout
    assert "pod/nginx-pod configured" in out
    labels = cluster.kubectl("-n", ns, "get", "pod", "nginx-pod", "-o", "jsonpath={.metadata.labels.app}").stdout
    assert labels == "nginx2"


def test_server_side_apply_and_conflict(cluster: Cluster, ns: str) -> None:
    out = cluster.kubectl("-n", ns, "apply", "--server-side", "-f", "web-app.yaml").stdout
    assert "pod/web-app serverside-applied" in out
    cluster.kubectl("-n", ns, "label", "pod", "web-app", "app=other", "--overwrite")
    failed = cluster.kubectl("-n", ns, "apply", "--server-side", "-f", "web-app.yaml", check=False)
    assert failed.returncode != 0
    assert "conflict" in failed.stderr and ".metadata.labels.app" in failed.stderr, failed.stderr
    cluster.kubectl("-n", ns, "apply", "--server-side", "--force-conflicts", "-f", "web-app.yaml")
    assert cluster.kubectl("-n", ns, "get", "pod", "web-app", "-o", "jsonpath={.metadata.labels.app}").stdout == "web"


def test_get_outputs(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "nginx-pod.yaml", "-f", "web-app.yaml")
    table = cluster.kubectl("-n", ns, "get", "pods").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table[1].split()[:4] == ["nginx-pod", "0/1", "Pending", "0"]
    wide = cluster.kubectl("-n", ns, "get", "pods", "-o", "wide").stdout.splitlines()[0]
    assert wide.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                            "READINESS", "GATES"]
    pod = yaml.safe_load(cluster.kubectl("-n", ns, "get", "pod", "nginx-pod", "-o", "yaml").stdout)
    assert pod["status"]["qosClass"] == "Burstable"
    assert pod["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"
    listed = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-o", "json").stdout)
    assert {p["metadata"]["name"] for p in listed["items"]} == {"nginx-pod", "web-app"}
    labels = cluster.kubectl("-n", ns, "get", "pods", "--show-labels").stdout
    assert "app=nginx" in labels and "app=web" in labels
    assert "web-app" in cluster.kubectl("get", "pods", "-A").stdout
    selected = cluster.kubectl("-n", ns, "get", "pods", "-l", "app=web", "-o", "name").stdout.split()
    assert selected == ["pod/web-app"]


def test_get_watch_prints_changes(cluster: Cluster, ns: str) -> None:
    watcher = cluster.popen("-n", ns, "get", "pods", "-w")
    try:
        time.sleep(1.0)
        cluster.kubectl("-n", ns, "apply", "-f", "nginx-pod.yaml")
        cluster.kubectl("-n", ns, "label", "pod", "nginx-pod", "tier=web")
        time.sleep(1.0)
        assert watcher.poll() is None, "kubectl get -w must stay open"
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    lines = [line for line in out.splitlines() if line.startswith("nginx-pod")]
    assert len(lines) >= 2, out


def test_describe_shows_qos_and_resources(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "nginx-pod.yaml")
    out = cluster.kubectl("-n", ns, "describe", "pod", "nginx-pod").stdout
    assert "QoS Class:" in out and "Burstable" in out
    assert re.search(r"Limits:\s+cpu:\s+500m\s+memory:\s+128Mi", out), out
    assert re.search(r"Requests:\s+cpu:\s+250m\s+memory:\s+64Mi", out), out
    assert "80/TCP" in out


def test_label_delete_and_wait(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "nginx-pod.yaml")
    assert "pod/nginx-pod labeled" in cluster.kubectl("-n", ns, "label", "pod", "nginx-pod", "tier=front").stdout
    waiter = cluster.popen("-n", ns, "wait", "--for=delete", "pod/nginx-pod", "--timeout=30s")
    out = cluster.kubectl("-n", ns, "delete", "pod", "nginx-pod").stdout
    assert 'pod "nginx-pod" deleted' in out
    assert waiter.wait(timeout=30) == 0
    assert cluster.kubectl("-n", ns, "get", "pod", "nginx-pod", check=False).returncode != 0


def test_events_sorted(cluster: Cluster, ns: str) -> None:
    for i in range(2):
        event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"e{i}"},
                 "involvedObject": {"kind": "Pod", "name": "nginx-pod", "namespace": ns, "apiVersion": "v1"},
                 "reason": f"Reason{i}", "message": f"message {i}", "type": "Normal",
                 "firstTimestamp": f"2026-01-01T00:00:0{i}Z", "lastTimestamp": f"2026-01-01T00:00:0{i}Z", "count": 1,
                 "source": {"component": "test"}}
        cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(event))
    lines = cluster.kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp").stdout.splitlines()
    assert lines[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert "Reason0" in lines[1] and "Reason1" in lines[2]
    assert "pod/nginx-pod" in lines[1]


def test_create_configmap_and_secret(cluster: Cluster, ns: str) -> None:
    assert "configmap/cfg created" in cluster.kubectl("-n", ns, "create", "configmap", "cfg", "--from-literal=a=b").stdout
    assert "secret/sec created" in cluster.kubectl("-n", ns, "create", "secret", "generic", "sec", "--from-literal=a=b").stdout
    cm = json.loads(cluster.kubectl("-n", ns, "get", "configmap", "cfg", "-o", "json").stdout)
    assert cm["data"] == {"a": "b"}
    secret = json.loads(cluster.kubectl("-n", ns, "get", "secret", "sec", "-o", "json").stdout)
    assert secret["type"] == "Opaque" and secret["data"] == {"a": "Yg=="}
    dup = cluster.kubectl("-n", ns, "create", "configmap", "cfg", "--from-literal=a=b", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr


def test_explain_and_api_resources(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "pod.spec.containers").stdout
    assert "KIND:" in out and "Pod" in out and "image" in out
    resources = cluster.kubectl("api-resources").stdout
    for name in ("pods", "configmaps", "secrets", "namespaces", "events", "leases", "services", "nodes"):
        assert name in resources


def test_namespace_has_default_serviceaccount_and_deletion_empties_it(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "doomed")
    deadline = time.monotonic() + 10
    while cluster.kubectl("-n", "doomed", "get", "serviceaccount", "default", check=False).returncode != 0:
        assert time.monotonic() < deadline, "no default ServiceAccount"
        time.sleep(0.1)
    cluster.kubectl("-n", "doomed", "apply", "-f", "nginx-pod.yaml")
    cluster.kubectl("-n", "doomed", "create", "configmap", "c", "--from-literal=a=b")
    cluster.kubectl("delete", "namespace", "doomed", "--timeout=30s")
    assert cluster.kubectl("get", "namespace", "doomed", check=False).returncode != 0
    assert cluster.kubectl("get", "pods", "-A", "--field-selector", "metadata.namespace=doomed", "-o", "name").stdout == ""


BAD = {
    "no image": ({"name": "c"}, "spec.containers[0].image: Required value"),
    "bad name": ("Bad_Name", 'metadata.name: Invalid value: "Bad_Name"'),
    "port 70000": ({"name": "c", "image": "busybox", "ports": [{"containerPort": 70000}]},
                   "spec.containers[0].ports[0].containerPort: Invalid value: 70000"),
    "duplicate container": ([{"name": "c", "image": "busybox"}, {"name": "c", "image": "busybox"}],
                            'spec.containers[1].name: Duplicate value: "c"'),
}


def _bad_pod(case: str) -> dict:
    value, _ = BAD[case]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    if isinstance(value, str):
        pod["metadata"]["name"] = value
    elif isinstance(value, list):
        pod["spec"]["containers"] = value
    else:
        pod["spec"]["containers"] = [value]
    return pod


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_manifests_are_refused(cluster: Cluster, ns: str, case: str) -> None:
    result = cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(_bad_pod(case)), check=False)
    assert result.returncode != 0
    assert "is invalid" in result.stderr and BAD[case][1] in result.stderr, result.stderr
    assert cluster.kubectl("-n", ns, "get", "pods", "-o", "name").stdout == ""


def test_unknown_field_and_bad_quantity_are_refused(cluster: Cluster, ns: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "imagee": "x"}]}}
    result = cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0 and 'unknown field "spec.containers[0].imagee"' in result.stderr, result.stderr
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"memory": "12XB"}}}]}}
    result = cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0 and "quantities must match the regular expression" in result.stderr, result.stderr
    assert cluster.kubectl("-n", ns, "get", "pods", "-o", "name").stdout == ""


def test_restart_keeps_objects_and_watch_resumes(own_cluster: Cluster) -> None:
    c = own_cluster
    c.kubectl("apply", "-f", "nginx-pod.yaml")
    rv = c.kubectl("get", "pod", "nginx-pod", "-o", "jsonpath={.metadata.resourceVersion}").stdout
    c.kubectl("label", "pod", "nginx-pod", "step=one")
    c.kubectl("create", "configmap", "after", "--from-literal=a=b")
    c.stop()
    c.start()
    assert c.kubectl("get", "pod", "nginx-pod", "-o", "jsonpath={.metadata.labels.step}").stdout == "one"
    assert c.kubectl("get", "configmap", "after", "-o", "name").stdout.strip() == "configmap/after"
    raw = c.kubectl("get", "--raw", f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&timeoutSeconds=1").stdout
    events = [json.loads(line) for line in raw.splitlines() if line]
    assert [e["type"] for e in events] == ["MODIFIED"]
    assert events[0]["object"]["metadata"]["labels"]["step"] == "one"
