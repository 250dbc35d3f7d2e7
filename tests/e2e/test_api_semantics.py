"""API semantics a Kubernetes 1.32 client relies on, proved through real clients.

Each test drives the server with kubectl, ``kubectl get --raw``, the official ``kubernetes``
Python client or plain ``http.client`` with the admin certificate, and checks what
kube-apiserver 1.32 would answer: authentication, watch resumption and expiry, optimistic
concurrency, immutable pod fields, dry runs, paging, selectors, field validation, body limits,
protobuf writes with ClusterIP allocation, both Event shapes, namespace termination, edits and
patches, and the ``tinykube up`` kubeconfig.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch

from tests.e2e.cluster import EXAMPLES, REPO, TINYKUBE, Cluster, free_port

pytestmark = pytest.mark.slow

STALE = "the object has been modified; please apply your changes to the latest version and try again"


# --- raw HTTPS --------------------------------------------------------------------------------


def _tls(data_dir: Path, with_cert: bool = True) -> ssl.SSLContext:
    """Trust the cluster CA; present the admin client certificate unless told not to."""
    ctx = ssl.create_default_context(cafile=str(data_dir / "tls" / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(str(data_dir / "tls" / "admin.crt"), str(data_dir / "tls" / "admin.key"))
    return ctx


def _connect(c: Cluster, with_cert: bool = True, timeout: float = 30) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", c.port, context=_tls(c.data_dir, with_cert), timeout=timeout)


def _call(c: Cluster, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
          with_cert: bool = True) -> tuple[int, http.client.HTTPMessage, Any]:
    """One request; answers (status, headers, decoded JSON body or raw text)."""
    conn = _connect(c, with_cert)
    try:
        payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, resp.headers, json.loads(raw)
    except ValueError:
        return resp.status, resp.headers, raw.decode()


def _stream(c: Cluster, path: str) -> Iterator[tuple[float, dict[str, Any]]]:
    """The events of a watch as they arrive, each with the seconds since the request."""
    conn = _connect(c, timeout=20)
    start = time.monotonic()
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        while line := resp.readline():
            if line.strip():
                yield time.monotonic() - start, json.loads(line)
        yield time.monotonic() - start, {"type": "EOF"}
    finally:
        conn.close()


def _watch_events(c: Cluster, path: str) -> list[dict[str, Any]]:
    """Every event of a finite watch (the path must carry timeoutSeconds)."""
    raw = c.kubectl("get", "--raw", path).stdout
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


# --- kubectl helpers --------------------------------------------------------------------------


def _kubectl_env(env: dict[str, str], *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=env, timeout=60, cwd=EXAMPLES)


def _create(c: Cluster, ns: str, *objs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``kubectl create -f -`` of a stream of JSON objects (each created on its own)."""
    return c.kubectl("-n", ns, "create", "-f", "-", input="\n".join(json.dumps(o) for o in objs))


def _cm(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"a": "xval"}, **extra}


def _pod(name: str, *containers: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **({"labels": labels} if labels else {})},
            "spec": {"containers": [{"name": n, "image": "busybox"} for n in containers or ("c",)]}}


ROOT_CA = "kube-root-ca.crt"  # the ConfigMap the root CA publisher keeps in every namespace, as upstream


def _names(c: Cluster, ns: str, kind: str, *args: str) -> list[str]:
    """The names of the objects a test made (the published root CA ConfigMap left out)."""
    out = c.kubectl("-n", ns, "get", kind, "-o", "jsonpath={.items[*].metadata.name}", *args).stdout
    return sorted(name for name in out.split() if name != ROOT_CA)


def _get(c: Cluster, ns: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(c.kubectl("-n", ns, "get", kind, name, "-o", "json").stdout)


def _rv(c: Cluster, ns: str) -> str:
    """The resourceVersion of a ConfigMap list now: a watch from it sees only later changes."""
    return json.loads(c.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps").stdout)["metadata"]["resourceVersion"]


def _wait_for(check: Callable[[], object], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# --- 1. authentication ------------------------------------------------------------------------

PROTECTED = [("GET", "/api"), ("GET", "/apis"), ("GET", "/api/v1"), ("GET", "/api/v1/namespaces"),
             ("GET", "/api/v1/namespaces/default/pods?watch=true"), ("POST", "/api/v1/namespaces/default/configmaps"),
             ("DELETE", "/api/v1/namespaces/default/configmaps/x"), ("GET", "/openapi/v3"), ("GET", "/metrics"),
             ("GET", "/no/such/path"), ("GET", "/apis/apps/v1")]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}], ids=["anonymous", "wrong-token"])
