"""The CSR approver and signer: kubelet client certificates for joining nodes, issued by the cluster CA.

As kube-controller-manager's csrapproving controller (pkg/controller/certificates/approver/
sarapprove.go): a request for ``kubernetes.io/kube-apiserver-client-kubelet`` whose subject is
``system:node:<name>`` / ``system:nodes`` with client usages only is approved when a bootstrap
token asked for it (``nodeclient``) or the node itself renews (``selfnodeclient``); anything else
is left for a human (``kubectl certificate approve``).  As the csrsigning controller
(pkg/controller/certificates/signer/signer.go): approved requests for the kube-apiserver client
signers get a certificate from the cluster CA for ``--cluster-signing-duration`` (a year), or for
``spec.expirationSeconds`` when that is shorter (but at least 10 minutes).  Nodes renew their
certificates well before the end (node/join.py's rotation).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
from collections.abc import Callable
from typing import Any

from tinykube import pki
from tinykube.api.registry import lookup
from tinykube.api.validation_csr import request_pem
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.controllers.workqueue import WorkQueue

CSRS = lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
assert CSRS is not None
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SIGNERS = (KUBELET_CLIENT_SIGNER, "kubernetes.io/kube-apiserver-client")
KUBELET_CLIENT_USAGES = frozenset({"key encipherment", "digital signature", "client auth"})
SIGNING_DURATION = datetime.timedelta(days=365)  # --cluster-signing-duration's default
MIN_REQUESTED = datetime.timedelta(minutes=10)  # the signer's floor for spec.expirationSeconds (2x its backdate)
_MANAGER = "?fieldManager=kube-controller-manager"

Obj = dict[str, Any]
Clock = Callable[[], datetime.datetime]


def _conditions(csr: Obj) -> list[Obj]:
    return (csr.get("status") or {}).get("conditions") or []


def decided(csr: Obj) -> bool:
    return any(c.get("type") in ("Approved", "Denied") for c in _conditions(csr))


def approved(csr: Obj) -> bool:
    return any(c.get("type") == "Approved" and c.get("status", "True") == "True" for c in _conditions(csr))


def failed(csr: Obj) -> bool:
    return any(c.get("type") == "Failed" for c in _conditions(csr))


def kubelet_client_node(csr: Obj) -> str | None:
    """isNodeClientCert: the node a kubelet client request is for, or None if it is not one."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBELET_CLIENT_SIGNER:
        return None
    if not set(spec.get("usages") or ()) <= KUBELET_CLIENT_USAGES or "client auth" not in (spec.get("usages") or ()):
        return None
    try:
        common_name, organizations = pki.request_subject(request_pem(spec))
    except ValueError:
        return None
    if organizations != ["system:nodes"] or not common_name.startswith("system:node:"):
        return None
    return common_name[len("system:node:"):] or None


def auto_approvable(csr: Obj) -> bool:
    """The recognizers of sarapprove.go, with the SubjectAccessReviews kubeadm's bindings would grant:
    bootstrappers may ask for any node's client certificate, a node renews only its own."""
    node = kubelet_client_node(csr)
    if node is None:
        return False
    spec = csr.get("spec") or {}
    groups = spec.get("groups") or []
    return "system:bootstrappers" in groups or (
        "system:nodes" in groups and spec.get("username") == f"system:node:{node}")


def _condition(kind: str, reason: str, message: str, now: datetime.datetime) -> Obj:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": stamp, "lastTransitionTime": stamp}


def lifetime(csr: Obj, signing_duration: datetime.timedelta) -> datetime.timedelta:
    """signer.duration: the configured duration, or a shorter requested one (not below ten minutes)."""
    seconds = (csr.get("spec") or {}).get("expirationSeconds")
    if not seconds:
        return signing_duration
    return min(signing_duration, max(MIN_REQUESTED, datetime.timedelta(seconds=seconds)))


class CsrController:
    """Approves kubelet client requests it recognises and signs approved ones (both controllers in one loop)."""

    def __init__(self, client: Client, paths: pki.Pki, clock: Clock = lambda: datetime.datetime.now(datetime.timezone.utc),
                 signing_duration: datetime.timedelta = SIGNING_DURATION):
        self.client = client
        self.paths = paths
        self.clock = clock
        self.signing_duration = signing_duration  # --cluster-signing-duration
        self.queue = WorkQueue(self.sync, "csr")

    async def run(self) -> None:
        await asyncio.gather(list_and_watch(self.client, path(CSRS), self._on_csr), self.queue.run())

    async def _on_csr(self, kind: str, csr: Obj) -> None:
        if kind != "DELETED":
            self.queue.add(csr["metadata"]["name"])

    async def sync(self, name: str) -> None:
        csr = await self.client.get_or_none(path(CSRS, name=name))
        if csr is None or (csr.get("status") or {}).get("certificate") or failed(csr):
            return
        if not decided(csr) and auto_approvable(csr):
            await self._approve(csr)
        elif approved(csr) and (csr.get("spec") or {}).get("signerName") in SIGNERS:
            await self._sign(csr)

    async def _approve(self, csr: Obj) -> None:
        status = csr.setdefault("status", {})
        status["conditions"] = [*_conditions(csr), _condition(
            "Approved", "AutoApproved", "Auto approving kubelet client certificate after SubjectAccessReview.",
            self.clock())]
        await self.client.update(path(CSRS, name=csr["metadata"]["name"], subresource="approval") + _MANAGER, csr)

    async def _sign(self, csr: Obj) -> None:
        """Issue the certificate; a request the CA cannot sign is marked Failed, as the signer does."""
        status = csr.setdefault("status", {})
        try:
            cert = pki.sign_request(self.paths, request_pem(csr["spec"]), lifetime(csr, self.signing_duration),
                                    self.clock())
            status["certificate"] = base64.b64encode(cert).decode()
        except ValueError as e:
            status["conditions"] = [*_conditions(csr), _condition("Failed", "SignerValidationFailure", str(e), self.clock())]
        await self.client.update(path(CSRS, name=csr["metadata"]["name"], subresource="status") + _MANAGER, csr)
