"""Mount and unmount through libc, so pinning a namespace or an overlay rootfs costs no exec.

The runtime mounts a handful of things per pod and container (namespace pins, the pod's
``/dev/shm``, overlay rootfs).  Spawning ``mount``/``umount`` costs a few milliseconds each on
the pod start path; the syscalls cost microseconds.  ``ctypes`` is stdlib, so no dependency.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str, target: Path, fstype: str, flags: int = 0, data: str = "") -> None:
    """mount(2); raises OSError with the errno and the target."""
    rc = _libc.mount(source.encode(), os.fsencode(target), fstype.encode() or None, flags, data.encode() or None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or source} on {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    """Lazily unmount ``target``; not mounted (or gone) is success, so teardown is idempotent."""
    if _libc.umount2(os.fsencode(target), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def is_mountpoint(path: Path) -> bool:
    """True when ``path`` is listed as a mount point in this process's mount table."""
    target = os.fsencode(path.resolve())
    with open("/proc/self/mountinfo", "rb") as f:
        return any(line.split(b" ", 5)[4] == _escape(target) for line in f)


def make_private_mountpoint(path: Path) -> None:
    """Bind ``path`` on itself, privately, once: nsfs pins need a mount that is not shared.

    ``unshare --net=FILE`` refuses a FILE on a shared mount (systemd makes ``/`` shared), and
    a private parent also keeps the pins from propagating into other mount namespaces.
    """
    path.mkdir(parents=True, exist_ok=True)
    if not is_mountpoint(path):
        mount(str(path), path, "", MS_BIND | MS_REC)
    mount("", path, "", MS_PRIVATE | MS_REC)


def _escape(path: bytes) -> bytes:
    """Escape a path the way /proc/self/mountinfo does (octal for space, tab, newline, backslash)."""
    for char in b"\\ \t\n":
        path = path.replace(bytes([char]), b"\\%03o" % char)
    return path