def test_requests_without_valid_credentials_get_401(cluster: Cluster, headers: dict[str, str]) -> None:
    for method, path in PROTECTED:
        status, _, body = _call(cluster, method, path, {} if method == "POST" else None, headers, with_cert=False)
        assert status == 401, (method, path, body)
        assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    for path in ("/healthz", "/livez", "/readyz", "/version"):  # a token that fails is refused even there
        assert _call(cluster, "GET", path, None, headers, with_cert=False)[0] == (401 if headers else 200), path


def test_client_certificate_wins_over_a_wrong_token(cluster: Cluster) -> None:
    """The union authenticator accepts the first that succeeds: a valid certificate is enough."""
    status, _, body = _call(cluster, "GET", "/api/v1/namespaces", headers={"Authorization": "Bearer not-a-token"})
    assert status == 200 and body["kind"] == "NamespaceList"


@pytest.mark.parametrize("user", [{"username": "nobody", "password": "nothing"}, {"token": "not-a-token"}],
                         ids=["basic-auth", "wrong-token"])
def test_kubectl_without_credentials_must_log_in(cluster: Cluster, tmp_path: Path, user: dict[str, str]) -> None:
    """No client certificate: basic auth (which Kubernetes no longer accepts) or a wrong token is 401.

    (With no credentials at all kubectl prompts for a password on the terminal first.)
    """
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig["users"][0]["user"] = user
    bare = tmp_path / "bare.kubeconfig"
    bare.write_text(yaml.safe_dump(kubeconfig))
    result = _kubectl_env({**cluster.env(), "KUBECONFIG": str(bare), "KUBECACHEDIR": str(tmp_path / "cache")}, "get", "pods")
    assert result.returncode != 0
    assert "error: You must be logged in to the server" in result.stderr, result.stderr


# --- 2. watch ---------------------------------------------------------------------------------


def _expired_watch(c: Cluster, path: str) -> list[dict[str, Any]]:
    """The events of a watch once compaction has passed its revision (then the first is an ERROR)."""
    deadline = time.monotonic() + 10
    while (events := _watch_events(c, path))[0]["type"] != "ERROR":
        assert time.monotonic() < deadline, "the history was never compacted"
    return events


def test_watch_from_compacted_revision_expires(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "data", extra_args=("--compaction-interval", "0.5", "--compaction-retain", "5"))
    c.start()
    try:
        old = _rv(c, "default")
        _create(c, "default", *(_cm(f"c{i}") for i in range(20)))
        events = _expired_watch(c, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old}&timeoutSeconds=1")
        assert len(events) == 1
        status = events[0]["object"]
        assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
        oldest = re.fullmatch(rf"too old resource version: {old} \((\d+)\)", status["message"])
        assert oldest, status
        from_oldest = _watch_events(c, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={oldest[1]}"
                                       "&timeoutSeconds=1")
        assert from_oldest and all(e["type"] == "ADDED" for e in from_oldest), from_oldest
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(c.kubeconfig)))
        with pytest.raises(client.ApiException) as err:
            for _ in watch.Watch().stream(api.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=5):
                pass
        assert err.value.status == 410
        recent = _rv(c, "default")
        c.kubectl("label", "configmap", "c1", "x=1")
        tail = _watch_events(c, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={recent}&timeoutSeconds=1")
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in tail] == [("MODIFIED", "c1")]
    finally:
        c.stop()


