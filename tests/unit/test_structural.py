"""The structural decode pass: unknown fields, Go type errors, quantities, times, base64, nulls."""

from __future__ import annotations

import copy
import time
from typing import Any

import orjson
import pytest

from tinykube.api.registry import RESOURCES
from tinykube.api.structural import MAX_STRICT_ERRORS, Normalized, decode_failure, normalize, warnings

POD = "io.k8s.api.core.v1.Pod"
QUANTITY_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def nginx_pod() -> dict[str, Any]:
    """The tutorial's single-container pod, as kubectl sends it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nginx-pod", "labels": {"app": "nginx"}},
        "spec": {
            "containers": [
                {
                    "name": "nginx",
                    "image": "nginx:1.14.2",
                    "ports": [{"containerPort": 80}],
                    "resources": {
                        "requests": {"memory": "64Mi", "cpu": "250m"},
                        "limits": {"memory": "128Mi", "cpu": "500m"},
                    },
                }
            ]
        },
    }


def web_app_pod() -> dict[str, Any]:
    """The tutorial's sidecar pod."""
    mount = {"name": "shared-data"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-app", "labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.14.2",
                    "ports": [{"containerPort": 80}],
                    "volumeMounts": [{**mount, "mountPath": "/usr/share/nginx/html"}],
                },
                {
                    "name": "log-collector",
                    "image": "busybox",
                    "command": ["sh", "-c", 'while true; do echo "$(date) - Log entry" >> /logs/app.log; sleep 10; done'],
                    "volumeMounts": [{**mount, "mountPath": "/logs"}],
                },
            ],
            "volumes": [{"name": "shared-data", "emptyDir": {}}],
        },
    }


def decode(obj: dict[str, Any], definition: str = POD) -> tuple[dict[str, Any], Normalized]:
    result = normalize(obj, definition)
    return obj, result


def error_of(obj: dict[str, Any], definition: str = POD) -> str | None:
    return normalize(obj, definition).error


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [nginx_pod, web_app_pod])
def test_tutorial_pods_round_trip_unchanged(make: Any) -> None:
    obj, result = decode(make())
    assert result == Normalized([], None)
    assert obj == make()
    assert list(obj) == list(make())


def test_every_registered_kind_is_supported() -> None:
    for rt in RESOURCES:
        obj = {"apiVersion": rt.group_version, "kind": rt.kind, "metadata": {"name": "x"}}
        assert normalize(obj, rt.definition) == Normalized([], None), rt.definition


def test_a_full_service_node_and_lease_round_trip() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "annotations": {"a": "b"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}], "type": "ClusterIP"},
    }
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1"},
        "status": {"capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-05-01T10:00:00Z"}]},
    }
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2024-05-01T10:00:00.123456Z"},
    }
    for obj, definition in [(service, "io.k8s.api.core.v1.Service"), (node, "io.k8s.api.core.v1.Node"), (lease, "io.k8s.api.coordination.v1.Lease")]:
        expected = copy.deepcopy(obj)
        assert normalize(obj, definition) == Normalized([], None)
        assert obj == expected


# --- unknown fields ---------------------------------------------------------------------------


def test_unknown_fields_at_every_depth_are_dropped_and_listed_in_document_order() -> None:
    obj = web_app_pod()
    obj["foo"] = 1
    obj["metadata"]["bogus"] = {"x": 1}
    obj["spec"]["extra"] = True
    obj["spec"]["containers"][1]["bar"] = "x"
    obj["spec"]["containers"][0]["ports"][0]["qux"] = 1
    obj["spec"]["volumes"][0]["emptyDir"]["deep"] = []
    _, result = decode(obj)
    assert result.unknown == [
        "metadata.bogus",
        "spec.containers[0].ports[0].qux",
        "spec.containers[1].bar",
        "spec.volumes[0].emptyDir.deep",
        "spec.extra",
        "foo",
    ]
    assert result.error is None
    assert obj == web_app_pod()


def test_field_names_are_case_sensitive() -> None:
    obj = nginx_pod()
    obj["Spec"] = obj.pop("spec")
    assert normalize(obj, POD).unknown == ["Spec"]
    assert "Spec" not in obj


