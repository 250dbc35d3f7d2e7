"""Fetches manifests and blobs from OCI distribution registries, the way containerd's resolver does.

Why it is shaped this way:

* **Hosts come from files, as in containerd.**  ``<config-dir>/<registry>/hosts.toml`` names the
  upstream ``server`` and any ``[host."URL"]`` mirrors; mirrors are tried in the order written,
  then the server.  A tag is only resolved on hosts with the ``resolve`` capability; content
  addressed by digest may come from any host with ``pull``.  The file is read on every lookup,
  so editing it needs no restart.
* **Errors read like containerd's**, because kubelet quotes the runtime's error verbatim in the
  ``ErrImagePull`` message users see: a 404 moves on to the next host, and when every host
  answered 404 the error is ``<ref>: not found``; otherwise the first other failure is kept.
  The registry's own answer (``MANIFEST_UNKNOWN: manifest unknown``) rides along in
  :attr:`RegistryError.answer`.
* **Nothing is trusted unverified.**  Manifests fetched by digest and every blob are hashed and
  compared with the digest that named them before anyone reads them.
* **Anonymous bearer tokens** (``WWW-Authenticate: Bearer realm=...,service=...,scope=...``) are
  fetched on the first 401 and reused for the same scope; that is all public registries need.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import socket
import ssl
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST, "*/*;q=0.8"])

MAX_MANIFEST_BYTES = 4 << 20  # containerd's limit: a bigger "manifest" is an attack, not an image
CHUNK = 1 << 16  # bytes per read while streaming a blob to disk
TOKEN_LIFETIME = 60.0  # seconds a token is assumed valid when the token server does not say
CONNECT_TIMEOUT = 30.0  # seconds, as containerd's dialer
READ_TIMEOUT = 60.0  # seconds without a byte before a transfer is abandoned

DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "https://registry-1.docker.io"
ALL_CAPABILITIES = frozenset({"pull", "resolve", "push"})

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
                  "i386": "386"}
_VARIANTS = {"aarch64": "v8", "arm64": "v8", "armv7l": "v7", "armv6l": "v6"}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """A registry could not give what was asked, worded as containerd words it.

    ``not_found`` is true when every host answered 404 (containerd's gRPC ``NotFound``);
    ``answer`` is the registry's own error text, when it sent one.
    """

    def __init__(self, message: str, *, not_found: bool = False, answer: str = "") -> None:
        super().__init__(message)
        self.not_found = not_found
        self.answer = answer


@dataclass(frozen=True)
class Platform:
    """The ``platform`` of an index entry: the only fields that decide whether an image runs here."""

    os: str
    architecture: str
    variant: str = ""


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says about a blob it points to."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, compare=False)


def host_platform() -> Platform:
    """The platform of this machine in OCI terms (``x86_64`` is ``amd64``, ``aarch64`` is ``arm64/v8``)."""
    machine = platform.machine().lower()
    return Platform("linux", _ARCHITECTURES.get(machine, machine), _VARIANTS.get(machine, ""))


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def new_hasher(digest: str) -> Any:
    """A hashlib object for the algorithm a digest names; unknown algorithms are refused up front."""
    algorithm = digest.partition(":")[0]
    if algorithm not in ("sha256", "sha512"):
        raise RegistryError(f"unsupported digest algorithm: {digest}")
    return hashlib.new(algorithm)


def mismatch(actual: str, expected: str) -> RegistryError:
    return RegistryError(f"unexpected commit digest {actual}, expected {expected}: failed precondition")


def verify(data: bytes, expected: str) -> None:
    """Raises unless ``data`` hashes to ``expected``."""
    hasher = new_hasher(expected)
    hasher.update(data)
    actual = f"{hasher.name}:{hasher.hexdigest()}"
    if actual != expected:
        raise mismatch(actual, expected)


# --- manifests --------------------------------------------------------------------------------


def _descriptor(raw: dict[str, Any]) -> Descriptor:
    plat = raw.get("platform")
    return Descriptor(
        media_type=str(raw.get("mediaType", "")), digest=str(raw["digest"]), size=int(raw.get("size", 0)),
        platform=Platform(plat.get("os", ""), plat.get("architecture", ""), plat.get("variant", "")) if plat else None,
        annotations=dict(raw.get("annotations") or {}))


def media_type(body: bytes, content_type: str = "") -> str:
    """The manifest's media type: its own ``mediaType`` field, else the HTTP header, else its shape.

    OCI manifests may omit ``mediaType``, and some registries send ``application/json``.
    """
    doc = _load(body)
    declared = doc.get("mediaType") or content_type.partition(";")[0].strip()
    if declared in INDEX_TYPES or declared in MANIFEST_TYPES:
        return str(declared)
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc and "config" in doc:
        return OCI_MANIFEST
    raise RegistryError(f"unsupported manifest media type {declared or 'unknown'}")


def parse_index(body: bytes) -> list[Descriptor]:
    return [_descriptor(m) for m in _load(body).get("manifests") or []]


def parse_manifest(body: bytes) -> tuple[Descriptor, list[Descriptor]]:
    """The config descriptor and the layer descriptors (bottom first) of an image manifest."""
    doc = _load(body)
    try:
        return _descriptor(doc["config"]), [_descriptor(layer) for layer in doc.get("layers") or []]
    except (KeyError, TypeError) as exc:
        raise RegistryError(f"invalid image manifest: {exc}") from exc


def _load(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"invalid manifest: {exc}") from exc
    if not isinstance(doc, dict):
        raise RegistryError("invalid manifest: not a JSON object")
    return doc


def select_platform(manifests: Iterable[Descriptor], want: Platform) -> Descriptor:
    """The index entry to run on ``want``: an exact variant first, then one without a variant.

    Ties go to the earlier entry, as in containerd; attestation entries (``unknown/unknown``) never
    match.  An older 32-bit ARM variant runs on a newer ARM CPU, so it is accepted last.
    """
    ranked: list[tuple[int, int, Descriptor]] = []
    for position, entry in enumerate(manifests):
        rank = _platform_rank(entry.platform, want)
        if rank is not None:
            ranked.append((rank, position, entry))
    if not ranked:
        wanted = "/".join(p for p in (want.os, want.architecture, want.variant) if p)
        raise RegistryError(f"no match for platform {wanted} in manifest: not found", not_found=True)
    return min(ranked, key=lambda r: (r[0], r[1]))[2]


def _platform_rank(have: Platform | None, want: Platform) -> int | None:
    if have is None or have.os != want.os or have.architecture != want.architecture:
        return None
    variant = have.variant or ("v8" if have.architecture == "arm64" else "")
    if variant == want.variant:
        return 0
    if not have.variant:
        return 1
    if have.architecture == "arm" and variant < want.variant:
        return 2
    return None


# --- hosts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryHost:
    """One place to fetch from: ``url`` is the API root (``.../v2``), as containerd's ``RegistryHost``."""

    url: str
    capabilities: frozenset[str] = ALL_CAPABILITIES
    mirror: bool = False
    skip_verify: bool = False
    ca: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def netloc(self) -> str:
        return self.url.split("://", 1)[1].split("/", 1)[0]


def default_server(registry: str) -> str:
    """Where a registry lives without configuration: Docker Hub's API host, plain HTTP on loopback."""
    if registry == DOCKER_HUB:
        return DOCKER_HUB_SERVER
    hostname = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    loopback = hostname in ("localhost", "[::1]") or hostname.startswith("127.")
    return f"{'http' if loopback else 'https'}://{registry}"


def _api_root(url: str, override_path: bool) -> str:
    """containerd's rule: a URL without a path gets ``/v2``; ``override_path`` takes the path as is."""
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    path = "/" + path.strip("/")
    if not override_path and not path.endswith("/v2"):
        path = path.rstrip("/") + "/v2"
    return f"{scheme}://{netloc}{path}"


def _host(url: str, options: dict[str, Any], base_dir: Path, *, mirror: bool) -> RegistryHost:
    if "://" not in url:
        url = "https://" + url
    ca = options.get("ca") or ()
    headers = options.get("header") or {}
    return RegistryHost(
        url=_api_root(url, bool(options.get("override_path"))),
        capabilities=frozenset(options.get("capabilities") or ALL_CAPABILITIES),
        mirror=mirror, skip_verify=bool(options.get("skip_verify")),
        ca=tuple(str(base_dir / c) for c in ([ca] if isinstance(ca, str) else ca)),
        headers=tuple((k, v) for k, vs in headers.items() for v in ([vs] if isinstance(vs, str) else vs)))


def parse_hosts(registry: str, text: str, base_dir: Path) -> list[RegistryHost]:
    """The hosts of one ``hosts.toml``, mirrors first in file order, the server last.

    A file without ``server`` keeps the default server, so a mirror falls back to upstream.
    """
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"invalid {base_dir / 'hosts.toml'}: {exc}") from exc
    mirrors = [_host(url, options, base_dir, mirror=True) for url, options in (config.get("host") or {}).items()]
    server = _host(str(config.get("server") or default_server(registry)), config, base_dir, mirror=False)
    return [*mirrors, server]