def test_watch_resumed_within_history_gets_every_change_in_order(cluster: Cluster, ns: str) -> None:
    start = _rv(cluster, ns)
    _create(cluster, ns, _cm("w"))
    for i in range(3):
        cluster.kubectl("-n", ns, "label", "configmap", "w", f"step={i}", "--overwrite")
    cluster.kubectl("-n", ns, "delete", "configmap", "w")
    events = _watch_events(cluster, f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={start}&timeoutSeconds=1")
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
    assert [e["object"]["metadata"].get("labels", {}).get("step") for e in events] == [None, "0", "1", "2", "2"]
    revisions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert revisions == sorted(set(revisions)) and revisions[0] > int(start)


def test_watch_sends_bookmarks_and_ends_at_timeout(cluster: Cluster, ns: str) -> None:
    start = _rv(cluster, ns)
    seen = list(_stream(cluster, f"/api/v1/namespaces/{ns}/configmaps?watch=true&allowWatchBookmarks=true"
                                 f"&resourceVersion={start}&timeoutSeconds=6"))
    bookmarks = [(t, e) for t, e in seen if e["type"] == "BOOKMARK"]
    assert bookmarks and bookmarks[0][0] < 6.0, seen
    bookmark = bookmarks[0][1]["object"]
    assert bookmark["kind"] == "ConfigMap" and bookmark["apiVersion"] == "v1"
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(start)
    assert seen[-1][1]["type"] == "EOF" and 5.5 < seen[-1][0] < 9, seen


# --- 3. optimistic concurrency ----------------------------------------------------------------


def test_update_with_stale_resource_version_conflicts(cluster: Cluster, ns: str) -> None:
    _create(cluster, ns, _cm("cc"))
    stale = _get(cluster, ns, "configmap", "cc")
    cluster.kubectl("-n", ns, "label", "configmap", "cc", "fresh=yes")
    stale["data"] = {"a": "lost"}
    result = cluster.kubectl("-n", ns, "replace", "-f", "-", input=json.dumps(stale), check=False)
    assert result.returncode != 0
    assert f'Operation cannot be fulfilled on configmaps "cc": {STALE}' in result.stderr, result.stderr
    status, _, body = _call(cluster, "PUT", f"/api/v1/namespaces/{ns}/configmaps/cc", stale)
    assert status == 409 and body["reason"] == "Conflict" and body["details"] == {"name": "cc", "kind": "configmaps"}
    assert body["message"] == f'Operation cannot be fulfilled on configmaps "cc": {STALE}'
    assert _get(cluster, ns, "configmap", "cc")["data"] == {"a": "xval"}


# --- 4. immutable pod fields ------------------------------------------------------------------


def test_pod_spec_is_immutable_except_image(cluster: Cluster, ns: str) -> None:
    _create(cluster, ns, _pod("imm"))
    renamed = _get(cluster, ns, "pod", "imm")
    renamed["spec"]["containers"][0]["name"] = "renamed"
    attempts = [
        ("replace", "-f", "-"),
        ("patch", "pod", "imm", "--type=merge", "-p", '{"spec":{"restartPolicy":"Never"}}'),
        ("patch", "pod", "imm", "--type=json", "-p", '[{"op":"replace","path":"/spec/containers/0/name","value":"x"}]'),
    ]
    for args in attempts:
        result = cluster.kubectl("-n", ns, *args, input=json.dumps(renamed), check=False)
        assert result.returncode != 0
        assert 'The Pod "imm" is invalid: spec: Forbidden: pod updates may not change fields other than' in result.stderr, result.stderr
    status, _, body = _call(cluster, "PUT", f"/api/v1/namespaces/{ns}/pods/imm", renamed)
    assert status == 422 and body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "spec"
    assert "pod/imm image updated" in cluster.kubectl("-n", ns, "set", "image", "pod/imm", "c=nginx:1.27").stdout
    spec = _get(cluster, ns, "pod", "imm")["spec"]
    assert (spec["containers"][0]["name"], spec["containers"][0]["image"], spec["restartPolicy"]) == ("c", "nginx:1.27", "Always")


# --- 5. generateName and dry runs -------------------------------------------------------------


def test_generate_name_and_server_dry_run(cluster: Cluster, ns: str) -> None:
    generated = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}, "data": {"a": "b"}}
    out = cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(generated)).stdout.split()
    assert out[1:] == ["created"] and re.fullmatch(r"configmap/gen-[bcdfghjklmnpqrstvwxz2456789]{5}", out[0]), out
    dry = cluster.kubectl("-n", ns, "create", "--dry-run=server", "-f", "-", input=json.dumps(generated)).stdout
    assert re.fullmatch(r"configmap/gen-\w{5} created \(server dry run\)\n", dry) and not dry.startswith(out[0] + " "), dry
    made = cluster.kubectl("-n", ns, "create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server", "-o", "json").stdout
    assert json.loads(made)["metadata"]["uid"]
    applied = cluster.kubectl("-n", ns, "apply", "--dry-run=server", "-f", "nginx-pod.yaml").stdout
    assert applied == "pod/nginx-pod created (server dry run)\n"
    _create(cluster, ns, _cm("kept"))
    taken = cluster.kubectl("-n", ns, "create", "configmap", "kept", "--dry-run=server", check=False)
    assert taken.returncode != 0 and 'configmaps "kept" already exists' in taken.stderr, taken.stderr
    labelled = cluster.kubectl("-n", ns, "label", "configmap", "kept", "dry=run", "--dry-run=server").stdout
    assert labelled == "configmap/kept labeled (server dry run)\n"
    assert _names(cluster, ns, "configmaps") == sorted(["kept", out[0].removeprefix("configmap/")])
    assert _names(cluster, ns, "pods") == []
    assert "labels" not in _get(cluster, ns, "configmap", "kept")["metadata"]