def test_strict_unknown_fields_are_a_bad_request_in_upstream_wording() -> None:
    obj = nginx_pod()
    obj["spec"]["foo"] = 1
    obj["spec"]["containers"][0]["bar"] = 2
    result = normalize(obj, POD)
    error = decode_failure("Pod", "v1", result, strict=True)
    assert error is not None
    assert error.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].bar", unknown field "spec.foo"',
        "reason": "BadRequest",
        "code": 400,
    }
    assert decode_failure("Pod", "v1", result, strict=False) is None
    assert warnings(result) == ['unknown field "spec.containers[0].bar"', 'unknown field "spec.foo"']


def test_no_failure_and_no_warnings_for_a_clean_body() -> None:
    result = normalize(nginx_pod(), POD)
    assert decode_failure("Pod", "v1", result, strict=True) is None
    assert warnings(result) == []


def test_the_message_names_only_the_version_of_a_grouped_api() -> None:
    obj = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "nope": 1}
    result = normalize(obj, "io.k8s.api.events.v1.Event")
    error = decode_failure("Event", "events.k8s.io/v1", result, strict=True)
    assert error is not None
    assert error.message == 'Event in version "v1" cannot be handled as a Event: strict decoding error: unknown field "nope"'


def test_unknown_field_paths_are_go_quoted() -> None:
    result = normalize({"spec": {'we"ird\n': 1}}, POD)
    assert warnings(result) == ['unknown field "spec.we\\"ird\\n"']


def test_strict_errors_stop_at_one_hundred() -> None:
    obj = {f"f{i}": i for i in range(150)}
    result = normalize(obj, POD)
    assert len(result.unknown) == MAX_STRICT_ERRORS
    assert obj == {}


# --- Go type errors ---------------------------------------------------------------------------


def with_container(**fields: Any) -> dict[str, Any]:
    obj = nginx_pod()
    obj["spec"]["containers"][0].update(fields)
    return obj


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            with_container(ports=[{"containerPort": "80"}]),
            "json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32",
        ),
        (with_container(image={"name": "nginx"}), "json: cannot unmarshal object into Go struct field Container.spec.containers.image of type string"),
        (with_container(image=1), "json: cannot unmarshal number into Go struct field Container.spec.containers.image of type string"),
        (with_container(image=True), "json: cannot unmarshal bool into Go struct field Container.spec.containers.image of type string"),
        (with_container(ports=[{"containerPort": 1.5}]), "json: cannot unmarshal number 1.5 into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"),
        (with_container(ports=[{"containerPort": 2**31}]), "json: cannot unmarshal number 2147483648 into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"),
        (with_container(ports=[{"containerPort": True}]), "json: cannot unmarshal bool into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"),
        (with_container(args=[1]), "json: cannot unmarshal number into Go struct field Container.spec.containers.args of type string"),
        (with_container(args="sleep 1"), "json: cannot unmarshal string into Go struct field Container.spec.containers.args of type []string"),
        (with_container(stdin="yes"), "json: cannot unmarshal string into Go struct field Container.spec.containers.stdin of type bool"),
        (with_container(imagePullPolicy=1), "json: cannot unmarshal number into Go struct field Container.spec.containers.imagePullPolicy of type v1.PullPolicy"),
        (
            with_container(securityContext={"capabilities": {"drop": [0]}}),
            "json: cannot unmarshal number into Go struct field Capabilities.spec.containers.securityContext.capabilities.drop of type v1.Capability",
        ),
        (with_container(resources={"limits": "1"}), "json: cannot unmarshal string into Go struct field ResourceRequirements.spec.containers.resources.limits of type v1.ResourceList"),
        ({"spec": []}, "json: cannot unmarshal array into Go struct field Pod.spec of type v1.PodSpec"),
        ({"spec": {"containers": "nginx"}}, "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type []v1.Container"),
        ({"spec": {"containers": ["nginx"]}}, "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type v1.Container"),
        ({"metadata": {"labels": {"app": 1}}}, "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
        ({"metadata": {"labels": ["app"]}}, "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string"),
        ({"metadata": {"uid": 7}}, "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.uid of type types.UID"),
        ({"kind": 5}, "json: cannot unmarshal number into Go struct field Pod.kind of type string"),
    ],
)
def test_type_errors_read_as_go_reports_them(obj: dict[str, Any], message: str) -> None:
    assert error_of(obj) == message


