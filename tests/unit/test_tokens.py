"""Service-account tokens (sign, verify, revoke) and the ServiceAccount admission plugin's pod mutation."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.apiserver import serviceaccount_admission as admission
from tinykube.apiserver.tokens import (EXTENDED_EXPIRATION, ISSUER, Binding, InvalidToken, Ref, ServiceAccountTokens,
                                       key_id)

NOW = 1_750_000_000
SA = {"metadata": {"name": "builder", "namespace": "ci", "uid": "sa-uid"}}
POD = {"metadata": {"name": "web", "namespace": "ci", "uid": "pod-uid"}}
PODS = lookup("", "v1", "pods")
SECRETS = lookup("", "v1", "secrets")


class Objects:
    """A fake live-object lookup: (resource, namespace, name) -> object."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str | None, str], dict[str, Any]] = {
            ("serviceaccounts", "ci", "builder"): SA, ("pods", "ci", "web"): POD}
        self.calls = 0

    async def __call__(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.calls += 1
        return self.items.get((resource, namespace, name))


@pytest.fixture
def objects() -> Objects:
    return Objects()


@pytest.fixture
def tokens(objects: Objects) -> ServiceAccountTokens:
    return ServiceAccountTokens(ec.generate_private_key(ec.SECP256R1()), objects)


def _parts(token: str) -> list[Any]:
    head, body, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return [json.loads(base64.urlsafe_b64decode(pad(head))), json.loads(base64.urlsafe_b64decode(pad(body))),
            base64.urlsafe_b64decode(pad(sig))]


def _issue(tokens: ServiceAccountTokens, binding: Binding = Binding(), expiration: int = 3600,
           audiences: list[str] | None = None, warn_after: int = 0) -> str:
    return tokens.issue(SA, binding, expiration, warn_after, audiences or [ISSUER], NOW)


# --- signing ---------------------------------------------------------------------------------


def test_token_has_kube_apiserver_claims_and_header(tokens: ServiceAccountTokens) -> None:
    token = _issue(tokens, Binding(pod=Ref("web", "pod-uid"), node=Ref("n1")), warn_after=3607)
    header, payload, signature = _parts(token)
    assert header == {"alg": "ES256", "kid": key_id(tokens._public)}
    assert "=" not in token and len(signature) == 64
    assert payload.pop("jti")
    assert payload == {
        "aud": [ISSUER], "exp": NOW + 3600, "iat": NOW, "iss": ISSUER, "nbf": NOW,
        "sub": "system:serviceaccount:ci:builder",
        "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "builder", "uid": "sa-uid"},
                          "pod": {"name": "web", "uid": "pod-uid"}, "node": {"name": "n1"}, "warnafter": NOW + 3607}}
    assert list(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))) == sorted(payload | {"jti": 1})


def test_signature_is_raw_r_s_over_the_signing_input(tokens: ServiceAccountTokens) -> None:
    token = _issue(tokens)
    signature = _parts(token)[2]
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    tokens._public.verify(der, token.rsplit(".", 1)[0].encode(), ec.ECDSA(hashes.SHA256()))


# --- verification ----------------------------------------------------------------------------


async def test_valid_token_names_the_service_account(tokens: ServiceAccountTokens) -> None:
    info = await tokens.authenticate(_issue(tokens), NOW + 10)
    assert info.username == "system:serviceaccount:ci:builder"
    assert info.groups == ("system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated")


@pytest.mark.parametrize("now, ok", [(NOW + 3600 + 60, True), (NOW + 3600 + 61, False), (NOW - 60, True),
                                     (NOW - 61, False)])
def test_expiry_and_not_before_allow_one_minute_of_leeway(tokens: ServiceAccountTokens, now: int, ok: bool) -> None:
    token = _issue(tokens)
    if ok:
        tokens.decode(token, now)
    else:
        with pytest.raises(InvalidToken):
            tokens.decode(token, now)


def test_audience_must_meet_the_api_servers(tokens: ServiceAccountTokens) -> None:
    tokens.decode(_issue(tokens, audiences=["vault", ISSUER]), NOW)
    with pytest.raises(InvalidToken, match="audiences"):
        tokens.decode(_issue(tokens, audiences=["vault"]), NOW)


def _b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("tamper", ["payload", "signature", "alg-none", "other-key", "padding", "truncated"])
def test_tampered_tokens_are_refused(tokens: ServiceAccountTokens, objects: Objects, tamper: str) -> None:
    token = _issue(tokens)
    head, body, sig = token.split(".")
    payload = _parts(token)[1]
    if tamper == "payload":
        token = f"{head}.{_b64(payload | {'sub': 'system:serviceaccount:ci:admin'})}.{sig}"
    elif tamper == "signature":
        token = f"{head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    elif tamper == "alg-none":
        token = f"{_b64({'alg': 'none'})}.{body}."
    elif tamper == "other-key":
        token = ServiceAccountTokens(ec.generate_private_key(ec.SECP256R1()), objects).sign(payload)
    elif tamper == "padding":
        token = f"{head}.{body}==.{sig}"
    else:
        token = f"{head}.{body}"
    with pytest.raises(InvalidToken):
        tokens.decode(token, NOW)


def test_foreign_issuer_is_refused(tokens: ServiceAccountTokens) -> None:
    payload = _parts(_issue(tokens))[1] | {"iss": "https://example.com"}
    with pytest.raises(InvalidToken, match="issuer"):
        tokens.decode(tokens.sign(payload), NOW)


# --- revocation through live objects ---------------------------------------------------------


