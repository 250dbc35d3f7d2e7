"""The pod volume manager: makes every volume a pod mounts exist on the host, and binds them into containers.

It does what the kubelet's volume manager and its in-tree plugins do for the volume types a
single-host Kubernetes needs, with the same on-disk layout
(``<root>/<pod uid>/volumes/kubernetes.io~<plugin>/<volume>``), the same file modes and the
same error messages, because users read them in ``kubectl describe pod``:

- ``emptyDir`` is a directory (mode 0777), or a tmpfs for ``medium: Memory``;
- ``configMap``, ``secret``, ``projected`` and ``downwardAPI`` are projected by the atomic
  writer of :mod:`tinykube.node.volumedata`, so running containers see updates whole; secrets,
  projected and downward-API volumes sit on tmpfs, as the kubelet keeps them off the disk;
- ``hostPath`` is checked against its ``type`` (and created for the ``...OrCreate`` types);
- ``persistentVolumeClaim`` resolves claim → bound volume → its ``hostPath``/``local`` path.

Only volumes some container mounts are set up (the kubelet ignores unused ones).  Everything
is on disk, so after an agent restart ``setup`` simply finds the volumes in place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tinykube.api.errors import ApiError
from tinykube.api.quantity import value
from tinykube.api.registry import lookup
from tinykube.client.rest import Client, path
from tinykube.node import containerspec
from tinykube.node.runtime import mounts
from tinykube.node.volumedata import (FileProjection, Payload, aggregate, atomic_write, config_map_payload,
                                      downward_payload, file_mode, secret_payload)
from tinykube.node.runtime.oci import Mount
from tinykube.node.security import apply_fs_group

log = logging.getLogger(__name__)

CONFIGMAPS = lookup("", "v1", "configmaps")
SECRETS = lookup("", "v1", "secrets")
SERVICEACCOUNTS = lookup("", "v1", "serviceaccounts")
CLAIMS = lookup("", "v1", "persistentvolumeclaims")
VOLUMES = lookup("", "v1", "persistentvolumes")
assert CONFIGMAPS and SECRETS and SERVICEACCOUNTS and CLAIMS and VOLUMES

TOKEN_MODE = 0o600  # a token owned by the pod's user or group is not for everyone
EMPTY_DIR_MODE = 0o777  # emptyDir is world-writable so any container user can use it
TOKEN_REFRESH_FRACTION = 0.8  # the kubelet renews a token after 80 % of its lifetime...
TOKEN_REFRESH_MAX = 24 * 3600.0  # ...or after a day, whichever comes first

Obj = dict[str, Any]

# Plugin directory names, and whether the plugin's content is read-only API data kept in tmpfs.
_PLUGINS = {"emptyDir": "kubernetes.io~empty-dir", "configMap": "kubernetes.io~configmap",
            "secret": "kubernetes.io~secret", "projected": "kubernetes.io~projected",
            "downwardAPI": "kubernetes.io~downward-api"}
API_DATA = ("configMap", "secret", "projected", "downwardAPI")
_IN_MEMORY = ("secret", "projected", "downwardAPI")


class VolumeError(Exception):
    """A volume could not be set up or mounted; ``reason`` is the event reason or waiting reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class VolumePath:
    """Where a volume is on the host, and whether containers must mount it read-only."""

    path: str
    read_only: bool = False


# --- pod security facts the volumes depend on -----------------------------------------------


def fs_group(pod: Obj) -> int | None:
    return ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")


def fs_user(pod: Obj) -> int | None:
    """``FsUserFrom``: the one runAsUser every container has, or None if they differ or one has none."""
    spec = pod.get("spec") or {}
    pod_user = (spec.get("securityContext") or {}).get("runAsUser")
    users = set()
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        user = (container.get("securityContext") or {}).get("runAsUser", pod_user)
        if user is None:
            return None
        users.add(user)
    return users.pop() if len(users) == 1 else None


