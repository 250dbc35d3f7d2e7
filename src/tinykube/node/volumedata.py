"""What goes into the API-data volumes (configMap, secret, projected, downwardAPI), and how it gets there.

Pure payload builders follow the kubelet's plugins (``MakePayload`` of ``pkg/volume/configmap``
and ``pkg/volume/secret``, ``downwardapi.CollectData``, ``fieldpath``, ``resource``) with their
error messages; :func:`atomic_write` is ``pkg/volume/util/atomic_writer.go``: the files live in a
timestamped directory that the ``..data`` symlink points to, user-visible names are symlinks
into ``..data``, and an update is one ``rename`` of that symlink, so a running container never
sees half a change.
"""

from __future__ import annotations

import base64
import datetime
import os
import random
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinykube.api.formats import go_quote
from tinykube.api.quantity import milli_value, parse_quantity, value

DEFAULT_MODE = 0o644  # the API's default for defaultMode (420)
MAX_FILE_NAME = 255
MAX_PATH = 4096
DATA_DIR = "..data"
NEW_DATA_DIR = "..data_tmp"

Obj = dict[str, Any]


@dataclass(frozen=True)
class FileProjection:
    """One file of an API-data volume: content, mode and (for tokens) the owning user."""

    data: bytes
    mode: int
    fs_user: int | None = None


Payload = dict[str, FileProjection]


# --- the atomic writer -----------------------------------------------------------------------


def _validate_path(target: str) -> None:
    """AtomicWriter's ``validatePath``: relative, no ``..`` element, no leading ``..``, bounded."""
    if target == "":
        raise ValueError(f'invalid path: must not be empty: "{target}"')
    if os.path.isabs(target):
        raise ValueError(f"invalid path: must be relative path: {target}")
    if len(target) > MAX_PATH:
        raise ValueError(f"invalid path: must be less than or equal to {MAX_PATH} characters")
    items = target.split("/")
    for item in items:
        if item == "..":
            raise ValueError(f"invalid path: must not contain '..': {target}")
        if len(item) > MAX_FILE_NAME:
            raise ValueError(f"invalid path: filenames must be less than or equal to {MAX_FILE_NAME} characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise ValueError(f"invalid path: must not start with '..': {target}")


def _clean(payload: Payload) -> Payload:
    for key in payload:
        _validate_path(key)
    return {os.path.normpath(k): v for k, v in payload.items()}


def _prefixes(relative: str) -> Iterable[str]:
    """``a/b/c`` → ``a/b/c``, ``a/b``, ``a``: a payload file keeps its parent directories alive."""
    while relative:
        yield relative
        relative = os.path.dirname(relative)


def _paths_to_remove(payload: Payload, old_dir: Path) -> set[str]:
    """What the old version has (files and dirs) that the new payload no longer does."""
    present = {str(p.relative_to(old_dir)) for p in old_dir.rglob("*")}
    wanted = {prefix for key in payload for prefix in _prefixes(key)}
    return present - wanted


def _changed(payload: Payload, old_dir: Path) -> bool:
    """Whether any file's content differs from (or is missing in) the current version."""
    for key, projection in payload.items():
        current = old_dir / key
        if not os.path.lexists(current) or current.read_bytes() != projection.data:
            return True
    return False


def _new_timestamp_dir(target: Path, now: datetime.datetime) -> Path:
    """``os.MkdirTemp(target, "..2006_01_02_15_04_05.")``: a fresh hidden dir, mode 0755."""
    prefix = now.strftime("..%Y_%m_%d_%H_%M_%S.")
    while True:
        candidate = target / f"{prefix}{random.getrandbits(32)}"
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            continue
        candidate.chmod(0o755)
        return candidate


def _write_files(payload: Payload, directory: Path) -> None:
    for key, projection in payload.items():
        full = directory / key
        full.parent.mkdir(mode=0o777, parents=True, exist_ok=True)
        full.write_bytes(projection.data)
        full.chmod(projection.mode)  # whatever the umask was
        if projection.fs_user is not None:
            os.chown(full, projection.fs_user, -1)


def _create_user_visible(payload: Payload, target: Path) -> None:
    """``name -> ..data/name`` for each top-level name of the payload."""
    for top in {key.split("/", 1)[0] for key in payload}:
        link = target / top
        if not link.is_symlink() and not link.exists():
            link.symlink_to(f"{DATA_DIR}/{top}")


def _swap_data_link(target: Path, ts_dir: Path) -> None:
    """Point ``..data`` at ``ts_dir`` in one rename: the moment the new version appears."""
    tmp = target / NEW_DATA_DIR
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(ts_dir.name)
    try:
        tmp.rename(target / DATA_DIR)
    except OSError:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(ts_dir, ignore_errors=True)
        raise


def atomic_write(target: Path, payload: Payload, set_perms: Callable[[str], None] | None = None) -> bool:
    """Project ``payload`` into ``target`` atomically (the kubelet's ``AtomicWriter.Write``).

    Returns whether a new version was written.  ``set_perms`` gets the new timestamped dir's
    name before it is published (the place for fsGroup ownership).  Names starting with ``..``
    are the writer's own.
    """
    clean = _clean(payload)
    data_link = target / DATA_DIR
    old_name = os.readlink(data_link) if data_link.is_symlink() else ""
    old_dir = target / old_name if old_name else None
    remove: set[str] = set()
    if old_dir is not None:
        remove = _paths_to_remove(clean, old_dir)
        if not remove and not _changed(clean, old_dir):
            _create_user_visible(clean, target)  # the data is current; make sure the links are too
            return False
    ts_dir = _new_timestamp_dir(target, datetime.datetime.now(datetime.timezone.utc))
    _write_files(clean, ts_dir)
    if set_perms is not None:
        set_perms(ts_dir.name)
    _swap_data_link(target, ts_dir)
    _create_user_visible(clean, target)
    for name in remove:
        if "/" not in name:
            (target / name).unlink(missing_ok=True)
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)
    return True