async def test_deleted_or_recreated_service_account_revokes(tokens: ServiceAccountTokens, objects: Objects) -> None:
    token = _issue(tokens)
    objects.items[("serviceaccounts", "ci", "builder")] = {"metadata": {"name": "builder", "uid": "new-uid"}}
    with pytest.raises(InvalidToken, match="uid"):
        await tokens.authenticate(token, NOW)
    del objects.items[("serviceaccounts", "ci", "builder")]
    with pytest.raises(InvalidToken, match="no longer exists"):
        await tokens.authenticate(token, NOW)


async def test_pod_bound_token_dies_with_its_pod(tokens: ServiceAccountTokens, objects: Objects) -> None:
    token = _issue(tokens, Binding(pod=Ref("web", "pod-uid"), node=Ref("gone-node", "x")))
    await tokens.authenticate(token, NOW)  # the node of a pod-bound token is not looked up
    deleted = datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    objects.items[("pods", "ci", "web")] = {"metadata": {"name": "web", "uid": "pod-uid", "deletionTimestamp": deleted}}
    await tokens.authenticate(token, NOW + 60)  # being deleted, but within the minute of leeway
    with pytest.raises(InvalidToken, match="deleted"):
        await tokens.authenticate(token, NOW + 61)
    del objects.items[("pods", "ci", "web")]
    with pytest.raises(InvalidToken):
        await tokens.authenticate(token, NOW)


async def test_node_bound_token_checks_the_node(tokens: ServiceAccountTokens, objects: Objects) -> None:
    token = _issue(tokens, Binding(node=Ref("n1", "node-uid")))
    with pytest.raises(InvalidToken):
        await tokens.authenticate(token, NOW)
    objects.items[("nodes", None, "n1")] = {"metadata": {"name": "n1", "uid": "node-uid"}}
    await tokens.authenticate(token, NOW)


def test_only_api_audiences_count_as_kube_audiences(tokens: ServiceAccountTokens) -> None:
    assert tokens.is_kube_audiences([ISSUER]) and not tokens.is_kube_audiences([ISSUER, "vault"])
    assert EXTENDED_EXPIRATION == 365 * 24 * 3600


# --- ServiceAccount admission ----------------------------------------------------------------


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ci"},
            "spec": {"serviceAccountName": "builder", "containers": [{"name": "c", "image": "busybox"}], **spec}}


async def test_admission_mounts_the_projected_token_volume(objects: Objects) -> None:
    pod = _pod(initContainers=[{"name": "i", "image": "busybox"}])
    await admission.ServiceAccountAdmission(objects).admit(PODS, pod, None)
    volume = pod["spec"]["volumes"][0]
    name = volume["name"]
    assert name.startswith("kube-api-access-") and len(name) == len("kube-api-access-") + 5
    assert volume["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": "metadata.namespace"}}]}}]}
    mount = {"name": name, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    assert pod["spec"]["containers"][0]["volumeMounts"] == [mount]
    assert pod["spec"]["initContainers"][0]["volumeMounts"] == [mount]


def test_existing_mounts_and_token_volumes_are_kept() -> None:
    own = {"name": "mine", "mountPath": admission.MOUNT_PATH}
    spec = {"containers": [{"name": "a", "volumeMounts": [own]}], "volumes": [{"name": "mine", "emptyDir": {}}]}
    admission.mount_token(spec)
    assert spec["volumes"] == [{"name": "mine", "emptyDir": {}}] and spec["containers"][0]["volumeMounts"] == [own]
    spec = {"containers": [{"name": "a"}], "volumes": [{"name": "kube-api-access-abcde", "emptyDir": {}}]}
    admission.mount_token(spec)
    assert len(spec["volumes"]) == 1 and spec["containers"][0]["volumeMounts"][0]["name"] == "kube-api-access-abcde"


@pytest.mark.parametrize("pod_says, sa_says, mounted", [(None, None, True), (False, True, False), (True, False, True),
                                                        (None, False, False)])
async def test_automount_pod_wins_over_account(objects: Objects, pod_says: bool | None, sa_says: bool | None,
                                               mounted: bool) -> None:
    objects.items[("serviceaccounts", "ci", "builder")] = {**SA, "automountServiceAccountToken": sa_says,
                                                           "imagePullSecrets": [{"name": "regcred"}]}
    pod = _pod(automountServiceAccountToken=pod_says)
    await admission.ServiceAccountAdmission(objects).admit(PODS, pod, None)
    assert ("volumes" in pod["spec"]) is mounted
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


async def test_missing_account_is_forbidden_after_retries_for_default(objects: Objects) -> None:
    plugin = admission.ServiceAccountAdmission(objects, retry_interval=lambda: 0)
    with pytest.raises(ApiError) as err:
        await plugin.admit(PODS, _pod(serviceAccountName="ghost"), None)
    assert (err.value.code, err.value.message) == (403, 'pods "web" is forbidden: error looking up service account '
                                                        'ci/ghost: serviceaccount "ghost" not found')
    assert objects.calls == 1
    with pytest.raises(ApiError):
        await plugin.admit(PODS, _pod(serviceAccountName="default"), None)
    assert objects.calls == 1 + admission.DEFAULT_ATTEMPTS


async def test_only_new_pods_are_admitted(objects: Objects) -> None:
    plugin = admission.ServiceAccountAdmission(objects)
    pod = _pod(serviceAccountName="ghost")
    await plugin.admit(PODS, pod, pod)
    await plugin.admit(SECRETS, {"metadata": {"name": "s", "namespace": "ci"}}, None)
    mirror = _pod(serviceAccountName="ghost")
    mirror["metadata"]["annotations"] = {admission.MIRROR_ANNOTATION: "x"}
    await plugin.admit(PODS, mirror, None)
    assert objects.calls == 0 and "volumes" not in mirror["spec"]