def test_dry_run_service_keeps_no_cluster_ip(cluster: Cluster, ns: str) -> None:
    ip = cluster.kubectl("-n", ns, "create", "service", "clusterip", "dry", "--tcp=80:80", "--dry-run=server",
                         "-o", "jsonpath={.spec.clusterIP}").stdout
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.43.0.0/16")
    assert cluster.kubectl("-n", ns, "get", "service", "dry", check=False).returncode != 0
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "taker"},
           "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}
    cluster.kubectl("-n", ns, "apply", "--dry-run=server", "-f", "-", input=json.dumps(svc))
    cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(svc))
    assert _get(cluster, ns, "service", "taker")["spec"]["clusterIP"] == ip


# --- 6. paging --------------------------------------------------------------------------------


def test_paging_with_limit_and_continue(cluster: Cluster, ns: str) -> None:
    _wait_for(lambda: cluster.kubectl("-n", ns, "get", "cm", ROOT_CA, check=False).returncode == 0, what=ROOT_CA)
    _create(cluster, ns, *(_cm(f"page{i}") for i in range(6)))  # seven ConfigMaps with the root CA's
    status, _, first = _call(cluster, "GET", f"/api/v1/namespaces/{ns}/configmaps?limit=3")
    assert status == 200 and len(first["items"]) == 3 and first["metadata"]["continue"]
    seen = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        _, _, page = _call(cluster, "GET", f"/api/v1/namespaces/{ns}/configmaps?limit=3&continue={token}")
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert sorted(seen) == sorted([ROOT_CA, *(f"page{i}" for i in range(6))]) and len(seen) == 7
    chunked = cluster.kubectl("-n", ns, "get", "cm", "--chunk-size=2", "-v=6")
    assert sorted(line.split()[0] for line in chunked.stdout.splitlines()[1:]) == sorted(seen)
    assert chunked.stderr.count("limit=2") == 4 and "continue=" in chunked.stderr, chunked.stderr
    status, _, body = _call(cluster, "GET", f"/api/v1/namespaces/{ns}/configmaps?limit=3&continue=garbage")
    assert status == 400 and body["reason"] == "BadRequest"


# --- 7. selectors -----------------------------------------------------------------------------


def test_selectors_on_list(cluster: Cluster, ns: str) -> None:
    _create(cluster, ns, _pod("p1", labels={"app": "x"}), _pod("p2", labels={"app": "y"}))
    assert _names(cluster, ns, "pods", "--field-selector", "status.phase=Pending") == ["p1", "p2"]
    assert _names(cluster, ns, "pods", "--field-selector", "status.phase=Running") == []
    assert _names(cluster, ns, "pods", "--field-selector", "metadata.name=p2") == ["p2"]
    assert _names(cluster, ns, "pods", "-l", "app=x", "--field-selector", "status.phase=Pending") == ["p1"]
    assert _names(cluster, ns, "pods", "-l", "app in (x,y),app!=y") == ["p1"]
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    listed = api.list_namespaced_pod(ns, field_selector="metadata.name!=p1,status.phase=Pending")
    assert [p.metadata.name for p in listed.items] == ["p2"]