def pod_memory_limit(pod: Obj) -> int | None:
    """The pod cgroup's memory limit (``ResourceConfigForPod``): None unless every container has one."""
    spec = pod.get("spec") or {}

    def limit(container: Obj) -> int | None:
        memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        return value(memory) if memory is not None else None
    app = [limit(c) for c in spec.get("containers") or []]
    init = [limit(c) for c in spec.get("initContainers") or []]
    if None in app or None in init:
        return None
    return max([sum(app or [0]), *[i or 0 for i in init]])


def tmpfs_size(pod: Obj, size_limit: str | None, allocatable_memory: int | None) -> int | None:
    """``calculateEmptyDirMemorySize``: node allocatable, lowered by the pod's limit, then by sizeLimit."""
    size = allocatable_memory
    for candidate in (pod_memory_limit(pod), value(size_limit) if size_limit else None):
        if candidate is not None and candidate > 0 and (size is None or candidate <= size):
            size = candidate
    return size


# --- hostPath --------------------------------------------------------------------------------

_TYPE_CHECKS: dict[str, tuple[Callable[[os.stat_result], bool], str]] = {
    "Directory": (lambda st: stat.S_ISDIR(st.st_mode), "directory"),
    "File": (lambda st: not stat.S_ISDIR(st.st_mode), "file"),
    "Socket": (lambda st: stat.S_ISSOCK(st.st_mode), "socket file"),
    "CharDevice": (lambda st: stat.S_ISCHR(st.st_mode), "character device"),
    "BlockDevice": (lambda st: stat.S_ISBLK(st.st_mode), "block device"),
}


def check_host_path(host_path: str, path_type: str | None) -> None:
    """The hostPath plugin's SetUp: no ``..``; the path is of ``type`` (created for ``...OrCreate``)."""
    if ".." in host_path.split("/"):
        raise ValueError(f"invalid HostPath `{host_path}`: must not contain '..'")
    if not path_type:
        if not os.path.lexists(host_path):  # containerd's CRI creates a missing bind source as a directory
            os.makedirs(host_path, mode=0o755, exist_ok=True)
        return
    if path_type == "DirectoryOrCreate" and not os.path.lexists(host_path):
        os.makedirs(host_path, mode=0o755, exist_ok=True)
        return
    if path_type == "FileOrCreate" and not os.path.lexists(host_path):
        with open(host_path, "a"):
            os.chmod(host_path, 0o644)
        return
    entry = _TYPE_CHECKS.get(path_type.removesuffix("OrCreate"))
    if entry is None:
        raise ValueError(f"{path_type} is an invalid volume type")
    check, description = entry
    try:
        matches = check(os.stat(host_path))
    except OSError:
        matches = False
    if not matches:
        raise ValueError(f"hostPath type check failed: {host_path} is not a {description}")


# --- container mounts ------------------------------------------------------------------------


class _MissingRecorder(dict[str, str]):
    """An env mapping that answers every name (empty when unset) and remembers the missing ones."""

    def __init__(self, env: dict[str, str]):
        super().__init__(env)
        self.missing: set[str] = set()

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        found = super().get(key, "")
        if not found:
            self.missing.add(key)
        return found


def expand_sub_path(expr: str, env: dict[str, str]) -> str:
    """``ExpandContainerVolumeMounts``: ``$(VAR)`` from the container's env; unset or empty fails."""
    recorder = _MissingRecorder(env)
    expanded = containerspec.expand(expr, recorder)
    if recorder.missing:
        raise VolumeError("CreateContainerConfigError", f"missing value for {', '.join(sorted(recorder.missing))}")
    return expanded


def _within(candidate: str, root: str) -> bool:
    return candidate == root or candidate.startswith(root.rstrip("/") + "/")


def _make_sub_dirs(volume: str, sub_path: str) -> None:
    """``SafeMakeDir``: create the missing parts with the volume root's mode, never leaving the volume."""
    root = os.path.realpath(volume)
    mode = stat.S_IMODE(os.stat(root).st_mode)
    current = root
    for part in sub_path.split("/"):
        if not part or part == ".":
            continue
        current = os.path.join(current, part)
        if not os.path.lexists(current):
            os.mkdir(current, mode)
            os.chmod(current, mode)
        if not _within(os.path.realpath(current), root):
            raise OSError(f"{current} is outside of allowed base {root}")


