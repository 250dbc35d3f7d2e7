"""Facts about this machine that a Node reports: capacity, addresses, system info.

Read from /proc and the filesystem once per registration; pure parsing helpers are separate so
they can be tested without a host.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

MAX_PODS = 110  # the kubelet's default --max-pods


@dataclass(frozen=True)
class HostFacts:
    cpus: int
    memory_bytes: int
    storage_bytes: int
    kernel: str
    os_image: str
    architecture: str
    runtime_version: str
    internal_ip: str
    hostname: str
    machine_id: str = ""
    system_uuid: str = ""
    boot_id: str = ""
    hugepages: tuple[tuple[int, int], ...] = ()  # (page size in bytes, pages reserved) per supported size


def parse_meminfo(text: str) -> int:
    """MemTotal in bytes from /proc/meminfo."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no MemTotal in /proc/meminfo")


def parse_os_release(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def parse_hugepage_dir(name: str) -> int | None:
    """Page size in bytes from a ``/sys/kernel/mm/hugepages`` entry such as ``hugepages-2048kB``."""
    size = name.removeprefix("hugepages-").removesuffix("kB")
    return int(size) * 1024 if name.startswith("hugepages-") and name.endswith("kB") and size.isdigit() else None


def hugepages(root: str = "/sys/kernel/mm/hugepages") -> tuple[tuple[int, int], ...]:
    """Every huge page size the kernel supports with its reserved page count (cAdvisor's HugePages)."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return ()
    sizes = [(n, parse_hugepage_dir(n)) for n in names]
    return tuple((size, int(_read(f"{root}/{n}/nr_hugepages", "0").strip() or 0)) for n, size in sizes if size)


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def runtime_version() -> str:
    """``runc://VERSION`` as the kubelet reports ``containerd://VERSION``."""
    runc = shutil.which("runc") or "/usr/sbin/runc"
    try:
        first = subprocess.run([runc, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
        return "runc://" + first.split()[-1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "runc://unknown"


def gather(data_dir: str, internal_ip: str = "127.0.0.1") -> HostFacts:
    """This host's facts; ``internal_ip`` is what the node reports (loopback unless told)."""
    stat = os.statvfs(data_dir)
    machine = platform.machine()
    return HostFacts(
        cpus=os.cpu_count() or 1,
        memory_bytes=parse_meminfo(_read("/proc/meminfo", "MemTotal: 0 kB")),
        storage_bytes=stat.f_blocks * stat.f_frsize,
        kernel=platform.release(),
        os_image=parse_os_release(_read("/etc/os-release")),
        architecture={"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
        runtime_version=runtime_version(),
        internal_ip=internal_ip,
        hostname=platform.node(),
        machine_id=(_read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")).strip(),
        system_uuid=_read("/sys/class/dmi/id/product_uuid").strip(),
        boot_id=_read("/proc/sys/kernel/random/boot_id").strip(),
        hugepages=hugepages(),
    )
