"""From a Pod's container to what the runtime runs: argv, environment, user, resources.

Pure functions following the kubelet: ``command``/``args`` combined with the image's
Entrypoint/Cmd as Kubernetes documents it, ``$(VAR)`` expansion (``third_party/forked/golang/expansion``),
and CPU/memory limits turned into cgroup values (``pkg/kubelet/cm/helpers_linux.go``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinykube.api.quantity import milli_value, value

CPU_PERIOD_US = 100_000  # the kernel's default CFS period, which the kubelet uses
MIN_SHARES = 2  # cgroup v1 refuses fewer cpu.shares
MAX_SHARES = 262144  # and more than this
SHARES_PER_CPU = 1024
MIN_QUOTA_US = 1000  # the kernel refuses a CFS quota under 1 ms


def argv(container: dict[str, Any], entrypoint: list[str], cmd: list[str],
         env: dict[str, str] | None = None) -> list[str]:
    """The process argv: command overrides Entrypoint (and drops Cmd); args override Cmd.

    With ``env`` (the container's own variables, see :func:`environment`), ``$(VAR)`` references
    in ``command`` and ``args`` are expanded first, as ``ExpandContainerCommandAndArgs`` does;
    the image's Entrypoint and Cmd are never expanded.
    """
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    if env is not None:
        command, args = [expand(a, env) for a in command], [expand(a, env) for a in args]
    if command:
        return command + args
    return list(entrypoint or []) + (args or list(cmd or []))


def expand(text: str, env: dict[str, str]) -> str:
    """``$(VAR)`` → value when VAR is defined; ``$$`` → ``$``; anything else is kept as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(env[name] if name in env else text[i:end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def environment(image_env: list[str], pod_env: dict[str, str]) -> dict[str, str]:
    """The image's Env overlaid by the pod's variables (a variable the image set keeps its place)."""
    env: dict[str, str] = {}
    for entry in image_env:
        key, _, val = entry.partition("=")
        env[key] = val
    env.update(pod_env)
    return env


@dataclass(frozen=True)
class CgroupLimits:
    cpu_shares: int
    cpu_quota_us: int  # -1: no quota
    cpu_period_us: int
    memory_limit_bytes: int  # 0: no limit


def limits(container: dict[str, Any]) -> CgroupLimits:
    """cpu.shares from requests.cpu, CFS quota from limits.cpu, memory limit from limits.memory.

    As ``calculateLinuxResources``: a zero or missing CPU request with a CPU limit takes its
    shares from the limit (pods created before the API defaulted requests to limits).
    """
    resources = container.get("resources") or {}
    request_milli = milli_value((resources.get("requests") or {}).get("cpu") or "0")
    lims = resources.get("limits") or {}
    limit_milli = milli_value(lims.get("cpu") or "0")
    shares = _milli_to_shares(request_milli or limit_milli)
    quota = max(MIN_QUOTA_US, limit_milli * CPU_PERIOD_US // 1000) if limit_milli else -1
    memory = value(lims["memory"]) if "memory" in lims else 0
    return CgroupLimits(shares, quota, CPU_PERIOD_US, memory)


def _milli_to_shares(milli: int) -> int:
    """``MilliCPUToShares``: 1024 per CPU, clamped to what the kernel accepts."""
    return min(MAX_SHARES, max(MIN_SHARES, milli * SHARES_PER_CPU // 1000))


def user_ids(image_user: str, passwd: str, group: str) -> tuple[int, int]:
    """uid and gid from an image's ``User`` (``name``, ``uid``, ``uid:gid`` or ``name:group``)."""
    if not image_user:
        return 0, 0
    user, _, grp = image_user.partition(":")
    users = [line.split(":") for line in passwd.splitlines() if line.count(":") >= 3]
    if user.isdigit():
        uid, gid = int(user), next((int(f[3]) for f in users if f[2] == user), 0)
    else:
        entry = next((f for f in users if f[0] == user), None)
        if entry is None:
            raise ValueError(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3])
    if grp.isdigit():
        gid = int(grp)
    elif grp:
        groups = [line.split(":") for line in group.splitlines() if line.count(":") >= 2]
        entry = next((f for f in groups if f[0] == grp), None)
        if entry is None:
            raise ValueError(f"unable to find group {grp}: no matching entries in group file")
        gid = int(entry[2])
    return uid, gid