def test_selectors_on_watch(cluster: Cluster, ns: str) -> None:
    start = _rv(cluster, ns)
    _create(cluster, ns, _cm("a", {"app": "x"}), _cm("b", {"app": "y"}))
    cluster.kubectl("-n", ns, "label", "configmap", "a", "app=z", "--overwrite")
    cluster.kubectl("-n", ns, "label", "configmap", "b", "app=x", "--overwrite")
    cluster.kubectl("-n", ns, "delete", "configmap", "b")
    base = f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={start}&timeoutSeconds=1"
    by_label = _watch_events(cluster, base + "&labelSelector=app%3Dx")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in by_label] == \
        [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b"), ("DELETED", "b")]
    assert by_label[1]["object"]["metadata"]["labels"] == {"app": "z"}
    by_name = _watch_events(cluster, base + "&fieldSelector=metadata.name%3Db")
    assert [e["type"] for e in by_name] == ["ADDED", "MODIFIED", "DELETED"]


def test_unsupported_field_selector_is_bad_request(cluster: Cluster, ns: str) -> None:
    result = cluster.kubectl("-n", ns, "get", "pods", "--field-selector", "spec.foo=bar", check=False)
    assert result.returncode != 0 and "field label not supported: spec.foo" in result.stderr, result.stderr
    for query in ("fieldSelector=spec.foo%3Dbar", "fieldSelector=spec.foo%3Dbar&watch=true"):
        status, _, body = _call(cluster, "GET", f"/api/v1/namespaces/{ns}/pods?{query}")
        assert status == 400 and body["reason"] == "BadRequest" and body["message"] == "field label not supported: spec.foo"


# --- 8. deletecollection ----------------------------------------------------------------------


def test_delete_collection(cluster: Cluster, ns: str) -> None:
    _create(cluster, ns, _cm("x1", {"app": "x"}), _cm("x2", {"app": "x"}), _cm("y1", {"app": "y"}), _cm("y2", {"app": "y"}),
            _cm("z"))
    _create(cluster, "default", _cm(f"{ns}-bystander", {"app": "x"}))
    try:
        out = cluster.kubectl("-n", ns, "delete", "configmaps", "-l", "app=x").stdout
        assert out.split("\n")[:2] == ['configmap "x1" deleted', 'configmap "x2" deleted']
        assert _names(cluster, ns, "configmaps") == ["y1", "y2", "z"]
        status, _, body = _call(cluster, "DELETE", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=app%3Dy")
        assert status == 200 and sorted(i["metadata"]["name"] for i in body["items"]) == ["y1", "y2"]
        assert _names(cluster, ns, "configmaps") == ["z"]
        deleted = cluster.kubectl("-n", ns, "delete", "configmaps", "--all").stdout.splitlines()
        assert [line for line in deleted if ROOT_CA not in line] == ['configmap "z" deleted']
        assert _names(cluster, ns, "configmaps") == []
        assert _get(cluster, "default", "configmap", f"{ns}-bystander")["metadata"]["name"] == f"{ns}-bystander"
    finally:
        cluster.kubectl("-n", "default", "delete", "configmap", f"{ns}-bystander", check=False)


# --- 9. fieldValidation -----------------------------------------------------------------------


def test_field_validation_modes(cluster: Cluster, ns: str) -> None:
    def attempt(name: str, mode: str) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl("-n", ns, "create", f"--validate={mode}", "-f", "-", check=False,
                               input=json.dumps(_cm(name, bogus="yes")))

    strict = attempt("strict", "strict")
    assert strict.returncode != 0, strict.stdout
    assert 'strict decoding error: unknown field "bogus"' in strict.stderr, strict.stderr
    warned = attempt("warned", "warn")
    assert warned.returncode == 0 and 'Warning: unknown field "bogus"' in warned.stderr, warned.stderr
    ignored = attempt("ignored", "false")
    assert ignored.returncode == 0 and "Warning" not in ignored.stderr, ignored.stderr
    assert _names(cluster, ns, "configmaps") == ["ignored", "warned"]
    for name in ("ignored", "warned"):
        assert "bogus" not in _get(cluster, ns, "configmap", name)
    status, _, body = _call(cluster, "POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Strict", _cm("raw", bogus=1))
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == 'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "bogus"'
    status, headers, _ = _call(cluster, "POST", f"/api/v1/namespaces/{ns}/configmaps", _cm("raw", bogus=1))
    assert status == 201 and headers.get_all("Warning") == ['299 - "unknown field \\"bogus\\""']


def test_list_manifests_are_validated_against_openapi_v2(cluster: Cluster, ns: str) -> None:
    """For ``kind: List`` kubectl validates client-side, with the /openapi/v2 models (protobuf)."""
    good = {"apiVersion": "v1", "kind": "List", "items": [_cm("l1"), _pod("l2")]}
    assert cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(good)).stdout.split() == \
        ["configmap/l1", "created", "pod/l2", "created"]
    exported = cluster.kubectl("-n", ns, "get", "configmaps,pods", "-o", "yaml").stdout
    assert "configmap/l1 configured" in cluster.kubectl("-n", ns, "apply", "-f", "-", input=exported).stdout
    bad = {"apiVersion": "v1", "kind": "List", "items": [_cm("l3", bogus=1)]}
    result = cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(bad), check=False)
    assert result.returncode != 0
    assert 'ValidationError(ConfigMap): unknown field "bogus" in io.k8s.api.core.v1.ConfigMap' in result.stderr, result.stderr


