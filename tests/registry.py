"""A real registry on 127.0.0.1 (Debian's ``docker-registry``) holding the test images.

The images come from ``hack/build-test-images``, cached between runs (the first build runs
mmdebstrap for nginx and takes about a minute; later runs take no time).  Each registry runs
with its own storage directory and a free port, writes its log beside its storage, and is
stopped by PID in teardown, even when the test failed.  ``mirror_registries`` writes the
containerd-style hosts file that makes it the docker.io mirror, so ``nginx:1.14.2`` and
``busybox`` resolve to it and nothing else is ever contacted.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILDER = REPO / "hack" / "build-test-images"
DOCKER_REGISTRY = Path("/usr/bin/docker-registry")
SYSTEM_CACHE = Path("/var/cache/tinykube-test-images")
START_TIMEOUT = 15.0  # seconds for the registry to answer /v2/
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL

requires_registry = pytest.mark.skipif(not DOCKER_REGISTRY.exists() or os.geteuid() != 0,
                                       reason="needs Debian's docker-registry and root (layers keep owners)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_cache() -> Path:
    """Where built images are kept: $TINYKUBE_TEST_IMAGES, the system cache as root, else ~/.cache."""
    if os.environ.get("TINYKUBE_TEST_IMAGES"):
        return Path(os.environ["TINYKUBE_TEST_IMAGES"])
    if os.geteuid() == 0:
        return SYSTEM_CACHE
    return Path.home() / ".cache" / "tinykube-test-images"


def build_test_images() -> Path:
    """The OCI layouts and archives of busybox and nginx, built once and then reused."""
    cache = image_cache()
    subprocess.run([str(BUILDER), str(cache)], check=True)
    return cache


@dataclass
class LocalRegistry:
    """One ``docker-registry serve`` process; ``auth`` adds a ``token`` section to its config."""

    storage: Path
    port: int = field(default_factory=free_port)
    auth: dict[str, str] = field(default_factory=dict)
    access_log: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _config(self) -> Path:
        lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", f"    disabled: {str(not self.access_log).lower()}",
                 "storage:", "  filesystem:", f"    rootdirectory: {self.storage}", "  delete:", "    enabled: true",
                 "http:", f"  addr: {self.address}"]
        if self.auth:
            lines += ["auth:", "  token:", *(f"    {k}: {v}" for k, v in self.auth.items())]
        path = self.storage.parent / f"registry-{self.port}.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def log(self) -> Path:
        return self.storage.parent / f"registry-{self.port}.log"

    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request in the access log (with ``access_log=True``)."""
        return re.findall(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/', self.log.read_text())

    def start(self) -> LocalRegistry:
        self.storage.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([str(DOCKER_REGISTRY), "serve", str(self._config())], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}; see {log.name}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.address}")

    def _answers(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.url}/v2/", timeout=1):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # a token-auth registry answers 401 once it is up
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`; by PID, never by name."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def push(self, images: Path) -> None:
        subprocess.run([str(BUILDER), "--push", self.address, str(images)], check=True, capture_output=True)

    def mirror_registries(self, config_dir: Path) -> Path:
        """Writes ``<config_dir>/<registry>/hosts.toml`` with this registry as mirror and server, for
        docker.io and registry.k8s.io (the test images' names)."""
        for mirrored in ("docker.io", "registry.k8s.io"):
            hosts = config_dir / mirrored / "hosts.toml"
            hosts.parent.mkdir(parents=True, exist_ok=True)
            hosts.write_text(f'server = "{self.url}"\n\n[host."{self.url}"]\n  capabilities = ["pull", "resolve"]\n')
        return config_dir


@pytest.fixture(scope="session")
def built_images() -> Path:
    return build_test_images()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, built_images: Path) -> Iterator[LocalRegistry]:
    """A registry shared by the session's tests, holding busybox and nginx."""
    base = tmp_path_factory.mktemp("registry")
    local = LocalRegistry(base / "storage")
    try:
        local.start().push(built_images)
        yield local
    finally:
        local.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_registry(tmp_path: Path, built_images: Path) -> Iterator[LocalRegistry]:
    """A registry of the test's own, to stop or damage."""
    local = LocalRegistry(tmp_path / "own-registry", access_log=True)
    try:
        local.start().push(built_images)
        yield local
    finally:
        local.stop()
