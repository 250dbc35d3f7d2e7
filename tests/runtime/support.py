"""Helpers for the runtime tests and the floor benchmark: a busybox rootfs, log waits, nsenter.

The rootfs is built offline from the host's static busybox: a symlink per applet, the mount
points runc expects, ``/etc/passwd`` with root, a uid-1000 user and nobody.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
GROUP = "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"


def build_busybox_rootfs(dest: Path) -> Path:
    """Populate ``dest`` (created) and return it."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user", "var/www"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    for name in ("hosts", "resolv.conf", "hostname"):
        (dest / "etc" / name).touch()
    return dest


async def wait_for_log(path: Path, text: str, timeout: float = 5.0) -> str:
    """The log's content once it contains ``text`` (tests may poll; the runtime may not)."""
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content or time.monotonic() > deadline:
            return content
        await asyncio.sleep(0.02)


def nsenter(pid: int, *args: str) -> str:
    """Run a host command in a container's namespaces (e.g. ``-n ip addr``); its stdout."""
    return subprocess.run(["nsenter", "-t", str(pid), *args], capture_output=True, text=True, check=True).stdout
