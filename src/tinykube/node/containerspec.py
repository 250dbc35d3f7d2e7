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
SHARES_PER_CPU = 1024


def argv(container: dict[str, Any], entrypoint: list[str], cmd: list[str]) -> list[str]:
    """The process argv: command overrides Entrypoint (and drops Cmd); args override Cmd."""
    command = container.get("command")
    args = container.get("args")
    if command:
        return list(command) + list(args or [])
    return list(entrypoint or []) + list(args if args else cmd or [])


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


def environment(image_env: list[str], container: dict[str, Any], resolved: dict[str, str]) -> dict[str, str]:
    """Image Env, then the container's env in order with expansion against what came before.

    ``resolved`` holds values of ``valueFrom`` entries already looked up by the caller.
    """
    env: dict[str, str] = {}
    for entry in image_env:
        key, _, val = entry.partition("=")
        env[key] = val
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" in var:
            if name in resolved:
                env[name] = resolved[name]
        else:
            env[name] = expand(var.get("value", ""), env)
    return env


@dataclass(frozen=True)
class CgroupLimits:
    cpu_shares: int
    cpu_quota_us: int  # -1: no quota
    cpu_period_us: int
    memory_limit_bytes: int  # 0: no limit


def limits(container: dict[str, Any]) -> CgroupLimits:
    """cpu.shares from requests.cpu, CFS quota from limits.cpu, memory limit from limits.memory."""
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    lims = resources.get("limits") or {}
    shares = MIN_SHARES
    if "cpu" in requests:
        shares = max(MIN_SHARES, milli_value(requests["cpu"]) * SHARES_PER_CPU // 1000)
    quota = -1
    if "cpu" in lims:
        quota = max(1000, milli_value(lims["cpu"]) * CPU_PERIOD_US // 1000)
    memory = value(lims["memory"]) if "memory" in lims else 0
    return CgroupLimits(shares, quota, CPU_PERIOD_US, memory)


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
