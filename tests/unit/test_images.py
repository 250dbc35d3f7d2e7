"""Images without a network: names, manifests, hosts files, layer unpacking, archives, the store, the CLI.

Archives and layers are built here from a few files, so every case is small and exact; the tests
that talk to a real registry live in tests/runtime/test_images.py.  Whiteouts and owners need
root (mknod, trusted xattrs), as the agent has.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard

from tinykube.cli import image as image_cli
from tinykube.node.runtime import layers
from tinykube.node.runtime.images import (
    ImageNeverPull,
    ImageNotFound,
    ImageStore,
    InvalidReference,
    LoadError,
    PullError,
    normalize,
    parse_reference,
    should_pull,
)
from tinykube.node.runtime.registry import (
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Hosts,
    Platform,
    RegistryError,
    default_server,
    media_type,
    parse_challenge,
    parse_hosts,
    select_platform,
    verify,
)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and owners need root, as the agent has")
HEX = "a" * 64
AMD64 = Platform("linux", "amd64")


# --- references -------------------------------------------------------------------------------


@pytest.mark.parametrize("text,normalized", [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx:1.14.2", "docker.io/library/nginx:1.14.2"),
    ("busybox", "docker.io/library/busybox:latest"),
    ("library/debian", "docker.io/library/debian:latest"),
    ("docker/docker", "docker.io/docker/docker:latest"),
    ("docker.io/debian", "docker.io/library/debian:latest"),
    ("docker.io/library/nginx:1.14.2", "docker.io/library/nginx:1.14.2"),
    ("index.docker.io/debian", "docker.io/library/debian:latest"),
    ("index.docker.io/docker/docker:1", "docker.io/docker/docker:1"),
    ("localhost/debian", "localhost/debian:latest"),
    ("localhost:5000/foo/bar:tag", "localhost:5000/foo/bar:tag"),
    ("127.0.0.1:5000/foo", "127.0.0.1:5000/foo:latest"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("Example.com/foo", "Example.com/foo:latest"),
    ("Foo/bar", "Foo/bar:latest"),
    ("[2001:db8::1]:5000/foo", "[2001:db8::1]:5000/foo:latest"),
    ("foo__bar/a-b.c_d", "docker.io/foo__bar/a-b.c_d:latest"),
    ("nginx:Tag_1.0-rc", "docker.io/library/nginx:Tag_1.0-rc"),
    (f"nginx@sha256:{HEX}", f"docker.io/library/nginx@sha256:{HEX}"),
    (f"nginx:1.14@sha256:{HEX}", f"docker.io/library/nginx:1.14@sha256:{HEX}"),
])
def test_normalize(text: str, normalized: str) -> None:
    assert normalize(text) == normalized


@pytest.mark.parametrize("text,message", [
    ("Nginx", "invalid reference format: repository name (library/Nginx) must be lowercase"),
    ("docker.io/Foo/bar", "invalid reference format: repository name (Foo/bar) must be lowercase"),
    ("nginx:", "invalid reference format"),
    ("nginx:-tag", "invalid reference format"),
    ("foo bar", "invalid reference format"),
    ("-foo", "invalid reference format"),
    ("foo___bar", "invalid reference format"),
    ("foo..bar", "invalid reference format"),
    ("docker.io/foo/", "invalid reference format"),
    ("", "invalid reference format"),
    (f"nginx@sha256:{'a' * 40}", "invalid checksum digest length"),
    (f"nginx@md5:{'a' * 32}", "unsupported digest algorithm"),
    (HEX, f"invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings"),
    ("a" * 256, "repository name must not be more than 255 characters"),
])
def test_invalid_references(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as err:
        parse_reference(text)
    assert str(err.value) == message


def test_reference_parts() -> None:
    ref = parse_reference(f"localhost:5000/team/app:v1@sha256:{HEX}")
    assert (ref.domain, ref.path, ref.tag, ref.digest, ref.name) == (
        "localhost:5000", "team/app", "v1", f"sha256:{HEX}", "localhost:5000/team/app")
    assert str(parse_reference(f"app@sha256:{HEX}").with_default_tag()) == f"docker.io/library/app@sha256:{HEX}"


# --- manifests and hosts ----------------------------------------------------------------------


def entry(arch: str, variant: str = "", os_: str = "linux", digest: str = "") -> Descriptor:
    return Descriptor(OCI_MANIFEST, digest or f"sha256:{arch}{variant}{os_}", 1, Platform(os_, arch, variant))


@pytest.mark.parametrize("entries,want,chosen", [
    ([entry("arm64", "v8"), entry("amd64")], AMD64, 1),
    ([entry("unknown", os_="unknown"), entry("amd64"), entry("amd64")], AMD64, 1),  # attestations never; first wins
    ([entry("amd64", "v3"), entry("amd64")], AMD64, 1),
    ([entry("arm64"), entry("arm64", "v8")], Platform("linux", "arm64", "v8"), 0),  # arm64 means arm64/v8
    ([entry("arm", "v6"), entry("arm", "v7")], Platform("linux", "arm", "v7"), 1),
    ([entry("arm", "v6"), entry("amd64")], Platform("linux", "arm", "v7"), 0),  # v6 runs on a v7 CPU
    ([entry("amd64", os_="windows"), entry("amd64")], AMD64, 1),
])
def test_select_platform(entries: list[Descriptor], want: Platform, chosen: int) -> None:
    assert select_platform(entries, want) is entries[chosen]


def test_select_platform_without_a_match() -> None:
    with pytest.raises(RegistryError) as err:
        select_platform([entry("arm64", "v8"), entry("arm", "v7")], AMD64)
    assert err.value.not_found and str(err.value) == "no match for platform linux/amd64 in manifest: not found"


def test_media_type_from_field_header_or_shape() -> None:
    assert media_type(json.dumps({"mediaType": DOCKER_LIST, "manifests": []}).encode()) == DOCKER_LIST
    assert media_type(b'{"manifests": []}', "application/json") == OCI_INDEX
    assert media_type(b'{"config": {}, "layers": []}', OCI_MANIFEST + "; charset=utf-8") == OCI_MANIFEST
    with pytest.raises(RegistryError, match="unsupported manifest media type"):
        media_type(b'{"schemaVersion": 1, "fsLayers": []}', "application/vnd.docker.distribution.manifest.v1+prettyjws")


def test_digest_mismatch_is_refused_in_containerd_words() -> None:
    verify(b"abc", "sha256:" + hashlib.sha256(b"abc").hexdigest())
    with pytest.raises(RegistryError) as err:
        verify(b"abd", "sha256:" + hashlib.sha256(b"abc").hexdigest())
    assert str(err.value) == (f"unexpected commit digest sha256:{hashlib.sha256(b'abd').hexdigest()}, expected "
                              f"sha256:{hashlib.sha256(b'abc').hexdigest()}: failed precondition")


def test_hosts_toml_mirrors_first_then_server(tmp_path: Path) -> None:
    text = '''
server = "https://registry-1.docker.io"
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
[host."https://mirror.example/v2/dockerhub"]
  capabilities = ["pull"]
  override_path = true
  skip_verify = true
  ca = "ca.pem"
  [host."https://mirror.example/v2/dockerhub".header]
    x-custom = ["a", "b"]
'''
    local, remote, server = parse_hosts("docker.io", text, tmp_path)
    assert (local.url, local.capabilities, local.mirror) == ("http://127.0.0.1:5000/v2", {"pull", "resolve"}, True)
    assert (remote.url, remote.skip_verify, remote.ca) == ("https://mirror.example/v2/dockerhub", True,
                                                          (str(tmp_path / "ca.pem"),))
    assert remote.headers == (("x-custom", "a"), ("x-custom", "b"))
    assert (server.url, server.mirror, server.capabilities) == ("https://registry-1.docker.io/v2", False,
                                                                {"pull", "resolve", "push"})


def test_hosts_lookup_defaults(tmp_path: Path) -> None:
    (tmp_path / "_default").mkdir()
    (tmp_path / "_default" / "hosts.toml").write_text('[host."http://10.0.0.1:5000/cache"]\n')
    assert [h.url for h in Hosts(tmp_path).lookup("quay.io")] == ["http://10.0.0.1:5000/cache/v2", "https://quay.io/v2"]
    assert [h.url for h in Hosts(None).lookup("docker.io")] == ["https://registry-1.docker.io/v2"]
    assert default_server("localhost:5000") == "http://localhost:5000"
    assert default_server("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert default_server("ghcr.io") == "https://ghcr.io"


def test_bearer_challenge() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"'
    assert parse_challenge(header) == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                                       "scope": "repository:library/nginx:pull"}
    assert parse_challenge('Basic realm="x"') is None


def test_pull_policies() -> None:
    assert [should_pull(p, present) for p in ("Always", "IfNotPresent", "Never") for present in (True, False)] == [
        True, True, False, True, False, False]


def test_pull_error_wording() -> None:
    ref = "docker.io/library/nginx:nonexist"
    err = PullError(ref, f'failed to resolve reference "{ref}": {ref}: not found', not_found=True)
    assert err.cri_message == (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
                               f'failed to resolve reference "{ref}": {ref}: not found')
    assert str(ImageNeverPull("nginx")) == 'Container image "nginx" is not present with pull policy of Never'


# --- layers -----------------------------------------------------------------------------------


@dataclass
class Entry:
    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    link: str = ""
    mode: int = 0o644
    owner: int = 0
    pax: dict[str, str] = field(default_factory=dict)


def layer_tar(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.linkname, info.mode, info.uid, info.gid = e.kind, e.link, e.mode, e.owner, e.owner
            info.size = len(e.data)
            info.pax_headers = e.pax
            tar.addfile(info, io.BytesIO(e.data) if e.data else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unpack(tar: bytes, dest: Path, compress: str = "gzip") -> Path:
    blob = {"gzip": lambda b: gzip.compress(b, mtime=0), "zstd": zstandard.ZstdCompressor().compress,
            "none": lambda b: b}[compress](tar)
    layers.unpack(io.BytesIO(blob), dest, sha(tar), sha(blob))
    return dest


def is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


@root_only
@pytest.mark.parametrize("compress", ["gzip", "zstd", "none"])
def test_unpack_keeps_owners_modes_links_and_xattrs(tmp_path: Path, compress: str) -> None:
    tar = layer_tar([
        Entry("./bin/", kind=tarfile.DIRTYPE, mode=0o755), Entry("./bin/tool", b"#!/bin/sh\n", mode=0o4755),
        Entry("bin/sh", kind=tarfile.SYMTYPE, link="/bin/tool"), Entry("bin/hard", kind=tarfile.LNKTYPE, link="bin/tool", mode=0o4755),
        Entry("tmp/", kind=tarfile.DIRTYPE, mode=0o1777), Entry("home/user/.profile", b"x", owner=1000),
        Entry("bin/ping", b"elf", pax={"SCHILY.xattr.user.test": "yes"})])
    root = unpack(tar, tmp_path / "layer", compress)
    assert stat.S_IMODE(os.stat(root / "bin/tool").st_mode) == 0o4755
    assert os.readlink(root / "bin/sh") == "/bin/tool"
    assert os.stat(root / "bin/hard").st_ino == os.stat(root / "bin/tool").st_ino
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    assert os.stat(root / "home/user/.profile").st_uid == 1000
    assert os.getxattr(root / "bin/ping", "user.test") == b"yes"


@root_only
def test_whiteouts_become_overlayfs_whiteouts(tmp_path: Path) -> None:
    tar = layer_tar([
        Entry("etc/", kind=tarfile.DIRTYPE), Entry("etc/.wh.motd"), Entry("var/cache/.wh..wh..opq"),
        Entry("var/cache/new", b"n"), Entry("keep"), Entry(".wh.keep"), Entry(".wh.later"), Entry("later", b"l")])
    root = unpack(tar, tmp_path / "layer")
    assert is_whiteout(root / "etc/motd")
    assert os.getxattr(root / "var/cache", "trusted.overlay.opaque") == b"y"
    assert (root / "var/cache/new").read_bytes() == b"n"
    assert not is_whiteout(root / "keep") and not is_whiteout(root / "later")  # same-layer files win
    assert not list(root.rglob(".wh.*"))


@root_only
@pytest.mark.parametrize("entries,problem", [
    ([Entry("../escape", b"x")], "leaves the layer"),
    ([Entry("a/../../escape", b"x")], "leaves the layer"),
    ([Entry("evil", kind=tarfile.SYMTYPE, link="/etc"), Entry("evil/passwd", b"x")], "is a symlink"),
    ([Entry("x", kind=tarfile.LNKTYPE, link="../../etc/passwd")], "leaves the layer"),
])
def test_unsafe_layers_are_refused(tmp_path: Path, entries: list[Entry], problem: str) -> None:
    with pytest.raises(layers.LayerError, match=problem):
        unpack(layer_tar(entries), tmp_path / "layer")
    assert not (tmp_path / "layer").exists() and list(tmp_path.iterdir()) == []


@root_only
def test_hard_link_to_a_symlink_links_the_symlink(tmp_path: Path) -> None:
    root = unpack(layer_tar([Entry("s", kind=tarfile.SYMTYPE, link="/etc/shadow"),
                             Entry("h", kind=tarfile.LNKTYPE, link="s")]), tmp_path / "layer")
    assert os.readlink(root / "h") == "/etc/shadow"


def test_wrong_diff_id_or_digest_leaves_nothing(tmp_path: Path) -> None:
    tar = layer_tar([Entry("f", b"data")])
    blob = gzip.compress(tar)
    with pytest.raises(layers.LayerError, match="wrong diff id calculated on extraction"):
        layers.unpack(io.BytesIO(blob), tmp_path / "a", sha(b"other"), sha(blob))
    with pytest.raises(layers.LayerError, match="wrong digest"):
        layers.unpack(io.BytesIO(blob), tmp_path / "b", sha(tar), sha(b"other"))
    assert list(tmp_path.iterdir()) == []


# --- archives and the store -------------------------------------------------------------------


class OciLayout:
    """A small OCI image layout written as a tar, for load tests."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.index: list[dict[str, object]] = []

    def blob(self, data: bytes, media: str = "") -> dict[str, object]:
        self.blobs[sha(data)] = data
        return {"mediaType": media, "digest": sha(data), "size": len(data)}

    def image(self, layer_tars: list[bytes], arch: str = "amd64", compress: str = "gzip",
              cmd: tuple[str, ...] = ("sh",)) -> dict[str, object]:
        compressor = {"gzip": gzip.compress, "zstd": zstandard.ZstdCompressor().compress}[compress]
        config = json.dumps({"architecture": arch, "os": "linux",
                             "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], "ExposedPorts": {"80/tcp": {}},
                                        "StopSignal": "SIGQUIT", "WorkingDir": "/w", "User": "1000"},
                             "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layer_tars]}}).encode()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": self.blob(config, "application/vnd.oci.image.config.v1+json"),
                    "layers": [self.blob(compressor(t), f"application/vnd.oci.image.layer.v1.tar+{compress}")
                               for t in layer_tars]}
        return self.blob(json.dumps(manifest).encode(), OCI_MANIFEST)

    def name(self, descriptor: dict[str, object], name: str, key: str = "io.containerd.image.name") -> None:
        self.index.append({**descriptor, "annotations": {key: name}})

    def write(self, path: Path) -> Path:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
                 "index.json": json.dumps({"schemaVersion": 2, "manifests": self.index}).encode(),
                 **{f"blobs/sha256/{d.split(':')[1]}": data for d, data in self.blobs.items()}}
        write_tar(path, files)
        return path


