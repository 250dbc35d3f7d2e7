"""Service-account tokens: ES256 JWTs that kube-apiserver would issue, signed and verified here.

A token is a compact JWS (``header.payload.signature``, base64url without padding) whose header is
``{"alg":"ES256","kid":...}`` and whose payload carries the claims of pkg/serviceaccount/claims.go:
``iss``, ``sub`` (``system:serviceaccount:NS:NAME``), ``aud``, ``exp``/``iat``/``nbf``, ``jti`` and
the private ``kubernetes.io`` claim naming the namespace, the service account and the object the
token is bound to (pod, with its node; secret; or node), each by name and uid.  The JSON is
written with sorted keys and no spaces, as go-jose writes it.

Verification is that of pkg/serviceaccount/jwt.go and claims.go: the issuer must be ours, the
signature must check against the signing key, ``exp``/``nbf``/``iat`` hold within go-jose's one
minute of leeway, the audiences must meet the API server's, and — looked up live, so deleting
them revokes the token — the service account and the bound objects must still exist with the
uids named in the token (an object deleted gracefully more than a minute ago counts as gone).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from tinykube.api.errors import ApiError
from tinykube.api.registry import lookup
from tinykube.apiserver.storage import Storage

ISSUER = "https://kubernetes.default.svc.cluster.local"  # kubeadm's and k3s' --service-account-issuer
API_AUDIENCES = (ISSUER,)  # --api-audiences defaults to the issuer
WARN_ONLY_EXPIRATION = 60 * 60 + 7  # the admission plugin's 3607 s: extended, with a warnafter claim
EXTENDED_EXPIRATION = 365 * 24 * 60 * 60  # --service-account-extend-token-expiration's one year
LEEWAY = 60  # go-jose's jwt.DefaultLeeway, for exp/nbf/iat and for bound objects being deleted
_COORDINATE = 32  # bytes of r and of s in an ES256 signature
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

Lookup = Callable[[str, "str | None", str], Awaitable["dict[str, Any] | None"]]
"""(resource, namespace, name) -> the live object, or None when it does not exist."""


class InvalidToken(Exception):
    """Why a token was refused; logged at most, since the client only ever sees 401."""


@dataclass(frozen=True)
class Ref:
    """An object a token names, by name and uid (either may be empty, as in the claims)."""

    name: str
    uid: str = ""

    def claim(self) -> dict[str, str]:
        """``{"name":..,"uid":..}`` with empty values left out (Go's omitempty)."""
        return {k: v for k, v in (("name", self.name), ("uid", self.uid)) if v}


@dataclass(frozen=True)
class Binding:
    """What a token is bound to: at most one of pod (with its node) or secret, or a node alone."""

    pod: Ref | None = None
    secret: Ref | None = None
    node: Ref | None = None


@dataclass(frozen=True)
class ServiceAccountInfo:
    """Who a verified token speaks for."""

    namespace: str
    name: str
    uid: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @property
    def groups(self) -> tuple[str, ...]:
        """MakeGroupNames, plus the group every authenticated user gets."""
        return "system:serviceaccounts", f"system:serviceaccounts:{self.namespace}", "system:authenticated"


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """kube-apiserver's ``kid``: base64url(sha256(DER of the public key))."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64encode(hashlib.sha256(der).digest())


def claims(sa: dict[str, Any], binding: Binding, expiration: int, warn_after: int, audiences: list[str], now: int,
           issuer: str = ISSUER) -> dict[str, Any]:
    """The payload of a token for ServiceAccount ``sa`` (claims.go ``Claims``)."""
    meta = sa["metadata"]
    private: dict[str, Any] = {"namespace": meta["namespace"],
                               "serviceaccount": Ref(meta["name"], meta.get("uid", "")).claim()}
    for kind in ("pod", "secret", "node"):
        ref = getattr(binding, kind)
        if ref is not None:
            private[kind] = ref.claim()
    if warn_after:
        private["warnafter"] = now + warn_after
    return {"aud": list(audiences), "exp": now + expiration, "iat": now, "iss": issuer, "jti": str(uuid.uuid4()),
            "kubernetes.io": private, "nbf": now, "sub": f"system:serviceaccount:{meta['namespace']}:{meta['name']}"}


class ServiceAccountTokens:
    """Signs tokens with the service-account key and authenticates the ones it signed."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, lookup_object: Lookup, issuer: str = ISSUER,
                 audiences: tuple[str, ...] = API_AUDIENCES):
        self._key = key
        self._public = key.public_key()
        self._lookup = lookup_object
        self._header = _b64json({"alg": "ES256", "kid": key_id(self._public)})
        self.issuer = issuer
        self.audiences = audiences

    def issue(self, sa: dict[str, Any], binding: Binding, expiration: int, warn_after: int, audiences: list[str],
              now: int) -> str:
        """A signed token for ServiceAccount ``sa``, valid ``expiration`` seconds from ``now``."""
        return self.sign(claims(sa, binding, expiration, warn_after, audiences, now, self.issuer))

    def sign(self, payload: dict[str, Any]) -> str:
        """The compact JWS of ``payload``: ES256, the signature as raw r||s."""
        signing_input = f"{self._header}.{_b64json(payload)}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64encode(r.to_bytes(_COORDINATE, 'big') + s.to_bytes(_COORDINATE, 'big'))}"

    def is_kube_audiences(self, audiences: list[str]) -> bool:
        """True when every audience is one of the API server's (only then is a 3607 s token extended)."""
        return set(audiences) <= set(self.audiences)

    def decode(self, token: str, now: float) -> dict[str, Any]:
        """The payload of a token we signed that is valid at ``now`` for our audiences; else InvalidToken."""
        header, payload, signature = _split(token)
        if header.get("alg") != "ES256":
            raise InvalidToken(f"unsupported signing algorithm {header.get('alg')!r}")
        if payload.get("iss") != self.issuer:
            raise InvalidToken(f"token issuer {payload.get('iss')!r} is invalid")
        self._verify(token.rsplit(".", 1)[0], signature)
        _check_times(payload, now)
        audiences = _audiences(payload.get("aud")) or list(self.audiences)  # none: a legacy token
        if not set(audiences) & set(self.audiences):
            raise InvalidToken(f"token audiences {audiences} is invalid for the target audiences {list(self.audiences)}")
        return payload

    async def authenticate(self, token: str, now: float) -> ServiceAccountInfo:
        """The service account a valid token speaks for, after checking its bound objects still exist."""
        private = self.decode(token, now).get("kubernetes.io")
        if not isinstance(private, dict) or not isinstance(private.get("serviceaccount"), dict):
            raise InvalidToken("token has no kubernetes.io service account claim")
        namespace = str(private.get("namespace", ""))
        account = private["serviceaccount"]
        await self._check_live("serviceaccounts", namespace, account, now)
        for kind, resource in (("secret", "secrets"), ("pod", "pods")):
            if isinstance(private.get(kind), dict):
                await self._check_live(resource, namespace, private[kind], now)
        if isinstance(private.get("node"), dict) and "pod" not in private:  # a pod's node is only informative
            await self._check_live("nodes", None, private["node"], now)
        return ServiceAccountInfo(namespace, str(account.get("name", "")), str(account.get("uid", "")))

    def _verify(self, signing_input: str, signature: bytes) -> None:
        if len(signature) != 2 * _COORDINATE:
            raise InvalidToken("malformed ES256 signature")
        der = encode_dss_signature(int.from_bytes(signature[:_COORDINATE], "big"),
                                   int.from_bytes(signature[_COORDINATE:], "big"))
        try:
            self._public.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise InvalidToken("signature does not verify") from None

    async def _check_live(self, resource: str, namespace: str | None, ref: dict[str, Any], now: float) -> None:
        """The object must exist, not be deleted over a minute ago, and have the uid the token names."""
        name = str(ref.get("name", ""))
        obj = await self._lookup(resource, namespace, name)
        what = f"{resource} {namespace}/{name}" if namespace else f"{resource} {name}"
        if obj is None:
            raise InvalidToken(f"{what} no longer exists")
        meta = obj["metadata"]
        deleted = meta.get("deletionTimestamp")
        if deleted and datetime.datetime.fromisoformat(deleted).timestamp() < now - LEEWAY:
            raise InvalidToken(f"{what} has been deleted")
        if meta.get("uid", "") != ref.get("uid", ""):
            raise InvalidToken(f"{what}: uid {meta.get('uid')} does not match the claim's")


