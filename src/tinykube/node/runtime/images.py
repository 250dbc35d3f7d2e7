"""Keeps the node's container images: names them, pulls them, imports them, and unpacks their layers.

Layout under the store's root (``<data-dir>/images``)::

    images.json              reference -> {digest, manifest, id}: the only mutable file
    blobs/sha256/<hex>       manifests and configs, content addressed
    layers/<diff-id hex>/    one unpacked layer, shared by every image that has it
    leases/<key>             layers a container is using, kept by garbage collection
    tmp/                     downloads in flight

Why it is shaped this way:

* **References are normalised as Docker does** (``nginx:1.14.2`` is
  ``docker.io/library/nginx:1.14.2``), so a Pod's ``image:`` finds what ``image load`` stored.
* **Layers are unpacked once and shared**; their compressed blobs are dropped after unpacking
  (containerd's ``discard_unpacked_layers``), since the runtime only ever mounts the directories.
  :attr:`Image.layers` lists them bottom to top, ready to become an overlay ``lowerdir``.
* **Safe for several processes**: ``tinykube image ...`` and a running agent share the store.
  Every file appears by atomic rename; ``images.json`` is rewritten under an exclusive lock; pulls
  and imports hold a shared "gc" lock that removal takes exclusively, so garbage collection never
  deletes what a pull is about to name.  Reads take no lock.
* **Errors are worded like containerd's** (:class:`PullError`), because kubelet shows the runtime's
  words in ``ErrImagePull``; the agent maps :class:`ImageNeverPull` to ``ErrImageNeverPull``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from tinykube.node.runtime import layers as layer_files
from tinykube.node.runtime.archives import Archive, ArchiveError
from tinykube.node.runtime.registry import (
    DOCKER_HUB,
    INDEX_TYPES,
    Descriptor,
    Hosts,
    Platform,
    RegistryClient,
    RegistryError,
    host_platform,
    media_type,
    parse_index,
    parse_manifest,
    select_platform,
    verify,
)

OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255  # characters in a repository name (distribution/reference)
MIN_ID_PREFIX = 4  # hex digits of an image ID accepted as a name for it

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>[\w][\w.-]{{0,127}}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$")
_IDENTIFIER = re.compile(r"^[a-f0-9]{64}$")
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}


# --- errors and names -------------------------------------------------------------------------


class ImageError(Exception):
    """Base of everything this module raises.

    ::

        ImageError
        ├── InvalidReference   the name cannot be parsed (kubelet: InvalidImageName)
        ├── PullError          the registry or the download failed (kubelet: ErrImagePull)
        ├── ImageNeverPull     absent with imagePullPolicy Never (kubelet: ErrImageNeverPull)
        ├── ImageNotFound      ``remove`` of an image the store does not have
        └── LoadError          ``load_archive`` of a damaged archive, or of one naming no image
    """


class InvalidReference(ImageError, ValueError):
    """An image name Docker's reference grammar rejects; the message is distribution's."""


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def with_default_tag(self) -> Reference:
        """Adds ``:latest`` when neither a tag nor a digest is given, as kubelet does."""
        if self.tag or self.digest:
            return self
        return Reference(self.domain, self.path, DEFAULT_TAG)

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _split_domain(text: str) -> tuple[str, str]:
    """distribution's ``splitDockerDomain``: a first component is a host if it looks like one."""
    first, slash, rest = text.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = DOCKER_HUB, text
    else:
        domain, remainder = first, rest
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse_reference(text: str) -> Reference:
    """Parses and normalises an image reference exactly as Docker's ``ParseNormalizedNamed``."""
    if _IDENTIFIER.match(text):
        raise InvalidReference(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(text)
    repository = remainder.split(":", 1)[0]
    if repository.lower() != repository:
        raise InvalidReference(f"invalid reference format: repository name ({repository}) must be lowercase")
    full = f"{domain}/{remainder}"
    match = _REFERENCE.match(full)
    if match is None:
        raise InvalidReference("invalid reference format")
    if len(match["name"]) > NAME_MAX:
        raise InvalidReference(f"repository name must not be more than {NAME_MAX} characters")
    digest = match["digest"] or ""
    if digest:
        algorithm, _, hex_part = digest.partition(":")
        if algorithm not in _DIGEST_LENGTHS:
            raise InvalidReference("unsupported digest algorithm")
        if len(hex_part) != _DIGEST_LENGTHS[algorithm]:
            raise InvalidReference("invalid checksum digest length")
    return Reference(domain, match["name"][len(domain) + 1:], match["tag"] or "", digest)


def normalize(text: str) -> str:
    """The canonical name of an image, with the default tag: ``busybox`` -> ``docker.io/library/busybox:latest``."""
    return str(parse_reference(text).with_default_tag())


# --- images -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image's config that decide how its containers run."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    stop_signal: str = ""

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ImageConfig:
        config = doc.get("config") or {}
        return cls(entrypoint=tuple(config.get("Entrypoint") or ()), cmd=tuple(config.get("Cmd") or ()),
                   env=tuple(config.get("Env") or ()), working_dir=config.get("WorkingDir") or "",
                   user=config.get("User") or "", exposed_ports=tuple(sorted(config.get("ExposedPorts") or {})),
                   stop_signal=config.get("StopSignal") or "")


@dataclass(frozen=True)
class Image:
    """An image in the store.

    ``id`` is the config digest (what ``crictl images`` shows), ``digest`` what the reference
    resolved to in the registry (an index for multi-platform images), ``layers`` the unpacked
    layer directories bottom to top (each listed once: a repeated layer adds nothing on top of
    itself), ``size`` the bytes of manifest, config and compressed layers, as containerd counts.
    """

    id: str
    references: tuple[str, ...]
    digest: str
    layers: tuple[Path, ...]
    config: ImageConfig
    size: int

    @property
    def repo_digests(self) -> tuple[str, ...]:
        """``name@digest`` for every repository holding the image: a Pod's ``imageID``."""
        names = {parse_reference(r).name for r in self.references}
        return tuple(sorted(f"{name}@{self.digest}" for name in names))


@dataclass(frozen=True)
class Ensured:
    """What :meth:`ImageStore.ensure` did: the image, whether it pulled, and how long that took (s)."""

    image: Image
    pulled: bool
    duration: float = 0.0


class PullPolicy(str, enum.Enum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


def should_pull(policy: PullPolicy | str, present: bool) -> bool:
    """kubelet's ``shouldPullImage``: Always pulls, IfNotPresent pulls when absent, Never never."""
    policy = PullPolicy(policy)
    return policy is PullPolicy.ALWAYS or (policy is PullPolicy.IF_NOT_PRESENT and not present)


class PullError(ImageError):
    """A failed pull, as containerd reports it: ``failed to pull and unpack image "<ref>": <reason>``.

    ``code`` is the gRPC code containerd's CRI would return; :attr:`cri_message` is the text kubelet
    puts in the waiting state's message, and ``Failed to pull image "<image>": <cri_message>`` is its
    event.  ``answer`` is the registry's own error (``MANIFEST_UNKNOWN: manifest unknown``).
    """

    def __init__(self, reference: str, reason: str, *, not_found: bool = False, answer: str = "") -> None:
        super().__init__(f'failed to pull and unpack image "{reference}": {reason}')
        self.reference = reference
        self.code = "NotFound" if not_found else "Unknown"
        self.answer = answer

    @property
    def cri_message(self) -> str:
        return f"rpc error: code = {self.code} desc = {self}"


class ImageNeverPull(ImageError):
    """The image is absent and the policy forbids pulling; the message is kubelet's."""

    def __init__(self, image: str) -> None:
        super().__init__(f'Container image "{image}" is not present with pull policy of Never')


class ImageNotFound(ImageError, LookupError):
    """No image in the store answers to this name or ID."""


class LoadError(ImageError):
    """An archive that is neither an OCI image layout nor a ``docker save`` tar, or is damaged."""


# --- the store --------------------------------------------------------------------------------


@dataclass
class _Entry:
    """One ``images.json`` value: what a reference points to."""

    digest: str  # what the reference resolved to (an index or a manifest)
    manifest: str  # the image manifest for this platform
    id: str  # the config digest


class ImageStore:
    """The node's image store; see the module docstring for its layout and locking."""

    def __init__(self, root: Path | str, hosts: Hosts | None = None, platform: Platform | None = None) -> None:
        self.root = Path(root)
        self.hosts = hosts or Hosts(self.root.parent / "registries")
        self.platform = platform or host_platform()
        self._pulls: dict[str, asyncio.Task[Image]] = {}
        for sub in ("blobs", "layers", "leases", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # paths and locks

    def _blob_path(self, digest: str) -> Path:
        algorithm, _, hex_part = digest.partition(":")
        return self.root / "blobs" / algorithm / hex_part

    def _layer_path(self, diff_id: str) -> Path:
        return self.root / "layers" / diff_id.partition(":")[2]

    def _tmp(self, suffix: str) -> Path:
        return self.root / "tmp" / f"{uuid.uuid4().hex}.{suffix}"

    @contextlib.contextmanager
    def _lock(self, name: str, exclusive: bool) -> Iterator[None]:
        fd = os.open(self.root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextlib.asynccontextmanager
    async def _sharing_gc_lock(self) -> AsyncIterator[None]:
        """Holds the gc lock shared for a pull; waits in a thread only while a removal runs."""
        fd = os.open(self.root / "gc.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # the index

    def _read_index(self) -> dict[str, _Entry]:
        try:
            raw = orjson.loads((self.root / "images.json").read_bytes())
        except FileNotFoundError:
            return {}
        return {ref: _Entry(**entry) for ref, entry in raw.items()}

    @contextlib.contextmanager
    def _index_update(self) -> Iterator[dict[str, _Entry]]:
        """Read-modify-write of ``images.json`` under its lock; the new file replaces the old atomically."""
        with self._lock("images.json", exclusive=True):
            index = self._read_index()
            yield index
            tmp = self._tmp("index")
            tmp.write_bytes(orjson.dumps({r: vars(e) for r, e in sorted(index.items())}, option=orjson.OPT_INDENT_2))
            os.replace(tmp, self.root / "images.json")

    def _tag(self, references: list[str], entry: _Entry) -> None:
        with self._index_update() as index:
            for reference in references:
                index[reference] = entry

    def _match(self, text: str, index: dict[str, _Entry]) -> list[str]:
        """The references ``text`` names: itself, ``name@digest`` of a tag, or all tags of an ID (prefix)."""
        with contextlib.suppress(InvalidReference):
            ref = parse_reference(text).with_default_tag()
            if str(ref) in index:
                return [str(ref)]
            by_digest = [k for k, e in index.items() if ref.digest == e.digest and parse_reference(k).name == ref.name]
            if by_digest:
                return by_digest
        hex_part = text.removeprefix("sha256:")
        if len(hex_part) < MIN_ID_PREFIX or not all(c in "0123456789abcdef" for c in hex_part):
            return []
        return [k for k, e in index.items() if e.id.startswith(f"sha256:{hex_part}")]

    # blobs and layers

    def _read_blob(self, digest: str) -> bytes:
        return self._blob_path(digest).read_bytes()

    def _write_blob(self, data: bytes, digest: str) -> None:
        """Stores bytes under their digest after checking that they hash to it."""
        verify(data, digest)
        path = self._blob_path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp("blob")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    def _child(self, kind: str, body: bytes) -> Descriptor | None:
        """The entry of an index to descend into for this platform; None once at an image manifest."""
        return select_platform(parse_index(body), self.platform) if kind in INDEX_TYPES else None

    def _keep_manifest(self, body: bytes, blob: Descriptor) -> str:
        """Stores a manifest fetched by digest; returns its media type."""
        self._write_blob(body, blob.digest)
        return media_type(body, blob.media_type)

    def _image_parts(self, manifest: str) -> tuple[Descriptor, list[tuple[str, Descriptor]]]:
        """The config descriptor of a stored manifest and its layers, each with its diff ID."""
        config_desc, layer_descs = parse_manifest(self._read_blob(manifest))
        config = orjson.loads(self._read_blob(config_desc.digest))
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layer_descs):
            raise RegistryError(f"mismatched image rootfs and manifest layers: {len(diff_ids)} diff IDs for "
                                f"{len(layer_descs)} layers")
        return config_desc, list(zip(diff_ids, layer_descs))

    # reading

    def _image(self, entry: _Entry, index: dict[str, _Entry]) -> Image:
        manifest = self._read_blob(entry.manifest)
        config_desc, layer_descs = parse_manifest(manifest)
        config = orjson.loads(self._read_blob(entry.id))
        diff_ids = list(config.get("rootfs", {}).get("diff_ids") or [])
        top_first = list(dict.fromkeys(reversed(diff_ids)))  # the topmost copy of a repeated layer
        return Image(id=entry.id, references=tuple(sorted(r for r, e in index.items() if e.id == entry.id)),
                     digest=entry.digest, layers=tuple(self._layer_path(d) for d in reversed(top_first)),
                     config=ImageConfig.from_json(config),
                     size=len(manifest) + config_desc.size + sum(d.size for d in layer_descs))

    def get(self, reference: str) -> Image | None:
        """The image a reference, ``name@digest`` or ID (prefix) names, if present with every layer."""
        index = self._read_index()
        matches = self._match(reference, index)
        if not matches:
            return None
        image = self._image(index[matches[0]], index)
        return image if all(layer.is_dir() for layer in image.layers) else None

    def list(self) -> list[Image]:
        """Every image once, however many references it has, sorted by reference."""
        index = self._read_index()
        by_id = {entry.id: entry for entry in index.values()}
        return sorted((self._image(e, index) for e in by_id.values()), key=lambda i: i.references)

    # pulling

    async def pull(self, reference: str, hosts: Hosts | None = None) -> Image:
        """Pulls an image from its registry or a mirror; returns it named and fully unpacked.

        ``hosts`` defaults to the store's (``<data-dir>/registries``).  Concurrent pulls of one
        reference share a single download.
        """
        ref = str(parse_reference(reference).with_default_tag())
        task = self._pulls.get(ref)
        if task is None:
            task = asyncio.ensure_future(self._pull(ref, hosts or self.hosts))
            self._pulls[ref] = task
            task.add_done_callback(lambda done: self._forget(ref, done))
        return await asyncio.shield(task)

    def _forget(self, ref: str, task: asyncio.Task[Image]) -> None:
        self._pulls.pop(ref, None)
        if not task.cancelled():
            task.exception()  # retrieved, so a pull every waiter gave up on is not logged as unhandled

    async def _pull(self, ref: str, hosts: Hosts) -> Image:
        async with self._sharing_gc_lock(), RegistryClient(hosts) as client:
            try:
                entry = await self._fetch(client, parse_reference(ref))
            except (RegistryError, layer_files.LayerError) as exc:
                raise PullError(ref, str(exc), not_found=getattr(exc, "not_found", False),
                                answer=getattr(exc, "answer", "")) from exc
            self._tag([ref], entry)
        image = self.get(ref)
        if image is None:  # removed between tagging and now by another process
            raise PullError(ref, "image removed while it was being pulled")
        return image

    async def _fetch(self, client: RegistryClient, ref: Reference) -> _Entry:
        """Gets what the image is made of that is not here yet: manifests, config, layers (in parallel)."""
        top, hint, body = await self._resolve(client, ref)
        kind, manifest = self._keep_manifest(body, Descriptor(hint, top, len(body))), top
        while (child := self._child(kind, body)) is not None:
            body = await self._manifest(client, ref, child.digest)
            kind, manifest = self._keep_manifest(body, child), child.digest
        config_desc, _ = parse_manifest(body)
        if not self._blob_path(config_desc.digest).exists():
            tmp = self._tmp("config")
            await _copy(client.get_blob(ref.domain, ref.path, config_desc, tmp))
            self._write_blob(tmp.read_bytes(), config_desc.digest)
            tmp.unlink()
        _, layers = self._image_parts(manifest)
        results = await asyncio.gather(*(self._pull_layer(client, ref, d, b) for d, b in layers),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return _Entry(digest=top, manifest=manifest, id=config_desc.digest)

    async def _resolve(self, client: RegistryClient, ref: Reference) -> tuple[str, str, bytes]:
        """The digest the reference names now, its media type hint, and the manifest's bytes."""
        try:
            if ref.digest:
                return ref.digest, "", await self._manifest(client, ref, ref.digest)
            digest, hint, body = await client.resolve(ref.domain, ref.path, ref.tag)
            return digest, hint, body if body is not None else await self._manifest(client, ref, digest)
        except RegistryError as exc:
            raise RegistryError(f'failed to resolve reference "{ref}": {exc}', not_found=exc.not_found,
                                answer=exc.answer) from exc

    async def _manifest(self, client: RegistryClient, ref: Reference, digest: str) -> bytes:
        """A manifest by digest: from the store when it is here (blobs are verified), else fetched."""
        if self._blob_path(digest).exists():
            return self._read_blob(digest)
        return (await client.get_manifest(ref.domain, ref.path, digest))[2]

    async def _pull_layer(self, client: RegistryClient, ref: Reference, diff_id: str, blob: Descriptor) -> None:
        """Downloads (verified) and unpacks a layer unless its directory exists already."""
        if self._layer_path(diff_id).is_dir():
            return
        tmp = self._tmp("layer")
        await _copy(client.get_blob(ref.domain, ref.path, blob, tmp))
        with _consumed(tmp) as stream:
            await asyncio.to_thread(self._unpack, stream, diff_id, None)

    def _unpack(self, stream: IO[bytes], diff_id: str, digest: str | None) -> None:
        try:
            layer_files.unpack(stream, self._layer_path(diff_id), diff_id, digest)
        except (layer_files.LayerError, RegistryError, OSError) as exc:
            raise layer_files.LayerError(f"failed to extract layer {diff_id}: {exc}") from exc

    async def ensure(self, reference: str, policy: PullPolicy | str, hosts: Hosts | None = None,
                     on_pulling: Callable[[], None] | None = None) -> Ensured:
        """Makes the image present as ``policy`` says: kubelet's ``EnsureImageExists``.

        ``on_pulling`` runs just before a pull starts (the agent's ``Pulling`` event); the result
        says whether a pull happened and how long it took (``Pulled``).
        """
        image = self.get(reference)
        if not should_pull(policy, image is not None):
            if image is None:
                raise ImageNeverPull(reference)
            return Ensured(image, pulled=False)
        if on_pulling is not None:
            on_pulling()
        started = time.monotonic()
        image = await self.pull(reference, hosts)
        return Ensured(image, pulled=True, duration=time.monotonic() - started)

    # importing

    def load_archive(self, path: Path | str) -> list[str]:
        """Imports every named image of an OCI image layout tar or a ``docker save`` tar.

        Returns the references stored.  Names come from ``io.containerd.image.name`` or a full
        ``org.opencontainers.image.ref.name`` (OCI layouts), or ``RepoTags`` (docker).  Blocking.
        """
        stored: list[str] = []
        try:
            with Archive(path) as archive, self._lock("gc", exclusive=False):
                for item in archive.images():
                    names = [normalize(name) for name in item.names]
                    if names:
                        self._tag(names, self._import(archive, item.top))
                        stored.extend(names)
        except (ArchiveError, RegistryError, layer_files.LayerError, InvalidReference, KeyError, ValueError) as exc:
            raise LoadError(f"{path}: {exc}") from exc
        if not stored:
            raise LoadError(f"{path}: the archive names no image (no io.containerd.image.name, no full "
                            "org.opencontainers.image.ref.name, no RepoTags)")
        return stored

    def _import(self, archive: Archive, top: Descriptor) -> _Entry:
        body = archive.blob(top.digest)
        kind, manifest = self._keep_manifest(body, top), top.digest
        while (child := self._child(kind, body)) is not None:
            body = archive.blob(child.digest)
            kind, manifest = self._keep_manifest(body, child), child.digest
        config_desc, _ = parse_manifest(body)
        self._write_blob(archive.blob(config_desc.digest), config_desc.digest)
        _, layers = self._image_parts(manifest)
        for diff_id, blob in layers:
            if not self._layer_path(diff_id).is_dir():
                with archive.layer(blob) as stream:
                    self._unpack(stream, diff_id, blob.digest if archive.verify_layers else None)
        return _Entry(digest=top.digest, manifest=manifest, id=config_desc.digest)

    # removal and garbage collection

    def remove(self, reference: str) -> list[str]:
        """Untags a reference, or every reference of an image named by ID; then collects garbage.

        Returns the references removed.  Layers that another image names, or a container has
        leased, stay.  Blocking: async callers run it in a thread.
        """
        with self._lock("gc", exclusive=True):
            with self._index_update() as index:
                removed = self._match(reference, index)
                if not removed:
                    raise ImageNotFound(f"no such image: {reference}")
                for key in removed:
                    del index[key]
            self._collect(index)
        return removed

    def _collect(self, index: dict[str, _Entry]) -> None:
        """Deletes blobs and layers that no reference or lease needs, and leftovers of dead pulls.

        Runs under the exclusive gc lock, so no pull or import is half done.
        """
        blobs: set[str] = set()
        live: set[str] = set()
        for entry in index.values():
            config_desc, layers = self._image_parts(entry.manifest)
            blobs.update({entry.digest, entry.manifest, config_desc.digest})
            live.update(self._layer_path(diff_id).name for diff_id, _ in layers)
        for lease in (self.root / "leases").iterdir():
            live.update(orjson.loads(lease.read_bytes()))
        for algorithm in (self.root / "blobs").iterdir():
            for blob in algorithm.iterdir():
                if f"{algorithm.name}:{blob.name}" not in blobs:
                    blob.unlink()
        for layer in (self.root / "layers").iterdir():
            if layer.name not in live:
                shutil.rmtree(layer)
        for leftover in (self.root / "tmp").iterdir():
            leftover.unlink()

    def lease(self, key: str, image: Image) -> None:
        """Records that ``key`` (a container) uses ``image``'s layers, so that removal keeps them."""
        with self._lock("gc", exclusive=False):
            tmp = self._tmp("lease")
            tmp.write_bytes(orjson.dumps([layer.name for layer in image.layers]))
            os.replace(tmp, self.root / "leases" / key)

    def release(self, key: str) -> None:
        """Forgets a lease; its layers go at the next removal unless an image still names them."""
        (self.root / "leases" / key).unlink(missing_ok=True)


async def _copy(download: Awaitable[None]) -> None:
    """containerd words every failed content download ``failed to copy: ...``."""
    try:
        await download
    except RegistryError as exc:
        raise RegistryError(f"failed to copy: {exc}", not_found=exc.not_found, answer=exc.answer) from exc


def _consumed(path: Path) -> IO[bytes]:
    """Opens a downloaded file and unlinks it at once: it vanishes when the reader closes it."""
    stream = open(path, "rb")
    path.unlink()
    return stream
