"""The kernel enforces what a pod spec promises: ephemeral-storage limits evict, memory limits OOM-kill,
the pids limit stops a fork bomb, and a non-privileged container cannot see or change the host.

A real node (`tinykube up`, runc under conmon, the local registry's busybox); nothing here starves
the machine: the memory hog is capped at 32 MiB and the writers at 30 MiB.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, eventually, status_column
from tests.e2e.nodes import node_cluster_fixture
from tests.e2e.test_pods import busybox_pod, pod
from tests.registry import LocalRegistry, requires_registry

pytestmark = [pytest.mark.slow, requires_registry]

PIDS = Path("/sys/fs/cgroup/pids/tinykube")
CAP_SYS_MODULE, CAP_SYS_ADMIN = 16, 21  # capability bits
HOST_SYSCTLS = ("/proc/sys/kernel/pid_max", "/proc/sys/vm/overcommit_memory")
EVICTION_WAIT = 45.0  # seconds: an eviction pass runs every 10 s, after the pod started and wrote


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[Cluster]:
    yield from node_cluster_fixture(tmp_path_factory.mktemp("enforce"), registry)


def busybox(name: str, script: str, restart: str = "Always", volumes: list[dict[str, Any]] | None = None,
            **container: Any) -> str:
    """``busybox_pod`` with extra container fields (resources, volumeMounts) and volumes."""
    doc = json.loads(busybox_pod(name, script, restart))
    doc["spec"]["containers"][0].update(container)
    if volumes:
        doc["spec"]["volumes"] = volumes
    return json.dumps(doc)


def exec_in(node: Cluster, name: str, script: str) -> tuple[int, str]:
    """Run ``sh -c script`` in the pod; its exit code and everything it printed."""
    done = node.kubectl("exec", name, "--", "sh", "-c", script, check=False)
    return done.returncode, done.stdout + done.stderr


def test_ephemeral_storage_limits_evict(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox(
        "filler", "dd if=/dev/zero of=/fill bs=1M count=30 && sleep 3600",
        resources={"limits": {"ephemeral-storage": "10Mi"}}))
    node.kubectl("apply", "-f", "-", input=busybox(
        "scratch", "dd if=/dev/zero of=/cache/fill bs=1M count=20 && sleep 3600",
        volumes=[{"name": "cache", "emptyDir": {"sizeLimit": "5Mi"}}],
        volumeMounts=[{"name": "cache", "mountPath": "/cache"}]))
    for name in ("filler", "scratch"):
        eventually(lambda: pod(node, name)["status"].get("reason") == "Evicted", f"{name} evicted", EVICTION_WAIT)
    filler, scratch = pod(node, "filler")["status"], pod(node, "scratch")["status"]
    assert (filler["phase"], filler["message"]) == \
        ("Failed", "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. ")
    assert (scratch["phase"], scratch["message"]) == ("Failed", 'Usage of EmptyDir volume "cache" exceeds the limit "5Mi". ')
    assert "terminated" in filler["containerStatuses"][0]["state"]  # so STATUS shows the container's reason, as upstream
    describe = node.kubectl("describe", "pod", "filler").stdout
    assert re.search(r"^Status:\s+Failed$", describe, re.M) and re.search(r"^Reason:\s+Evicted$", describe, re.M)
    events = node.kubectl("get", "events", "--field-selector", "involvedObject.name=filler,reason=Evicted").stdout
    assert "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi." in events
    node.kubectl("delete", "pod", "filler", "scratch")


def test_memory_limit_oom_kills_only_the_hog(node: Cluster) -> None:
    hog = "head -c 100m /dev/zero | tail"  # tail keeps the one 100 MiB "line" in memory
    limits = {"limits": {"memory": "32Mi"}}
    node.kubectl("apply", "-f", "-", input=busybox_pod("neighbour", "sleep 3600"))
    node.kubectl("apply", "-f", "-", input=busybox("oom-once", hog, "Never", resources=limits))
    node.kubectl("apply", "-f", "-", input=busybox("oom-loop", hog, resources=limits))
    eventually(lambda: status_column(node, "oom-once") == "OOMKilled", "STATUS OOMKilled")
    terminated = pod(node, "oom-once")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    eventually(lambda: status_column(node, "oom-loop") == "CrashLoopBackOff", "STATUS CrashLoopBackOff")
    describe = node.kubectl("describe", "pod", "oom-loop").stdout
    assert re.search(r"Last State:\s+Terminated\n\s+Reason:\s+OOMKilled\n\s+Exit Code:\s+137", describe), describe
    calm = pod(node, "neighbour")["status"]
    assert calm["phase"] == "Running" and calm["containerStatuses"][0]["restartCount"] == 0
    node.kubectl("delete", "pod", "oom-once", "oom-loop")


def test_fork_bomb_is_stopped_by_the_pids_limit(node: Cluster) -> None:
    # The bomb's first refusals go to the log through head (then the pipe closes: no flood); PID 1
    # then becomes sleep without forking, and the bomb's orphans end as zombies holding their pids.
    bomb = "f(){ f|f& }; f 2>&1 | head -n 3; echo contained; exec sleep 3600"
    node.kubectl("apply", "-f", "-", input=busybox_pod("bomb", bomb, "Never"))
    eventually(lambda: "contained" in node.kubectl("logs", "bomb", check=False).stdout, "the bomb to hit the limit")
    assert "can't fork: Resource temporarily unavailable" in node.kubectl("logs", "bomb").stdout
    cgroup = PIDS / "besteffort" / f"pod{pod(node, 'bomb')['metadata']['uid']}"
    assert (cgroup / "pids.max").read_text().strip() == "4096"
    refused = sum(int(f.read_text().split()[1]) for f in cgroup.rglob("pids.events"))  # counted where fork was tried
    assert refused > 0
    assert int((cgroup / "pids.current").read_text()) <= 4096
    started = time.monotonic()
    assert "bomb" in node.kubectl("get", "pods").stdout
    assert time.monotonic() - started < 5, "the API stays responsive beside the bomb"
    node.kubectl("delete", "pod", "bomb", "--timeout=60s")
    assert not cgroup.exists()


def test_a_container_cannot_reach_the_host(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod("jail", "sleep 3600"))
    node.kubectl("wait", "--for=condition=Ready", "pod/jail", "--timeout=60s")
    code, out = exec_in(node, "jail", "ps -o pid,comm")
    rows = [line.split() for line in out.strip().splitlines()[1:]]
    assert code == 0 and ["1", "sleep"] in rows and {r[1] for r in rows} <= {"sleep", "sh", "ps"}, out
    code, out = exec_in(node, "jail", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m")
    assert code != 0 and "permission denied" in out.lower(), out
    code, out = exec_in(node, "jail", "grep CapBnd /proc/self/status")
    bounding = int(out.split()[1], 16)
    assert not bounding & (1 << CAP_SYS_MODULE | 1 << CAP_SYS_ADMIN), out  # not even a setuid binary regains them
    code, out = exec_in(node, "jail", "insmod /bin/busybox")  # ENOSYS on a kernel without modules, else EPERM
    assert code != 0 and ("Operation not permitted" in out or "does not support" in out), out
    host = {name: Path(name).read_text().strip() for name in HOST_SYSCTLS}
    for target, text in [*host.items(), ("/proc/sys/kernel/hostname", "x")]:  # the host's own values: harmless
        code, out = exec_in(node, "jail", f"echo {text} > {target}")
        assert code != 0 and "Read-only file system" in out, (target, out)
    assert {name: Path(name).read_text().strip() for name in HOST_SYSCTLS} == host
    node.kubectl("delete", "pod", "jail", "neighbour")
