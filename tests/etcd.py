"""A real etcd on 127.0.0.1 (Debian's ``etcd-server``), one member or a cluster of three.

Each member gets a free client port and a free peer port on loopback, its own data directory
under one temporary directory (on ``/dev/shm`` where there is one, so fsync costs nothing) and
its own log file there.  With a :class:`~tinykube.pki.Pki`, clients must speak TLS and present
a certificate signed by its CA (etcd's ``--client-cert-auth``).  Short heartbeat and election
timeouts let a cluster elect a new leader within a second of losing one.  ``stop`` ends every
process the cluster started, by PID (SIGTERM, then SIGKILL), and removes the directory;
``etcd_cluster`` calls it however its block ends.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.registry import free_port
from tinykube.pki import Pki

ETCD = Path("/usr/bin/etcd")
START_TIMEOUT = 20.0  # seconds for every member to report itself healthy
STOP_TIMEOUT = 2.0  # seconds between SIGTERM and SIGKILL (a leader that lost a peer may hang on exit)
HEARTBEAT_MS, ELECTION_MS = 50, 500  # test timings: a lost leader is replaced within a second

requires_etcd = pytest.mark.skipif(not ETCD.exists(), reason="needs Debian's etcd-server (/usr/bin/etcd)")


@dataclass
class Member:
    """One etcd process: its name, ports, data directory and, once started, its process."""

    name: str
    base: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    tls: Pki | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str) -> None:
        args = [str(ETCD), "--name", self.name, "--data-dir", str(self.base / self.name),
                "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.base.name,
                "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
                "--logger", "zap", "--log-outputs", "stderr"]
        if self.tls:
            args += ["--cert-file", self.tls.serving_cert, "--key-file", self.tls.serving_key,
                     "--trusted-ca-file", self.tls.ca_cert, "--client-cert-auth"]
        with open(self.base / f"{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        """True once the member answers ``/health`` with a leader elected."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"etcd {self.name} is not running; see {self.base / self.name}.log")
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self.tls:
            context = ssl.create_default_context(cafile=self.tls.ca_cert)
            context.load_cert_chain(self.tls.admin_cert, self.tls.admin_key)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        try:
            with urllib.request.build_opener(*handlers).open(f"{self.client_url}/health", timeout=1) as response:
                return b'"health":"true"' in response.read()
        except (urllib.error.HTTPError, OSError):
            return False

    def terminate(self) -> None:
        """SIGTERM, by PID (never by name); :meth:`stop` waits for the exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`."""
        self.terminate()
        if self.proc is None:
            return
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL at once: a crashed member."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()


class EtcdCluster:
    """``size`` members forming one new cluster in a temporary directory (TLS for clients with ``tls``)."""

    def __init__(self, size: int = 1, tls: Pki | None = None) -> None:
        shm = Path("/dev/shm")
        self.base = Path(tempfile.mkdtemp(prefix="tinykube-etcd-", dir=shm if shm.is_dir() else None))
        self.members = [Member(f"m{i}", self.base, tls=tls) for i in range(size)]

    @property
    def endpoints(self) -> list[str]:
        return [member.endpoint for member in self.members]

    def member(self, endpoint: str) -> Member:
        return next(member for member in self.members if member.endpoint == endpoint)

    def start(self) -> EtcdCluster:
        """Start every member and wait until each one is healthy; stops everything on failure."""
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        try:
            for member in self.members:
                member.start(initial)
            deadline = time.monotonic() + START_TIMEOUT
            while not all(member.healthy() for member in self.members):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd did not become healthy; logs in {self.base}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every member this cluster started (all signalled first), then remove its directory."""
        for member in self.members:
            member.terminate()
        for member in self.members:
            member.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def etcd_cluster(size: int = 1, tls: Pki | None = None) -> Iterator[EtcdCluster]:
    """A started cluster, stopped and removed when the block ends, however it ends."""
    cluster = EtcdCluster(size, tls)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