# --- 10. request size -------------------------------------------------------------------------


def test_body_over_3mib_is_refused(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    big = _cm("big")
    big["data"] = {"blob": "x" * (3 * 1024 * 1024 + 10)}
    status, _, body = _call(cluster, "POST", f"/api/v1/namespaces/{ns}/configmaps", big)
    assert status == 413 and body["reason"] == "RequestEntityTooLarge" and body["code"] == 413
    assert body["message"] == "Request entity too large: limit is 3145728"
    manifest = tmp_path / "big.json"
    manifest.write_text(json.dumps(big))
    result = cluster.kubectl("-n", ns, "create", "-f", str(manifest), check=False)
    assert result.returncode != 0 and "Request entity too large: limit is 3145728" in result.stderr, result.stderr
    assert _names(cluster, ns, "configmaps") == []


# --- 11. protobuf writes and ClusterIPs --------------------------------------------------------


def _cluster_ip(c: Cluster, ns: str, name: str) -> str:
    return c.kubectl("-n", ns, "get", "service", name, "-o", "jsonpath={.spec.clusterIP}").stdout


def test_protobuf_creates_and_cluster_ips(cluster: Cluster, ns: str) -> None:
    extra_ns = ns[:50] + "-pb"
    assert cluster.kubectl("create", "namespace", extra_ns).stdout.strip() == f"namespace/{extra_ns} created"
    try:
        assert cluster.kubectl("-n", ns, "create", "serviceaccount", "robot").stdout.strip() == "serviceaccount/robot created"
        out = cluster.kubectl("-n", ns, "create", "service", "clusterip", "myservice", "--tcp=80:9376").stdout
        assert out.strip() == "service/myservice created"
        ip = _cluster_ip(cluster, ns, "myservice")
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.43.0.0/16") and ip != "10.43.0.1"
        row = cluster.kubectl("-n", ns, "get", "svc").stdout.splitlines()
        assert row[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
        assert row[1].split()[:5] == ["myservice", "ClusterIP", ip, "<none>", "80/TCP"]
        for i in range(5):
            cluster.kubectl("-n", ns, "create", "service", "clusterip", f"s{i}", "--tcp=80:80")
        ips = [_cluster_ip(cluster, ns, f"s{i}") for i in range(5)] + [ip]
        assert len(set(ips)) == 6 and "10.43.0.1" not in ips
        taken = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dup"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}
        dup = cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(taken), check=False)
        assert dup.returncode != 0 and f"failed to allocate IP {ip}: provided IP is already allocated" in dup.stderr, dup.stderr
        cluster.kubectl("-n", ns, "delete", "service", "myservice")
        taken["metadata"]["name"] = "myservice"
        cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(taken))
        assert _cluster_ip(cluster, ns, "myservice") == ip
        assert _cluster_ip(cluster, "default", "kubernetes") == "10.43.0.1"
    finally:
        cluster.kubectl("delete", "namespace", extra_ns, "--wait=false", check=False)


# --- 12. events in two groups -----------------------------------------------------------------


