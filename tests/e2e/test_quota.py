"""LimitRanges and ResourceQuotas end to end, on the API-only cluster with the real kubectl:
defaults and QoS, refusals as kubectl prints them, ``kubectl describe quota``, and usage given back
after a delete."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.cluster import Cluster, eventually

pytestmark = pytest.mark.slow

LIMIT_RANGE = """
apiVersion: v1
kind: LimitRange
metadata:
  name: limits
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 100m, memory: 128Mi}
    max: {cpu: "1", memory: 1Gi}
"""
POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: app
    image: busybox
    resources: {resources}
"""


def _pod(cluster: Cluster, ns: str, name: str, resources: str = "{}") -> tuple[int, str, str]:
    result = cluster.kubectl("apply", "-n", ns, "-f", "-", input=POD.format(name=name, resources=resources), check=False)
    return result.returncode, result.stdout.strip(), result.stderr.strip()


def _used(cluster: Cluster, ns: str, name: str) -> dict[str, str]:
    status = json.loads(cluster.kubectl("get", "quota", name, "-n", ns, "-o", "json").stdout).get("status") or {}
    return status.get("used") or {}


def _describe_rows(cluster: Cluster, ns: str, name: str) -> list[list[str]]:
    lines = cluster.kubectl("describe", "quota", name, "-n", ns).stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["Resource", "Used", "Hard"])
    return [line.split() for line in lines[header + 2:] if line.strip()]


def test_limit_range_defaults_and_refusals(cluster: Cluster, ns: str) -> None:
    assert cluster.kubectl("apply", "-n", ns, "-f", "-", input=LIMIT_RANGE).stdout.strip() == "limitrange/limits created"
    assert re.fullmatch(r"NAME\s+CREATED AT\nlimits\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                        cluster.kubectl("get", "limits", "-n", ns).stdout.strip())
    assert _pod(cluster, ns, "plain")[0] == 0
    pod = json.loads(cluster.kubectl("get", "pod", "plain", "-n", ns, "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"},
                                                         "requests": {"cpu": "100m", "memory": "128Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app")
    assert pod["status"]["qosClass"] == "Burstable"
    code, _, _ = _pod(cluster, ns, "sized", "{limits: {cpu: 200m, memory: 64Mi}}")
    assert code == 0  # its own limits are also its requests: Guaranteed
    assert cluster.kubectl("get", "pod", "sized", "-n", ns, "-o", "jsonpath={.status.qosClass}").stdout == "Guaranteed"
    code, _, err = _pod(cluster, ns, "big", "{limits: {cpu: '2'}}")
    assert code != 0
    assert err == ('Error from server (Forbidden): error when creating "STDIN": pods "big" is forbidden: '
                   'maximum cpu usage per Container is 1, but limit is 2')


def test_pod_count_quota(cluster: Cluster, ns: str) -> None:
    assert cluster.kubectl("create", "quota", "pods", "-n", ns, "--hard=pods=2").stdout.strip() == \
        "resourcequota/pods created"
    eventually(lambda: _used(cluster, ns, "pods") == {"pods": "0"}, "the quota controller to count")
    assert _pod(cluster, ns, "p1")[0] == 0 and _pod(cluster, ns, "p2")[0] == 0
    code, _, err = _pod(cluster, ns, "p3")
    assert code != 0
    assert err == ('Error from server (Forbidden): error when creating "STDIN": pods "p3" is forbidden: '
                   'exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2')
    assert _describe_rows(cluster, ns, "pods") == [["pods", "2", "2"]]
    assert re.fullmatch(r"NAME\s+AGE\s+REQUEST\s+LIMIT\npods\s+\S+\s+pods: 2/2",
                        cluster.kubectl("get", "quota", "-n", ns).stdout.strip())
    cluster.kubectl("delete", "pod", "p1", "-n", ns)
    eventually(lambda: _used(cluster, ns, "pods") == {"pods": "1"}, "the deleted pod's usage to come back", timeout=5)
    assert _pod(cluster, ns, "p3")[0] == 0


def test_compute_quota(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "quota", "compute", "-n", ns, "--hard=requests.cpu=1,limits.memory=1Gi")
    eventually(lambda: _used(cluster, ns, "compute") == {"limits.memory": "0", "requests.cpu": "0"}, "the count")
    code, _, err = _pod(cluster, ns, "bare")
    assert code != 0
    assert err == ('Error from server (Forbidden): error when creating "STDIN": pods "bare" is forbidden: '
                   'failed quota: compute: must specify limits.memory for: app; requests.cpu for: app')
    assert _pod(cluster, ns, "a", "{requests: {cpu: 600m}, limits: {memory: 512Mi}}")[0] == 0
    code, _, err = _pod(cluster, ns, "b", "{requests: {cpu: 600m}, limits: {memory: 256Mi}}")
    assert err.endswith("exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, "
                        "limited: requests.cpu=1")
    assert _describe_rows(cluster, ns, "compute") == [["limits.memory", "512Mi", "1Gi"], ["requests.cpu", "600m", "1"]]


def test_object_count_quota(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "quota", "objects", "-n", ns, "--hard=services=1,count/configmaps=2")
    # the namespace already holds one ConfigMap: kube-root-ca.crt
    eventually(lambda: _used(cluster, ns, "objects") == {"count/configmaps": "1", "services": "0"}, "the count")
    cluster.kubectl("create", "service", "clusterip", "a", "-n", ns, "--tcp=80")
    refused = cluster.kubectl("create", "service", "clusterip", "b", "-n", ns, "--tcp=80", check=False)
    assert refused.stderr.strip() == ('error: failed to create ClusterIP service: services "b" is forbidden: '
                                      'exceeded quota: objects, requested: services=1, used: services=1, limited: services=1')
    cluster.kubectl("create", "configmap", "one", "-n", ns)
    refused = cluster.kubectl("create", "configmap", "two", "-n", ns, check=False)
    assert refused.stderr.strip().endswith('configmaps "two" is forbidden: exceeded quota: objects, '
                                           'requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2')
