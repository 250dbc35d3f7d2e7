"""The volume manager's pure parts and its manager against a small fake API: writer, payloads, checks, mounts."""

from __future__ import annotations

import base64
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from tinykube.api.errors import ApiError, not_found
from tinykube.node import volumedata, volumes
from tinykube.node.volumedata import FileProjection, atomic_write
from tinykube.node.volumes import VolumeError, VolumeManager, VolumePath

Obj = dict[str, Any]


def files(**contents: str) -> dict[str, FileProjection]:
    return {k.replace("__", "/"): FileProjection(v.encode(), 0o644) for k, v in contents.items()}


# --- the atomic writer -----------------------------------------------------------------------


def test_first_write_links_visible_names_into_data(tmp_path: Path) -> None:
    assert atomic_write(tmp_path, {"game.properties": FileProjection(b"lives=3", 0o400),
                                   "conf/ui.properties": FileProjection(b"color=red", 0o644)})
    data = os.readlink(tmp_path / "..data")
    assert data.startswith("..") and (tmp_path / data).is_dir()
    assert stat.S_IMODE((tmp_path / data).stat().st_mode) == 0o755
    assert os.readlink(tmp_path / "game.properties") == "..data/game.properties"
    assert os.readlink(tmp_path / "conf") == "..data/conf"
    assert (tmp_path / "conf" / "ui.properties").read_text() == "color=red"
    assert stat.S_IMODE((tmp_path / data / "game.properties").stat().st_mode) == 0o400


def test_unchanged_payload_writes_nothing(tmp_path: Path) -> None:
    atomic_write(tmp_path, files(a="1"))
    before = os.readlink(tmp_path / "..data")
    assert not atomic_write(tmp_path, files(a="1"))
    assert os.readlink(tmp_path / "..data") == before


def test_update_swaps_data_and_prunes_removed_names(tmp_path: Path) -> None:
    atomic_write(tmp_path, files(a="1", b="2"))
    old = os.readlink(tmp_path / "..data")
    assert atomic_write(tmp_path, files(a="changed"))
    assert os.readlink(tmp_path / "..data") != old
    assert not (tmp_path / old).exists()
    assert (tmp_path / "a").read_text() == "changed"
    assert not (tmp_path / "b").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("..")) == ["a"]


def test_missing_visible_link_is_restored_without_a_rewrite(tmp_path: Path) -> None:
    atomic_write(tmp_path, files(a="1"))
    (tmp_path / "a").unlink()
    assert not atomic_write(tmp_path, files(a="1"))
    assert (tmp_path / "a").read_text() == "1"


