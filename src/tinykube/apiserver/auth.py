"""Authentication: who is calling, from a verified client certificate or a bearer token.

Client certificates signed by the cluster CA name the user (CN) and groups (O), as
kube-apiserver reads them; like its x509 authenticator, each request checks that the certificate
is still valid (TLS only checked it when the connection was made, maybe long before).  Bearer tokens are looked up in a table built at start (the node join
token from the data dir and the loopback token the in-process controllers use), then tried as
service-account JWTs.  What the caller may then do is ``authz``'s decision;
unauthenticated requests get 401 except on the health endpoints.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import secrets
import ssl
import time
from dataclasses import dataclass, field

from aiohttp import web

from tinykube import pki
from tinykube.api.errors import unauthorized
from tinykube.apiserver.tokens import InvalidToken, ServiceAccountTokens

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/cacerts"})


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = field(default_factory=tuple)


class Authenticator:
    """Maps a request to a :class:`User` or raises 401."""

    def __init__(self, tokens: dict[str, User], service_accounts: ServiceAccountTokens | None = None):
        self._tokens = tokens
        self._service_accounts = service_accounts

    async def authenticate(self, request: web.Request) -> User | None:
        """The caller, or None for an anonymous request to an open path.

        As kube-apiserver's union authenticator: the client certificate is tried before bearer
        tokens and the first success wins; a token that matches nothing fails the request even on
        the open paths (anonymous access only applies when no credential was offered).
        """
        user = _from_certificate(request, time.time()) or await self._from_token(request)
        if user is None and request.path not in OPEN_PATHS and not request.path.startswith(("/healthz/", "/livez/", "/readyz/")):
            raise unauthorized()
        return user

    async def _from_token(self, request: web.Request) -> User | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        token = header[len("Bearer "):].strip()
        for known, user in self._tokens.items():
            if hmac.compare_digest(known, token):
                return user
        if self._service_accounts is not None:
            return await self._service_account(self._service_accounts, token)
        raise unauthorized()

    async def _service_account(self, tokens: ServiceAccountTokens, token: str) -> User:
        """The service account a JWT speaks for; why one is refused is only logged (the client sees 401)."""
        try:
            info = await tokens.authenticate(token, time.time())
        except InvalidToken as e:
            log.debug("service account token refused: %s", e)
            raise unauthorized() from None
        return User(info.username, info.groups)


def _from_certificate(request: web.Request, now: float) -> User | None:
    """The certificate's user, None without one or once it has expired (then tokens are tried)."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport else None
    if not cert:
        return None
    if _not_after(cert.get("notAfter", "")) <= now:
        log.debug("client certificate of %s expired at %s", cert.get("subject"), cert.get("notAfter"))
        return None
    name, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    return User(name, tuple(groups)) if name else None


@functools.lru_cache(maxsize=1024)
def _not_after(text: str) -> float:
    """A certificate's end as the ssl module prints it, in epoch seconds (parsed once per certificate)."""
    return ssl.cert_time_to_seconds(text) if text else 0.0


def load_or_create_token(path: str, ca_pem: bytes) -> str:
    """The node join token (``K10<ca sha256>::server:<secret>``): created once, read after."""
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    token = pki.join_token(ca_pem, secrets.token_hex(24))
    save_token(path, token)
    return token


def save_token(path: str, token: str) -> None:
    """Write the join token file, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