def write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


BASE = layer_tar([Entry("bin/", kind=tarfile.DIRTYPE), Entry("bin/sh", b"shell", mode=0o755),
                  Entry("etc/", kind=tarfile.DIRTYPE), Entry("etc/motd", b"hello")])
TOP = layer_tar([Entry("etc/.wh.motd"), Entry("app", b"app")])


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data" / "images", platform=AMD64)


@root_only
def test_load_oci_archive_selects_the_platform_and_stacks_layers(store: ImageStore, tmp_path: Path) -> None:
    layout = OciLayout()
    amd = layout.image([BASE, TOP], compress="zstd")
    arm = layout.image([BASE], arch="arm64")
    index = layout.blob(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {**amd, "platform": {"os": "linux", "architecture": "amd64"}}]}).encode(), OCI_INDEX)
    layout.name(index, "docker.io/library/app:1.0")
    layout.name(amd, "example.com/app:amd", key="org.opencontainers.image.ref.name")
    layout.name(amd, "bare-tag", key="org.opencontainers.image.ref.name")  # names nothing: skipped
    assert store.load_archive(layout.write(tmp_path / "app.tar")) == ["docker.io/library/app:1.0", "example.com/app:amd"]
    image = store.get("app:1.0")
    assert image is not None and image.digest == index["digest"]
    assert image.references == ("docker.io/library/app:1.0", "example.com/app:amd")
    assert [p.name for p in image.layers] == [sha(BASE)[7:], sha(TOP)[7:]]  # bottom to top
    assert is_whiteout(image.layers[1] / "etc/motd") and (image.layers[0] / "etc/motd").read_bytes() == b"hello"
    assert (image.config.cmd, image.config.env, image.config.exposed_ports, image.config.stop_signal,
            image.config.working_dir, image.config.user) == (("sh",), ("PATH=/bin",), ("80/tcp",), "SIGQUIT", "/w", "1000")
    assert image.repo_digests == (f"docker.io/library/app@{index['digest']}", f"example.com/app@{index['digest']}")
    assert store.get(image.id) == store.get(image.id[7:19]) == image


