"""Joining a cluster with a token: fetch the CA the token pins, and a serving certificate.

The join token ``K10<sha256 of the CA>::server:<secret>`` (k3s' format) lets a new node trust
the API server without copying files: the CA is fetched from ``/cacerts`` without verification
and accepted only if its hash matches the token.  The agent's own serving certificate is
self-signed until TLS bootstrap exists (the API server does not verify it, as upstream by
default).
"""

from __future__ import annotations

import logging
import os
import ssl

import aiohttp

from tinykube import pki
from tinykube.client.rest import Credentials

log = logging.getLogger(__name__)


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
    """Credentials for the API, and this node's serving certificate and key paths."""
    ca = await fetch_ca(server, token, os.path.join(agent_dir, "ca.crt"))
    cert, key = os.path.join(agent_dir, "serving.crt"), os.path.join(agent_dir, "serving.key")
    if not os.path.exists(cert):
        pki.self_signed(f"system:node:{node_name}", [node_ip, "localhost", node_name], cert, key)
    return Credentials(server, ca, token=token), cert, key
