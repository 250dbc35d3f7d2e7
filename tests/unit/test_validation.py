"""Validation reports upstream's field paths and messages, which kubectl prints verbatim."""

import copy
from typing import Any

import pytest
import yaml

from tinykube.api import errors
from tinykube.api.defaults import default
from tinykube.api.registry import by_kind
from tinykube.api.validation import validate_create, validate_status_update, validate_update

POD = by_kind("v1", "Pod")

# The manifests of the Pod tutorial (shared/seed/pod-tutorial.ko.md), verbatim apart from layout.
TUTORIAL = """
apiVersion: v1
kind: Pod
metadata: {name: nginx-pod, labels: {app: nginx}}
spec:
  containers:
    - name: nginx
      image: nginx:1.14.2
      ports: [{containerPort: 80}]
      resources: {requests: {memory: "64Mi", cpu: "250m"}, limits: {memory: "128Mi", cpu: "500m"}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-app, labels: {app: web}}
spec:
  containers:
    - name: web
      image: nginx:1.14.2
      ports: [{containerPort: 80}]
      volumeMounts: [{name: shared-data, mountPath: /usr/share/nginx/html}]
    - name: log-collector
      image: busybox
      command: ["sh", "-c", 'while true; do echo "$(date) - Log entry" >> /logs/app.log; sleep 10; done']
      volumeMounts: [{name: shared-data, mountPath: /logs}]
  volumes: [{name: shared-data, emptyDir: {}}]
---
apiVersion: v1
kind: Pod
metadata: {name: init-demo}
spec:
  containers:
    - name: nginx
      image: nginx:1.14.2
      ports: [{containerPort: 80}]
      volumeMounts: [{name: workdir, mountPath: /usr/share/nginx/html}]
  initContainers:
    - name: init-myservice
      image: busybox
      command: ["sh", "-c", "until nslookup myservice; do echo waiting for myservice; sleep 2; done"]
    - name: init-mydb
      image: busybox
      command: ["sh", "-c", "until nslookup mydb; do echo waiting for mydb; sleep 2; done"]
  volumes: [{name: workdir, emptyDir: {}}]
---
apiVersion: v1
kind: Pod
metadata: {name: pod-1, labels: {app: frontend}}
spec:
  containers: [{name: nginx, image: nginx:1.14.2, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: pod-2, labels: {app: backend}}
spec:
  containers: [{name: app, image: myapp:1.0, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: storage-pod}
spec:
  containers:
    - name: app
      image: nginx:1.14.2
      volumeMounts:
        - {name: config-volume, mountPath: /etc/nginx/conf.d}
        - {name: data-volume, mountPath: /var/www/html}
        - {name: secret-volume, mountPath: /etc/secrets, readOnly: true}
  volumes:
    - {name: config-volume, configMap: {name: nginx-config}}
    - {name: data-volume, persistentVolumeClaim: {claimName: data-pvc}}
    - {name: secret-volume, secret: {secretName: app-secret}}
---
apiVersion: v1
kind: Pod
metadata: {name: resource-pod}
spec:
  containers:
    - name: app
      image: nginx:1.14.2
      resources:
        requests: {memory: "64Mi", cpu: "250m", ephemeral-storage: "2Gi"}
        limits: {memory: "128Mi", cpu: "500m", ephemeral-storage: "4Gi"}
      ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: security-pod}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000}
  containers:
    - name: app
      image: nginx:1.14.2
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        capabilities: {drop: [ALL]}
      volumeMounts: [{name: tmp, mountPath: /tmp}]
  volumes: [{name: tmp, emptyDir: {}}]
"""


def created(api_version: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    default(by_kind(api_version, kind), body)
    return body


def create_errors(api_version: str, kind: str, body: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_create(by_kind(api_version, kind), created(api_version, kind, body))]


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}], **spec}}


def pod_errors(**spec: Any) -> list[str]:
    return create_errors("v1", "Pod", pod(**spec))


LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
             "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
                 "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


