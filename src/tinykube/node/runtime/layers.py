"""Unpacks one image layer into a directory that overlayfs can stack as a ``lowerdir``.

Why it is shaped this way:

* **Each layer is unpacked alone, into its own directory**, named by its diff ID (the digest of
  the uncompressed tar): two images that share a layer share the directory, and a container's
  rootfs is an overlay of the image's layer directories.  So the OCI whiteouts are converted to
  the form overlayfs reads: ``.wh.NAME`` becomes a 0/0 character device ``NAME`` and
  ``.wh..wh..opq`` becomes the ``trusted.overlay.opaque=y`` xattr on its directory.
* **Whiteouts only hide lower layers** (OCI image spec): a file and a whiteout of the same name in
  one layer leave the file.
* **Verified while it streams**: the compressed bytes against the layer's digest (when the caller
  has not already checked them) and the tar against its diff ID; a layer that fails either is
  thrown away before anyone can mount it.
* **Atomic**: the tar is unpacked into a temporary sibling directory that is renamed into place,
  so a crash or a concurrent unpack of the same layer never leaves a half layer under its name.
* **Nothing escapes the layer directory**: ``..`` components are refused and so is any entry
  whose parent directory is a symlink, since writing through it would write outside the layer.
  Absolute symlinks are kept as they are: they are resolved inside the container.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import zstandard

from tinykube.node.runtime.registry import new_hasher

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
PAX_XATTR = "SCHILY.xattr."
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 16  # bytes per read when draining a stream


class LayerError(Exception):
    """A layer that cannot be unpacked safely (bad digest, unsafe path, corrupt archive)."""


class HashingReader:
    """A read-only stream that hashes what passes through it, for verifying while unpacking."""

    def __init__(self, raw: Any, digest: str, what: str) -> None:
        self.raw = raw
        self.expected = digest
        self.what = what
        self.hasher = new_hasher(digest)

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hasher.update(data)
        return data

    def verify(self) -> None:
        """Reads to the end (tar readers stop at the end-of-archive marker), then compares."""
        while self.read(CHUNK):
            pass
        actual = f"{self.hasher.name}:{self.hasher.hexdigest()}"
        if actual != self.expected:
            raise LayerError(f"wrong {self.what} {actual}, expected {self.expected}")


class _Peekable:
    """Lets the compression be sniffed from the first bytes without a seekable stream."""

    def __init__(self, raw: IO[bytes] | HashingReader) -> None:
        self.raw = raw
        self.head = raw.read(4)

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.raw.read(size)
        if size < 0:
            data, self.head = self.head + self.raw.read(), b""
            return data
        data, self.head = self.head[:size], self.head[size:]
        return data + (self.raw.read(size - len(data)) if size > len(data) else b"")


def decompressed(raw: IO[bytes] | HashingReader) -> Any:
    """The tar stream inside ``raw``, by magic number: gzip, zstd (all frames) or plain tar.

    Sniffing rather than trusting the media type also handles ``docker save`` archives whose
    layers are compressed despite their names.
    """
    stream = _Peekable(raw)
    if stream.head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[arg-type]
    if stream.head.startswith(ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
    return stream


def unpack(raw: IO[bytes], dest: Path, diff_id: str, digest: str | None = None) -> None:
    """Unpacks the layer in ``raw`` into ``dest`` unless ``dest`` exists; verifies, then renames.

    ``digest`` is the compressed blob's digest, checked here when the bytes were not checked on
    download (archives); ``diff_id`` is always checked.
    """
    if dest.exists():
        return
    tmp = dest.with_name(f".tmp-{dest.name[:12]}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        compressed = HashingReader(raw, digest, "digest") if digest else None
        tar_stream = HashingReader(decompressed(compressed or raw), diff_id, "diff id calculated on extraction")
        extract(tar_stream, tmp)
        tar_stream.verify()
        if compressed:
            compressed.verify()
        _rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _rename(tmp: Path, dest: Path) -> None:
    """Moves the finished layer into place; losing the race to another unpacker is success."""
    try:
        tmp.rename(dest)
    except OSError:
        if not dest.is_dir():
            raise


def extract(stream: Any, root: Path) -> None:
    """Unpacks a tar stream under ``root`` with owners, modes, devices, xattrs and overlay whiteouts."""
    xattrs: list[tuple[Path, dict[str, str]]] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            tar.extractall(root, members=_members(tar, root, xattrs), numeric_owner=True,
                           filter="fully_trusted")
    except (tarfile.TarError, EOFError, zstandard.ZstdError, gzip.BadGzipFile) as exc:
        raise LayerError(f"invalid layer archive: {exc}") from exc
    for path, attrs in xattrs:
        _set_xattrs(path, attrs)


def _members(tar: tarfile.TarFile, root: Path, xattrs: list[tuple[Path, dict[str, str]]]) -> Iterator[tarfile.TarInfo]:
    """The entries tarfile should extract, after path checks; whiteouts are applied here instead."""
    checked: set[Path] = set()
    for member in tar:
        name = _clean(member.name)
        if not name:
            continue
        target = root / name
        _check_parents(root, target.parent, checked)
        if target.name == OPAQUE:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.setxattr(target.parent, OPAQUE_XATTR, b"y")
        elif target.name.startswith(WHITEOUT):
            _whiteout(target.parent / target.name[len(WHITEOUT):])
        elif _prepare(member, name, root, checked):
            attrs = {k[len(PAX_XATTR):]: v for k, v in member.pax_headers.items() if k.startswith(PAX_XATTR)}
            if attrs:
                xattrs.append((target, attrs))
            yield member


def _prepare(member: tarfile.TarInfo, name: str, root: Path, checked: set[Path]) -> bool:
    """Clears the way for an entry and rewrites its names; False when it was created here instead.

    A hard link to a symlink is made here: tarfile's ``os.link`` would follow the symlink, which
    may point anywhere on the host.
    """
    target = root / name
    if target in checked:
        checked.clear()  # a directory we vouched for is about to be replaced
    _make_room(target, member)
    member.name = name
    if not member.islnk():
        return True
    member.linkname = _clean(member.linkname)
    source = root / member.linkname
    _check_parents(root, source.parent, checked)
    if not os.path.islink(source):
        return True
    os.link(source, target, follow_symlinks=False)
    return False


def _clean(name: str) -> str:
    """A member name relative to the layer root; ``..`` anywhere is an attack, not a path."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"invalid layer: path {name!r} leaves the layer")
    return "/".join(parts)


def _check_parents(root: Path, parent: Path, checked: set[Path]) -> None:
    """Refuses an entry whose parent chain inside the layer passes through a symlink."""
    if parent in checked or parent == root:
        return
    _check_parents(root, parent.parent, checked)
    try:
        mode = os.lstat(parent).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise LayerError(f"invalid layer: {parent.relative_to(root)} is a symlink with entries below it")
    checked.add(parent)


def _make_room(target: Path, member: tarfile.TarInfo) -> None:
    """Removes what is in the way of an entry; a directory over a directory merges instead."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        if not member.isdir():
            shutil.rmtree(target)
    else:
        target.unlink()


def _whiteout(target: Path) -> None:
    """An overlayfs whiteout (char device 0/0) for ``target``, unless this layer has its own ``target``."""
    if os.path.lexists(target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))


def _set_xattrs(path: Path, attrs: dict[str, str]) -> None:
    """Applies extended attributes from PAX headers (file capabilities live there)."""
    for key, value in attrs.items():
        try:
            os.setxattr(path, key, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as exc:
            raise LayerError(f"cannot set xattr {key} on {path.name}: {exc}") from exc