@root_only
def test_load_docker_save_archive(store: ImageStore, tmp_path: Path) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(BASE), sha(TOP), sha(BASE)]}}).encode()
    write_tar(tmp_path / "save.tar", {
        "manifest.json": json.dumps([{"Config": f"{sha(config)[7:]}.json", "RepoTags": ["app:saved", "other/app:v2"],
                                      "Layers": ["l1/layer.tar", "l2/layer.tar", "l1/layer.tar"]}]).encode(),
        f"{sha(config)[7:]}.json": config, "l1/layer.tar": BASE, "l2/layer.tar": TOP})
    assert store.load_archive(tmp_path / "save.tar") == ["docker.io/library/app:saved", "docker.io/other/app:v2"]
    image = store.get("other/app:v2")
    assert image is not None and image.id == sha(config) and image.config.entrypoint == ("/bin/sh",)
    assert [p.name for p in image.layers] == [sha(TOP)[7:], sha(BASE)[7:]]  # a repeated layer once, topmost
    assert image.size == len(store._read_blob(image.digest)) + len(config) + 2 * len(BASE) + len(TOP)


def test_load_refuses_what_is_no_image_archive(store: ImageStore, tmp_path: Path) -> None:
    write_tar(tmp_path / "x.tar", {"hello.txt": b"hi"})
    with pytest.raises(LoadError, match="neither an OCI image layout nor a docker save archive"):
        store.load_archive(tmp_path / "x.tar")
    layout = OciLayout()
    layout.name(layout.image([BASE]), "bare-tag", key="org.opencontainers.image.ref.name")
    with pytest.raises(LoadError, match="names no image"):
        store.load_archive(layout.write(tmp_path / "unnamed.tar"))