def resolve_sub_path(volume: str, sub_path: str, mount_name: str, container_name: str) -> str:
    """The host path a ``subPath`` mount binds, created as a directory when missing (as the kubelet).

    Symlinks are resolved and must stay inside the volume, as ``PrepareSafeSubpath`` demands.
    """
    if os.path.isabs(sub_path):
        raise VolumeError("CreateContainerConfigError", f"error SubPath `{sub_path}` must not be an absolute path")
    if ".." in sub_path.split("/"):
        raise VolumeError("CreateContainerConfigError", f"unable to provision SubPath `{sub_path}`: must not contain '..'")
    target = os.path.join(volume, sub_path)
    try:
        if not os.path.lexists(target):
            _make_sub_dirs(volume, sub_path)
    except OSError as e:
        log.warning("subPath %s of volume %s: %s", sub_path, volume, e)
        raise VolumeError("CreateContainerConfigError", f'failed to create subPath directory for volumeMount '
                                                        f'"{mount_name}" of container "{container_name}"') from e
    resolved = os.path.realpath(target)
    if not _within(resolved, os.path.realpath(volume)) or not os.path.lexists(resolved):
        raise VolumeError("CreateContainerConfigError", f'failed to prepare subPath for volumeMount "{mount_name}" '
                                                        f'of container "{container_name}"')
    return resolved


def container_mounts(container: Obj, paths: dict[str, VolumePath], env: dict[str, str]) -> list[Mount]:
    """The bind mounts of a container's ``volumeMounts`` (kubelet ``makeMounts``).

    ``env`` is the container's environment, for ``subPathExpr``.  A volume is read-only when the
    mount asks for it or the volume is read-only by nature.  mountPropagation is not supported:
    every mount is ``rprivate``.
    """
    out = []
    for vm in container.get("volumeMounts") or []:
        volume = paths.get(vm["name"])
        if volume is None:
            raise VolumeError("CreateContainerConfigError",
                              f'cannot find volume "{vm["name"]}" to mount into container "{container["name"]}"')
        sub_path = expand_sub_path(vm["subPathExpr"], env) if vm.get("subPathExpr") else vm.get("subPath", "")
        source = volume.path
        if sub_path:
            source = resolve_sub_path(volume.path, sub_path, vm["name"], container["name"])
        read_only = bool(vm.get("readOnly")) or volume.read_only
        out.append(Mount(source, vm["mountPath"], "bind", ["rbind", "rprivate", "ro" if read_only else "rw"]))
    return out


def mounted_volumes(pod: Obj) -> set[str]:
    """Names of the volumes some container (init and ephemeral ones included) mounts."""
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or []) + \
        (spec.get("ephemeralContainers") or [])
    return {vm["name"] for c in containers for vm in c.get("volumeMounts") or []}


def volume_kind(volume: Obj) -> str:
    """The volume source's field name (``emptyDir``, ``configMap``, ...)."""
    return next((k for k in volume if k != "name" and volume[k] is not None), "")


# --- the manager -----------------------------------------------------------------------------


class Mounter(Protocol):
    """What the manager needs of the host's mount table (a fake in tests)."""

    def tmpfs(self, target: Path, size: int | None) -> None: ...

    def unmount_all(self, under: Path) -> None: ...


class HostMounter:
    """tmpfs mounts through libc; teardown unmounts whatever the mount table lists under a pod dir."""

    def tmpfs(self, target: Path, size: int | None) -> None:
        if not mounts.is_mountpoint(target):
            mounts.mount("tmpfs", target, "tmpfs", 0, f"size={size}" if size else "")

    def unmount_all(self, under: Path) -> None:
        for point in sorted(_mount_points(under), key=len, reverse=True):
            mounts.unmount(Path(point))


