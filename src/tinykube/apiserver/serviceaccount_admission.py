"""ServiceAccount admission: a new pod must run as an existing service account, and mounts its token.

As plugin/pkg/admission/serviceaccount/admission.go (v1.32) does on pod create: the account
(``default`` unless named) is looked up — the ``default`` one up to ten times, 100–200 ms apart,
because the service-account controller creates it just after its namespace — and a missing one
is a 403 ``error looking up service account NS/NAME: serviceaccount "NAME" not found``.  Unless
``automountServiceAccountToken`` is false (the pod's wins over the account's), every container and
init container that does not already mount /var/run/secrets/kubernetes.io/serviceaccount gets the
projected ``kube-api-access-xxxxx`` volume there: a 3607 s token, the ``kube-root-ca.crt``
ConfigMap's ``ca.crt`` and the pod's namespace.  A pod without imagePullSecrets gets the account's.

Mirror pods are left alone (upstream also refuses their referring to accounts or secrets; here
pod defaulting already names the ``default`` account, so that check is not made).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from tinykube.api.errors import forbidden
from tinykube.api.registry import ResourceType
from tinykube.apiserver.tokens import WARN_ONLY_EXPIRATION, Lookup

DEFAULT_ACCOUNT = "default"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_ATTEMPTS = 10
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's utilrand alphabet (no vowels, no look-alikes)


def _retry_interval() -> float:
    return random.uniform(0.1, 0.2)


def volume_name() -> str:
    """``kube-api-access-`` and five random characters (names.SimpleNameGenerator)."""
    return VOLUME_PREFIX + "".join(random.choices(_ALPHANUMS, k=5))


def token_volume(name: str) -> dict[str, Any]:
    """TokenVolumeSource: the projected volume, with the default mode written out (#104464)."""
    return {"name": name, "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": WARN_ONLY_EXPIRATION, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ], "defaultMode": 0o644}}


def mount_token(spec: dict[str, Any], new_name: Callable[[], str] = volume_name) -> None:
    """Mount the token volume in every (init) container lacking a mount at MOUNT_PATH; add it if used.

    An existing volume named ``kube-api-access-*`` is taken to be the token volume, as upstream does.
    """
    existing = next((v["name"] for v in spec.get("volumes") or [] if v.get("name", "").startswith(VOLUME_PREFIX)), None)
    name = existing or new_name()
    needed = False
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            mounts = container.get("volumeMounts") or []
            if not any(m.get("mountPath") == MOUNT_PATH for m in mounts):
                container["volumeMounts"] = [*mounts, {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}]
                needed = True
    if needed and existing is None:
        spec["volumes"] = [*(spec.get("volumes") or []), token_volume(name)]


def should_automount(account: dict[str, Any], spec: dict[str, Any]) -> bool:
    """The pod's automountServiceAccountToken wins, then the account's; true when neither says."""
    for source in (spec, account):
        if source.get("automountServiceAccountToken") is not None:
            return bool(source["automountServiceAccountToken"])
    return True


class ServiceAccountAdmission:
    """The admission hook (see :class:`~tinykube.apiserver.storage.Storage`)."""

    def __init__(self, lookup_object: Lookup, retry_interval: Callable[[], float] = _retry_interval):
        self._lookup = lookup_object
        self._retry_interval = retry_interval

    async def admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """On pod create: check the account exists, mount its token, inherit its pull secrets."""
        if rt.group or rt.kind != "Pod" or old is not None:
            return
        meta, spec = obj["metadata"], obj.setdefault("spec", {})
        if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            return
        account = await self._account(meta, spec.get("serviceAccountName") or DEFAULT_ACCOUNT)  # defaulting named it
        if should_automount(account, spec):
            mount_token(spec)
        if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in account["imagePullSecrets"]]

    async def _account(self, meta: dict[str, Any], name: str) -> dict[str, Any]:
        """The ServiceAccount, retried for ``default`` (created asynchronously), or 403."""
        namespace = meta["namespace"]
        attempts = DEFAULT_ATTEMPTS if name == DEFAULT_ACCOUNT else 1
        interval = self._retry_interval()
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(interval)
            account = await self._lookup("serviceaccounts", namespace, name)
            if account is not None:
                return account
        pod = meta.get("generateName") or meta["name"]  # admission runs before the name is generated upstream
        raise forbidden(f'pods "{pod}" is forbidden: error looking up service account {namespace}/{name}: '
                        f'serviceaccount "{name}" not found', "pods", pod)