def test_events_are_served_in_both_groups(cluster: Cluster, ns: str) -> None:
    regarding = {"kind": "Pod", "name": "p", "namespace": ns, "apiVersion": "v1"}
    core_event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "core"}, "involvedObject": regarding,
                  "reason": "Core", "message": "from core", "type": "Normal", "count": 1, "source": {"component": "t"},
                  "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}
    new_event = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "new"}, "regarding": regarding,
                 "reason": "New", "note": "from events.k8s.io", "type": "Normal", "action": "Test",
                 "eventTime": "2026-01-01T00:00:01.000000Z", "reportingController": "tests/e2e", "reportingInstance": "t1"}
    for event in (core_event, new_event):
        cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(event))
    as_core = {e["metadata"]["name"]: e for e in json.loads(cluster.kubectl("-n", ns, "get", "events", "-o", "json").stdout)["items"]}
    as_new = {e["metadata"]["name"]: e for e in
              json.loads(cluster.kubectl("-n", ns, "get", "events.v1.events.k8s.io", "-o", "json").stdout)["items"]}
    assert set(as_core) == set(as_new) == {"core", "new"}
    assert as_core["new"]["message"] == "from events.k8s.io" and as_core["new"]["involvedObject"]["name"] == "p"
    assert as_core["new"]["apiVersion"] == "v1" and as_core["new"]["reportingComponent"] == "tests/e2e"
    assert as_new["core"]["note"] == "from core" and as_new["core"]["regarding"]["name"] == "p"
    assert as_new["core"]["apiVersion"] == "events.k8s.io/v1" and as_new["core"]["deprecatedCount"] == 1
    assert as_new["core"]["metadata"]["uid"] == as_core["core"]["metadata"]["uid"]
    table = cluster.kubectl("-n", ns, "get", "events.v1.events.k8s.io").stdout
    assert "Core" in table and "New" in table


# --- 13. namespace termination ----------------------------------------------------------------