@root_only
def test_layers_are_shared_and_collected_with_the_last_reference(store: ImageStore, tmp_path: Path) -> None:
    layout = OciLayout()
    first, second = layout.image([BASE, TOP]), layout.image([BASE], cmd=("true",))
    layout.name(first, "docker.io/library/first:1")
    layout.name(first, "docker.io/library/first:2")
    layout.name(second, "docker.io/library/second:1")
    store.load_archive(layout.write(tmp_path / "a.tar"))
    layer_dirs = store.root / "layers"
    assert sorted(p.name for p in layer_dirs.iterdir()) == sorted([sha(BASE)[7:], sha(TOP)[7:]])
    assert store.remove("first:1") == ["docker.io/library/first:1"]
    first_image = store.get("first:2")
    assert first_image is not None and len(list(layer_dirs.iterdir())) == 2
    store.lease("container-1", first_image)
    assert store.remove(first_image.id[7:20]) == ["docker.io/library/first:2"]  # by ID: every tag
    assert len(list(layer_dirs.iterdir())) == 2, "a leased layer stays"
    store.release("container-1")
    assert store.remove("second:1") == ["docker.io/library/second:1"]
    assert list(layer_dirs.iterdir()) == [] and list((store.root / "blobs" / "sha256").iterdir()) == []
    assert store.list() == []
    with pytest.raises(ImageNotFound, match="no such image: second:1"):
        store.remove("second:1")


