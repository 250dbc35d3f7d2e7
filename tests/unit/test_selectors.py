"""Label and field selectors: apimachinery's grammar, matching and error texts."""

from __future__ import annotations

from typing import Any

import pytest

from tinykube.api.errors import ApiError
from tinykube.api.registry import RESOURCES
from tinykube.api.selectors import (
    LabelSelector,
    Requirement,
    from_label_selector_object,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "front", "version": "3"}
KEY_RULE = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
VALUE_RULE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
              "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
              "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def rt(resource: str, group: str = "") -> Any:
    return next(r for r in RESOURCES if r.group == group and r.resource == resource)


def bad(call: Any, *args: Any) -> str:
    with pytest.raises(ApiError) as err:
        call(*args)
    assert (err.value.code, err.value.reason) == (400, "BadRequest")
    return err.value.message


@pytest.mark.parametrize("text,matches", [
    ("", True), ("app=web", True), ("app==web", True), ("app!=web", False), ("app=db", False),
    ("missing!=x", True), ("app in (web,db)", True), ("app notin (web)", False), ("missing notin (x)", True),
    ("tier", True), ("!tier", False), ("!missing", True), ("app=web,tier=back", False),
    ("app = web , tier in ( front )", True), ("version>2", True), ("version<3", False), ("app>1", False),
    ("x in (a,,b)", False), ("missing in ()", False), ("app=", False), ("in in (in)", False),
])
def test_label_selector_matches(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is matches


def test_label_selector_parse_structure() -> None:
    selector = parse_label_selector("z in (b,a), !y, x")
    assert selector.requirements == (Requirement("x", "exists"), Requirement("y", "!"),
                                     Requirement("z", "in", ("a", "b")))
    assert parse_label_selector("k in (,)").requirements == (Requirement("k", "in", ("",)),)


@pytest.mark.parametrize("text,message", [
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("app:monolith", f'unable to parse requirement: <nil>: Invalid value: "app:monolith": {KEY_RULE}'),
    ("a=b@", f'unable to parse requirement: values[0][a]: Invalid value: "b@": {VALUE_RULE}'),
    ("a>x", "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value "
            "must be an integer"),
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("x in a", "unable to parse requirement: found 'a' expected: '('"),
    ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
    ("a,", "found '', expected: identifier after ','"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("app.kubernetes_io/name=x",
     "unable to parse requirement: <nil>: Invalid value: \"app.kubernetes_io/name\": prefix part a lowercase RFC 1123 "
     "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an "
     "alphanumeric character (e.g. 'example.com', regex used for validation is "
     "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
])
def test_label_selector_errors(text: str, message: str) -> None:
    assert bad(parse_label_selector, text) == message


def test_label_selector_object() -> None:
    selector = from_label_selector_object({"matchLabels": {"app": "web"},
                                           "matchExpressions": [{"key": "tier", "operator": "In",
                                                                 "values": ["front", "back"]},
                                                                {"key": "gone", "operator": "DoesNotExist"}]})
    assert selector.matches(LABELS) and not selector.matches({"app": "web"})
    assert from_label_selector_object({}).matches({}) is True
    assert from_label_selector_object(None) == LabelSelector(nothing=True)
    assert from_label_selector_object(None).matches(LABELS) is False


@pytest.mark.parametrize("sel,message", [
    ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, '"Gt" is not a valid label selector '
                                                                              'operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]},
     "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist'),
    ({"matchLabels": {"a b": "c@"}},
     f'[key: Invalid value: "a b": {KEY_RULE}, values[0][a b]: Invalid value: "c@": {VALUE_RULE}]'),
])
def test_label_selector_object_errors(sel: dict[str, Any], message: str) -> None:
    assert bad(from_label_selector_object, sel) == message


def a_pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "default"},
            "status": {"phase": "Running", **status}}


@pytest.mark.parametrize("text,matches", [
    ("", True), ("metadata.name=web", True), ("metadata.name==web", True), ("metadata.name!=web", False),
    ("metadata.namespace=default,spec.nodeName=node-1", True), ("spec.nodeName=", False),
    ("spec.host=node-1", True), ("spec.hostNetwork=false", True), ("status.phase=Running", True),
    ("status.podIP=10.0.0.1", True), ("status.podIPs=10.0.0.1", False), ("status.podIPs=", True),
    ("status.nominatedNodeName=", True), ("spec.schedulerName=default-scheduler", True),
    ("spec.serviceAccountName=default,spec.restartPolicy!=Never", True),
])
def test_pod_field_selector(text: str, matches: bool) -> None:
    obj = a_pod(podIPs=[{"ip": "10.0.0.1"}])
    assert parse_field_selector(text, rt("pods")).matches(obj) is matches


def test_field_selector_exact_value_and_escapes() -> None:
    selector = parse_field_selector("spec.host=node-1,status.phase!=Failed", rt("pods"))
    assert selector.exact_value("spec.nodeName") == "node-1"
    assert selector.exact_value("status.phase") is None
    assert parse_field_selector(r"metadata.name=a\,b\=c\\d", rt("configmaps")).exact_value("metadata.name") == (
        "a,b=c\\d")


def test_event_field_selectors() -> None:
    core = {"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "web"},
            "reason": "BackOff", "type": "Warning", "reportingComponent": "kubelet", "source": {}}
    assert parse_field_selector("involvedObject.kind=Pod,involvedObject.name=web,source=kubelet,type=Warning",
                                rt("events")).matches(core)
    modern = {"metadata": {"name": "e", "namespace": "default"}, "regarding": {"kind": "Node", "name": "n1"},
              "reason": "NodeReady", "reportingController": "kubelet", "deprecatedSource": {"component": "nc"}}
    events_v1 = rt("events", "events.k8s.io")
    selector = parse_field_selector("regarding.kind=Node,reportingController=kubelet,source=nc", events_v1)
    assert selector.matches(modern) and selector.exact_value("involvedObject.kind") == "Node"
    assert bad(parse_field_selector, "involvedObject.kind=Node", events_v1) == (
        "field label not supported: involvedObject.kind")


@pytest.mark.parametrize("resource,text,obj", [
    ("secrets", "type=Opaque", {"metadata": {"name": "s"}, "type": "Opaque"}),
    ("namespaces", "status.phase=Active", {"metadata": {"name": "n"}, "status": {"phase": "Active"}}),
    ("nodes", "spec.unschedulable=false", {"metadata": {"name": "n"}, "spec": {}}),
    ("services", "spec.type=ClusterIP,spec.clusterIP=10.96.0.1",
     {"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1"}}),
])
def test_kind_specific_field_selectors(resource: str, text: str, obj: dict[str, Any]) -> None:
    assert parse_field_selector(text, rt(resource)).matches(obj)


@pytest.mark.parametrize("resource,text,message", [
    ("pods", "spec.foo=1", "field label not supported: spec.foo"),
    ("nodes", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("namespaces", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("configmaps", "data.a=1", '"data.a" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("pods", "foo", "invalid selector: 'foo'; can't understand 'foo'"),
    ("pods", "metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
    ("pods", "metadata.name=a\\x", "invalid field selector: invalid escape sequence: \\x"),
    ("pods", "metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
])
def test_field_selector_errors(resource: str, text: str, message: str) -> None:
    assert bad(parse_field_selector, text, rt(resource)) == message