@pytest.mark.parametrize("manifest", list(yaml.safe_load_all(TUTORIAL)), ids=lambda d: d["metadata"]["name"])
def test_tutorial_manifests_are_valid(manifest: dict[str, Any]) -> None:
    manifest["metadata"]["namespace"] = "default"
    assert create_errors("v1", "Pod", manifest) == []


def test_nginx_pod_is_burstable() -> None:
    nginx = next(yaml.safe_load_all(TUTORIAL))
    assert created("v1", "Pod", nginx)["status"]["qosClass"] == "Burstable"


@pytest.mark.parametrize(("spec", "expected"), [
    ({"containers": []}, "spec.containers: Required value"),
    ({"containers": [{"name": "nginx", "image": "a"}, {"name": "nginx", "image": "b"}]},
     'spec.containers[1].name: Duplicate value: "nginx"'),
    ({"containers": [{"name": "nginx"}]}, "spec.containers[0].image: Required value"),
    ({"containers": [{"name": "nginx", "image": "a", "ports": [{"containerPort": 70000}]}]},
     "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ({"containers": [{"name": "nginx", "image": "a", "ports": [{"containerPort": 80, "protocol": "ICMP"}]}]},
     'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"'),
    ({"containers": [{"name": "nginx", "image": "a",
                      "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "128Mi"}}}]},
     'spec.containers[0].resources.requests: Invalid value: "256Mi": must be less than or equal to memory limit of 128Mi'),
    ({"containers": [{"name": "nginx", "image": "a", "resources": {"requests": {"cpu": "-1"}}}]},
     'spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0'),
    ({"containers": [{"name": "nginx", "image": "a", "resources": {"requests": {"gpu": "1"}}}]},
     'spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource type or fully qualified'),
    ({"restartPolicy": "Sometimes"},
     'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    ({"containers": [{"name": "nginx", "image": "a", "imagePullPolicy": "Sometimes"}]},
     'spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"'),
    ({"containers": [{"name": "nginx", "image": "a", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]},
     'spec.containers[0].volumeMounts[0].name: Not found: "x"'),
    ({"volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]},
     "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"),
    ({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}, 'spec.volumes[1].name: Duplicate value: "v"'),
    ({"volumes": [{"name": "Data", "emptyDir": {}}]}, f'spec.volumes[0].name: Invalid value: "Data": {LABEL_MSG}'),
    ({"containers": [{"name": "nginx", "image": "a", "env": [{"name": "A=B"}]}]},
     'spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of '
     "printable ASCII characters other than '='"),
    ({"containers": [{"name": "nginx", "image": "a", "env": [{"name": "A", "valueFrom": {}}]}]},
     'spec.containers[0].env[0].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, '
     "`configMapKeyRef` or `secretKeyRef`"),
    ({"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"),
    ({"securityContext": {"runAsUser": -1}},
     "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 4294967295, inclusive"),
    ({"hostname": "Web"}, f'spec.hostname: Invalid value: "Web": {LABEL_MSG}'),
    ({"tolerations": [{"key": "a", "operator": "Maybe"}]},
     'spec.tolerations[0].operator: Unsupported value: "Maybe": supported values: "Equal", "Exists"'),
    ({"containers": [{"name": "nginx", "image": "a", "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}}]},
     "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
    ({"initContainers": [{"name": "nginx", "image": "a"}]}, 'spec.initContainers[0].name: Duplicate value: "nginx"'),
])
def test_pod_spec_errors(spec: dict[str, Any], expected: str) -> None:
    assert pod_errors(**spec) == [expected]


def test_volume_without_source_before_defaulting() -> None:
    body = pod(volumes=[{"name": "v"}])
    errs = [str(e) for e in validate_create(POD, body)]
    assert "spec.volumes[0]: Required value: must specify a volume type" in errs
    assert "spec.terminationGracePeriodSeconds: Required value" in errs


def test_metadata_errors() -> None:
    assert create_errors("v1", "Pod", {"metadata": {"namespace": "default"}, "spec": pod()["spec"]}) == [
        "metadata.name: Required value: name or generateName is required"]
    body = pod()
    body["metadata"].update(name="Bad_Name", labels={"app": "web!"})
    assert create_errors("v1", "Pod", body) == [
        f'metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN_MSG}',
        'metadata.labels: Invalid value: "web!": a valid label must be an empty string or consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
        "'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]


def test_generate_name_prefix_may_end_in_dash() -> None:
    body = pod()
    body["metadata"] = {"generateName": "web-", "name": "web-x7k2p", "namespace": "default"}
    assert create_errors("v1", "Pod", body) == []


def test_annotation_size_limit() -> None:
    body = pod()
    body["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    assert create_errors("v1", "Pod", body) == ["metadata.annotations: Too long: may not be more than 262144 bytes"]


def test_invalid_status_message() -> None:
    body = pod(containers=[{"name": "nginx"}])
    errs = validate_create(POD, created("v1", "Pod", body))
    assert errors.invalid("Pod", "p", errs).message == 'Pod "p" is invalid: spec.containers[0].image: Required value'


def test_names_per_kind() -> None:
    assert create_errors("v1", "Namespace", {"metadata": {"name": "my.ns"}}) == [
        'metadata.name: Invalid value: "my.ns": must not contain dots']
    assert create_errors("v1", "Service", {"metadata": {"name": "1web", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}}) == [
        'metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '
        "'-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
        "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]


# --- other kinds -----------------------------------------------------------------------------


def test_config_map() -> None:
    assert create_errors("v1", "ConfigMap", {"metadata": {"name": "c", "namespace": "d"}, "data": {"bad key": "v"}}) == [
        'data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, \'-\', '
        "'_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]
    big = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "x" * (1024 * 1024 + 1)}}
    assert create_errors("v1", "ConfigMap", big) == [": Too long: may not be more than 1048576 bytes"]


def test_immutable_config_map_and_secret() -> None:
    for kind in ("ConfigMap", "Secret"):
        old = created("v1", kind, {"metadata": {"name": "c", "namespace": "d", "resourceVersion": "1"},
                                   "data": {"a": "Yg=="}, "immutable": True})
        new = copy.deepcopy(old)
        new["data"]["a"] = "Yw=="
        assert [str(e) for e in validate_update(by_kind("v1", kind), new, old)] == [
            "data: Forbidden: field is immutable when `immutable` is set"]


def test_secret_types() -> None:
    token = {"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/service-account-token"}
    assert create_errors("v1", "Secret", token) == ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
    tls = {"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}
    assert create_errors("v1", "Secret", tls) == ["data[tls.key]: Required value"]
    docker = {"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/dockerconfigjson",
              "stringData": {".dockerconfigjson": "[]"}}
    assert create_errors("v1", "Secret", docker) == [
        'data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": json: cannot unmarshal array into Go '
        "value of type map[string]interface {}"]
    old = created("v1", "Secret", {"metadata": {"name": "s", "namespace": "d", "resourceVersion": "1"}})
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/tls"
    new["data"] = {"tls.crt": "", "tls.key": ""}
    assert [str(e) for e in validate_update(by_kind("v1", "Secret"), new, old)] == [
        'type: Invalid value: "kubernetes.io/tls": field is immutable']


@pytest.mark.parametrize(("spec", "expected"), [
    ({"selector": {"app": "web"}}, ["spec.ports: Required value"]),
    ({"clusterIP": "None", "selector": {"app": "web"}}, []),
    ({"ports": [{"port": 80}, {"port": 443}]}, ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]),
    ({"ports": [{"port": 0}]}, ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    ({"type": "Cluster", "ports": [{"port": 80}]},
     ['spec.type: Unsupported value: "Cluster": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"']),
    ({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]},
     ["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
      "The range of valid ports is 30000-32767"]),
    ({"ports": [{"port": 80, "nodePort": 30080}]},
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    ({"clusterIP": "10.0.0.300", "ports": [{"port": 80}]},
     ['spec.clusterIPs[0]: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']),
    ({"type": "ExternalName", "externalName": "db.example.com."}, []),
])
def test_service(spec: dict[str, Any], expected: list[str]) -> None:
    assert create_errors("v1", "Service", {"metadata": {"name": "web", "namespace": "d"}, "spec": spec}) == expected


def test_persistent_volume_claim() -> None:
    assert create_errors("v1", "PersistentVolumeClaim", {"metadata": {"name": "c", "namespace": "d"}, "spec": {}}) == [
        "spec.accessModes: Required value: at least 1 access mode is required", "spec.resources[storage]: Required value"]
    good = {"metadata": {"name": "c", "namespace": "d"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    assert create_errors("v1", "PersistentVolumeClaim", good) == []
    old = created("v1", "PersistentVolumeClaim", {**good, "metadata": {**good["metadata"], "resourceVersion": "1"}})
    new = copy.deepcopy(old)
    new["spec"]["accessModes"] = ["ReadWriteMany"]
    errs = [str(e) for e in validate_update(by_kind("v1", "PersistentVolumeClaim"), new, old)]
    assert errs == ["spec: Forbidden: spec is immutable after creation except resources.requests and "
                    "volumeAttributesClassName for bound claims"]


def test_persistent_volume() -> None:
    pv = {"metadata": {"name": "v"}, "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                                              "hostPath": {"path": "/data"}}}
    assert create_errors("v1", "PersistentVolume", pv) == []
    pv["spec"]["local"] = {"path": "/x"}
    assert create_errors("v1", "PersistentVolume", pv) == ["spec.local: Forbidden: may not specify more than 1 volume type"]
    del pv["spec"]["hostPath"]
    assert create_errors("v1", "PersistentVolume", pv) == [
        "spec.nodeAffinity: Required value: Local volume requires node affinity"]


def test_events() -> None:
    core = {"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"namespace": "other"}, "reason": "Started"}
    assert create_errors("v1", "Event", core) == [
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace']
    new_style = {"metadata": {"name": "e", "namespace": "d"}, "regarding": {"namespace": "d"}, "reason": "Started",
                 "action": "Start", "reportingController": "tinykube.io/kubelet", "reportingInstance": "node-1",
                 "eventTime": "2024-01-01T00:00:00.000000Z", "type": "Normal"}
    assert create_errors("events.k8s.io/v1", "Event", new_style) == []
    assert create_errors("events.k8s.io/v1", "Event", {**new_style, "type": "Bad", "deprecatedCount": 2}) == [
        'type: Invalid value: "": has invalid value: Bad', 'count: Invalid value: "": needs to be unset']


def test_lease_namespace_and_node() -> None:
    lease = {"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}}
    assert create_errors("coordination.k8s.io/v1", "Lease", lease) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    assert create_errors("v1", "Namespace", {"metadata": {"name": "dev"}}) == []
    node = {"metadata": {"name": "n", "namespace": "x"}, "status": {"capacity": {"cpu": "4"}}}
    assert create_errors("v1", "Node", node) == ["metadata.namespace: Forbidden: not allowed on this type"]


# --- updates ---------------------------------------------------------------------------------


def stored_pod(**spec: Any) -> dict[str, Any]:
    body = created("v1", "Pod", pod(**spec))
    body["metadata"].update(resourceVersion="5", uid="1f0c", creationTimestamp="2024-01-01T00:00:00Z")
    return body


def update_errors(change: Any, **spec: Any) -> list[str]:
    old = stored_pod(**spec)
    new = copy.deepcopy(old)
    change(new)
    return [str(e) for e in validate_update(POD, new, old)]


def test_allowed_pod_updates() -> None:
    assert update_errors(lambda p: p["spec"]["containers"][0].update(image="nginx:1.27")) == []
    assert update_errors(lambda p: p["spec"]["tolerations"].append({"key": "x", "operator": "Exists"})) == []
    assert update_errors(lambda p: p["spec"].update(activeDeadlineSeconds=30)) == []
    assert update_errors(lambda p: p["metadata"].update(labels={"tier": "web"})) == []


def test_forbidden_pod_spec_update() -> None:
    errs = update_errors(lambda p: p["spec"].update(restartPolicy="Never"))
    assert len(errs) == 1
    assert errs[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
        "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n")
    assert '- \trestartPolicy: "Always",\n+ \trestartPolicy: "Never",' in errs[0]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda p: p["spec"]["tolerations"].pop(),
     ["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]),
    (lambda p: p["spec"]["containers"].append({**p["spec"]["containers"][0], "name": "b"}),
     ["spec.containers: Forbidden: pod updates may not add or remove containers"]),
    (lambda p: p["metadata"].update(name="q"), ['metadata.name: Invalid value: "q": field is immutable']),
    (lambda p: p["metadata"].update(uid="2"), ['metadata.uid: Invalid value: "2": field is immutable']),
    (lambda p: p["metadata"].update(creationTimestamp="2025-01-01T00:00:00Z"),
     ['metadata.creationTimestamp: Invalid value: "2025-01-01T00:00:00Z": field is immutable']),
    (lambda p: p["metadata"].pop("resourceVersion"),
     ['metadata.resourceVersion: Invalid value: "": must be specified for an update']),
])
def test_rejected_pod_updates(change: Any, expected: list[str]) -> None:
    assert update_errors(change) == expected


def test_active_deadline_may_only_shrink() -> None:
    errs = update_errors(lambda p: p["spec"].update(activeDeadlineSeconds=60), activeDeadlineSeconds=30)
    assert errs == ["spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"]


def test_pod_status_update() -> None:
    old = stored_pod()
    new = copy.deepcopy(old)
    new["status"].update(phase="Running", podIP="10.244.0.5", podIPs=[{"ip": "10.244.0.5"}])
    assert validate_status_update(POD, new, old) == []
    new["spec"]["nodeName"] = "node-1"
    new["status"]["podIPs"] = [{"ip": "10.244.0.999"}]
    assert [str(e) for e in validate_status_update(POD, new, old)] == [
        "status.nodeName: Forbidden: may not be changed directly",
        'status.podIPs[0]: Invalid value: "10.244.0.999": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']


def test_namespace_status_and_service_update() -> None:
    namespaces = by_kind("v1", "Namespace")
    old = created("v1", "Namespace", {"metadata": {"name": "dev", "resourceVersion": "1"}})
    new = copy.deepcopy(old)
    new["status"]["phase"] = "Terminating"
    assert [str(e) for e in validate_status_update(namespaces, new, old)] == [
        'status.Phase: Invalid value: "Terminating": may only be \'Active\' if `deletionTimestamp` is empty']
    services = by_kind("v1", "Service")
    old_svc = created("v1", "Service", {"metadata": {"name": "web", "namespace": "d", "resourceVersion": "1"},
                                        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}})
    new_svc = copy.deepcopy(old_svc)
    new_svc["spec"].update(clusterIP="10.96.0.11", clusterIPs=["10.96.0.11"])
    assert [str(e) for e in validate_update(services, new_svc, old_svc)] == [
        "spec.clusterIPs[0]: Invalid value: [\"10.96.0.11\"]: may not change once set"]


def test_missing_optional_fields_do_not_crash() -> None:
    body = {"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": None, "env": None, "resources": None,
                                     "securityContext": None, "livenessProbe": None}],
                     "volumes": None, "affinity": None, "tolerations": None, "securityContext": None}}
    assert create_errors("v1", "Pod", body) == []
    for api_version, kind in (("v1", "Service"), ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Endpoints"),
                              ("v1", "PersistentVolume"), ("v1", "Node"), ("coordination.k8s.io/v1", "Lease"),
                              ("v1", "ServiceAccount"), ("events.k8s.io/v1", "Event")):
        create_errors(api_version, kind, {"metadata": None, "spec": None, "data": None})


def test_null_list_items_do_not_crash() -> None:
    body = {"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [None], "env": [None], "volumeMounts": [None]}],
                     "volumes": [None], "tolerations": [None]}}
    assert "spec.volumes[0].name: Required value" in create_errors("v1", "Pod", body)
    service = {"metadata": {"name": "s", "namespace": "d"}, "spec": {"ports": [None]}}
    assert "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive" in create_errors("v1", "Service", service)