def test_a_type_error_is_a_bad_request_even_without_strict_and_wins_over_unknown_fields() -> None:
    obj = with_container(ports=[{"containerPort": "80"}], bar=1)
    result = normalize(obj, POD)
    assert result.unknown == ["spec.containers[0].bar"]
    error = decode_failure("Pod", "v1", result, strict=True)
    assert error is not None and error.code == 400 and error.reason == "BadRequest"
    assert error.message == (
        'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field '
        "ContainerPort.spec.containers.ports.containerPort of type int32"
    )
    assert decode_failure("Pod", "v1", result, strict=False) is not None


def test_the_first_type_error_in_document_order_is_reported() -> None:
    obj = {"metadata": {"name": 1}, "spec": {"hostname": 2}}
    assert error_of(obj) == "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of type string"


def test_other_api_groups_use_their_own_struct_names() -> None:
    lease = {"spec": {"leaseDurationSeconds": "40"}}
    assert error_of(lease, "io.k8s.api.coordination.v1.Lease") == (
        "json: cannot unmarshal string into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32"
    )


# --- quantities -------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "stored"), [("0.5", "500m"), (0.5, "500m"), (1, "1"), ("1024Mi", "1Gi"), (" 2 ", "2"), ("100m", "100m")])
def test_quantities_are_stored_canonically(given: Any, stored: str) -> None:
    obj, result = decode(with_container(resources={"requests": {"cpu": given}}))
    assert result.error is None
    assert obj["spec"]["containers"][0]["resources"]["requests"]["cpu"] == stored


@pytest.mark.parametrize("bad", ["abc", "", "1 Gi", True, {"a": 1}, [1]])
def test_bad_quantities_fail_with_the_upstream_message(bad: Any) -> None:
    result = normalize(with_container(resources={"limits": {"memory": bad}}), POD)
    assert result.error == QUANTITY_ERROR
    error = decode_failure("Pod", "v1", result, strict=False)
    assert error is not None
    assert error.message == f'Pod in version "v1" cannot be handled as a Pod: {QUANTITY_ERROR}'


def test_a_quantity_error_aborts_decoding_and_wins_over_an_earlier_type_error() -> None:
    obj = with_container(image=1, resources={"limits": {"cpu": "lots"}}, later=1)
    result = normalize(obj, POD)
    assert result.error == QUANTITY_ERROR
    assert result.unknown == []  # decoding stopped before reaching "later"


def test_quantities_elsewhere_are_canonical_too() -> None:
    obj = {"spec": {"volumes": [{"name": "v", "emptyDir": {"sizeLimit": "0.5Gi"}}], "overhead": {"cpu": "0.1"}}}
    assert normalize(obj, POD).error is None
    assert obj["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "512Mi"
    assert obj["spec"]["overhead"] == {"cpu": "100m"}


# --- int-or-string ----------------------------------------------------------------------------

SERVICE = "io.k8s.api.core.v1.Service"


@pytest.mark.parametrize("port", [8080, "http", "8080", 0])
def test_int_or_string_accepts_ints_and_strings_unchanged(port: Any) -> None:
    obj = {"spec": {"ports": [{"port": 80, "targetPort": port}]}}
    assert normalize(obj, SERVICE).error is None
    assert obj["spec"]["ports"][0]["targetPort"] == port


@pytest.mark.parametrize(("port", "described"), [(1.5, "number 1.5"), (2**31, "number 2147483648"), (True, "bool"), ({}, "object"), ([], "array")])
def test_int_or_string_rejects_the_rest_as_an_int32(port: Any, described: str) -> None:
    obj = {"spec": {"ports": [{"port": 80, "targetPort": port}]}}
    assert normalize(obj, SERVICE).error == (
        f"json: cannot unmarshal {described} into Go struct field ServicePort.spec.ports.targetPort of type int32"
    )


def test_probe_ports_are_int_or_string() -> None:
    obj = with_container(livenessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10})
    assert normalize(obj, POD).error is None