def _unescape_mountinfo(text: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _mount_points(under: Path) -> list[str]:
    root = os.path.realpath(under)
    with open("/proc/self/mountinfo") as f:
        points = [_unescape_mountinfo(line.split(" ", 5)[4]) for line in f]
    return [p for p in points if _within(p, root)]


@dataclass
class _Token:
    data: bytes
    renew_at: float  # time.time() after which a new token is requested


class VolumeManager:
    """Sets up, refreshes and tears down the volumes of the pods on this node.

    ``root`` holds one directory per pod UID (the kubelet's ``/var/lib/kubelet/pods``);
    ``allocatable`` is the Node's allocatable resources: the default of unset limits in the
    downward API and the ceiling of memory-backed volumes.
    """

    def __init__(self, client: Client, root: str, allocatable: dict[str, str] | None = None,
                 mounter: Mounter | None = None):
        self.client = client
        self.root = root
        self.allocatable = dict(allocatable or {})
        self.mounter: Mounter = mounter or HostMounter()
        self._tokens: dict[tuple[str, str, str], _Token] = {}  # (pod uid, volume, path) → token

    async def setup(self, pod: Obj) -> dict[str, VolumePath]:
        """Every mounted volume of ``pod``, created; raises the first failure as :class:`VolumeError`."""
        return await self._each(pod, None)

    async def refresh(self, pod: Obj) -> None:
        """Re-project configMap/secret/projected/downwardAPI volumes whose sources changed."""
        await self._each(pod, API_DATA)

    async def teardown(self, pod_uid: str) -> None:
        """Remove the pod's volume dirs (tmpfs unmounted first); hostPath and PV data stay."""
        pod_dir = Path(self.root) / pod_uid

        def remove() -> None:
            if pod_dir.exists():
                self.mounter.unmount_all(pod_dir)
                shutil.rmtree(pod_dir)
        await asyncio.to_thread(remove)
        for key in [k for k in self._tokens if k[0] == pod_uid]:
            del self._tokens[key]

    def volume_dir(self, pod_uid: str, kind: str, name: str) -> Path:
        return Path(self.root) / pod_uid / "volumes" / _PLUGINS[kind] / name

    async def _each(self, pod: Obj, kinds: tuple[str, ...] | None) -> dict[str, VolumePath]:
        needed = mounted_volumes(pod)
        volumes = [v for v in (pod.get("spec") or {}).get("volumes") or []
                   if v["name"] in needed and (kinds is None or volume_kind(v) in kinds)]
        results = await asyncio.gather(*(self._setup_volume(pod, v) for v in volumes), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return {v["name"]: r for v, r in zip(volumes, results) if isinstance(r, VolumePath)}

    async def _setup_volume(self, pod: Obj, volume: Obj) -> VolumePath:
        kind, name = volume_kind(volume), volume["name"]
        try:
            if kind == "hostPath":
                source = volume["hostPath"]
                await asyncio.to_thread(check_host_path, source["path"], source.get("type"))
                return VolumePath(source["path"])
            if kind == "persistentVolumeClaim":
                return await self._claim(pod, volume)
            if kind == "emptyDir":
                return await self._empty_dir(pod, volume)
            if kind in API_DATA:
                return await self._api_data(pod, volume, kind)
            raise ValueError("no volume plugin matched")
        except (ValueError, OSError) as e:
            raise VolumeError("FailedMount", f'MountVolume.SetUp failed for volume "{name}" : {e}') from e

    async def _empty_dir(self, pod: Obj, volume: Obj) -> VolumePath:
        source = volume["emptyDir"] or {}
        medium = source.get("medium") or ""
        if medium not in ("", "Memory"):
            raise ValueError(f'unknown storage medium "{medium}"')
        directory = self.volume_dir(pod["metadata"]["uid"], "emptyDir", volume["name"])
        await self._prepare_dir(pod, directory, medium == "Memory", source.get("sizeLimit"))
        await asyncio.to_thread(apply_fs_group, directory, fs_group(pod))
        return VolumePath(str(directory))

    async def _prepare_dir(self, pod: Obj, directory: Path, in_memory: bool, size_limit: str | None = None) -> None:
        """The (wrapped) emptyDir under a volume: a 0777 dir, tmpfs-backed when in memory."""
        memory = self.allocatable.get("memory")
        size = tmpfs_size(pod, size_limit, value(memory) if memory else None) if in_memory else None

        def prepare() -> None:
            directory.mkdir(mode=EMPTY_DIR_MODE, parents=True, exist_ok=True)
            if in_memory:
                self.mounter.tmpfs(directory, size)
            mode = os.stat(directory).st_mode
            if stat.S_IMODE(mode) & 0o777 != EMPTY_DIR_MODE:
                os.chmod(directory, EMPTY_DIR_MODE | (mode & stat.S_ISGID))
        await asyncio.to_thread(prepare)

    async def _api_data(self, pod: Obj, volume: Obj, kind: str) -> VolumePath:
        directory = self.volume_dir(pod["metadata"]["uid"], kind, volume["name"])
        payload = await self._payload(pod, volume, kind)
        await self._prepare_dir(pod, directory, kind in _IN_MEMORY)
        gid = fs_group(pod)
        await asyncio.to_thread(atomic_write, directory, payload,
                                lambda name: apply_fs_group(directory / name, gid, read_only=True))
        return VolumePath(str(directory), read_only=True)

    async def _payload(self, pod: Obj, volume: Obj, kind: str) -> Payload:
        source = volume[kind]
        mode = source.get("defaultMode")
        if kind == "configMap":
            return await self._config_map(pod, source, mode)
        if kind == "secret":
            return await self._secret(pod, {**source, "name": source.get("secretName", "")}, mode)
        if kind == "downwardAPI":
            return downward_payload(source.get("items"), pod, mode, self.allocatable)
        return await self._projected(pod, volume["name"], source)

    async def _config_map(self, pod: Obj, source: Obj, mode: int | None) -> Payload:
        obj = await self._source_object(CONFIGMAPS, pod, source, "configmap")
        return config_map_payload(obj, source, mode)

    async def _secret(self, pod: Obj, source: Obj, mode: int | None) -> Payload:
        obj = await self._source_object(SECRETS, pod, source, "secret")
        return secret_payload(obj, source, mode)

    async def _source_object(self, rt: Any, pod: Obj, source: Obj, noun: str) -> Obj:
        """The referenced object; an optional missing one is empty, a required one fails as the kubelet's cache."""
        try:
            obj: Obj = await self.client.get(path(rt, pod["metadata"]["namespace"], source.get("name", "")))
            return obj
        except ApiError as e:
            if e.code != 404:
                raise ValueError(e.message) from e
            if source.get("optional"):
                return {}
            raise ValueError(f'{noun} "{source.get("name", "")}" not found') from e

    async def _projected(self, pod: Obj, name: str, source: Obj) -> Payload:
        """All sources into one payload; every failing source is reported (``collectData``)."""
        mode = source.get("defaultMode")
        payload: Payload = {}
        errors: list[str] = []
        for item in source.get("sources") or []:
            try:
                payload.update(await self._projection(pod, name, item, mode))
            except ValueError as e:
                errors.append(str(e))
        if errors:
            raise ValueError(aggregate(errors))
        return payload

    async def _projection(self, pod: Obj, name: str, item: Obj, mode: int | None) -> Payload:
        if item.get("configMap") is not None:
            return await self._config_map(pod, item["configMap"], mode)
        if item.get("secret") is not None:
            return await self._secret(pod, item["secret"], mode)
        if item.get("downwardAPI") is not None:
            return downward_payload(item["downwardAPI"].get("items"), pod, mode, self.allocatable)
        if item.get("serviceAccountToken") is not None:
            return await self._token_file(pod, name, item["serviceAccountToken"], mode)
        return {}

    async def _token_file(self, pod: Obj, name: str, source: Obj, mode: int | None) -> Payload:
        """The token file: 0600 and owned by the pod's user when it has one (or an fsGroup)."""
        token = await self._token(pod, name, source)
        if token is None:
            return {}
        user = fs_user(pod)
        token_mode = TOKEN_MODE if user is not None or fs_group(pod) is not None else file_mode(None, mode)
        return {source["path"]: FileProjection(token, token_mode, user)}

    async def _token(self, pod: Obj, name: str, source: Obj) -> bytes | None:
        """A bound service-account token from ``serviceaccounts/NAME/token``, renewed at 80 % of its life."""
        meta = pod["metadata"]
        key = (meta["uid"], name, source["path"])
        cached = self._tokens.get(key)
        if cached is not None and time.time() < cached.renew_at:
            return cached.data
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        seconds = int(source.get("expirationSeconds") or 3600)
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "audiences": [source["audience"]] if source.get("audience") else [], "expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}}
        try:
            answer = await self.client.create(path(SERVICEACCOUNTS, meta["namespace"], account, "token"), request)
        except ApiError as e:
            if e.code == 404:  # no TokenRequest API on this server: the volume goes without the token
                log.warning("no token for pod %s/%s: %s", meta["namespace"], meta["name"], e.message)
                return None
            raise ValueError(e.message) from e
        token = answer["status"]["token"].encode()
        lifetime = min(seconds * TOKEN_REFRESH_FRACTION, TOKEN_REFRESH_MAX)
        self._tokens[key] = _Token(token, time.time() + lifetime)
        return token

    async def _claim(self, pod: Obj, volume: Obj) -> VolumePath:
        """claim → bound PV → its hostPath or local path; the claim's readOnly makes the mount read-only."""
        source = volume["persistentVolumeClaim"]
        namespace, claim_name = pod["metadata"]["namespace"], source["claimName"]
        pv = await self._bound_volume(namespace, claim_name, volume["name"])
        spec = pv.get("spec") or {}
        read_only = bool(source.get("readOnly"))
        if spec.get("hostPath"):
            try:
                await asyncio.to_thread(check_host_path, spec["hostPath"]["path"], spec["hostPath"].get("type"))
            except (ValueError, OSError) as e:
                raise VolumeError("FailedMount", f'MountVolume.SetUp failed for volume "{pv["metadata"]["name"]}" : {e}') from e
            return VolumePath(spec["hostPath"]["path"], read_only)
        if spec.get("local"):
            local = spec["local"]["path"]
            if not os.path.exists(local):
                raise VolumeError("FailedMount", f'MountVolume.NewMounter initialization failed for volume '
                                                 f'"{pv["metadata"]["name"]}" : path "{local}" does not exist')
            return VolumePath(local, read_only)
        raise VolumeError("FailedMount", f'MountVolume.SetUp failed for volume "{pv["metadata"]["name"]}" : '
                                         "no volume plugin matched")

    async def _bound_volume(self, namespace: str, claim_name: str, volume_name: str) -> Obj:
        """The claim's PV, or the kubelet's ``error processing PVC`` failure."""
        def failed(detail: str) -> VolumeError:
            return VolumeError("FailedMount", f"Unable to attach or mount volumes: unmounted volumes=[{volume_name}], "
                                              f"unattached volumes=[{volume_name}]: error processing PVC "
                                              f"{namespace}/{claim_name}: {detail}")
        try:
            claim = await self.client.get(path(CLAIMS, namespace, claim_name))
        except ApiError as e:
            raise failed(f"failed to fetch PVC from API server: {e.message}") from e
        if claim["metadata"].get("deletionTimestamp"):
            raise failed("PVC is being deleted")
        if (claim.get("status") or {}).get("phase") != "Bound":
            raise failed("PVC is not bound")
        pv_name = (claim.get("spec") or {}).get("volumeName")
        if not pv_name:
            raise failed("PVC has empty pvc.Spec.VolumeName")
        try:
            pv: Obj = await self.client.get(path(VOLUMES, name=pv_name))
        except ApiError as e:
            raise failed(f"failed to fetch PV {pv_name} from API server: {e.message}") from e
        return pv
