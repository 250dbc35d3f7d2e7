"""Service accounts end to end: the token volume on pods, TokenRequest, JWT bearer auth, kube-root-ca.crt.

Driven by the real kubectl and the official ``kubernetes`` client against ``tinykube server``,
whose controllers include the root CA publisher.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.e2e.cluster import Cluster
from tinykube.controllers.rootca import DESCRIPTION_ANNOTATION

pytestmark = pytest.mark.slow
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ISSUER = "https://kubernetes.default.svc.cluster.local"


def _eventually(check: Callable[[], Any], retried: tuple[type[Exception], ...] = (AssertionError,),
                timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except retried:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _token_kubeconfig(cluster: Cluster, path: Path, ns: str) -> Path:
    """A kubeconfig with the server and CA only, so that ``--token`` is the sole credential."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": cluster.url,
                                               "certificate-authority": str(cluster.data_dir / "tls" / "ca.crt")}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "u", "namespace": ns}}]}))
    return path


def _kubectl_as(cluster: Cluster, kubeconfig: Path, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**cluster.env(), "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(["kubectl", f"--token={token}", *args], capture_output=True, text=True, env=env, timeout=60)


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_pod_gets_the_projected_token_volume(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "run", "web", "--image=busybox", "--restart=Never", "--", "sleep", "1")
    pod = yaml.safe_load(cluster.kubectl("-n", ns, "get", "pod", "web", "-o", "yaml").stdout)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    [volume] = spec["volumes"]
    assert volume["name"].startswith("kube-api-access-") and len(volume["name"]) == 21
    assert volume["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
        {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    "path": "namespace"}]}}]}
    assert spec["containers"][0]["volumeMounts"] == [{"mountPath": MOUNT_PATH, "name": volume["name"], "readOnly": True}]


def test_automount_opt_out_and_missing_account(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "create", "serviceaccount", "quiet")
    cluster.kubectl("-n", ns, "patch", "serviceaccount", "quiet", "-p", '{"automountServiceAccountToken": false}')
    cluster.kubectl("-n", ns, "run", "q", "--image=busybox", "--overrides",
                    '{"spec": {"serviceAccountName": "quiet"}}')
    spec = json.loads(cluster.kubectl("-n", ns, "get", "pod", "q", "-o", "json").stdout)["spec"]
    assert "volumes" not in spec and "volumeMounts" not in spec["containers"][0]
    result = cluster.kubectl("-n", ns, "run", "g", "--image=busybox", "--overrides",
                             '{"spec": {"serviceAccountName": "ghost"}}', check=False)
    assert result.returncode != 0
    assert (f'Error from server (Forbidden): pods "g" is forbidden: error looking up service account {ns}/ghost: '
            'serviceaccount "ghost" not found') in result.stderr


def test_kubectl_create_token_authenticates_until_the_account_goes(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    cluster.kubectl("-n", ns, "create", "serviceaccount", "robot")
    token = cluster.kubectl("-n", ns, "create", "token", "robot").stdout.strip()
    claims = _claims(token)
    assert claims["iss"] == ISSUER and claims["aud"] == [ISSUER] and claims["exp"] - claims["iat"] == 3600
    assert claims["sub"] == f"system:serviceaccount:{ns}:robot"
    kubeconfig = _token_kubeconfig(cluster, tmp_path / "token.kubeconfig", ns)
    listed = _kubectl_as(cluster, kubeconfig, token, "get", "pods")
    assert listed.returncode == 0, listed.stderr
    assert _kubectl_as(cluster, kubeconfig, token + "x", "get", "pods").returncode != 0
    cluster.kubectl("-n", ns, "delete", "serviceaccount", "robot")
    refused = _kubectl_as(cluster, kubeconfig, token, "get", "pods")
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr


def test_pod_bound_token_and_validation(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    cluster.kubectl("-n", ns, "run", "bound", "--image=busybox")
    pod_uid = cluster.kubectl("-n", ns, "get", "pod", "bound", "-o", "jsonpath={.metadata.uid}").stdout
    out = yaml.safe_load(cluster.kubectl("-n", ns, "create", "token", "default", "--bound-object-kind", "Pod",
                                         "--bound-object-name", "bound", "--duration", "20m", "-o", "yaml").stdout)
    assert out["spec"]["boundObjectRef"] == {"apiVersion": "v1", "kind": "Pod", "name": "bound"}
    assert out["spec"]["expirationSeconds"] == 1200
    assert _claims(out["status"]["token"])["kubernetes.io"]["pod"] == {"name": "bound", "uid": pod_uid}
    kubeconfig = _token_kubeconfig(cluster, tmp_path / "token.kubeconfig", ns)
    assert _kubectl_as(cluster, kubeconfig, out["status"]["token"], "get", "pods").returncode == 0
    cluster.kubectl("-n", ns, "delete", "pod", "bound")
    assert _kubectl_as(cluster, kubeconfig, out["status"]["token"], "get", "pods").returncode != 0
    short = cluster.kubectl("-n", ns, "create", "token", "default", "--duration", "5m", check=False)
    assert ('TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 300: '
            "may not specify a duration less than 10 minutes") in short.stderr


def test_python_client_with_a_service_account_token(cluster: Cluster, ns: str) -> None:
    admin = client.Configuration()
    admin.host, admin.ssl_ca_cert = cluster.url, str(cluster.data_dir / "tls" / "ca.crt")
    admin.cert_file, admin.key_file = str(cluster.data_dir / "tls" / "admin.crt"), str(cluster.data_dir / "tls" / "admin.key")
    core = client.CoreV1Api(client.ApiClient(admin))
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    issued = _eventually(lambda: core.create_namespaced_service_account_token("default", ns, request),
                         (client.ApiException,))  # until the controller has made the namespace's default account
    assert issued.status.token and issued.spec.expiration_seconds == 600
    as_sa = client.Configuration()
    as_sa.host, as_sa.ssl_ca_cert = cluster.url, admin.ssl_ca_cert
    as_sa.api_key = {"authorization": "Bearer " + issued.status.token}
    pods = client.CoreV1Api(client.ApiClient(as_sa)).list_namespaced_pod(ns)
    assert pods.items == []
    as_sa.api_key = {"authorization": "Bearer " + issued.status.token[:-4] + "AAAA"}
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(client.ApiClient(as_sa)).list_namespaced_pod(ns)
    assert err.value.status == 401


def test_root_ca_configmap_in_every_namespace(cluster: Cluster, ns: str) -> None:
    ca = (cluster.data_dir / "tls" / "ca.crt").read_text()

    def published() -> dict[str, Any]:
        got = cluster.kubectl("-n", ns, "get", "configmap", "kube-root-ca.crt", "-o", "json", check=False)
        assert got.returncode == 0, got.stderr
        return json.loads(got.stdout)

    cm = _eventually(published)
    assert cm["data"] == {"ca.crt": ca} and cm["metadata"]["annotations"][DESCRIPTION_ANNOTATION]
    cluster.kubectl("-n", ns, "patch", "configmap", "kube-root-ca.crt", "-p", '{"data": {"ca.crt": "forged"}}')
    _eventually(lambda: _assert_equal(published()["data"], {"ca.crt": ca}))
    cluster.kubectl("-n", ns, "delete", "configmap", "kube-root-ca.crt")
    _eventually(lambda: _assert_equal(published()["data"], {"ca.crt": ca}))


def _assert_equal(got: Any, wanted: Any) -> None:
    assert got == wanted