class Hosts:
    """The hosts configuration directory (``<data-dir>/registries``), read on every lookup."""

    def __init__(self, config_dir: Path | str | None = None) -> None:
        self.config_dir = Path(config_dir) if config_dir else None

    def lookup(self, registry: str) -> list[RegistryHost]:
        for name in (registry, "_default"):
            path = self.config_dir / name / "hosts.toml" if self.config_dir else None
            if path is not None and path.is_file():
                return parse_hosts(registry, path.read_text(), path.parent)
        return [_host(default_server(registry), {}, Path("."), mirror=False)]


# --- the client -------------------------------------------------------------------------------


def parse_challenge(header: str) -> dict[str, str] | None:
    """The parameters of a ``Bearer`` challenge, or None for any other scheme."""
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return dict(_CHALLENGE_PARAM.findall(params))


def _connect_error(method: str, url: str, exc: Exception) -> RegistryError:
    """``failed to do request``, with Go's wording for the common socket errors."""
    reason = str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, socket.gaierror):
        reason = f"dial tcp: lookup {exc.host}: no such host"
    elif isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error.errno:
        reason = f"dial tcp {exc.host}:{exc.port}: connect: {os.strerror(exc.os_error.errno).lower()}"
    return RegistryError(f'failed to do request: {method} "{url}": {reason}')


