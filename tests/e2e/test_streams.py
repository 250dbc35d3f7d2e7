"""Into running Pods: exec, attach, cp and port-forward with the real kubectl (1.27 to 1.33) and the Python client.

kubectl 1.30+ speaks WebSocket (v5.channel.k8s.io; port-forward tunnels SPDY in a WebSocket) and
falls back to SPDY/3.1, which kubectl 1.27-1.29 always uses for exec; both paths are driven here.
Traffic goes only to 127.0.0.1 and to pods tinykube made; every process started is stopped by PID.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.stream import stream
from kubernetes.stream.ws_client import create_websocket

from tests.e2e.cluster import Cluster, free_port
from tests.e2e.nodes import node_cluster_fixture
from tests.registry import LocalRegistry, requires_registry

pytestmark = [pytest.mark.slow, requires_registry]

SDK = Path("/usr/lib/google-cloud-sdk/bin")
MINORS = [m for m in range(27, 34) if (SDK / f"kubectl.1.{m}").exists()]
SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
WAIT = 30.0  # seconds any single expectation may take
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[Cluster]:
    for cluster in node_cluster_fixture(tmp_path_factory.mktemp("streams"), registry):
        start_pods(cluster)
        yield cluster


def start_pods(cluster: Cluster) -> None:
    """nginx; a talker on stdout and stderr (attach); a server on the pod's own localhost only."""
    cluster.kubectl("apply", "-f", "nginx-pod.yaml")
    cluster.kubectl("run", "talker", "--image=busybox:1.36", "--",
                    "sh", "-c", "while true; do echo out; echo err >&2; sleep 0.2; done")
    cluster.kubectl("run", "local-only", "--image=busybox:1.36", "--",
                    "sh", "-c", "mkdir /www && echo only-on-localhost > /www/index.html && "
                                "exec httpd -f -p 127.0.0.1:8081 -h /www")
    cluster.kubectl("wait", "--for=condition=Ready", "pod/nginx-pod", "pod/talker", "pod/local-only", "--timeout=90s")