# --- times ------------------------------------------------------------------------------------


def with_created(stamp: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x", "creationTimestamp": stamp}}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05+01:00", "2024-01-02T02:04:05Z"),
        ("2024-01-02T03:04:05.999-00:30", "2024-01-02T03:34:05Z"),
        ("2024-01-02T3:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05,5Z", "2024-01-02T03:04:05Z"),
        ("2024-02-29T23:59:59-01:00", "2024-03-01T00:59:59Z"),
    ],
)
def test_times_are_stored_in_utc_to_the_second(given: str, stored: str) -> None:
    obj, result = decode(with_created(given))
    assert result.error is None
    assert obj["metadata"]["creationTimestamp"] == stored


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("yesterday", 'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'),
        ("", 'parsing time "" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "2006"'),
        ("2024-01-02", 'parsing time "2024-01-02" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "T"'),
        ("2024-1-02T03:04:05Z", 'parsing time "2024-1-02T03:04:05Z" as "2006-01-02T15:04:05Z07:00": cannot parse "1-02T03:04:05Z" as "01"'),
        ("2024-01-02 03:04:05Z", 'parsing time "2024-01-02 03:04:05Z" as "2006-01-02T15:04:05Z07:00": cannot parse " 03:04:05Z" as "T"'),
        ("2024-01-02T03:04:05", 'parsing time "2024-01-02T03:04:05" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "Z07:00"'),
        ("2024-01-02T03:04:05+0100", 'parsing time "2024-01-02T03:04:05+0100" as "2006-01-02T15:04:05Z07:00": cannot parse "+0100" as "Z07:00"'),
        ("2024-13-02T03:04:05Z", 'parsing time "2024-13-02T03:04:05Z": month out of range'),
        ("2024-02-30T03:04:05Z", 'parsing time "2024-02-30T03:04:05Z": day out of range'),
        ("2024-01-02T24:04:05Z", 'parsing time "2024-01-02T24:04:05Z": hour out of range'),
        ("2024-01-02T03:60:05Z", 'parsing time "2024-01-02T03:60:05Z": minute out of range'),
        ("2024-01-02T03:04:60Z", 'parsing time "2024-01-02T03:04:60Z": second out of range'),
        ("2024-01-02T03:04:05+01:61", 'parsing time "2024-01-02T03:04:05+01:61": time zone offset minute out of range'),
        ("2024-01-02T03:04:05+25:00", 'parsing time "2024-01-02T03:04:05+25:00": time zone offset hour out of range'),
        ("2024-01-02T03:04:05Zjunk", 'parsing time "2024-01-02T03:04:05Zjunk": extra text: "junk"'),
        ("2024-01-02T03:04:05z", 'parsing time "2024-01-02T03:04:05z" as "2006-01-02T15:04:05Z07:00": cannot parse "z" as "Z07:00"'),
        ("2024-01-02T03:04:05Zé", 'parsing time "2024-01-02T03:04:05Z\\xc3\\xa9": extra text: "\\xc3\\xa9"'),
        (5, "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of type string"),
        ({}, "json: cannot unmarshal object into Go struct field ObjectMeta.metadata.creationTimestamp of type string"),
    ],
)
def test_bad_times_fail_as_go_time_parse_fails(given: Any, message: str) -> None:
    assert error_of(with_created(given)) == message


LEASE = "io.k8s.api.coordination.v1.Lease"


def test_micro_times_keep_six_digits_in_utc() -> None:
    obj = {"spec": {"renewTime": "2024-01-02T03:04:05.123456+02:00", "acquireTime": "2024-01-02T03:04:05.000001Z"}}
    assert normalize(obj, LEASE).error is None
    assert obj["spec"] == {"renewTime": "2024-01-02T01:04:05.123456Z", "acquireTime": "2024-01-02T03:04:05.000001Z"}


def test_micro_times_need_their_fraction() -> None:
    assert error_of({"spec": {"renewTime": "2024-01-02T03:04:05Z"}}, LEASE) == (
        'parsing time "2024-01-02T03:04:05Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"'
    )
    assert error_of({"spec": {"renewTime": "2024-01-02T03:04:05.1234567Z"}}, LEASE) == (
        'parsing time "2024-01-02T03:04:05.1234567Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "7Z" as "Z07:00"'
    )