def storage_lookup(storage: Storage) -> Lookup:
    """A :data:`Lookup` reading core/v1 objects straight from storage (always current, never cached)."""

    async def get(resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        rt = lookup("", "v1", resource)
        assert rt is not None
        try:
            obj, _ = await storage.get(rt, namespace, name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        return obj

    return get


def _check_times(payload: dict[str, Any], now: float) -> None:
    """go-jose's ``Claims.ValidateWithLeeway``: each of exp, nbf and iat is checked when present."""
    exp, nbf, iat = (payload.get(k) for k in ("exp", "nbf", "iat"))
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in (exp, nbf, iat)):
        raise InvalidToken("malformed time claim")
    if nbf is not None and now + LEEWAY < nbf:
        raise InvalidToken("service account token is not valid yet")
    if exp is not None and now - LEEWAY > exp:
        raise InvalidToken("service account token has expired")
    if iat is not None and now + LEEWAY < iat:
        raise InvalidToken("service account token issued in the future")


def _audiences(value: Any) -> list[str]:
    """``aud`` as go-jose reads it: one string or a list of strings."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if value is None:
        return []
    raise InvalidToken("malformed aud claim")


def _split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a compact JWS")
    header, payload = (_json(_b64decode(p)) for p in parts[:2])
    return header, payload, _b64decode(parts[2])


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidToken("malformed JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed JSON")
    return value


def _b64json(value: dict[str, Any]) -> str:
    return _b64encode(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    """Go's ``base64.RawURLEncoding``: no padding, no other alphabet."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise InvalidToken("malformed base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed base64url") from None
