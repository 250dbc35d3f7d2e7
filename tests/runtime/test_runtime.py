"""The runtime with the real parts: runc, conmon, the CNI plugins, cgroups, busybox containers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.runtime.conftest import BRIDGE, Node
from tests.runtime.support import nsenter, wait_for_log
from tinykube.node.runtime import cgroups, pidns
from tinykube.node.runtime.cgroups import Resources
from tinykube.node.runtime.cni import PortMapping
from tinykube.node.runtime.containers import ContainerError, ContainerExists, ContainerStatus
from tinykube.node.runtime.sandbox import Sandboxes

pytestmark = pytest.mark.slow

CRI_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d stdout F hi$", re.M)
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


async def test_container_in_sandbox_logs_in_cri_format_with_pod_ip_and_hostname(node: Node) -> None:
    sandbox = await node.sandbox("web-1")
    started = time.perf_counter()
    status = await node.runtime.create_and_start(node.spec(sandbox, "app", ["sh", "-c", "echo hi; sleep 1000"]))
    print(f"create_and_start: {(time.perf_counter() - started) * 1000:.1f} ms")

    assert status.state == "running" and status.pid
    assert RFC3339_NANO.match(status.started_at) and status.finished_at == ""
    assert CRI_LINE.search(await wait_for_log(Path(status.log_path), "hi"))
    assert f"inet {sandbox.ip}/24" in nsenter(status.pid, "-n", "ip", "-o", "-4", "addr", "show", "eth0")
    assert nsenter(status.pid, "-u", "hostname").strip() == "web-1"
    assert sandbox.ip.startswith("10.42.250.") and sandbox.gateway == "10.42.250.1"
    hosts = sandbox.hosts_file.read_text()
    assert hosts.startswith("# Kubernetes-managed hosts file.\n") and f"{sandbox.ip}\tweb-1\n" in hosts


async def test_containers_of_a_pod_share_network_ipc_and_dev_shm(node: Node) -> None:
    sandbox = await node.sandbox("pair")
    a = await node.runtime.create_and_start(node.spec(sandbox, "a", ["sh", "-c", "echo shared > /dev/shm/x; sleep 1000"]))
    b = await node.runtime.create_and_start(node.spec(sandbox, "b", ["sh", "-c", "sleep 1000"]))
    assert a.pid and b.pid
    for ns, pin in (("net", sandbox.netns), ("ipc", sandbox.ipc), ("uts", sandbox.uts)):
        assert os.stat(f"/proc/{a.pid}/ns/{ns}").st_ino == os.stat(f"/proc/{b.pid}/ns/{ns}").st_ino == os.stat(pin).st_ino
    assert os.stat(f"/proc/{a.pid}/ns/pid").st_ino != os.stat(f"/proc/{b.pid}/ns/pid").st_ino
    reader = await node.runtime.create_and_start(node.spec(sandbox, "c", ["cat", "/dev/shm/x"]))
    assert (await asyncio.wait_for(node.runtime.wait_exit(reader.id), 5)).exit_code == 0
    assert "stdout F shared" in (node.base / "logs" / f"{reader.id}.log").read_text()


async def test_a_shared_pid_namespace_has_an_infra_pid_1_that_outlives_containers_and_reaps(node: Node) -> None:
    sandbox = await node.sandbox("shared", share_pid=True)
    assert sandbox.pid_ns is not None
    infra = pidns.members(sandbox.pid_ns)
    assert len(infra) == 1 and Path(f"/proc/{infra[0]}/cmdline").read_bytes() == b"catatonit\0-P\0"
    a = await node.runtime.create_and_start(node.spec(sandbox, "a", ["sleep", "1001"]))
    b = await node.runtime.create_and_start(node.spec(sandbox, "b", ["sleep", "1002"]))
    assert a.pid and b.pid and os.stat(f"/proc/{a.pid}/ns/pid").st_ino == os.stat(sandbox.pid_ns).st_ino
    seen = (await node.runtime.exec(b.id, ["ps", "-o", "pid,args"])).stdout.decode()
    assert re.search(r"^\s*1 catatonit -P$", seen, re.M) and "sleep 1001" in seen and "sleep 1002" in seen, seen
    await node.runtime.exec(b.id, ["sh", "-c", "sleep 0.1 &"])  # an orphan: PID 1 adopts it, and must reap it
    await node.runtime.stop(a.id, 0)
    again = await node.runtime.create_and_start(node.spec(sandbox, "a2", ["sleep", "1003"]))
    await asyncio.sleep(0.3)
    states = (await node.runtime.exec(again.id, ["ps", "-o", "stat,args"])).stdout.decode()
    assert "sleep 1002" in states and "sleep 1003" in states and " Z" not in states.replace("STAT", ""), states
    assert node.runtime.status(b.id).state == "running"  # a's exit took nothing else with it

    for status in node.runtime.list():
        await node.runtime.remove(status.id)
    await Sandboxes(node.base / "run", node.sandboxes.cni).remove(sandbox.pod_uid)  # as an agent after a restart
    assert not Path(f"/proc/{infra[0]}").exists()


async def test_a_pod_without_shared_pid_sees_only_its_own_processes(node: Node) -> None:
    sandbox = await node.sandbox("apart")
    assert sandbox.pid_ns is None
    a = await node.runtime.create_and_start(node.spec(sandbox, "a", ["sleep", "1001"]))
    b = await node.runtime.create_and_start(node.spec(sandbox, "b", ["sleep", "1002"]))
    seen = (await node.runtime.exec(b.id, ["ps", "-o", "pid,args"])).stdout.decode()
    assert "sleep 1001" not in seen and re.search(r"^\s*1 sleep 1002$", seen, re.M), seen
    assert a.pid


async def test_stop_sends_sigterm_then_sigkill_and_records_the_exit(node: Node) -> None:
    sandbox = await node.sandbox("stopper")
    status = await node.runtime.create_and_start(node.spec(sandbox, "app", ["sh", "-c", "sleep 1000"]))
    stopped = await node.runtime.stop(status.id, grace_seconds=0.5)
    assert stopped.state == "exited" and stopped.exit_code in (137, 143)
    assert RFC3339_NANO.match(stopped.finished_at) and stopped.finished_at >= stopped.started_at
    assert node.runtime.status(status.id) == stopped
    assert (await node.runtime.stop(status.id, 1)).exit_code == stopped.exit_code  # idempotent


async def test_exit_code_arrives_through_the_exit_event(node: Node) -> None:
    exits: asyncio.Queue[ContainerStatus] = asyncio.Queue()
    spec = node.spec(None, "fail", ["sh", "-c", "exit 3"])
    await node.runtime.create_and_start(spec, exits.put_nowait)
    exited = await asyncio.wait_for(exits.get(), 5)
    assert (exited.id, exited.state, exited.exit_code, exited.oom_killed) == (spec.id, "exited", 3, False)
    late: asyncio.Queue[ContainerStatus] = asyncio.Queue()
    node.runtime.watch_exit(spec.id, late.put_nowait)  # a watch after the exit still fires
    assert (await asyncio.wait_for(late.get(), 1)).exit_code == 3


async def test_memory_limit_ends_in_oom_kill(node: Node) -> None:
    uid = str(uuid.uuid4())
    node.pod_cgroup(uid)
    spec = node.spec(None, "hog", ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
                     cgroup_path=cgroups.container_cgroup(uid, "burstable", "hog"),
                     resources=Resources(memory_limit_bytes=20 * 1024 * 1024))
    status = await node.runtime.create_and_start(spec)
    exited = await asyncio.wait_for(node.runtime.wait_exit(status.id), 10)
    assert exited.oom_killed and exited.exit_code == 137


async def test_a_new_runtime_readopts_running_containers(node: Node) -> None:
    sandbox = await node.sandbox("survivor")
    spec = node.spec(sandbox, "app", ["sh", "-c", "sleep 1000"])
    first = await node.runtime.create_and_start(spec)

    restarted = node.new_runtime()
    listed = restarted.list()
    assert [(s.id, s.state, s.pid) for s in listed] == [(spec.id, "running", first.pid)]
    with pytest.raises(ContainerExists):
        await restarted.create_and_start(spec)
    assert [s.id for s in restarted.list()] == [spec.id]
    exits: asyncio.Queue[ContainerStatus] = asyncio.Queue()
    restarted.watch_exit(spec.id, exits.put_nowait)
    os.kill(first.pid, 9)
    exited = await asyncio.wait_for(exits.get(), 5)
    assert (exited.id, exited.exit_code) == (spec.id, 137)
    assert [s.pod_uid for s in Sandboxes(node.base / "run", node.sandboxes.cni).list()] == [sandbox.pod_uid]


async def test_two_sandboxes_reach_each_other_by_ip(node: Node) -> None:
    server_box = await node.sandbox("server")
    client_box = await node.sandbox("client")
    await node.runtime.create_and_start(node.spec(server_box, "httpd", ["httpd", "-f", "-p", "8080", "-h", "/"]))
    fetch = f"for i in $(seq 50); do wget -q -O - http://{server_box.ip}:8080/etc/hostname && exit 0; sleep 0.1; done; exit 1"
    client = await node.runtime.create_and_start(node.spec(client_box, "wget", ["sh", "-c", fetch]))
    assert (await asyncio.wait_for(node.runtime.wait_exit(client.id), 10)).exit_code == 0
    assert "stdout F server" in (node.base / "logs" / f"{client.id}.log").read_text()


async def test_cluster_cidrs_are_unreachable_except_the_local_bridge(node: Node) -> None:
    sandbox = await node.sandbox("routed")
    local = subprocess.run(["ip", "route", "get", sandbox.ip], capture_output=True, text=True)
    assert f"dev {BRIDGE}" in local.stdout
    for elsewhere in ("10.42.7.1", "10.43.255.254"):
        remote = subprocess.run(["ip", "route", "get", elsewhere], capture_output=True, text=True)
        assert remote.returncode != 0 and "No route to host" in remote.stderr


async def test_plain_readonly_rootfs_dir(node: Node) -> None:
    spec = node.spec(None, "ro", ["sh", "-c", "touch /x 2>/dev/null || echo readonly"], rootfs_layers=[],
                     rootfs_dir=node.busybox, readonly_rootfs=True)
    status = await node.runtime.create_and_start(spec)
    assert (await asyncio.wait_for(node.runtime.wait_exit(status.id), 5)).exit_code == 0
    assert "stdout F readonly" in (node.base / "logs" / f"{status.id}.log").read_text()


async def test_a_failed_create_is_undone(node: Node) -> None:
    spec = node.spec(None, "bad", ["/no/such/binary"])
    with pytest.raises(ContainerError, match="no such file"):
        await node.runtime.create_and_start(spec)
    assert node.runtime.list() == []
    assert not (node.base / "run" / "containers" / spec.id).exists()
    assert not (node.base / "state" / "containers" / spec.id).exists()


async def test_remove_is_idempotent_and_sandbox_remove_frees_the_ip(node: Node) -> None:
    sandbox = await node.sandbox("gone")
    status = await node.runtime.create_and_start(node.spec(sandbox, "app", ["sleep", "1000"]))
    await node.runtime.remove(status.id)
    await node.runtime.remove(status.id)
    assert node.runtime.list() == []
    await node.sandboxes.remove(sandbox.pod_uid)
    await node.sandboxes.remove(sandbox.pod_uid)
    assert not (node.base / "cni" / "tinykube" / sandbox.ip).exists()
    assert node.sandboxes.list() == []


async def test_pod_cgroup_in_every_hierarchy_and_removal_kills_leftovers(node: Node) -> None:
    uid = str(uuid.uuid4())
    path = node.pod_cgroup(uid, "BestEffort")
    assert path == f"/tinykube/besteffort/pod{uid}"
    for h in cgroups.hierarchies():
        assert (h.path / path.lstrip("/")).is_dir()
    assert (uid, "besteffort") in [(p.uid, p.qos) for p in cgroups.list_pod_cgroups()]
    stray = subprocess.Popen(["sleep", "1000"])
    memory = next(h for h in cgroups.hierarchies() if "memory" in h.controllers)
    (memory.path / path.lstrip("/") / "cgroup.procs").write_text(str(stray.pid))
    cgroups.remove_pod_cgroup(uid)
    assert stray.wait(5) == -9
    assert all(not (h.path / path.lstrip("/")).exists() for h in cgroups.hierarchies())


async def test_host_port_reaches_the_pod_through_portmap(node: Node) -> None:
    sandbox = await node.sandbox("ported", port_mappings=[PortMapping(18080, 8080, "TCP", "127.0.0.1")])
    await node.runtime.create_and_start(node.spec(sandbox, "httpd", ["httpd", "-f", "-p", "8080", "-h", "/"]))
    reply = b""
    for _ in range(50):  # until httpd listens
        with contextlib.suppress(ConnectionError):
            reader, writer = await asyncio.open_connection("127.0.0.1", 18080)
            writer.write(b"GET /etc/hostname HTTP/1.0\r\n\r\n")
            reply = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            if reply:
                break
        await asyncio.sleep(0.1)
    assert reply.startswith(b"HTTP/1.") and reply.endswith(b"\r\n\r\nported\n")
    await node.sandboxes.remove(sandbox.pod_uid)
    rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    assert "18080" not in rules