def test_terminating_namespace_refuses_new_content(cluster: Cluster, ns: str) -> None:
    held = _cm("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    _create(cluster, ns, held, _cm("plain"))
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
    assert cluster.kubectl("get", "namespace", ns, "-o", "jsonpath={.status.phase}").stdout == "Terminating"
    refused = cluster.kubectl("-n", ns, "create", "configmap", "late", "--from-literal=a=b", check=False)
    assert refused.returncode != 0
    assert (f'configmaps "late" is forbidden: unable to create new content in namespace {ns} '
            "because it is being terminated") in refused.stderr, refused.stderr
    status, _, body = _call(cluster, "POST", f"/api/v1/namespaces/{ns}/configmaps", _cm("late"))
    assert status == 403 and body["reason"] == "Forbidden" and body["details"] == {"name": "late", "kind": "configmaps"}
    _wait_for(lambda: _names(cluster, ns, "configmaps") == ["held"], what="plain to go")
    _wait_for(lambda: "deletionTimestamp" in _get(cluster, ns, "configmap", "held")["metadata"], what="held to be deleted")
    assert cluster.kubectl("get", "namespace", ns, "-o", "name").stdout.strip() == f"namespace/{ns}"
    cluster.kubectl("-n", ns, "patch", "configmap", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    _wait_for(lambda: cluster.kubectl("get", "namespace", ns, check=False).returncode != 0, what="namespace to go")


# --- 14. edit and patch -----------------------------------------------------------------------


def test_edit_and_every_patch_type(cluster: Cluster, ns: str) -> None:
    _create(cluster, ns, _cm("ed"), _pod("two", "a", "b"))
    edited = _kubectl_env({**cluster.env(), "KUBE_EDITOR": "sed -i s/xval/yval/"}, "-n", ns, "edit", "configmap", "ed")
    assert edited.returncode == 0 and edited.stdout.strip() == "configmap/ed edited", edited.stderr
    assert _get(cluster, ns, "configmap", "ed")["data"] == {"a": "yval"}
    cluster.kubectl("-n", ns, "patch", "configmap", "ed", "--type=json", "-p",
                    '[{"op":"replace","path":"/data/a","value":"json"},{"op":"add","path":"/data/b","value":"2"}]')
    cluster.kubectl("-n", ns, "patch", "configmap", "ed", "--type=merge", "-p", '{"data":{"b":null},"metadata":{"labels":{"m":"1"}}}')
    cm = _get(cluster, ns, "configmap", "ed")
    assert cm["data"] == {"a": "json"} and cm["metadata"]["labels"] == {"m": "1"}
    out = cluster.kubectl("-n", ns, "patch", "pod", "two", "--type=strategic", "-p",
                          '{"spec":{"containers":[{"name":"b","image":"nginx:1.27"}]}}').stdout
    assert out.strip() == "pod/two patched"
    containers = _get(cluster, ns, "pod", "two")["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("a", "busybox"), ("b", "nginx:1.27")]
    unchanged = cluster.kubectl("-n", ns, "patch", "pod", "two", "-p", '{"spec":{"containers":[{"name":"b","image":"nginx:1.27"}]}}')
    assert unchanged.stdout.strip() == "pod/two patched (no change)"


# --- 15. tinykube up --------------------------------------------------------------------------


@contextmanager
def _up(tmp_path: Path, home: Path, *extra: str) -> Iterator[Cluster]:
    """``tinykube up`` with HOME pointing at a temp dir; stopped by PID when the block ends."""
    c = Cluster(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(home)
    log = open(tmp_path / "up.log", "ab")
    c.proc = subprocess.Popen([*TINYKUBE, "up", "--data-dir", str(c.data_dir), "--port", str(c.port), *extra],
                              stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    try:
        _wait_for(lambda: c.proc is not None and c.proc.poll() is None and c.kubeconfig.exists() and c._ready(),
                  timeout=30, what="tinykube up")
        yield c
    finally:
        c.stop(signal.SIGTERM)
        log.close()


def _home_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return {**env, "HOME": str(home), "KUBECACHEDIR": str(home / "cache")}


def test_up_merges_a_tinykube_context_into_home_kubeconfig(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    other = {"apiVersion": "v1", "kind": "Config", "current-context": "other",
             "clusters": [{"name": "other", "cluster": {"server": "https://192.0.2.1:6443"}}],
             "users": [{"name": "other", "user": {"token": "t"}}],
             "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}]}
    (home / ".kube" / "config").write_text(yaml.safe_dump(other))
    with _up(tmp_path, home) as c:
        merged = yaml.safe_load((home / ".kube" / "config").read_text())
        assert merged["current-context"] == "tinykube"
        assert {ctx["name"] for ctx in merged["contexts"]} == {"other", "tinykube"}
        env = _home_env(home)
        assert _kubectl_env(env, "config", "current-context").stdout.strip() == "tinykube"
        result = _kubectl_env(env, "get", "namespaces", "-o", "name")
        assert result.returncode == 0 and "namespace/default" in result.stdout.split(), result.stderr
        assert f"127.0.0.1:{c.port}" in _kubectl_env(env, "cluster-info").stdout


def test_up_with_no_kubeconfig_leaves_home_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("# mine\n")
    with _up(tmp_path, home, "--no-kubeconfig") as c:
        assert c.kubectl("get", "namespace", "default", "-o", "name").stdout.strip() == "namespace/default"
    assert (home / ".kube" / "config").read_text() == "# mine\n"
    assert sorted(p.name for p in (home / ".kube").iterdir()) == ["config"]


# --- 16. side by side -------------------------------------------------------------------------


def test_two_servers_run_side_by_side(cluster: Cluster, tmp_path: Path) -> None:
    second = Cluster(tmp_path / "data", port=free_port())
    second.start()
    try:
        assert second.port != cluster.port and second.data_dir != cluster.data_dir
        name = f"only-{second.port}"
        second.kubectl("create", "configmap", name, "--from-literal=a=b")
        assert second.kubectl("get", "configmap", name, "-o", "name").stdout.strip() == f"configmap/{name}"
        assert cluster.kubectl("get", "configmap", name, check=False).returncode != 0
        assert (second.data_dir / "tls" / "ca.crt").read_bytes() != (cluster.data_dir / "tls" / "ca.crt").read_bytes()
        crossed = {**second.env(), "KUBECONFIG": str(second.kubeconfig)}
        crossed_config = yaml.safe_load(second.kubeconfig.read_text())
        crossed_config["clusters"][0]["cluster"]["server"] = cluster.url
        (tmp_path / "crossed").write_text(yaml.safe_dump(crossed_config))
        crossed["KUBECONFIG"] = str(tmp_path / "crossed")
        assert _kubectl_env(crossed, "get", "namespaces").returncode != 0
        second.stop()
        assert cluster.kubectl("get", "namespace", "default", "-o", "name").stdout.strip() == "namespace/default"
    finally:
        second.stop()
