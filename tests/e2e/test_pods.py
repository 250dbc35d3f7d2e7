"""Pods run as real containers: `tinykube up`, the real kubectl, runc under conmon, CNI, a local registry.

Traffic goes only to 127.0.0.1 (API, registry) and to pod IPs in namespaces tinykube made.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import EXAMPLES, Cluster, eventually, status_column
from tests.e2e.nodes import node_cluster_fixture
from tests.registry import LocalRegistry, requires_registry

pytestmark = [pytest.mark.slow, requires_registry]

@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[Cluster]:
    yield from node_cluster_fixture(tmp_path_factory.mktemp("node"), registry)


def pod(node: Cluster, name: str, ns: str = "default") -> dict[str, Any]:
    return json.loads(node.kubectl("-n", ns, "get", "pod", name, "-o", "json").stdout)


def fetch(url: str) -> bytes:
    """GET through no proxy; b"" while nothing answers yet."""
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as resp:
            return bytes(resp.read())
    except OSError:
        return b""


def busybox_pod(name: str, script: str, restart: str = "Always", image: str = "busybox:1.36") -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                                "containers": [{"name": "main", "image": image, "command": ["sh", "-c", script]}]}})


def test_nginx_pod_runs_and_serves(node: Cluster) -> None:
    node.kubectl("apply", "-f", "nginx-pod.yaml")
    started = time.monotonic()
    node.kubectl("wait", "--for=condition=Ready", "pod/nginx-pod", "--timeout=60s")
    took = time.monotonic() - started
    p = pod(node, "nginx-pod")
    ip = p["status"]["podIP"]
    assert ip.startswith("10.42.") and p["spec"]["nodeName"] == "node-1"
    assert eventually(lambda: b"Welcome to nginx!" in fetch(f"http://{ip}/"), "nginx's page")  # Running ≠ listening yet
    wide = node.kubectl("get", "pods", "-o", "wide").stdout
    assert ip in wide and "node-1" in wide and "Running" in wide
    describe = node.kubectl("describe", "pod", "nginx-pod").stdout
    rows = describe.split("Events:")[1].splitlines()
    reasons = [line.split()[1] for line in rows if line.strip().startswith(("Normal", "Warning"))]
    assert reasons[0] == "Scheduled", describe
    assert [r for r in reasons if r in ("Pulled", "Created", "Started")] == ["Pulled", "Created", "Started"], describe
    eventually(lambda: "GET / HTTP/1.1" in node.kubectl("logs", "nginx-pod").stdout, "the curl in the access log")
    print(f"nginx-pod Ready {took:.2f} s after apply (first pull included on a cold node)")


def test_exit_zero_with_never_completes(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod("once", "echo done", "Never"))
    eventually(lambda: status_column(node, "once") == "Completed", "Completed")
    assert pod(node, "once")["status"]["phase"] == "Succeeded"
    assert node.kubectl("logs", "once").stdout == "done\n"
    node.kubectl("delete", "pod", "once")


def test_crash_loop_backs_off_and_keeps_previous_logs(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod("crasher", "echo run at $(date +%s%N); exit 1"))
    eventually(lambda: status_column(node, "crasher") == "CrashLoopBackOff", "CrashLoopBackOff")
    restarts = eventually(lambda: pod(node, "crasher")["status"]["containerStatuses"][0]["restartCount"] >= 1, "a restart")
    assert restarts
    state = pod(node, "crasher")["status"]["containerStatuses"][0]
    assert state["lastState"]["terminated"]["exitCode"] == 1
    previous = node.kubectl("logs", "crasher", "--previous").stdout
    assert previous.startswith("run at ")
    assert "BackOff" in node.kubectl("describe", "pod", "crasher").stdout
    node.kubectl("delete", "pod", "crasher")


def test_on_failure_restarts_only_failures(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod("fails-once", "test -e /tmp/x && exit 0; touch /tmp/x; exit 2",
                                                      "OnFailure"))
    # the writable layer survives in the same attempt only, so the retry fails too: restarts grow
    eventually(lambda: pod(node, "fails-once")["status"]["containerStatuses"][0]["restartCount"] >= 1, "a restart")
    node.kubectl("apply", "-f", "-", input=busybox_pod("ok-once", "exit 0", "OnFailure"))
    eventually(lambda: status_column(node, "ok-once") == "Completed", "Completed")
    assert pod(node, "ok-once")["status"]["containerStatuses"][0]["restartCount"] == 0
    node.kubectl("delete", "pod", "fails-once", "ok-once")


def test_missing_image_then_fixed(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod("pull", "sleep 3600", image="busybox:does-not-exist"))
    eventually(lambda: status_column(node, "pull") in ("ErrImagePull", "ImagePullBackOff"), "ErrImagePull")
    eventually(lambda: status_column(node, "pull") == "ImagePullBackOff", "ImagePullBackOff")
    events = node.kubectl("get", "events", "--field-selector", "involvedObject.name=pull").stdout
    assert "Failed to pull image" in events and "not found" in events, events
    node.kubectl("apply", "-f", "-", input=busybox_pod("pull", "sleep 3600"))
    node.kubectl("wait", "--for=condition=Ready", "pod/pull", "--timeout=60s")
    node.kubectl("delete", "pod", "pull")


def _leftovers(uid: str) -> list[str]:
    found = []
    if any(uid in line for line in Path("/proc/mounts").read_text().splitlines()):
        found.append("mount")
    if list(Path("/sys/fs/cgroup/memory/tinykube").glob(f"*/pod{uid}")):
        found.append("cgroup")
    conmons = subprocess.run(["pgrep", "-a", "conmon"], capture_output=True, text=True).stdout
    if uid in conmons:
        found.append("conmon")
    return found


def test_delete_removes_everything(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod("doomed", "trap 'exit 0' TERM; sleep 3600 & wait"))
    node.kubectl("wait", "--for=condition=Ready", "pod/doomed", "--timeout=60s")
    uid = pod(node, "doomed")["metadata"]["uid"]
    ip = pod(node, "doomed")["status"]["podIP"]
    node.kubectl("delete", "pod", "doomed")
    assert node.kubectl("get", "pod", "doomed", check=False).returncode != 0
    assert _leftovers(uid) == []
    run_dir = Path(node.extra_args[node.extra_args.index("--run-dir") + 1])
    runc = subprocess.run(["runc", "--root", str(run_dir / "runc"), "list", "-q"], capture_output=True, text=True).stdout
    assert uid not in runc
    assert not (run_dir / "sandboxes" / uid).exists()
    cni_ips = [p.name for p in (run_dir / "cni").rglob("*") if p.is_file()]
    assert ip not in cni_ips


def test_agent_sigkill_keeps_containers(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod("survivor", "sleep 3600"))
    node.kubectl("wait", "--for=condition=Ready", "pod/survivor", "--timeout=60s")
    before = pod(node, "survivor")["status"]["containerStatuses"][0]
    pids = subprocess.run(["pgrep", "-f", "sleep 3600"], capture_output=True, text=True).stdout.split()
    node.stop(signal.SIGKILL)
    node.start()
    time.sleep(2)
    after = pod(node, "survivor")["status"]["containerStatuses"][0]
    assert after["containerID"] == before["containerID"] and after["restartCount"] == 0
    assert after["state"].get("running")
    assert subprocess.run(["pgrep", "-f", "sleep 3600"], capture_output=True, text=True).stdout.split() == pids
    node.kubectl("delete", "pod", "survivor")


def test_too_big_stays_pending(node: Cluster) -> None:
    big = json.loads(busybox_pod("huge", "sleep 1"))
    big["spec"]["containers"][0]["resources"] = {"requests": {"memory": "100Ti"}}
    node.kubectl("apply", "-f", "-", input=json.dumps(big))
    eventually(lambda: "FailedScheduling" in node.kubectl("describe", "pod", "huge").stdout, "FailedScheduling")
    describe = node.kubectl("describe", "pod", "huge").stdout
    assert "0/1 nodes are available: 1 Insufficient memory." in describe
    assert pod(node, "huge")["status"]["phase"] == "Pending"
    node.kubectl("delete", "pod", "huge")



def test_pods_reach_each_other_and_host_port(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=json.dumps(_nginx_with_host_port()))
    node.kubectl("wait", "--for=condition=Ready", "pod/hostport-web", "--timeout=60s")
    ip = pod(node, "hostport-web")["status"]["podIP"]
    node.kubectl("apply", "-f", "-", input=busybox_pod("client", f"wget -qO- http://{ip}/ && sleep 3600"))
    eventually(lambda: "Welcome to nginx!" in node.kubectl("logs", "client", check=False).stdout, "pod-to-pod fetch")
    assert eventually(lambda: b"Welcome to nginx!" in fetch("http://127.0.0.1:30080/"), "the hostPort")
    node.kubectl("delete", "pod", "hostport-web", "client")


def _nginx_with_host_port() -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / "nginx-pod.yaml").read_text())
    doc["metadata"]["name"] = "hostport-web"
    doc["spec"]["containers"][0]["ports"][0]["hostPort"] = 30080
    return doc


def test_logs_options(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod("talker", "for i in 1 2 3 4 5; do echo line $i; done; sleep 2; "
                                                                 "echo late; sleep 3600"))
    node.kubectl("wait", "--for=condition=Ready", "pod/talker", "--timeout=60s")
    eventually(lambda: "line 5" in node.kubectl("logs", "talker").stdout, "the first lines")
    assert node.kubectl("logs", "talker", "--tail=2").stdout.splitlines()[-1] in ("line 5", "late")
    assert node.kubectl("logs", "talker", "--limit-bytes=4").stdout == "line"
    assert "line 1" in node.kubectl("logs", "talker", "--since=1h").stdout
    stamped = node.kubectl("logs", "talker", "--timestamps", "--tail=1").stdout
    assert stamped[:4].isdigit() and "Z " in stamped
    follower = node.popen("logs", "-f", "talker")
    try:
        time.sleep(1)
        node.kubectl("delete", "pod", "talker", "--grace-period=1")
        out, _ = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert "line 1" in out and "late" in out


def test_init_containers_run_in_order(node: Cluster) -> None:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "inits"},
                "spec": {"terminationGracePeriodSeconds": 1,
                         "initContainers": [{"name": "first", "image": "busybox:1.36", "command": ["sh", "-c", "echo one; sleep 2"]},
                                            {"name": "second", "image": "busybox:1.36", "command": ["sh", "-c", "echo two; sleep 2"]}],
                         "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}
    watcher = node.popen("get", "pods", "-w", "--no-headers")
    try:
        node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        node.kubectl("wait", "--for=condition=Ready", "pod/inits", "--timeout=60s")
        time.sleep(1)
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    seen: list[str] = []
    for line in out.splitlines():
        if not line.startswith("inits "):
            continue
        status = line.split()[2]
        if not seen or seen[-1] != status:
            seen.append(status)
    assert [s for s in seen if s in ("Init:0/2", "Init:1/2", "PodInitializing", "Running")] == \
        ["Init:0/2", "Init:1/2", "PodInitializing", "Running"], out
    assert node.kubectl("logs", "inits", "-c", "second").stdout == "two\n"
    node.kubectl("delete", "pod", "inits")


def test_tutorial_init_demo_waits_for_services(node: Cluster) -> None:
    node.kubectl("apply", "-f", "init-demo.yaml")
    eventually(lambda: "waiting for myservice" in node.kubectl("logs", "init-demo", "-c", "init-myservice",
                                                               check=False).stdout, "waiting for myservice")
    assert status_column(node, "init-demo") == "Init:0/2"
    node.kubectl("delete", "pod", "init-demo", "--grace-period=1")


def test_failed_init_with_never_fails_the_pod(node: Cluster) -> None:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "badinit"},
                "spec": {"restartPolicy": "Never",
                         "initContainers": [{"name": "boom", "image": "busybox:1.36", "command": ["sh", "-c", "exit 3"]}],
                         "containers": [{"name": "app", "image": "busybox:1.36", "command": ["true"]}]}}
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    eventually(lambda: status_column(node, "badinit") == "Init:Error", "Init:Error")
    assert pod(node, "badinit")["status"]["phase"] == "Failed"
    node.kubectl("delete", "pod", "badinit")


def test_environment_from_sources(node: Cluster) -> None:
    node.kubectl("create", "secret", "generic", "env-secret", "--from-literal=token=s3cr3t")
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "envs", "labels": {"tier": "web"}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "env | sort"],
                    "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "env-config", "key": "greeting"}}},
                            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "token"}}},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                            {"name": "SAY", "value": "$(GREETING) from $(POD_NAME)"}],
                    "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "env-config"}}]}]}}
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    eventually(lambda: status_column(node, "envs") == "CreateContainerConfigError", "CreateContainerConfigError")
    state = pod(node, "envs")["status"]["containerStatuses"][0]["state"]["waiting"]
    assert state["message"] == 'configmap "env-config" not found'
    node.kubectl("create", "configmap", "env-config", "--from-literal=greeting=hello")
    eventually(lambda: status_column(node, "envs") == "Completed", "Completed")
    out = node.kubectl("logs", "envs").stdout.splitlines()
    for line in ("GREETING=hello", "TOKEN=s3cr3t", "POD_NAME=envs", "TIER=web", "SAY=hello from envs", "CFG_greeting=hello"):
        assert line in out, out
    node.kubectl("delete", "pod", "envs")
    node.kubectl("delete", "configmap", "env-config")
    node.kubectl("delete", "secret", "env-secret")


def test_tutorial_web_app_shares_an_empty_dir(node: Cluster) -> None:
    node.kubectl("apply", "-f", "web-app.yaml")
    node.kubectl("wait", "--for=condition=Ready", "pod/web-app", "--timeout=60s")
    assert node.kubectl("get", "pod", "web-app", "--no-headers").stdout.split()[1] == "2/2"
    ip = pod(node, "web-app")["status"]["podIP"]
    eventually(lambda: b"Log entry" in fetch(f"http://{ip}/app.log"), "the sidecar's log through nginx")
    node.kubectl("delete", "pod", "web-app", "--grace-period=1")  # sh as PID 1 ignores SIGTERM


def test_tutorial_storage_pod(node: Cluster) -> None:
    node.kubectl("apply", "-f", "storage-pod.yaml")
    eventually(lambda: "FailedMount" in node.kubectl("describe", "pod", "storage-pod").stdout, "FailedMount")
    describe = node.kubectl("describe", "pod", "storage-pod").stdout
    assert 'configmap "nginx-config" not found' in describe, describe
    assert status_column(node, "storage-pod") == "ContainerCreating"
    node.kubectl("create", "configmap", "nginx-config", "--from-literal=extra.conf=# tinykube")
    node.kubectl("create", "secret", "generic", "app-secret", "--from-literal=password=s3cr3t")
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-pvc"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    node.kubectl("apply", "-f", "-", input=json.dumps(pvc))
    node.kubectl("wait", "--for=condition=Ready", "pod/storage-pod", "--timeout=60s")
    assert node.kubectl("get", "pvc", "data-pvc", "-o", "jsonpath={.status.phase}").stdout == "Bound"
    node.kubectl("delete", "pod", "storage-pod")
    node.kubectl("delete", "pvc", "data-pvc")
    node.kubectl("delete", "configmap", "nginx-config")
    node.kubectl("delete", "secret", "app-secret")


def test_probes_restart_and_gate_readiness(node: Cluster) -> None:
    live = json.loads(busybox_pod("unhealthy", "sleep 3600"))
    live["spec"]["containers"][0]["livenessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 1,
                                                      "failureThreshold": 1}
    node.kubectl("apply", "-f", "-", input=json.dumps(live))
    eventually(lambda: pod(node, "unhealthy")["status"]["containerStatuses"][0]["restartCount"] >= 1, "a liveness restart")
    events = node.kubectl("get", "events", "--field-selector", "involvedObject.name=unhealthy").stdout
    assert "Unhealthy" in events and "failed liveness probe, will be restarted" in events, events
    unready = json.loads(busybox_pod("unready", "sleep 3600"))
    unready["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 81}, "periodSeconds": 1}
    node.kubectl("apply", "-f", "-", input=json.dumps(unready))
    eventually(lambda: status_column(node, "unready") == "Running", "Running")
    time.sleep(2)
    assert node.kubectl("get", "pod", "unready", "--no-headers").stdout.split()[1] == "0/1"
    ready = [c for c in pod(node, "unready")["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "False"
    node.kubectl("delete", "pod", "unhealthy", "unready")


def test_tutorial_security_context_is_enforced(node: Cluster) -> None:
    doc = yaml.safe_load((EXAMPLES / "security-pod.yaml").read_text())
    doc["metadata"]["name"] = "secure-busybox"
    container = doc["spec"]["containers"][0]
    container.update(image="busybox:1.36", command=["sh", "-c", "id; grep -E 'CapEff|NoNewPrivs' /proc/self/status; "
                                                               "stat -c '%g %a' /tmp; touch /tmp/ok && echo tmp-writable; "
                                                               "touch /rootfs-write 2>&1; sleep 3600"])
    node.kubectl("apply", "-f", "-", input=json.dumps(doc))
    node.kubectl("wait", "--for=condition=Ready", "pod/secure-busybox", "--timeout=60s")
    out = eventually(lambda: (lambda o: o if "Read-only file system" in o else "")(node.kubectl("logs", "secure-busybox").stdout),
                     "the security report")
    assert "uid=1000" in out and "gid=3000" in out and "2000" in out.split("groups=")[1].splitlines()[0], out
    assert "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out, out
    assert "tmp-writable" in out and out.count("2000 ") >= 1, out
    node.kubectl("delete", "pod", "secure-busybox", "--grace-period=1")  # sh as PID 1 ignores SIGTERM
    root = json.loads(busybox_pod("rootless", "sleep 3600"))
    root["spec"]["containers"][0]["securityContext"] = {"runAsNonRoot": True}
    node.kubectl("apply", "-f", "-", input=json.dumps(root))
    eventually(lambda: status_column(node, "rootless") == "CreateContainerConfigError", "CreateContainerConfigError")
    message = pod(node, "rootless")["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert message.startswith("container has runAsNonRoot and image will run as root"), message
    node.kubectl("delete", "pod", "rootless")


def test_host_aliases_subdomain_and_deadline(node: Cluster) -> None:
    manifest = json.loads(busybox_pod("named", "cat /etc/hosts; sleep 3600"))
    manifest["spec"].update(hostname="web-0", subdomain="web", activeDeadlineSeconds=5,
                            hostAliases=[{"ip": "10.42.0.99", "hostnames": ["alias.local"]}])
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    hosts = eventually(lambda: node.kubectl("logs", "named", check=False).stdout, "/etc/hosts")
    assert "web-0.web.default.svc.cluster.local\tweb-0" in hosts and "10.42.0.99\talias.local" in hosts, hosts
    eventually(lambda: pod(node, "named")["status"].get("reason") == "DeadlineExceeded", "DeadlineExceeded", timeout=40)
    assert pod(node, "named")["status"]["phase"] == "Failed"
    assert status_column(node, "named") == "DeadlineExceeded"
    node.kubectl("delete", "pod", "named")


def test_containers_share_localhost_and_shared_memory(node: Cluster) -> None:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sharing"},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                    {"name": "server", "image": "busybox:1.36",
                     "command": ["sh", "-c", "echo from-shm > /dev/shm/msg; httpd -f -p 8080 -h /dev/shm"]},
                    {"name": "client", "image": "busybox:1.36",
                     "command": ["sh", "-c", "sleep 1; wget -qO- http://localhost:8080/msg; cat /dev/shm/msg; sleep 3600"]}]}}
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    out = eventually(lambda: (lambda o: o if o.count("from-shm") == 2 else "")(
        node.kubectl("logs", "sharing", "-c", "client", check=False).stdout), "localhost and /dev/shm shared")
    assert out.count("from-shm") == 2
    node.kubectl("apply", "-f", "-", input=busybox_pod("outsider", "ls /dev/shm; sleep 3600"))
    node.kubectl("wait", "--for=condition=Ready", "pod/outsider", "--timeout=60s")
    time.sleep(1)
    assert "msg" not in node.kubectl("logs", "outsider").stdout
    node.kubectl("delete", "pod", "sharing", "outsider")


def test_configmap_update_reaches_the_mounted_file(node: Cluster) -> None:
    node.kubectl("create", "configmap", "live", "--from-literal=greeting=one")
    manifest = json.loads(busybox_pod("reader", "while true; do cat /cfg/greeting; echo; sleep 1; done"))
    manifest["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "live"}}]
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/cfg"}]
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    eventually(lambda: "one" in node.kubectl("logs", "reader", check=False).stdout, "the first value")
    node.kubectl("patch", "configmap", "live", "--type=merge", "-p", '{"data":{"greeting":"two"}}')
    eventually(lambda: "two" in node.kubectl("logs", "reader", "--tail=2").stdout, "the updated value", timeout=60)
    node.kubectl("delete", "pod", "reader")
    node.kubectl("delete", "configmap", "live")


def test_claim_data_survives_the_pod(node: Cluster) -> None:
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "keep"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    node.kubectl("apply", "-f", "-", input=json.dumps(pvc))

    def writer(name: str, script: str) -> str:
        manifest = json.loads(busybox_pod(name, script, "Never"))
        manifest["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "keep"}}]
        manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        return json.dumps(manifest)
    node.kubectl("apply", "-f", "-", input=writer("first", "echo kept > /data/file"))
    eventually(lambda: status_column(node, "first") == "Completed", "the first pod")
    node.kubectl("delete", "pod", "first")
    node.kubectl("apply", "-f", "-", input=writer("second", "cat /data/file"))
    eventually(lambda: status_column(node, "second") == "Completed", "the second pod")
    assert node.kubectl("logs", "second").stdout == "kept\n"
    node.kubectl("delete", "pod", "second")
    node.kubectl("delete", "pvc", "keep")


def test_termination_messages(node: Cluster) -> None:
    node.kubectl("apply", "-f", "-", input=busybox_pod("farewell", "echo goodbye > /dev/termination-log; exit 0", "Never"))
    fallback = json.loads(busybox_pod("fallback", "echo last words; exit 4", "Never"))
    fallback["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    node.kubectl("apply", "-f", "-", input=json.dumps(fallback))
    eventually(lambda: status_column(node, "farewell") == "Completed", "Completed")
    eventually(lambda: status_column(node, "fallback") == "Error", "Error")
    assert pod(node, "farewell")["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "goodbye\n"
    assert pod(node, "fallback")["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "last words\n"
    node.kubectl("delete", "pod", "farewell", "fallback")


def test_sidecar_keeps_running_beside_the_app(node: Cluster) -> None:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "with-sidecar"},
                "spec": {"terminationGracePeriodSeconds": 1,
                         "initContainers": [{"name": "side", "image": "busybox:1.36", "restartPolicy": "Always",
                                             "command": ["sh", "-c", "echo side up; sleep 3600"]}],
                         "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    node.kubectl("wait", "--for=condition=Ready", "pod/with-sidecar", "--timeout=60s")
    assert node.kubectl("get", "pod", "with-sidecar", "--no-headers").stdout.split()[1:3] == ["2/2", "Running"]
    side = pod(node, "with-sidecar")["status"]["initContainerStatuses"][0]
    assert side["started"] and "running" in side["state"]
    node.kubectl("delete", "pod", "with-sidecar")
