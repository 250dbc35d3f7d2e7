"""A real ``tinykube server`` process in a temporary directory, driven by the real kubectl.

Every server a test starts is ended by PID in teardown, even when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TINYKUBE = [sys.executable, "-m", "tinykube.cli.main"]


WAIT = 30.0  # seconds any single expectation in an e2e test may take


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop a process we started, by its PID: ``sig``, then SIGKILL if it outlives ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Cluster:
    """One control plane and a kubectl configured for it."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()
    command: str = "server"  # or "up": control plane and a node agent in one process

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        args = [*TINYKUBE, self.command, "--data-dir", str(self.data_dir), "--port", str(self.port), *self.extra_args]
        if self.command == "up":
            args.append("--no-kubeconfig")
        self.proc = subprocess.Popen(args,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tinykube server exited with {self.proc.returncode}; see {log.name}")
            if self.kubeconfig.exists() and self._ready():
                return
            time.sleep(0.05)
        raise RuntimeError("tinykube server did not become ready")

    def _ready(self) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self.data_dir.parent / "kubecache")
        return env

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl; with ``check`` a failure raises with its output."""
        result = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=self.env(),
                                timeout=timeout, cwd=EXAMPLES)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["kubectl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(),
                                cwd=EXAMPLES)


def status_column(cluster: Cluster, pod: str) -> str:
    """kubectl's STATUS column for a pod ("" while it does not exist)."""
    out = cluster.kubectl("get", "pod", pod, "--no-headers", check=False).stdout.split()
    return out[2] if len(out) > 2 else ""