@pytest.mark.parametrize("bad, message", [
    ("/etc/passwd", "invalid path: must be relative path: /etc/passwd"),
    ("a/../b", "invalid path: must not contain '..': a/../b"),
    ("..hidden", "invalid path: must not start with '..': ..hidden"),
    ("x" * 256, "invalid path: filenames must be less than or equal to 255 characters"),
])
def test_invalid_payload_paths(tmp_path: Path, bad: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        atomic_write(tmp_path, {bad: FileProjection(b"", 0o644)})


# --- configMap and secret payloads --------------------------------------------------------------


def test_config_map_payload_all_keys_and_binary_data() -> None:
    cm = {"data": {"a": "x"}, "binaryData": {"b": base64.b64encode(b"\x00\x01").decode()}}
    payload = volumedata.config_map_payload(cm, {"name": "cm"}, 0o640)
    assert payload == {"a": FileProjection(b"x", 0o640), "b": FileProjection(b"\x00\x01", 0o640)}


def test_items_choose_keys_paths_and_modes() -> None:
    cm = {"data": {"a": "x", "b": "y"}}
    source = {"items": [{"key": "a", "path": "dir/a.txt", "mode": 0o600}, {"key": "b", "path": "b"}]}
    assert volumedata.config_map_payload(cm, source, None) == {
        "dir/a.txt": FileProjection(b"x", 0o600), "b": FileProjection(b"y", 0o644)}


def test_missing_key_messages_and_optional() -> None:
    source = {"items": [{"key": "nope", "path": "p"}]}
    with pytest.raises(ValueError, match="^configmap references non-existent config key: nope$"):
        volumedata.config_map_payload({"data": {}}, source, 0o644)
    with pytest.raises(ValueError, match="^references non-existent secret key: nope$"):
        volumedata.secret_payload({"data": {}}, source, 0o644)
    assert volumedata.secret_payload({}, {**source, "optional": True}, 0o644) == {}


def test_secret_values_are_decoded() -> None:
    secret = {"data": {"password": base64.b64encode(b"s3cr3t").decode()}}
    assert volumedata.secret_payload(secret, {}, 0o400) == {"password": FileProjection(b"s3cr3t", 0o400)}


# --- the downward API ----------------------------------------------------------------------------


POD: Obj = {
    "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                 "labels": {"zone": "us-east", "app": "web"}, "annotations": {"note": 'say "hi"\n'}},
    "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {
        "requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}]},
}
ALLOCATABLE = {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "pods": "110"}


@pytest.mark.parametrize("field_path, expected", [
    ("metadata.name", "web"), ("metadata.namespace", "prod"), ("metadata.uid", "u-1"),
    ("metadata.labels", 'app="web"\nzone="us-east"'),
    ("metadata.annotations", 'note="say \\"hi\\"\\n"'),
    ("metadata.labels['zone']", "us-east"), ("metadata.labels['none']", ""),
])
def test_field_values(field_path: str, expected: str) -> None:
    assert volumedata.field_value(POD, field_path) == expected


def test_unsupported_field_path() -> None:
    with pytest.raises(ValueError, match="^unsupported fieldPath: spec.nodeName$"):
        volumedata.field_value(POD, "spec.nodeName")


@pytest.mark.parametrize("resource, divisor, expected", [
    ("requests.cpu", None, "1"), ("requests.cpu", "1m", "250"), ("limits.cpu", None, "2"),
    ("limits.memory", "1Mi", "128"), ("requests.memory", None, str(64 * 2**20)),
    ("limits.ephemeral-storage", "1Gi", "10"), ("requests.ephemeral-storage", None, "0"),
])
def test_resource_values(resource: str, divisor: str | None, expected: str) -> None:
    ref = {"containerName": "app", "resource": resource, **({"divisor": divisor} if divisor else {})}
    assert volumedata.resource_value(POD, ref, ALLOCATABLE) == expected


def test_downward_payload_collects_every_error() -> None:
    items = [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
             {"path": "bad", "fieldRef": {"fieldPath": "status.podIP"}},
             {"path": "cpu", "resourceFieldRef": {"containerName": "other", "resource": "limits.cpu"}}]
    with pytest.raises(ValueError, match=r"^\[unsupported fieldPath: status.podIP, container other not found\]$"):
        volumedata.downward_payload(items, POD, 0o644, ALLOCATABLE)
    assert volumedata.downward_payload(items[:1], POD, None, {}) == {"name": FileProjection(b"web", 0o644)}


def test_go_quote() -> None:
    assert volumedata.go_quote('a"b\\c\t\x01é') == '"a\\"b\\\\c\\t\\x01é"'


# --- hostPath ------------------------------------------------------------------------------------


def test_host_path_types(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    volumes.check_host_path(str(tmp_path), "Directory")
    volumes.check_host_path(str(a_file), "File")
    volumes.check_host_path("/dev/null", "CharDevice")
    for path, kind, noun in [(a_file, "Directory", "directory"), (tmp_path, "File", "file"),
                             (a_file, "Socket", "socket file"), (a_file, "CharDevice", "character device"),
                             (a_file, "BlockDevice", "block device"), (tmp_path / "none", "Directory", "directory")]:
        with pytest.raises(ValueError, match=f"^hostPath type check failed: {path} is not a {noun}$"):
            volumes.check_host_path(str(path), kind)


def test_host_path_socket_and_creation(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        volumes.check_host_path(str(tmp_path / "sock"), "Socket")
    volumes.check_host_path(str(tmp_path / "new" / "dir"), "DirectoryOrCreate")
    assert stat.S_IMODE((tmp_path / "new" / "dir").stat().st_mode) == 0o755
    volumes.check_host_path(str(tmp_path / "new" / "f"), "FileOrCreate")
    assert (tmp_path / "new" / "f").is_file()
    with pytest.raises(ValueError, match=f"^hostPath type check failed: {tmp_path / 'new' / 'f'} is not a directory$"):
        volumes.check_host_path(str(tmp_path / "new" / "f"), "DirectoryOrCreate")


def test_host_path_rejects_backsteps_and_unknown_types(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^invalid HostPath `/a/../b`: must not contain '..'$"):
        volumes.check_host_path("/a/../b", "")
    with pytest.raises(ValueError, match="^Fifo is an invalid volume type$"):
        volumes.check_host_path(str(tmp_path), "Fifo")


# --- subPath and container mounts -------------------------------------------------------------


def test_sub_path_is_created_with_the_volume_mode(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    volume.chmod(0o2775)
    resolved = volumes.resolve_sub_path(str(volume), "a/b", "data", "app")
    assert resolved == str(volume / "a" / "b")
    assert stat.S_IMODE((volume / "a").stat().st_mode) == 0o2775


def test_sub_path_must_stay_in_the_volume(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "escape").symlink_to("/etc")
    with pytest.raises(VolumeError, match='^failed to prepare subPath for volumeMount "data" of container "app"$'):
        volumes.resolve_sub_path(str(volume), "escape", "data", "app")
    with pytest.raises(VolumeError, match="must not be an absolute path"):
        volumes.resolve_sub_path(str(volume), "/etc", "data", "app")
    with pytest.raises(VolumeError, match="^unable to provision SubPath `a/../..`: must not contain '..'$"):
        volumes.resolve_sub_path(str(volume), "a/../..", "data", "app")


def test_container_mounts(tmp_path: Path) -> None:
    container = {"name": "app", "volumeMounts": [
        {"name": "config", "mountPath": "/etc/app"},
        {"name": "data", "mountPath": "/data", "readOnly": True},
        {"name": "data", "mountPath": "/logs", "subPathExpr": "logs/$(POD_NAME)"}]}
    paths = {"config": VolumePath("/vol/config", read_only=True), "data": VolumePath(str(tmp_path))}
    mounts = volumes.container_mounts(container, paths, {"POD_NAME": "web-1"})
    assert [(m.source, m.destination, m.options) for m in mounts] == [
        ("/vol/config", "/etc/app", ["rbind", "rprivate", "ro"]),
        (str(tmp_path), "/data", ["rbind", "rprivate", "ro"]),
        (str(tmp_path / "logs" / "web-1"), "/logs", ["rbind", "rprivate", "rw"])]
    assert (tmp_path / "logs" / "web-1").is_dir()


def test_container_mount_errors() -> None:
    container = {"name": "app", "volumeMounts": [{"name": "x", "mountPath": "/x", "subPathExpr": "$(A)/$(B)"}]}
    with pytest.raises(VolumeError, match='^cannot find volume "x" to mount into container "app"$'):
        volumes.container_mounts(container, {}, {})
    with pytest.raises(VolumeError, match="^missing value for A, B$") as err:
        volumes.container_mounts(container, {"x": VolumePath("/x")}, {"A": ""})
    assert err.value.reason == "CreateContainerConfigError"


# --- pod facts --------------------------------------------------------------------------------


def test_tmpfs_size_takes_the_smallest_known_ceiling() -> None:
    pod = {"spec": {"containers": [{"resources": {"limits": {"memory": "128Mi"}}}]}}
    assert volumes.tmpfs_size(pod, None, 2**30) == 128 * 2**20
    assert volumes.tmpfs_size(pod, "64Mi", 2**30) == 64 * 2**20
    assert volumes.tmpfs_size({"spec": {"containers": [{}]}}, None, None) is None
    assert volumes.tmpfs_size({"spec": {"containers": [{}]}}, "1Gi", 2**29) == 2**29


def test_fs_user_is_the_one_user_of_every_container() -> None:
    spec = {"securityContext": {"runAsUser": 1000}, "containers": [{}, {"securityContext": {"runAsUser": 1000}}]}
    assert volumes.fs_user({"spec": spec}) == 1000
    spec["containers"].append({"securityContext": {"runAsUser": 0}})
    assert volumes.fs_user({"spec": spec}) is None
    assert volumes.fs_user({"spec": {"containers": [{}]}}) is None


# --- the manager against a fake API --------------------------------------------------------------


class FakeClient:
    """Objects by URL; POSTs to token subresources answer with a numbered token."""

    def __init__(self, objects: dict[str, Obj], tokens: bool = True):
        self.objects = objects
        self.tokens = tokens
        self.issued = 0

    async def get(self, url: str, params: dict[str, str] | None = None) -> Obj:
        if url not in self.objects:
            raise not_found("things", url.rsplit("/", 1)[-1])
        return self.objects[url]

    async def create(self, url: str, obj: Obj) -> Obj:
        if not (self.tokens and url.endswith("/token")):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        assert obj["spec"]["boundObjectRef"]["uid"] == "uid-1"
        self.issued += 1
        return {"status": {"token": f"token-{self.issued}"}}


class FakeMounter:
    def __init__(self) -> None:
        self.tmpfs_mounts: list[tuple[Path, int | None]] = []
        self.unmounted: list[Path] = []

    def tmpfs(self, target: Path, size: int | None) -> None:
        self.tmpfs_mounts.append((target, size))

    def unmount_all(self, under: Path) -> None:
        self.unmounted.append(under)


def pod(volumes_: list[Obj], mounts: list[str] | None = None) -> Obj:
    names = mounts if mounts is not None else [v["name"] for v in volumes_]
    return {"metadata": {"name": "web", "namespace": "default", "uid": "uid-1", "labels": {"app": "web"}},
            "spec": {"serviceAccountName": "default", "volumes": volumes_, "containers": [
                {"name": "app", "image": "nginx", "volumeMounts": [{"name": n, "mountPath": f"/{n}"} for n in names]}]}}


def manager(tmp_path: Path, objects: dict[str, Obj], tokens: bool = True) -> tuple[VolumeManager, FakeMounter]:
    mounter = FakeMounter()
    return VolumeManager(FakeClient(objects, tokens), str(tmp_path), {"memory": "1Gi"}, mounter), mounter  # type: ignore[arg-type]


CM_URL = "/api/v1/namespaces/default/configmaps/nginx-config"


async def test_setup_projects_every_kind(tmp_path: Path) -> None:
    objects = {CM_URL: {"data": {"nginx.conf": "server {}"}},
               "/api/v1/namespaces/default/secrets/app-secret": {"data": {"k": base64.b64encode(b"v").decode()}}}
    mgr, mounter = manager(tmp_path, objects)
    spec = [{"name": "config-volume", "configMap": {"name": "nginx-config", "defaultMode": 0o644}},
            {"name": "secret-volume", "secret": {"secretName": "app-secret"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "api", "projected": {"defaultMode": 0o644, "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "nginx-config", "items": [{"key": "nginx.conf", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
            {"name": "unused", "configMap": {"name": "missing"}}]
    paths = await mgr.setup(pod(spec, ["config-volume", "secret-volume", "scratch", "info", "api"]))
    base = tmp_path / "uid-1" / "volumes"
    assert paths["config-volume"] == VolumePath(str(base / "kubernetes.io~configmap" / "config-volume"), True)
    assert paths["scratch"] == VolumePath(str(base / "kubernetes.io~empty-dir" / "scratch"), False)
    assert stat.S_IMODE(Path(paths["scratch"].path).stat().st_mode) == 0o777
    assert (Path(paths["config-volume"].path) / "nginx.conf").read_text() == "server {}"
    assert (Path(paths["secret-volume"].path) / "k").read_text() == "v"
    assert (Path(paths["info"].path) / "labels").read_text() == 'app="web"'
    api = Path(paths["api"].path)
    assert [(api / f).read_text() for f in ("token", "ca.crt", "namespace")] == ["token-1", "server {}", "default"]
    assert sorted(p.name for p, _ in mounter.tmpfs_mounts) == ["api", "info", "secret-volume"]
    assert "unused" not in paths


async def test_missing_config_map_is_the_kubelets_failed_mount(tmp_path: Path) -> None:
    mgr, _ = manager(tmp_path, {})
    with pytest.raises(VolumeError) as err:
        await mgr.setup(pod([{"name": "config-volume", "configMap": {"name": "nginx-config"}}]))
    assert (err.value.reason, err.value.message) == (
        "FailedMount", 'MountVolume.SetUp failed for volume "config-volume" : configmap "nginx-config" not found')
    assert not (tmp_path / "uid-1" / "volumes" / "kubernetes.io~configmap" / "config-volume").exists()
    paths = await mgr.setup(pod([{"name": "config-volume", "configMap": {"name": "nginx-config", "optional": True}}]))
    assert os.listdir(paths["config-volume"].path)[0].startswith("..")


async def test_projected_errors_are_aggregated_and_token_404_skips_the_file(tmp_path: Path) -> None:
    mgr, _ = manager(tmp_path, {}, tokens=False)
    spec = [{"name": "api", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}},
                                                     {"secret": {"name": "a"}}, {"configMap": {"name": "b"}}]}}]
    with pytest.raises(VolumeError, match=r'^MountVolume.SetUp failed for volume "api" : \[secret "a" not found, '
                                          r'configmap "b" not found\]$'):
        await mgr.setup(pod(spec))
    paths = await mgr.setup(pod([{"name": "api", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]))
    assert not (Path(paths["api"].path) / "token").exists()


async def test_refresh_rewrites_changed_sources_atomically(tmp_path: Path) -> None:
    objects = {CM_URL: {"data": {"a": "1"}}}
    mgr, _ = manager(tmp_path, objects)
    the_pod = pod([{"name": "cfg", "configMap": {"name": "nginx-config"}},
                   {"name": "api", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}])
    paths = await mgr.setup(the_pod)
    directory = Path(paths["cfg"].path)
    first = os.readlink(directory / "..data")
    objects[CM_URL] = {"data": {"a": "2"}}
    await mgr.refresh(the_pod)
    assert (directory / "a").read_text() == "2" and os.readlink(directory / "..data") != first
    assert (Path(paths["api"].path) / "token").read_text() == "token-1"  # not renewed before 80 % of its life


async def test_emptydir_in_memory_and_teardown(tmp_path: Path) -> None:
    mgr, mounter = manager(tmp_path, {})
    paths = await mgr.setup(pod([{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]))
    assert mounter.tmpfs_mounts == [(Path(paths["cache"].path), 64 * 2**20)]
    await mgr.teardown("uid-1")
    assert mounter.unmounted == [tmp_path / "uid-1"] and not (tmp_path / "uid-1").exists()
    await mgr.teardown("uid-1")  # idempotent


async def test_claim_resolves_to_the_bound_volume_path(tmp_path: Path) -> None:
    claim_url = "/api/v1/namespaces/default/persistentvolumeclaims/data-pvc"
    objects = {claim_url: {"metadata": {"name": "data-pvc"}, "spec": {"volumeName": "pv-1"}, "status": {"phase": "Bound"}},
               "/api/v1/persistentvolumes/pv-1": {"metadata": {"name": "pv-1"},
                                                  "spec": {"hostPath": {"path": str(tmp_path / "pv"), "type": "DirectoryOrCreate"}}}}
    mgr, _ = manager(tmp_path, objects)
    spec = [{"name": "data-volume", "persistentVolumeClaim": {"claimName": "data-pvc", "readOnly": True}}]
    assert (await mgr.setup(pod(spec)))["data-volume"] == VolumePath(str(tmp_path / "pv"), True)
    objects[claim_url]["status"]["phase"] = "Pending"
    with pytest.raises(VolumeError, match="error processing PVC default/data-pvc: PVC is not bound$"):
        await mgr.setup(pod(spec))
    await mgr.teardown("uid-1")
    assert (tmp_path / "pv").is_dir()  # the claim's data outlives the pod
