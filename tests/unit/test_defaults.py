"""Defaulting produces what a Kubernetes 1.32 API server stores for the same input."""

import copy
from typing import Any

import pytest

from tinykube.api.defaults import default, pull_policy, qos_class
from tinykube.api.registry import by_kind

POD = by_kind("v1", "Pod")
SERVICE = by_kind("v1", "Service")

NGINX_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "nginx-pod", "namespace": "default", "labels": {"app": "nginx"}},
    "spec": {"containers": [{
        "name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}],
        "resources": {"requests": {"memory": "64Mi", "cpu": "250m"}, "limits": {"memory": "128Mi", "cpu": "500m"}},
    }]},
}


def pod(**spec: Any) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}
    default(POD, body)
    return body


def defaulted(api_version: str, kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    default(by_kind(api_version, kind), obj, old)
    return obj


def test_nginx_pod_matches_a_real_server() -> None:
    assert defaulted("v1", "Pod", NGINX_POD) == {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nginx-pod", "namespace": "default", "labels": {"app": "nginx"}},
        "spec": {
            "containers": [{
                "name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"memory": "64Mi", "cpu": "250m"}, "limits": {"memory": "128Mi", "cpu": "500m"}},
                "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            }],
            "enableServiceLinks": True, "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
            "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
            "serviceAccountName": "default", "serviceAccount": "default", "priority": 0,
            "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.14.2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ("localhost:5000/app", "Always"),
    ("localhost:5000/app:v1", "IfNotPresent"),
    ("registry.example.com/team/app:1.0", "IfNotPresent"),
    ("Nginx", "IfNotPresent"),  # unparseable: upstream ignores the error and picks IfNotPresent
])
def test_image_pull_policy(image: str, policy: str) -> None:
    assert pull_policy(image) == policy


def test_container_defaults_are_not_overwritten() -> None:
    body = pod(containers=[{"name": "c", "image": "busybox", "imagePullPolicy": "Never",
                            "terminationMessagePolicy": "FallbackToLogsOnError"}])
    container = body["spec"]["containers"][0]
    assert (container["imagePullPolicy"], container["terminationMessagePolicy"]) == ("Never", "FallbackToLogsOnError")
    assert container["resources"] == {}


def test_limits_become_requests_and_are_rounded_to_milli() -> None:
    body = pod(containers=[{"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "0.1m", "memory": "1Gi"}}}],
               initContainers=[{"name": "i", "image": "busybox", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "0.5"}}}])
    assert body["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "1m", "memory": "1Gi"},
                                                          "requests": {"cpu": "1m", "memory": "1Gi"}}
    assert body["spec"]["initContainers"][0]["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "500m"}}
    assert body["status"]["qosClass"] == "Burstable"


def test_probes_env_and_ports() -> None:
    body = pod(containers=[{
        "name": "c", "image": "busybox",
        "livenessProbe": {"httpGet": {"port": 80}}, "readinessProbe": {"grpc": {"port": 9000}},
        "lifecycle": {"preStop": {"httpGet": {"port": "http"}}},
        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "ports": [{"containerPort": 53, "protocol": "UDP"}],
    }])
    container = body["spec"]["containers"][0]
    assert container["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                          "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert container["readinessProbe"]["grpc"] == {"port": 9000, "service": ""}
    assert container["lifecycle"]["preStop"]["httpGet"] == {"port": "http", "path": "/", "scheme": "HTTP"}
    assert container["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "spec.nodeName", "apiVersion": "v1"}
    assert container["ports"] == [{"containerPort": 53, "protocol": "UDP"}]


def test_volume_defaults() -> None:
    body = pod(volumes=[
        {"name": "bare"},
        {"name": "cm", "configMap": {"name": "x"}},
        {"name": "sec", "secret": {"secretName": "x", "defaultMode": 256}},
        {"name": "host", "hostPath": {"path": "/tmp"}},
        {"name": "api", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
        {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}}},
    ])
    volumes = {v["name"]: v for v in body["spec"]["volumes"]}
    assert volumes["bare"] == {"name": "bare", "emptyDir": {}}
    assert volumes["cm"]["configMap"]["defaultMode"] == 420
    assert volumes["sec"]["secret"]["defaultMode"] == 256
    assert volumes["host"]["hostPath"] == {"path": "/tmp", "type": ""}
    assert volumes["api"]["downwardAPI"] == {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels",
                                                                                     "apiVersion": "v1"}}],
                                             "defaultMode": 420}
    assert volumes["proj"]["projected"] == {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}],
                                            "defaultMode": 420}
    assert volumes["eph"]["ephemeral"]["volumeClaimTemplate"]["spec"]["volumeMode"] == "Filesystem"


def test_admission_defaults() -> None:
    body = pod(priorityClassName="system-node-critical", serviceAccount="builder",
               tolerations=[{"operator": "Exists"}])
    spec = body["spec"]
    assert spec["priority"] == 2000001000
    assert (spec["serviceAccountName"], spec["serviceAccount"]) == ("builder", "builder")
    assert spec["tolerations"] == [{"operator": "Exists"}]  # already tolerates everything


def test_update_keeps_server_assigned_values_and_skips_create_only_steps() -> None:
    old = pod(priority=7)
    new = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}
    default(POD, new, old)
    assert new["spec"]["priority"] == 7
    assert "serviceAccountName" not in new["spec"]
    assert "status" not in new  # the server keeps the stored status on update