# --- []byte -----------------------------------------------------------------------------------

SECRET = "io.k8s.api.core.v1.Secret"


def test_secret_data_is_base64_and_stored_canonically() -> None:
    obj = {"data": {"a": "YWJj", "b": "YQ==", "c": "", "d": "YW\nJj\r\n", "e": "YR=="}, "stringData": {"x": "plain"}}
    assert normalize(obj, SECRET).error is None
    assert obj["data"] == {"a": "YWJj", "b": "YQ==", "c": "", "d": "YWJj", "e": "YQ=="}


@pytest.mark.parametrize(
    ("value", "offset"),
    [("not base64!", 3), ("YWJ", 0), ("YQ=", 3), ("YQ==x", 4), ("Y===", 1), ("=", 0), ("YWJjZA=", 7), ("é", 0), ("YW Jj", 2)],
)
def test_bad_base64_reports_the_byte_offset(value: str, offset: int) -> None:
    assert error_of({"data": {"k": value}}, SECRET) == f"illegal base64 data at input byte {offset}"


def test_a_base64_error_does_not_stop_decoding() -> None:
    obj = {"data": {"k": "!!"}, "unknownAfter": 1}
    result = normalize(obj, SECRET)
    assert result == Normalized(["unknownAfter"], "illegal base64 data at input byte 0")
    error = decode_failure("Secret", "v1", result, strict=False)
    assert error is not None
    assert error.message == 'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0'


def test_binary_config_map_data_is_base64_too() -> None:
    assert error_of({"binaryData": {"k": "%%%%"}}, "io.k8s.api.core.v1.ConfigMap") == "illegal base64 data at input byte 0"


def test_a_non_string_byte_value_is_a_type_error() -> None:
    assert error_of({"data": {"k": 1}}, SECRET) == "json: cannot unmarshal number into Go struct field Secret.data of type []uint8"


# --- nulls ------------------------------------------------------------------------------------


def test_null_fields_are_dropped_at_every_depth() -> None:
    obj = nginx_pod()
    obj["metadata"].update(creationTimestamp=None, namespace=None, labels={"app": "nginx"}, annotations=None)
    obj["spec"].update(nodeSelector=None, restartPolicy=None, securityContext=None)
    obj["spec"]["containers"][0].update(resources={**obj["spec"]["containers"][0]["resources"], "claims": None}, ports=[{"containerPort": 80, "hostPort": None}])
    obj["status"] = None
    assert normalize(obj, POD) == Normalized([], None)
    assert obj == nginx_pod()


def test_null_map_values_and_list_items_decode_to_go_zero_values() -> None:
    obj = with_container(args=[None, "x"], resources={"limits": {"cpu": None}})
    obj["metadata"]["labels"] = {"app": None}
    obj["spec"]["volumes"] = [None]
    assert normalize(obj, POD).error is None
    assert obj["metadata"]["labels"] == {"app": ""}
    assert obj["spec"]["containers"][0]["args"] == ["", "x"]
    assert obj["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "0"}
    assert obj["spec"]["volumes"] == [{}]
    secret = {"data": {"k": None}}
    assert normalize(secret, SECRET).error is None
    assert secret == {"data": {"k": None}}  # a nil []byte encodes as null


def test_raw_fields_are_kept_verbatim() -> None:
    managed = [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}, "time": "2024-01-02T03:04:05Z"}]
    obj = {"metadata": {"managedFields": copy.deepcopy(managed)}}
    assert normalize(obj, POD) == Normalized([], None)
    assert obj["metadata"]["managedFields"] == managed


# --- speed ------------------------------------------------------------------------------------


def test_walking_the_nginx_pod_is_fast() -> None:
    raw = orjson.dumps(nginx_pod())
    bodies = [orjson.loads(raw) for _ in range(2000)]
    normalize(bodies.pop(), POD)  # compile outside the measurement
    start = time.perf_counter()
    for body in bodies:
        normalize(body, POD)
    average = (time.perf_counter() - start) / len(bodies) * 1e6
    print(f"\nnormalize(nginx-pod): {average:.1f} µs on average (budget 60 µs)")