def loaded(store: ImageStore, tmp_path: Path, name: str = "docker.io/library/busybox:latest") -> None:
    layout = OciLayout()
    layout.name(layout.image([BASE]), name)
    store.load_archive(layout.write(tmp_path / "busybox.tar"))


NOWHERE = Hosts(None)  # any contact would go to the real docker.io: these tests must not pull


@root_only
async def test_if_not_present_and_never_use_what_is_there(store: ImageStore, tmp_path: Path) -> None:
    loaded(store, tmp_path)
    for policy in ("IfNotPresent", "Never"):
        ensured = await store.ensure("busybox", policy, NOWHERE, on_pulling=lambda: pytest.fail("pulled"))
        assert (ensured.pulled, ensured.image.references) == (False, ("docker.io/library/busybox:latest",))


async def test_never_without_the_image(store: ImageStore) -> None:
    with pytest.raises(ImageNeverPull) as err:
        await store.ensure("nginx:1.14.2", "Never", NOWHERE)
    assert str(err.value) == 'Container image "nginx:1.14.2" is not present with pull policy of Never'


@root_only
def test_an_image_missing_a_layer_is_absent(store: ImageStore, tmp_path: Path) -> None:
    loaded(store, tmp_path)
    image = store.get("busybox")
    assert image is not None
    os.rename(image.layers[0], tmp_path / "gone")
    assert store.get("busybox") is None and store.get("nothing") is None


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size,text", [(0, "0B"), (999, "999B"), (1000, "1kB"), (1_088_000, "1.09MB"),
                                       (36_945_920, "36.9MB"), (999_999, "1e+03kB"), (2_500_000_000, "2.5GB")])