async def _answer(resp: aiohttp.ClientResponse) -> str:
    """The registry's error body as ``CODE: message`` pairs, or "" when it sent none."""
    try:
        errors = orjson.loads(await resp.read()).get("errors") or []
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors) or ""
    except (ValueError, AttributeError, aiohttp.ClientError):
        return ""


class RegistryClient:
    """One pull's conversation with registries: an HTTP session and the tokens it earned."""

    def __init__(self, hosts: Hosts) -> None:
        self.hosts = hosts
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    async def __aenter__(self) -> RegistryClient:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
        self._session = aiohttp.ClientSession(timeout=timeout, trust_env=True)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()

    async def resolve(self, registry: str, repository: str, tag: str) -> tuple[str, str, bytes | None]:
        """``(digest, media type, body or None)`` of what a tag names, asking ``resolve`` hosts only.

        A HEAD, as containerd sends: registries count manifest GETs as pulls (Docker Hub's rate
        limit) and HEADs not, so an ``Always`` pull of an image already here costs nothing.  A
        registry that does not say the digest gets a GET, and the body's hash is the digest; so does
        a tag no host has, so that the error carries the registry's answer.
        """
        headers = {"Accept": MANIFEST_ACCEPT}
        try:
            async with self._first_found(registry, repository, "resolve", f"manifests/{tag}", headers,
                                         f"{registry}/{repository}:{tag}: not found", method="HEAD") as resp:
                digest = resp.headers.get("Docker-Content-Digest", "")
                content_type = resp.headers.get("Content-Type", "")
        except RegistryError as exc:
            if not exc.not_found:
                raise
            digest = ""  # a HEAD has no body: the GET below brings the registry's own words
        if digest:
            return digest, content_type, None
        return await self.get_manifest(registry, repository, tag)

    async def get_manifest(self, registry: str, repository: str, target: str) -> tuple[str, str, bytes]:
        """``(digest, media type, body)`` of the manifest a tag or digest names, verified.

        By digest any ``pull`` host may answer; by tag only ``resolve`` hosts, and the digest is
        the body's hash (checked against ``Docker-Content-Digest`` when the registry sends one).
        """
        by_digest = ":" in target
        locator = f"{registry}/{repository}{'@' if by_digest else ':'}{target}"
        async with self._first_found(registry, repository, "pull" if by_digest else "resolve",
                                     f"manifests/{target}", {"Accept": MANIFEST_ACCEPT},
                                     f"{locator}: not found") as resp:
            body = await self._read_manifest(resp)
            expected = target if by_digest else resp.headers.get("Docker-Content-Digest", "")
            if expected:
                verify(body, expected)
            return expected or digest_of(body), media_type(body, resp.headers.get("Content-Type", "")), body

    async def get_blob(self, registry: str, repository: str, blob: Descriptor, dest: Path) -> None:
        """Streams a blob into the new file ``dest``; a wrong digest or size, or any failure, removes it."""
        async with self._first_found(registry, repository, "pull", f"blobs/{blob.digest}", {}, None) as resp:
            hasher = new_hasher(blob.digest)
            size = 0
            try:
                with open(dest, "xb") as out:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        hasher.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                _check_blob(blob, f"{hasher.name}:{hasher.hexdigest()}", size)
            except BaseException:
                dest.unlink(missing_ok=True)
                raise

    async def _read_manifest(self, resp: aiohttp.ClientResponse) -> bytes:
        body = await resp.content.read(MAX_MANIFEST_BYTES + 1)
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"manifest too large: more than {MAX_MANIFEST_BYTES} bytes")
        return body

    def _first_found(self, registry: str, repository: str, capability: str, what: str,
                     headers: dict[str, str], not_found: str | None, method: str = "GET") -> _FirstFound:
        hosts = [h for h in self.hosts.lookup(registry) if capability in h.capabilities]
        return _FirstFound(self, registry, repository, hosts, what, headers, not_found, method)

    async def request(self, method: str, host: RegistryHost, registry: str, repository: str, url: str,
                      headers: dict[str, str]) -> aiohttp.ClientResponse:
        """Sends a request to ``host``, answering one bearer challenge with an anonymous token."""
        scope = f"repository:{repository}:pull"
        params = {"ns": registry} if host.mirror else {}
        sent = {**dict(host.headers), **headers}
        token = self._cached_token(host, scope)
        if token:
            sent["Authorization"] = f"Bearer {token}"
        resp = await self._send(method, host, url, sent, params)
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate", "")) if resp.status == 401 else None
        if challenge is None or token:
            return resp
        resp.release()
        sent["Authorization"] = f"Bearer {await self._token(host, challenge, scope)}"
        return await self._send(method, host, url, sent, params)

    async def _send(self, method: str, host: RegistryHost, url: str, headers: dict[str, str],
                    params: dict[str, str]) -> aiohttp.ClientResponse:
        assert self._session is not None, "use RegistryClient as an async context manager"
        try:
            return await self._session.request(method, url, headers=headers, params=params,
                                               ssl=self._ssl_for(host))
        except aiohttp.ClientError as exc:
            raise _connect_error(method, url, exc) from exc

    def _cached_token(self, host: RegistryHost, scope: str) -> str:
        token, expires = self._tokens.get((host.url, scope), ("", 0.0))
        return token if expires > time.monotonic() else ""

    async def _token(self, host: RegistryHost, challenge: dict[str, str], scope: str) -> str:
        """Fetches an anonymous token from the challenge's realm for the challenge's scope."""
        realm = challenge.get("realm", "")
        params = {k: v for k, v in (("service", challenge.get("service", "")),
                                    ("scope", challenge.get("scope") or scope)) if v}
        resp = await self._send("GET", host, realm, {}, params)
        async with resp:
            if resp.status != 200:
                raise RegistryError(f"failed to fetch anonymous token: unexpected status from GET request "
                                    f"to {resp.url}: {resp.status} {resp.reason}")
            doc = await resp.json(content_type=None)
        token = str(doc.get("token") or doc.get("access_token") or "")
        lifetime = float(doc.get("expires_in") or TOKEN_LIFETIME)
        self._tokens[(host.url, scope)] = (token, time.monotonic() + lifetime)
        return token

    def _ssl_for(self, host: RegistryHost) -> ssl.SSLContext | bool:
        return False if host.skip_verify else _verifying_context(host.ca)