def test_host_network_ports() -> None:
    body = pod(hostNetwork=True, containers=[{"name": "c", "image": "busybox", "ports": [{"containerPort": 8080}]}])
    assert body["spec"]["containers"][0]["ports"] == [{"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}]


@pytest.mark.parametrize(("resources", "expected"), [
    ([{}], "BestEffort"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Burstable"),  # before defaulting copies limits to requests
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}, {"requests": {"cpu": "1"}}],
     "Burstable"),
    ([{"requests": {"cpu": "0"}, "limits": {"ephemeral-storage": "1Gi"}}], "BestEffort"),
    ([{"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1024Mi"}}], "Guaranteed"),
])
def test_qos_class(resources: list[dict[str, Any]], expected: str) -> None:
    containers = [{"name": f"c{i}", "image": "x", "resources": r} for i, r in enumerate(resources)]
    assert qos_class({"spec": {"containers": containers}}) == expected


def test_limits_only_pod_is_guaranteed_once_defaulted() -> None:
    body = pod(containers=[{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}])
    assert body["status"]["qosClass"] == "Guaranteed"


def test_qos_class_counts_init_containers() -> None:
    guaranteed = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}
    spec = {"containers": [{"name": "a", "resources": guaranteed}], "initContainers": [{"name": "b", "resources": {}}]}
    assert qos_class({"spec": spec}) == "Burstable"


def test_secret() -> None:
    secret = defaulted("v1", "Secret", {"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "hi", "a": "x"}})
    assert secret == {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA==", "b": "aGk="}}


def test_service() -> None:
    service = defaulted("v1", "Service", {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
                                                                                "ports": [{"port": 80}]}})
    assert service["spec"] == {
        "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
    }
    assert service["status"] == {"loadBalancer": {}}


def test_service_types() -> None:
    node_port = defaulted("v1", "Service", {"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}],
                                                     "sessionAffinity": "ClientIP"}})["spec"]
    assert node_port["externalTrafficPolicy"] == "Cluster"
    assert node_port["ports"][0]["targetPort"] == "http"
    assert node_port["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    lb = defaulted("v1", "Service", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})["spec"]
    assert lb["allocateLoadBalancerNodePorts"] is True
    headless = defaulted("v1", "Service", {"spec": {"clusterIP": "None"}})["spec"]
    assert (headless["clusterIPs"], headless["ipFamilyPolicy"]) == (["None"], "RequireDualStack")
    external = defaulted("v1", "Service", {"spec": {"type": "ExternalName", "externalName": "example.com"}})["spec"]
    assert "ipFamilies" not in external and "internalTrafficPolicy" not in external


def test_service_update_keeps_allocated_values() -> None:
    old = defaulted("v1", "Service", {"spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                                               "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}})
    new = defaulted("v1", "Service", {"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80}]}}, old)
    assert (new["spec"]["clusterIP"], new["spec"]["clusterIPs"]) == ("10.96.0.10", ["10.96.0.10"])
    assert new["spec"]["ports"][0]["nodePort"] == 30080
    assert "status" not in new


def test_namespace() -> None:
    created = defaulted("v1", "Namespace", {"metadata": {"name": "dev"}})
    assert created == {"metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "dev"}},
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    updated = defaulted("v1", "Namespace", {"metadata": {"name": "dev"}, "spec": {"finalizers": []}}, created)
    assert updated["spec"]["finalizers"] == []  # /finalize changes them; the main resource keeps them (strategy)


def test_storage_and_node() -> None:
    pv = defaulted("v1", "PersistentVolume", {"spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}})
    assert (pv["spec"]["persistentVolumeReclaimPolicy"], pv["spec"]["volumeMode"]) == ("Retain", "Filesystem")
    assert pv["spec"]["hostPath"]["type"] == "" and pv["status"] == {"phase": "Pending"}
    pvc = defaulted("v1", "PersistentVolumeClaim", {"spec": {"resources": {"requests": {"storage": "0.5Gi"}}}})
    assert pvc["spec"] == {"resources": {"requests": {"storage": "512Mi"}}, "volumeMode": "Filesystem"}
    assert pvc["status"] == {"phase": "Pending"}
    node = defaulted("v1", "Node", {"status": {"capacity": {"cpu": "4", "memory": "8Gi"}}})
    assert node["status"]["allocatable"] == {"cpu": "4", "memory": "8Gi"}


def test_kinds_without_defaults_are_untouched() -> None:
    for api_version, kind in (("v1", "ConfigMap"), ("v1", "Event"), ("coordination.k8s.io/v1", "Lease")):
        body = {"metadata": {"name": "x"}}
        assert defaulted(api_version, kind, body) == body


def test_null_fields_do_not_crash() -> None:
    body = {"metadata": None, "spec": {"containers": [{"name": "c", "image": "x", "ports": None, "resources": None}],
                                       "volumes": None, "tolerations": None}}
    default(POD, body)
    assert body["spec"]["containers"][0]["resources"] == {}
    service = {"spec": {"ports": None, "selector": None}}
    default(SERVICE, service)
    assert service["spec"]["type"] == "ClusterIP"