def kubectl(node: Cluster, *args: str, binary: str = "kubectl", env: dict[str, str] | None = None,
            input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """A kubectl binary of our choice (run directly: the SDK's dispatcher would pick by server version)."""
    return subprocess.run([binary, *args], input=input, capture_output=True, timeout=timeout,
                          env={**node.env(), **(env or {})}, cwd=node.data_dir.parent)


def minor(m: int) -> str:
    return str(SDK / f"kubectl.1.{m}")


# ---- exec ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", [{}, SPDY], ids=["websocket", "spdy"])
def test_exec_output_exit_code_and_stdin(node: Cluster, env: dict[str, str]) -> None:
    assert kubectl(node, "exec", "nginx-pod", "--", "cat", "/etc/hostname", env=env).stdout == b"nginx-pod\n"
    failed = kubectl(node, "exec", "nginx-pod", "--", "sh", "-c", "echo out; echo err >&2; exit 3", env=env)
    assert (failed.returncode, failed.stdout) == (3, b"out\n")
    assert failed.stderr == b"err\ncommand terminated with exit code 3\n"
    counted = kubectl(node, "exec", "-i", "nginx-pod", "--", "wc", "-c", env=env, input=b"12345")
    assert (counted.returncode, counted.stdout.strip()) == (0, b"5")


@pytest.mark.parametrize("m", MINORS)
def test_exec_with_every_kubectl_minor(node: Cluster, m: int) -> None:
    done = kubectl(node, "exec", "-i", "nginx-pod", "--", "sh", "-c", "cat; hostname; exit 4", binary=minor(m),
                   input=b"in\n")
    assert (done.returncode, done.stdout) == (4, b"in\nnginx-pod\n")
    assert b"command terminated with exit code 4" in done.stderr


def test_exec_refusals_read_as_from_kubernetes(node: Cluster) -> None:
    def error(*args: str) -> str:
        done = kubectl(node, *args)
        assert done.returncode == 1
        return done.stderr.decode().strip()
    assert error("exec", "nginx-pod", "-c", "nosuch", "--", "true") == \
        "Error from server (BadRequest): container nosuch is not valid for pod nginx-pod"
    assert error("exec", "nginx-pod", "--", "nosuch") == (
        "error: Internal error occurred: error executing command in container: OCI runtime exec failed: exec failed: "
        'unable to start container process: exec: "nosuch": executable file not found in $PATH: unknown')
    node.kubectl("run", "unschedulable", "--image=busybox:1.36", "--overrides",
                 json.dumps({"spec": {"nodeSelector": {"no": "such-node"}}}), "--", "sleep", "1000")
    assert error("exec", "unschedulable", "--", "true") == \
        "Error from server (BadRequest): pod unschedulable does not have a host assigned"
    node.kubectl("run", "finished", "--image=busybox:1.36", "--restart=Never", "--", "true")
    node.kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/finished", "--timeout=60s")
    assert error("exec", "finished", "--", "true") == \
        "error: cannot exec into a container in a completed pod; current phase is Succeeded"
    node.kubectl("delete", "pod", "unschedulable", "finished", "--grace-period=0", "--force", check=False)


class Terminal:
    """kubectl on a pseudo-terminal of ours, as a person at a shell would run it."""

    def __init__(self, node: Cluster, binary: str, env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.resize(30, 100, slave)
        self.proc = subprocess.Popen([binary, "exec", "-it", "nginx-pod", "--", "sh"], stdin=slave, stdout=slave,
                                     stderr=slave, env={**node.env(), **env}, start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.seen = b""

    def resize(self, rows: int, cols: int, fd: int | None = None) -> None:
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def expect(self, pattern: bytes) -> bytes:
        deadline = time.monotonic() + WAIT
        while pattern not in self.seen:
            assert time.monotonic() < deadline, f"{pattern!r} never came: {self.seen!r}"
            if select.select([self.master], [], [], 0.2)[0]:
                self.seen += os.read(self.master, 4096)
        before, _, self.seen = self.seen.partition(pattern)
        return before

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.mark.parametrize(("binary", "env"), [("kubectl", {}), ("kubectl", SPDY)] + [(minor(m), {}) for m in MINORS],
                         ids=["websocket", "spdy"] + [f"1.{m}" for m in MINORS])
def test_interactive_shell_with_resize(node: Cluster, binary: str, env: dict[str, str]) -> None:
    term = Terminal(node, binary, env)
    try:
        term.expect(b"# ")
        term.type("stty size")
        assert term.expect(b"# ").split(b"\r\n")[1] == b"30 100"
        term.resize(42, 132)
        os.kill(term.proc.pid, signal.SIGWINCH)  # what the terminal does on a resize
        time.sleep(0.5)
        term.type("stty size")
        assert term.expect(b"# ").split(b"\r\n")[1] == b"42 132"
        term.type("exit 6")
        assert term.proc.wait(WAIT) == 6
    finally:
        term.close()


def test_python_client_exec(node: Cluster) -> None:
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(node.kubeconfig)))
    out = stream(core.connect_get_namespaced_pod_exec, "nginx-pod", "default", command=["sh", "-c", "echo hi"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "hi\n"
    for command, code in ((["sh", "-c", "exit 7"], 7), (["true"], 0)):
        resp = stream(core.connect_get_namespaced_pod_exec, "nginx-pod", "default", command=command, stderr=True,
                      stdin=False, stdout=True, tty=False, _preload_content=False)
        resp.run_forever(timeout=WAIT)
        assert resp.returncode == code
    interactive = stream(core.connect_get_namespaced_pod_exec, "nginx-pod", "default", command=["cat"], stderr=True,
                         stdin=True, stdout=True, tty=False, _preload_content=False)
    interactive.write_stdin("echo me\n")
    deadline = time.monotonic() + WAIT
    while not interactive.peek_stdout() and time.monotonic() < deadline:
        interactive.update(timeout=1)
    assert interactive.read_stdout() == "echo me\n"
    interactive.close()


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
                                      "base64.channel.k8s.io"])
def test_older_and_base64_channel_protocols(node: Cluster, protocol: str) -> None:
    """v4 ends with a Status JSON, earlier protocols with the failure's message; base64 ones send text."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(node.kubeconfig), client_configuration=cfg)
    url = cfg.host.replace("https://", "wss://") + ("/api/v1/namespaces/default/pods/nginx-pod/exec?"
                                                     "command=sh&command=-c&command=echo+hi%3B+exit+2&stdout=true")
    ws = create_websocket(cfg, url, {"sec-websocket-protocol": protocol})
    received: dict[int, bytes] = {}
    try:
        assert ws.getheaders()["sec-websocket-protocol"] == protocol
        while (frame := ws.recv()) not in ("", b""):
            assert isinstance(frame, str) == ("base64" in protocol)
            if isinstance(frame, str):
                channel, data = int(frame[0]), base64.b64decode(frame[1:])
            else:
                channel, data = frame[0], frame[1:]
            received[channel] = received.get(channel, b"") + data
    finally:
        ws.close()
    assert received[1] == b"hi\n"
    message = "command terminated with non-zero exit code: error executing command [sh -c echo hi; exit 2], exit code 2"
    if protocol.startswith("v4"):
        assert json.loads(received[3])["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]
    else:
        assert received[3].decode() == message


# ---- attach --------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", [{}, SPDY], ids=["websocket", "spdy"])
def test_attach_follows_the_main_process(node: Cluster, env: dict[str, str]) -> None:
    attached = subprocess.Popen(["kubectl", "attach", "talker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**node.env(), **env})
    try:
        time.sleep(1.5)
    finally:
        attached.kill()
        out, err = attached.communicate()
    assert out.count(b"out\n") >= 3 and b"err" not in out
    assert err.count(b"err\n") >= 3


# ---- cp ------------------------------------------------------------------------------------------

def digest(path: Path) -> dict[str, str]:
    files = [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.parametrize("binary", ["kubectl", minor(27)], ids=["websocket", "spdy-1.27"])
def test_cp_both_ways_byte_for_byte(node: Cluster, tmp_path: Path, binary: str) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024))
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "top.txt").write_text("top\n")
    (tree / "a" / "b" / "deep.bin").write_bytes(os.urandom(300_000))
    (tree / "a" / "empty").write_bytes(b"")
    remote = f"/tmp/cp-{tmp_path.name}"
    for args in (("cp", str(big), f"nginx-pod:{remote}.bin"),
                 ("cp", f"nginx-pod:{remote}.bin", str(tmp_path / "back.bin")),
                 ("cp", str(tree), f"nginx-pod:{remote}"),
                 ("cp", f"nginx-pod:{remote}", str(tmp_path / "tree-back"))):
        done = kubectl(node, *args, binary=binary)
        assert done.returncode == 0, done.stderr
    assert digest(tmp_path / "back.bin") == digest(big)
    assert digest(tmp_path / "tree-back") == digest(tree)


# ---- port-forward --------------------------------------------------------------------------------

class Forward:
    """``kubectl port-forward`` to a pod port on a free local port, stopped by PID."""

    def __init__(self, node: Cluster, pod: str, port: int, env: dict[str, str], binary: str = "kubectl") -> None:
        self.local = free_port()
        self.proc = subprocess.Popen([binary, "port-forward", f"pod/{pod}", f"{self.local}:{port}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**node.env(), **env})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith(b"Forwarding from 127.0.0.1:"), line + self.proc.stderr.read()  # type: ignore[union-attr]

    def get(self, path: str = "/") -> bytes:
        with NO_PROXY.open(f"http://127.0.0.1:{self.local}{path}", timeout=WAIT) as resp:
            return bytes(resp.read())

    def stop(self) -> tuple[bytes, bytes]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.communicate()


@pytest.mark.parametrize(("binary", "env"), [("kubectl", {}), ("kubectl", {"PORT_FORWARD_WEBSOCKETS": "false"}),
                                             (minor(27), {})], ids=["websocket", "spdy", "1.27"])
def test_port_forward_serves_nginx_concurrently(node: Cluster, binary: str, env: dict[str, str]) -> None:
    page = kubectl(node, "exec", "nginx-pod", "--", "cat", "/usr/share/nginx/html/index.html").stdout
    forward = Forward(node, "nginx-pod", 80, env, binary)
    try:
        assert forward.get() == page and b"Welcome to nginx!" in page
        with ThreadPoolExecutor(50) as pool:
            pages = list(pool.map(lambda _: forward.get(), range(50)))
        assert pages == [page] * 50
    finally:
        forward.stop()


def test_port_forward_reaches_the_pods_own_localhost(node: Cluster) -> None:
    forward = Forward(node, "local-only", 8081, {})
    try:
        assert forward.get("/index.html") == b"only-on-localhost\n"
    finally:
        forward.stop()


def test_port_forward_to_a_closed_port_reports_the_error(node: Cluster) -> None:
    forward = Forward(node, "nginx-pod", 81, {})
    try:
        with pytest.raises(OSError):
            forward.get()
        forward.proc.wait(WAIT)
    finally:
        _, err = forward.stop()
    assert re.search(rb'an error occurred forwarding \d+ -> 81: error forwarding port 81 to pod [-0-9a-f]+, uid : '
                     rb'failed to connect to localhost:81 inside namespace \\?"[-0-9a-f]+\\?": dial tcp4 127.0.0.1:81: '
                     rb"connect: connection refused", err), err
    assert err.rstrip().endswith(b"error: lost connection to pod")


def test_attach_sends_stdin_to_the_main_process(node: Cluster) -> None:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "listener"},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                    {"name": "main", "image": "busybox:1.36", "stdin": True,
                     "command": ["sh", "-c", "while read line; do echo got $line; done"]}]}}
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    node.kubectl("wait", "--for=condition=Ready", "pod/listener", "--timeout=60s")
    attached = subprocess.Popen(["kubectl", "attach", "-i", "listener"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=node.env())
    try:
        attached.stdin.write(b"hello\n")  # type: ignore[union-attr]
        attached.stdin.flush()  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while "got hello" not in node.kubectl("logs", "listener").stdout:
            assert time.monotonic() < deadline, "stdin never reached the container"
            time.sleep(0.2)
    finally:
        attached.kill()
        attached.communicate()
    node.kubectl("delete", "pod", "listener")


def test_attach_to_a_tty_container(node: Cluster) -> None:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "term"},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                    {"name": "main", "image": "busybox:1.36", "stdin": True, "tty": True, "command": ["sh"]}]}}
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    node.kubectl("wait", "--for=condition=Ready", "pod/term", "--timeout=60s")
    pid, fd = pty.fork()
    if pid == 0:  # the child becomes kubectl on a terminal of its own
        os.execvpe("kubectl", ["kubectl", "attach", "-it", "term"], node.env())
    try:
        time.sleep(2)
        os.write(fd, b"echo hi-$((1+2))\r")
        out, deadline = b"", time.monotonic() + 10
        while b"hi-3" not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                out += os.read(fd, 4096)
        assert b"hi-3" in out, out
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    node.kubectl("delete", "pod", "term")