@functools.lru_cache(maxsize=32)
def _verifying_context(cas: tuple[str, ...]) -> ssl.SSLContext:
    """The system roots plus a host's CA files, made once per process: loading the roots takes
    ~16 ms of the event loop, which every pull of an ``Always`` image (the tutorial's ``busybox``)
    paid again.  A CA file changed later is read when the process restarts."""
    context = ssl.create_default_context()
    for ca in cas:
        context.load_verify_locations(cafile=ca)
    return context


def _check_blob(blob: Descriptor, actual: str, size: int) -> None:
    if actual != blob.digest:
        raise mismatch(actual, blob.digest)
    if blob.size and size != blob.size:
        raise RegistryError(f"unexpected commit size {size}, expected {blob.size}: failed precondition")


class _FirstFound:
    """``async with``: the first host's successful response; 404s move on, other failures are kept.

    This is containerd's host loop: the error raised when no host succeeds is the first non-404
    failure, or, when every host answered 404, ``not_found`` (or containerd's blob wording).
    """

    def __init__(self, client: RegistryClient, registry: str, repository: str, hosts: list[RegistryHost],
                 what: str, headers: dict[str, str], not_found: str | None, method: str) -> None:
        self.client, self.registry, self.repository, self.method = client, registry, repository, method
        self.hosts, self.what, self.headers, self.not_found = hosts, what, headers, not_found
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        first: RegistryError | None = None
        answer, url = "", ""
        for host in self.hosts:
            url = f"{host.url}/{self.repository}/{self.what}"
            try:
                resp = await self.client.request(self.method, host, self.registry, self.repository, url,
                                                 self.headers)
            except RegistryError as exc:
                first = first or exc
                continue
            if resp.status == 200:
                self._resp = resp
                return resp
            failure = await self._failure(host, url, resp)
            answer = answer or failure.answer
            if not failure.not_found:
                first = first or failure
        message = self.not_found or f"httpReadSeeker: failed open: content at {url} not found: not found"
        raise first or RegistryError(message, not_found=True, answer=answer)

    async def _failure(self, host: RegistryHost, url: str, resp: aiohttp.ClientResponse) -> RegistryError:
        async with resp:
            answer = await _answer(resp)
            if resp.status == 404:
                return RegistryError("not found", not_found=True, answer=answer)
            if resp.status in (401, 403):
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", "")) or {}
                server = f"server message: {challenge['error']}: " if challenge.get("error") else ""
                return RegistryError("pull access denied, repository does not exist or may require "
                                     f"authorization: {server}authorization failed", answer=answer)
            return RegistryError(f"pulling from host {host.netloc} failed with status code {url}: "
                                 f"{resp.status} {resp.reason}", answer=answer)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._resp is not None:
            self._resp.release()