# --- configMap and secret payloads ------------------------------------------------------------


def file_mode(item_mode: int | None, default_mode: int | None) -> int:
    if item_mode is not None:
        return item_mode
    return DEFAULT_MODE if default_mode is None else default_mode


def key_payload(data: dict[str, bytes], items: list[Obj] | None, default_mode: int | None, optional: bool,
                missing: Callable[[str], str]) -> Payload:
    """``MakePayload`` of the configMap and secret plugins: every key, or the listed items.

    A listed key that does not exist fails with ``missing(key)`` unless the source is optional.
    """
    if not items:
        return {k: FileProjection(v, file_mode(None, default_mode)) for k, v in data.items()}
    payload: Payload = {}
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise ValueError(missing(key))
        payload[item["path"]] = FileProjection(data[key], file_mode(item.get("mode"), default_mode))
    return payload


def config_map_data(config_map: Obj) -> dict[str, bytes]:
    """``data`` as UTF-8 and ``binaryData`` decoded (the API forbids a key in both)."""
    data = {k: v.encode() for k, v in (config_map.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (config_map.get("binaryData") or {}).items()})
    return data


def secret_data(secret: Obj) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def config_map_payload(config_map: Obj, source: Obj, default_mode: int | None) -> Payload:
    return key_payload(config_map_data(config_map), source.get("items"), default_mode,
                       bool(source.get("optional")), lambda k: f"configmap references non-existent config key: {k}")


def secret_payload(secret: Obj, source: Obj, default_mode: int | None) -> Payload:
    return key_payload(secret_data(secret), source.get("items"), default_mode, bool(source.get("optional")),
                       lambda k: f"references non-existent secret key: {k}")


# --- the downward API ----------------------------------------------------------------------

def format_map(values: dict[str, str] | None) -> str:
    """``fieldpath.FormatMap``: ``key="value"`` lines sorted by key, no trailing newline."""
    return "\n".join(f"{k}={go_quote(v)}" for k, v in sorted((values or {}).items()))


def field_value(pod: Obj, field_path: str) -> str:
    """``fieldpath.ExtractFieldPathAsString`` for the fields a downward-API volume may use."""
    meta = pod.get("metadata") or {}
    if field_path.endswith("']") and "['" in field_path:
        base, _, rest = field_path.partition("['")
        subscript = rest[:-2]
        if base in ("metadata.labels", "metadata.annotations"):
            return (meta.get(base.split(".")[1]) or {}).get(subscript, "")
        raise ValueError(f'fieldPath "{field_path}" does not support subscript')
    if field_path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(field_path.split(".")[1]))
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(field_path.split(".")[1], ""))
    raise ValueError(f"unsupported fieldPath: {field_path}")


_DOWNWARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _find_container(pod: Obj, name: str) -> Obj:
    spec = pod.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if container.get("name") == name:
            return container
    raise ValueError(f"container {name} not found")


def resource_value(pod: Obj, ref: Obj, allocatable: dict[str, str]) -> str:
    """``ExtractResourceValueByContainerNameAndNodeAllocatable``: a limit or request over a divisor.

    An unset limit is the node's allocatable amount; CPU rounds up in millicores, the rest in units.
    """
    container = _find_container(pod, ref.get("containerName", ""))
    kind, _, name = ref["resource"].partition(".")
    if kind not in ("limits", "requests") or name not in _DOWNWARD_RESOURCES:
        raise ValueError(f"unsupported container resource : {ref['resource']}")
    amounts = dict((container.get("resources") or {}).get(kind) or {})
    if kind == "limits":
        amounts = {**{k: v for k, v in allocatable.items() if k in _DOWNWARD_RESOURCES}, **amounts}
    divisor = ref.get("divisor") or "1"
    if parse_quantity(divisor) == 0:
        divisor = "1"
    amount = amounts.get(name) or "0"
    if name == "cpu":
        return str(-(-milli_value(amount) // milli_value(divisor)))
    return str(-(-value(amount) // value(divisor)))


def downward_payload(items: list[Obj] | None, pod: Obj, default_mode: int | None,
                     allocatable: dict[str, str]) -> Payload:
    """``downwardapi.CollectData``: one file per item; all failures reported together."""
    payload: Payload = {}
    errors: list[str] = []
    for item in items or []:
        data = b""
        try:
            if item.get("fieldRef"):
                data = field_value(pod, item["fieldRef"]["fieldPath"]).encode()
            elif item.get("resourceFieldRef"):
                data = resource_value(pod, item["resourceFieldRef"], allocatable).encode()
        except ValueError as e:
            errors.append(str(e))
        payload[os.path.normpath(item["path"])] = FileProjection(data, file_mode(item.get("mode"), default_mode))
    if errors:
        raise ValueError(aggregate(errors))
    return payload


def aggregate(messages: list[str]) -> str:
    """``utilerrors.NewAggregate(...).Error()``: one message as is, several deduplicated in brackets."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"