def test_human_size_as_crictl(size: int, text: str) -> None:
    assert image_cli.human_size(size) == text


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tinykube")
    image_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return image_cli.run(parser.parse_args(list(argv)))


@root_only
def test_cli_load_ls_rm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = OciLayout()
    descriptor = layout.image([BASE])
    for name in ("docker.io/library/busybox:latest", "docker.io/library/busybox:1.36",
                 f"docker.io/library/busybox@{descriptor['digest']}"):
        layout.name(descriptor, name)
    tools_descriptor = layout.image([BASE], cmd=("true",))
    layout.name(tools_descriptor, f"example.com/tools@{tools_descriptor['digest']}")
    archive = layout.write(tmp_path / "busybox.tar")
    data = str(tmp_path / "data")
    assert cli("image", "load", "--data-dir", data, str(archive)) == 0
    image = ImageStore(tmp_path / "data" / "images").get("busybox")
    assert image is not None
    tools = ImageStore(tmp_path / "data" / "images").get(f"example.com/tools@{tools_descriptor['digest']}")
    assert tools is not None
    short, size = image.id[7:20], image_cli.human_size(image.size)
    tools_short, tools_size = tools.id[7:20], image_cli.human_size(tools.size)
    capsys.readouterr()
    assert cli("image", "ls", "--data-dir", data) == 0
    assert capsys.readouterr().out.splitlines() == [
        "IMAGE                       TAG                 IMAGE ID            SIZE",
        f"docker.io/library/busybox   1.36                {short}       {size}",
        f"docker.io/library/busybox   latest              {short}       {size}",
        f"example.com/tools           <none>              {tools_short}       {tools_size}"]
    assert cli("image", "rm", "--data-dir", data, "busybox", "nope") == 1
    out, err = capsys.readouterr()
    assert out == "Deleted: docker.io/library/busybox:latest\n" and err == "tinykube image rm: no such image: nope\n"
    assert cli("image", "ls", "-q", "--data-dir", data) == 0
    assert capsys.readouterr().out == f"{image.id}\n{tools.id}\n"
