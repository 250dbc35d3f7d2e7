"""Pulls from a real registry on 127.0.0.1 (Debian's docker-registry), configured as the docker.io mirror.

Nothing leaves the machine: every hosts file names only local registries, so the tutorial's
``nginx:1.14.2`` and ``busybox`` resolve here.  Bearer tokens are exercised against the real
registry in token mode, with a small aiohttp token server of the test's own signing the tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import gzip
import io
import json
import os
import tarfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.registry import LocalRegistry, built_images, free_port, own_registry, registry, requires_registry
from tinykube.cli import image as image_cli
from tinykube.node.runtime.images import ImageStore, PullError
from tinykube.node.runtime.registry import OCI_INDEX, Hosts, media_type

pytestmark = [pytest.mark.slow, requires_registry]
__all__ = ["built_images", "own_registry", "registry"]  # fixtures, used by name

SERVICE = "tinykube-test-registry"
ISSUER = "tinykube-test-token-server"


def new_store(tmp_path: Path, local: LocalRegistry) -> ImageStore:
    data = tmp_path / "data"
    return ImageStore(data / "images", Hosts(local.mirror_registries(data / "registries")))


def layer_file(store: ImageStore, reference: str, path: str) -> Path:
    image = store.get(reference)
    assert image is not None
    return next(layer / path for layer in reversed(image.layers) if os.path.lexists(layer / path))


async def test_pull_busybox_through_the_docker_io_mirror(tmp_path: Path, registry: LocalRegistry) -> None:
    store = new_store(tmp_path, registry)
    image = await store.pull("busybox")
    assert image.references == ("docker.io/library/busybox:latest",)
    assert media_type(store._read_blob(image.digest)) == OCI_INDEX, "latest is an index: a platform was chosen"
    assert image.config.cmd == ("sh",) and image.size > 500_000
    assert os.readlink(layer_file(store, "busybox", "bin/sh")) == "/bin/busybox"
    assert oct(layer_file(store, "busybox", "tmp").stat().st_mode & 0o7777) == "0o1777"
    assert "user:x:1000:1000" in layer_file(store, "busybox", "etc/passwd").read_text()


async def test_pull_nginx_as_the_tutorial_names_it(tmp_path: Path, registry: LocalRegistry) -> None:
    store = new_store(tmp_path, registry)
    image = await store.pull("nginx:1.14.2")
    assert image.references == ("docker.io/library/nginx:1.14.2",)
    assert (image.config.cmd, image.config.stop_signal, image.config.exposed_ports) == (
        ("nginx", "-g", "daemon off;"), "SIGQUIT", ("80/tcp",))
    assert "Welcome to nginx!" in layer_file(store, "nginx:1.14.2", "usr/share/nginx/html/index.html").read_text()
    assert os.readlink(layer_file(store, "nginx:1.14.2", "var/log/nginx/access.log")) == "/dev/stdout"
    assert (layer_file(store, "nginx:1.14.2", "usr/bin/su").stat().st_mode & 0o4000), "setuid bits survive"


async def test_tags_share_their_layers_and_pulls_share_downloads(tmp_path: Path, registry: LocalRegistry) -> None:
    store = new_store(tmp_path, registry)
    latest, pinned, again = await asyncio.gather(store.pull("busybox"), store.pull("busybox:1.36"),
                                                 store.pull("docker.io/library/busybox:latest"))
    assert latest.id == pinned.id == again.id and latest.layers == pinned.layers
    assert latest.digest != pinned.digest, "an index and the manifest it chose"
    assert len(list((store.root / "layers").iterdir())) == 1
    assert list((store.root / "tmp").iterdir()) == []


async def test_if_not_present_never_asks_the_registry(tmp_path: Path, own_registry: LocalRegistry) -> None:
    store = new_store(tmp_path, own_registry)
    pulled = await store.ensure("busybox:1.36", "IfNotPresent")
    assert pulled.pulled and pulled.duration > 0
    own_registry.stop()
    present = await store.ensure("busybox:1.36", "IfNotPresent", on_pulling=lambda: pytest.fail("pulled"))
    assert (present.pulled, present.image.id) == (False, pulled.image.id)
    assert not (await store.ensure("busybox:1.36", "Never")).pulled
    with pytest.raises(PullError) as err:
        await store.ensure("busybox:1.36", "Always")
    assert "connect: connection refused" in str(err.value) and err.value.code == "Unknown"


async def test_always_asks_only_for_the_digest_of_what_is_here(tmp_path: Path, own_registry: LocalRegistry) -> None:
    store = new_store(tmp_path, own_registry)
    first = await store.ensure("busybox", "Always")
    seen = len(own_registry.requests())
    again = await store.ensure("busybox", "Always")
    assert again.pulled and again.image == first.image
    assert own_registry.requests()[seen:] == [("HEAD", "/v2/library/busybox/manifests/latest?ns=docker.io")]


async def test_unknown_tag_is_not_found_in_containerd_words(tmp_path: Path, registry: LocalRegistry) -> None:
    store = new_store(tmp_path, registry)
    ref = "docker.io/library/nginx:nonexist"
    with pytest.raises(PullError) as err:
        await store.pull("nginx:nonexist")
    assert err.value.cri_message == (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
                                     f'failed to resolve reference "{ref}": {ref}: not found')
    assert "MANIFEST_UNKNOWN: manifest unknown" in err.value.answer
    assert store.list() == []


async def test_a_failing_mirror_falls_back_to_the_server(tmp_path: Path, registry: LocalRegistry) -> None:
    hosts = tmp_path / "registries" / "docker.io" / "hosts.toml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text(f'server = "{registry.url}"\n[host."http://127.0.0.1:{free_port()}"]\n'
                     '  capabilities = ["pull", "resolve"]\n')
    image = await ImageStore(tmp_path / "images", Hosts(tmp_path / "registries")).pull("busybox:1.36")
    assert image.references == ("docker.io/library/busybox:1.36",)


async def test_a_damaged_blob_is_refused(tmp_path: Path, own_registry: LocalRegistry) -> None:
    store = new_store(tmp_path, own_registry)
    manifest = json.loads((await _fetch(own_registry, "library/busybox/manifests/1.36")))
    layer = manifest["layers"][0]["digest"].split(":")[1]
    data = own_registry.storage / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
    data.write_bytes(bytes(len(data.read_bytes())))  # same size, other bytes
    with pytest.raises(PullError) as err:
        await store.pull("busybox:1.36")
    assert "failed to copy: unexpected commit digest sha256:" in str(err.value)
    assert f"expected sha256:{layer}: failed precondition" in str(err.value)
    assert store.list() == [] and list((store.root / "layers").iterdir()) == []


async def _fetch(local: LocalRegistry, path: str) -> bytes:
    def get() -> bytes:
        request = urllib.request.Request(f"{local.url}/v2/{path}",
                                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as resp:
            return bytes(resp.read())
    return await asyncio.to_thread(get)


def test_cli_pull_ls_rm_against_the_registry(tmp_path: Path, registry: LocalRegistry,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    registry.mirror_registries(data / "registries")
    parser = argparse.ArgumentParser(prog="tinykube")
    image_cli.add_parser(parser.add_subparsers(dest="command", required=True))

    def cli(*argv: str) -> int:
        return image_cli.run(parser.parse_args(["image", *argv, "--data-dir", str(data)]))

    assert cli("pull", "busybox") == 0
    image = ImageStore(data / "images").get("busybox")
    assert image is not None and capsys.readouterr().out == f"Image is up to date for {image.id}\n"
    assert cli("ls") == 0 and "docker.io/library/busybox   latest" in capsys.readouterr().out
    assert cli("rm", "busybox") == 0 and capsys.readouterr().out == "Deleted: docker.io/library/busybox:latest\n"


# --- archives made by the builder -------------------------------------------------------------


def docker_save(layout: Path, dest: Path, tag: str) -> Path:
    """The ``docker save`` form of a single-manifest OCI layout: plain layer tars, ``manifest.json``."""
    index = json.loads((layout / "index.json").read_text())
    target = next(m for m in index["manifests"] if m["mediaType"].endswith("manifest.v1+json"))
    manifest = json.loads((layout / "blobs" / target["digest"].replace(":", "/")).read_text())
    files = {f"{manifest['config']['digest'][7:]}.json": (layout / "blobs" / manifest["config"]["digest"].replace(":", "/")).read_bytes()}
    layers = []
    for i, layer in enumerate(manifest["layers"]):
        files[f"{i}/layer.tar"] = gzip.decompress((layout / "blobs" / layer["digest"].replace(":", "/")).read_bytes())
        layers.append(f"{i}/layer.tar")
    files["manifest.json"] = json.dumps([{"Config": next(iter(files)), "RepoTags": [tag], "Layers": layers}]).encode()
    with tarfile.open(dest, "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return dest


def test_load_the_builders_archives(tmp_path: Path, built_images: Path) -> None:
    store = ImageStore(tmp_path / "images")
    assert store.load_archive(built_images / "busybox.tar") == ["docker.io/library/busybox:latest",
                                                                "docker.io/library/busybox:1.36",
                                                                "docker.io/library/myapp:1.0"]
    oci = store.get("busybox:1.36")
    saved = docker_save(built_images / "busybox", tmp_path / "saved.tar", "example.com/busybox:saved")
    assert store.load_archive(saved) == ["example.com/busybox:saved"]
    from_docker = store.get("example.com/busybox:saved")
    assert oci is not None and from_docker is not None
    assert (from_docker.id, from_docker.layers) == (oci.id, oci.layers), "same config, same shared layer"
    assert from_docker.digest != oci.digest, "the docker archive's manifest is written on import"


# --- bearer tokens ----------------------------------------------------------------------------


@dataclass
class TokenServer:
    """An anonymous token endpoint, as auth.docker.io is, signing JWTs the registry trusts (x5c)."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    port: int = field(default_factory=free_port)
    requests: list[dict[str, str]] = field(default_factory=list)
    refuse: bool = False

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({**request.query, "authorization": request.headers.get("Authorization", "")})
        if self.refuse:
            return web.Response(status=403, text="no tokens today")
        _, name, actions = request.query["scope"].split(":")
        return web.json_response({"token": self.token(name, actions.split(",")), "expires_in": 300})

    def token(self, repository: str, actions: list[str]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": uuid.uuid4().hex, "access": [{"type": "repository", "name": repository, "actions": actions}]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _self_signed() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


@pytest.fixture
async def token_registry(tmp_path: Path, registry: LocalRegistry) -> AsyncIterator[tuple[LocalRegistry, TokenServer]]:
    """The session registry's storage served again by a registry that demands bearer tokens."""
    key, cert = _self_signed()
    server = TokenServer(key, cert)
    app = web.Application()
    app.router.add_get("/token", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    bundle = tmp_path / "token-ca.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    secured = LocalRegistry(registry.storage, auth={"realm": server.realm, "service": SERVICE, "issuer": ISSUER,
                                                    "rootcertbundle": str(bundle)})
    try:
        await asyncio.to_thread(secured.start)
        yield secured, server
    finally:
        secured.stop()
        await runner.cleanup()


async def test_bearer_token_flow(tmp_path: Path, token_registry: tuple[LocalRegistry, TokenServer]) -> None:
    secured, tokens = token_registry
    image = await new_store(tmp_path, secured).pull("busybox:1.36")
    assert image.references == ("docker.io/library/busybox:1.36",)
    assert tokens.requests, "the registry's 401 sent the client to the token server"
    assert {(r["service"], r["scope"], r["authorization"]) for r in tokens.requests} == {
        (SERVICE, "repository:library/busybox:pull", "")}
    assert len(tokens.requests) == 1, "one token serves the manifest, the config and the layer"


async def test_a_refused_token_fails_the_pull(tmp_path: Path, token_registry: tuple[LocalRegistry, TokenServer]) -> None:
    secured, tokens = token_registry
    tokens.refuse = True
    with pytest.raises(PullError) as err:
        await new_store(tmp_path, secured).pull("busybox:1.36")
    assert "failed to fetch anonymous token: unexpected status from GET request to " in str(err.value)
    assert "403 Forbidden" in str(err.value)

