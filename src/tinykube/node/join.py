"""Joining a cluster with a token: fetch the CA the token pins, then TLS-bootstrap a client certificate.

The join token ``K10<sha256 of the CA>::server:<secret>`` (k3s' format) lets a new node trust
the API server without copying files: the CA is fetched from ``/cacerts`` without verification
and accepted only if its hash matches the token.  The token itself only authenticates a
bootstrapper: as the kubelet's TLS bootstrap, the node makes a key, asks for a
``kubernetes.io/kube-apiserver-client-kubelet`` certificate for ``system:node:<name>`` with a
CertificateSigningRequest, waits for the controllers to approve and sign it, and from then on
talks to the API with that certificate (kept in its data dir and reused while valid).  Before
it expires the node asks again, now as itself, and switches to the new one (client-go's
certificate manager, which the kubelet runs: :func:`keep_rotating`).  The agent's own serving
certificate stays self-signed (the API server does not verify it, as upstream by default).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from cryptography import x509

from tinykube import pki
from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.client.rest import Client, Credentials, path

log = logging.getLogger(__name__)

CSRS = lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
assert CSRS is not None
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
POLL = 0.2  # seconds between looks at the request while the controllers approve and sign it
ROTATION_RETRY = 30.0  # seconds before a failed renewal is tried again


class JoinError(Exception):
    """The server's CA does not match the token, or the server cannot be reached."""


async def fetch_ca(server: str, token: str, dest: str) -> str:
    """Download and pin the cluster CA; returns its path."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{server}/cacerts", ssl=insecure) as resp:
            pem = await resp.read()
    except aiohttp.ClientError as e:
        raise JoinError(f"cannot reach {server}: {e}") from None
    expected = pki.token_ca_hash(token)
    if not expected:
        log.warning("the join token pins no CA; trusting %s/cacerts as served", server)
    elif pki.fingerprint(pem) != expected:
        raise JoinError(f"the CA served by {server} does not match the join token")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as f:
        f.write(pem)
    return dest


async def join(server: str, token: str, agent_dir: str, node_name: str, node_ip: str) -> tuple[Credentials, str, str]:
    """Credentials for the API (this node's client certificate), and its serving certificate and key paths."""
    ca = await fetch_ca(server, token, os.path.join(agent_dir, "ca.crt"))
    cert, key = os.path.join(agent_dir, "serving.crt"), os.path.join(agent_dir, "serving.key")
    if not os.path.exists(cert):
        pki.self_signed(f"system:node:{node_name}", [node_ip, "localhost", node_name], cert, key)
    client_cert, client_key = os.path.join(agent_dir, "client.crt"), os.path.join(agent_dir, "client.key")
    if not pki.certificate_usable(client_cert, ca, datetime.datetime.now(datetime.timezone.utc)):
        await bootstrap(Credentials(server, ca, token=token), node_name, client_cert, client_key)
    return Credentials(server, ca, cert_file=client_cert, key_file=client_key), cert, key


def csr_object(node_name: str, request_pem: bytes) -> dict[str, Any]:
    """The kubelet's bootstrap request: a client certificate for ``system:node:<name>``."""
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "node-csr-"},
            "spec": {"request": base64.b64encode(request_pem).decode(), "signerName": KUBELET_CLIENT_SIGNER,
                     "usages": ["digital signature", "client auth"]}}


async def bootstrap(creds: Credentials, node_name: str, cert_path: str, key_path: str) -> None:
    """Ask for a client certificate (with the bootstrap token, or to renew with the current
    certificate) and store it with its key."""
    key_pem, request_pem = pki.client_request(f"system:node:{node_name}", ["system:nodes"])
    client = Client(creds, "kubelet")
    try:
        created = await client.create(path(CSRS), csr_object(node_name, request_pem))
        name = created["metadata"]["name"]
        log.info("waiting for certificate signing request %s to be approved and issued", name)
        certificate = await _issued(client, name)
    finally:
        await client.close()
    _write(key_path, key_pem, 0o600)
    _write(cert_path, certificate, 0o644)  # last: a certificate on disk means its key is there too


async def _issued(client: Client, name: str) -> bytes:
    """The signed certificate, once there; a denied or failed request ends the join."""
    while True:
        csr = await client.get(path(CSRS, name=name))
        status = csr.get("status") or {}
        if status.get("certificate"):
            return base64.b64decode(status["certificate"])
        for condition in status.get("conditions") or []:
            if condition.get("type") in ("Denied", "Failed"):
                raise JoinError(f"certificate signing request {name} was {condition['type'].lower()}: "
                                f"{condition.get('message', '')}")
        await asyncio.sleep(POLL)


def rotation_deadline(cert_pem: bytes, jitter: float) -> datetime.datetime:
    """nextRotationDeadline: 70 % of the certificate's lifetime, plus up to a fifth of that again
    (``jitter`` in [0, 1), so that nodes do not all ask at once), from its start."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    total = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_before_utc + total * (0.7 * (1 + 0.2 * jitter))


async def keep_rotating(creds: Credentials, node_name: str, rotated: Callable[[], Awaitable[None]]) -> None:
    """Renew the node's client certificate before each deadline, forever.  The request is made with
    the current certificate (the approver grants it as ``selfnodeclient``); the new key and
    certificate replace the files ``creds`` names, then ``rotated`` lets the agent reconnect."""
    while True:
        with open(creds.cert_file, "rb") as f:
            deadline = rotation_deadline(f.read(), random.random())
        await asyncio.sleep(max(0.0, (deadline - datetime.datetime.now(datetime.timezone.utc)).total_seconds()))
        try:
            await bootstrap(creds, node_name, creds.cert_file, creds.key_file)
        except (ApiError, JoinError, aiohttp.ClientError, OSError) as e:
            log.warning("renewing the client certificate: %s; trying again in %.0f s", e, ROTATION_RETRY)
            await asyncio.sleep(ROTATION_RETRY)
            continue
        log.info("client certificate renewed")
        await rotated()


def _write(filename: str, data: bytes, mode: int) -> None:
    fd = os.open(filename + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(filename + ".tmp", filename)
