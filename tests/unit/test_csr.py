"""CertificateSigningRequests: the approver/signer controller, validation, the subresource strategy,
the requestor admission and the bootstrap request a node sends."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from tinykube import pki
from tinykube.api.registry import lookup
from tinykube.api.validation import validate_create
from tinykube.apiserver import strategy
from tinykube.apiserver.auth import User
from tinykube.apiserver.authz import CURRENT_USER
from tinykube.apiserver.csr_admission import set_requestor
from tinykube.controllers.csr import CsrController, auto_approvable, lifetime
from tinykube.node.join import csr_object, rotation_deadline

CSRS = lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
assert CSRS is not None
NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)


def request(cn: str = "system:node:n1", orgs: tuple[str, ...] = ("system:nodes",), username: str = "system:bootstrap:abc",
            groups: tuple[str, ...] = ("system:bootstrappers",)) -> dict[str, Any]:
    _, pem = pki.client_request(cn, list(orgs))
    csr = csr_object("n1", pem)
    csr["metadata"] = {"name": "node-csr-x"}
    csr["spec"].update(username=username, groups=list(groups))
    return csr


class FakeClient:
    def __init__(self, csr: dict[str, Any]):
        self.csr = csr
        self.writes: list[str] = []

    async def get_or_none(self, url: str) -> dict[str, Any]:
        return self.csr

    async def update(self, url: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(url.split("?")[0].rsplit("/", 1)[1])
        self.csr = obj
        return obj


def controller(tmp_path: Path, csr: dict[str, Any]) -> tuple[CsrController, FakeClient]:
    client = FakeClient(csr)
    return CsrController(client, pki.ensure(str(tmp_path), "127.0.0.1"), lambda: NOW), client  # type: ignore[arg-type]


async def test_a_bootstrap_request_is_approved_then_signed(tmp_path: Path) -> None:
    ctl, client = controller(tmp_path, request())
    await ctl.sync("node-csr-x")
    await ctl.sync("node-csr-x")
    assert client.writes == ["approval", "status"]
    condition = client.csr["status"]["conditions"][0]
    assert (condition["type"], condition["reason"]) == ("Approved", "AutoApproved")
    cert = x509.load_pem_x509_certificate(base64.b64decode(client.csr["status"]["certificate"]))
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert cert.not_valid_after_utc - NOW <= datetime.timedelta(days=365)
    await ctl.sync("node-csr-x")
    assert len(client.writes) == 2  # issued: nothing more to do


async def test_requests_the_approver_does_not_recognise_wait_for_a_human(tmp_path: Path) -> None:
    ctl, client = controller(tmp_path, request(orgs=("system:masters",)))
    await ctl.sync("node-csr-x")
    assert client.writes == []


def test_auto_approval_rules() -> None:
    assert auto_approvable(request())
    assert auto_approvable(request(username="system:node:n1", groups=("system:nodes",)))  # renewal by itself
    assert not auto_approvable(request(username="system:node:n2", groups=("system:nodes",)))
    assert not auto_approvable(request(groups=("system:authenticated",)))
    assert not auto_approvable(request(cn="admin"))
    other_signer = request()
    other_signer["spec"]["signerName"] = "example.com/other"
    assert not auto_approvable(other_signer)


async def test_a_requested_duration_is_honoured(tmp_path: Path) -> None:
    csr = request()
    csr["spec"]["expirationSeconds"] = 3600
    csr["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    ctl, client = controller(tmp_path, csr)
    await ctl.sync("node-csr-x")
    cert = x509.load_pem_x509_certificate(base64.b64decode(client.csr["status"]["certificate"]))
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(hours=1)


def test_validation_essentials() -> None:
    assert validate_create(CSRS, request()) == []
    bad = request()
    bad["spec"].update(request=base64.b64encode(b"nope").decode(), signerName="", usages=["client auth", "bogus"],
                       expirationSeconds=60)
    fields = [e.field for e in validate_create(CSRS, bad)]
    assert fields == ["spec.request", "spec.signerName", "spec.usages[1]", "spec.expirationSeconds"]


def test_approval_changes_conditions_and_status_the_rest() -> None:
    old = request()
    old["status"] = {"certificate": "old"}
    new = request()
    new["status"] = {"certificate": "forged", "conditions": [{"type": "Approved", "status": "True"}]}
    approved = strategy.prepare_update(CSRS, new, old, "approval")
    assert approved["status"] == {"certificate": "old", "conditions": [{"type": "Approved", "status": "True"}]}
    assert approved["spec"] == old["spec"]
    signed = strategy.prepare_update(CSRS, {"status": {"certificate": "c"}}, approved, "status")
    assert signed["status"] == {"certificate": "c", "conditions": [{"type": "Approved", "status": "True"}]}


async def test_the_requestor_is_the_caller() -> None:
    csr = request(username="system:admin", groups=("system:masters",))
    token = CURRENT_USER.set(User("system:bootstrap:abc", ("system:bootstrappers",)))
    try:
        await set_requestor(CSRS, csr, None)
    finally:
        CURRENT_USER.reset(token)
    assert (csr["spec"]["username"], csr["spec"]["groups"]) == ("system:bootstrap:abc", ["system:bootstrappers"])


def test_a_stored_certificate_is_reused_only_while_valid(tmp_path: Path) -> None:
    paths = pki.ensure(str(tmp_path), "127.0.0.1")
    _, pem = pki.client_request("system:node:n1", ["system:nodes"])
    cert = tmp_path / "client.crt"
    cert.write_bytes(pki.sign_request(paths, pem, datetime.timedelta(days=1), NOW))
    assert pki.certificate_usable(str(cert), paths.ca_cert, NOW)
    assert not pki.certificate_usable(str(cert), paths.ca_cert, NOW + datetime.timedelta(days=1))
    assert not pki.certificate_usable(str(tmp_path / "missing.crt"), paths.ca_cert, NOW)


async def test_the_signing_duration_and_the_requested_floor(tmp_path: Path) -> None:
    csr = request()
    csr["spec"]["expirationSeconds"] = 60  # below the signer's ten minutes
    csr["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    client = FakeClient(csr)
    ctl = CsrController(client, pki.ensure(str(tmp_path), "127.0.0.1"), lambda: NOW,  # type: ignore[arg-type]
                        signing_duration=datetime.timedelta(hours=2))
    await ctl.sync("node-csr-x")
    cert = x509.load_pem_x509_certificate(base64.b64decode(client.csr["status"]["certificate"]))
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (NOW - pki.BACKDATE, NOW + datetime.timedelta(minutes=10))
    assert lifetime(request(), datetime.timedelta(hours=2)) == datetime.timedelta(hours=2)


def test_a_long_certificate_has_its_end_backdated_too(tmp_path: Path) -> None:
    _, pem = pki.client_request("system:node:n1", ["system:nodes"])
    cert = x509.load_pem_x509_certificate(
        pki.sign_request(pki.ensure(str(tmp_path), "127.0.0.1"), pem, datetime.timedelta(days=365), NOW))
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=365) - pki.BACKDATE


def test_a_client_certificate_is_renewed_at_70_to_84_percent_of_its_life(tmp_path: Path) -> None:
    _, pem = pki.client_request("system:node:n1", ["system:nodes"])
    issued = pki.sign_request(pki.ensure(str(tmp_path), "127.0.0.1"), pem, datetime.timedelta(minutes=15), NOW)
    start = NOW - pki.BACKDATE  # twenty minutes of life in all
    assert rotation_deadline(issued, 0.0) == start + datetime.timedelta(minutes=14)
    assert rotation_deadline(issued, 1.0) == start + datetime.timedelta(minutes=16.8)
