"""Reads image archives (an OCI image layout in a tar, or a ``docker save`` tar) as manifests and blobs.

Both kinds are presented the same way, as an OCI layout would be: the images the archive names,
and its blobs by digest.  A ``docker save`` archive has no manifests, so the Docker v2 manifest
it implies is written here (containerd's importer does the same); its layers are plain tars
named by their diff IDs.  The store then imports either kind with the code that stores pulls.
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from tinykube.node.runtime.registry import (
    DOCKER_MANIFEST,
    Descriptor,
    digest_of,
    parse_index,
)

CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MAX_SYMLINKS = 8  # hops when a docker save member is a symlink to its blob (Docker 25+)


class ArchiveError(Exception):
    """Not an image archive, or a damaged one."""


@dataclass(frozen=True)
class ArchiveImage:
    """One image an archive carries: the names it gives it (raw) and its top manifest or index."""

    names: tuple[str, ...]
    top: Descriptor


class Archive:
    """An open image archive: ``images()``, then ``blob(digest)`` and ``layer(descriptor)``.

    ``verify_layers`` says whether a layer's bytes have a digest of their own to check (OCI);
    ``docker save`` layers are named by their diff IDs, which unpacking checks anyway.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._tar = tarfile.open(self.path)
        except (OSError, tarfile.TarError) as exc:
            raise ArchiveError(f"{path}: {exc}") from exc
        self._members = {_clean(m.name): m for m in self._tar.getmembers()}
        self._synthetic: dict[str, bytes] = {}
        self._layer_members: dict[str, str] = {}
        if "index.json" in self._members and "oci-layout" in self._members:
            self.verify_layers, self._images = True, self._oci_images()
        elif "manifest.json" in self._members:
            self.verify_layers, self._images = False, self._docker_images()
        else:
            self._tar.close()
            raise ArchiveError(f"{path}: neither an OCI image layout nor a docker save archive")

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._tar.close()

    def images(self) -> list[ArchiveImage]:
        return self._images

    def blob(self, digest: str) -> bytes:
        """A manifest or config by digest (unverified: the store checks what it keeps)."""
        return self._synthetic.get(digest) or self._read(_blob_name(digest))

    def layer(self, blob: Descriptor) -> IO[bytes]:
        return self._open(self._layer_members.get(blob.digest) or _blob_name(blob.digest))

    def _open(self, name: str) -> IO[bytes]:
        member = self._member(name)
        stream = self._tar.extractfile(member)
        if stream is None:
            raise ArchiveError(f"{self.path}: {name} is not a file")
        return stream

    def _member(self, name: str) -> tarfile.TarInfo:
        """The member called ``name``, following symlinks inside the archive."""
        name = _clean(name)
        for _ in range(MAX_SYMLINKS):
            member = self._members.get(name)
            if member is None:
                raise ArchiveError(f"{self.path}: {name} is missing")
            if not member.issym():
                return member
            name = _clean(posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname)))
        raise ArchiveError(f"{self.path}: too many symlinks at {name}")

    def _read(self, name: str) -> bytes:
        try:
            with self._open(name) as stream:
                return stream.read()
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise ArchiveError(f"{self.path}: {name}: {exc}") from exc

    def _oci_images(self) -> list[ArchiveImage]:
        entries = parse_index(self._read("index.json"))
        return [ArchiveImage(tuple(filter(None, [_oci_name(e.annotations)])), e) for e in entries]

    def _docker_images(self) -> list[ArchiveImage]:
        """Each ``manifest.json`` item as an image whose manifest is written here."""
        try:
            items = orjson.loads(self._read("manifest.json"))
        except orjson.JSONDecodeError as exc:
            raise ArchiveError(f"{self.path}: manifest.json: {exc}") from exc
        if not isinstance(items, list):
            raise ArchiveError(f"{self.path}: manifest.json is not a list")
        return [self._docker_image(item) for item in items]

    def _docker_image(self, item: dict[str, Any]) -> ArchiveImage:
        config = self._read(str(item["Config"]))
        diff_ids = list(orjson.loads(config)["rootfs"]["diff_ids"])
        layer_names = [str(name) for name in item.get("Layers") or []]
        if len(diff_ids) != len(layer_names):
            raise ArchiveError(f"{self.path}: {len(diff_ids)} diff IDs for {len(layer_names)} layers")
        layers = []
        for diff_id, name in zip(diff_ids, layer_names):
            self._layer_members[diff_id] = name
            layers.append({"mediaType": DOCKER_LAYER, "digest": diff_id, "size": self._member(name).size})
        manifest = orjson.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": layers})
        self._synthetic[digest_of(config)] = config
        self._synthetic[digest_of(manifest)] = manifest
        names = tuple(str(tag) for tag in item.get("RepoTags") or [])
        return ArchiveImage(names, Descriptor(DOCKER_MANIFEST, digest_of(manifest), len(manifest)))


def _clean(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _blob_name(digest: str) -> str:
    return "blobs/" + digest.replace(":", "/", 1)


def _oci_name(annotations: dict[str, str]) -> str:
    """The image name an OCI layout entry carries; a bare tag (``1.0``) names nothing by itself."""
    name = annotations.get(CONTAINERD_NAME) or annotations.get(OCI_REF_NAME) or ""
    return name if "/" in name or ":" in name else ""
