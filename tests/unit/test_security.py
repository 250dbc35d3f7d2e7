"""Container security settings, node-side pod admission, the pod cgroup, OOM scores and fsGroup ownership."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tinykube.node import security as sec
from tinykube.node.runtime import oci
from tinykube.node.runtime.cgroups import Resources
from tinykube.node.security import ImageUser, SecurityError

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/:/sbin/nologin\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nnginx:x:101:\nwww:x:33:nginx,app\naudio:x:29:app\n"
GiB = 1024 ** 3


def pod(containers: list[dict[str, Any]] | None = None, qos: str = "BestEffort", **spec: Any) -> dict[str, Any]:
    spec["containers"] = containers or [{"name": "c", "image": "busybox"}]
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec,
            "status": {"qosClass": qos}}


def settings(p: dict[str, Any], image: ImageUser = ImageUser(), **kwargs: Any) -> sec.SecuritySettings:
    kwargs.setdefault("host_caps", sec.ALL_CAPABILITIES)
    return sec.container_security(p, p["spec"]["containers"][0], image, "/var/lib/tinykube/seccomp", **kwargs)


def container(**security_context: Any) -> dict[str, Any]:
    return {"name": "c", "image": "busybox", "securityContext": security_context}


# --- users and groups ----------------------------------------------------------------------------


def test_tutorial_security_pod() -> None:
    p = pod([container(allowPrivilegeEscalation=False, readOnlyRootFilesystem=True, runAsNonRoot=True,
                       capabilities={"drop": ["ALL"]})],
            securityContext={"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000})
    s = settings(p, ImageUser("", PASSWD, GROUP))
    assert (s.uid, s.gid, s.additional_gids) == (1000, 3000, [29, 33, 2000, 3000])  # id: groups=...,2000,3000
    assert s.capabilities == () and s.no_new_privileges and s.readonly_rootfs
    assert s.masked_paths == oci.DEFAULT_MASKED_PATHS and s.readonly_paths == oci.DEFAULT_READONLY_PATHS
    assert s.seccomp is None and s.sysctl == {} and not s.privileged


def test_container_fields_override_the_pods() -> None:
    p = pod([container(runAsUser=5, seccompProfile={"type": "Unconfined"})],
            securityContext={"runAsUser": 1, "runAsGroup": 2, "seccompProfile": {"type": "RuntimeDefault"},
                             "fsGroup": 9, "supplementalGroups": [7, 2]})
    assert sec.effective_context(p, p["spec"]["containers"][0]) == {
        "runAsUser": 5, "runAsGroup": 2, "seccompProfile": {"type": "Unconfined"}}
    s = settings(p)
    assert (s.uid, s.gid, s.additional_gids, s.seccomp) == (5, 2, [2, 7, 9], None)


@pytest.mark.parametrize("image_user, ids", [
    ("", (0, 0, [0])),
    ("nginx", (101, 101, [33, 101])),
    ("1000", (1000, 1000, [29, 33, 1000])),
    ("1000:4242", (1000, 1000, [29, 33, 1000])),  # the kubelet always names the user, so containerd drops the group
    ("4242", (4242, 0, [0])),
])
def test_the_image_user_resolves_as_kubelet_and_containerd_do(image_user: str, ids: tuple[int, int, list[int]]) -> None:
    s = settings(pod(), ImageUser(image_user, PASSWD, GROUP))
    assert (s.uid, s.gid, s.additional_gids) == ids


def test_run_as_group_overrides_the_passwd_group_and_unknown_users_fail() -> None:
    s = settings(pod([container(runAsGroup=500)]), ImageUser("nginx", PASSWD, GROUP))
    assert (s.uid, s.gid) == (101, 500)
    with pytest.raises(SecurityError) as failed:
        settings(pod(), ImageUser("ghost", PASSWD, GROUP))
    assert failed.value.reason == "CreateContainerError" and "unable to find user ghost" in failed.value.message


@pytest.mark.parametrize("security_context, image_user, message", [
    ({"runAsNonRoot": True}, "", 'container has runAsNonRoot and image will run as root (pod: "p_default(u1)", container: c)'),
    ({"runAsNonRoot": True}, "0:0", 'container has runAsNonRoot and image will run as root (pod: "p_default(u1)", '
                                    'container: c)'),
    ({"runAsNonRoot": True}, "nginx", "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify "
                                      'user is non-root (pod: "p_default(u1)", container: c)'),
    ({"runAsNonRoot": True, "runAsUser": 0}, "1000", "container's runAsUser breaks non-root policy "
                                                     '(pod: "p_default(u1)", container: c)'),
])
def test_run_as_non_root_refusals(security_context: dict[str, Any], image_user: str, message: str) -> None:
    with pytest.raises(SecurityError) as refused:
        settings(pod([container(**security_context)]), ImageUser(image_user, PASSWD, GROUP))
    assert (refused.value.reason, refused.value.message) == ("CreateContainerConfigError", message)


def test_run_as_non_root_accepts_non_root_users() -> None:
    assert settings(pod([container(runAsNonRoot=True)]), ImageUser("1000")).uid == 1000
    assert settings(pod([container(runAsNonRoot=True, runAsUser=7)]), ImageUser("nginx", PASSWD)).uid == 7
    assert settings(pod([container(runAsNonRoot=False)]), ImageUser("")).uid == 0


# --- capabilities, privileges, paths --------------------------------------------------------------


@pytest.mark.parametrize("requested, expected", [
    (None, oci.DEFAULT_CAPABILITIES),
    ({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, ("CAP_NET_BIND_SERVICE",)),
    ({"add": ["net_admin"], "drop": ["NET_RAW", "KILL"]},
     tuple(c for c in oci.DEFAULT_CAPABILITIES if c not in ("CAP_NET_RAW", "CAP_KILL")) + ("CAP_NET_ADMIN",)),
    ({"add": ["ALL"], "drop": ["SYS_ADMIN"]}, tuple(c for c in sec.ALL_CAPABILITIES if c != "CAP_SYS_ADMIN")),
    ({"add": ["CHOWN"]}, oci.DEFAULT_CAPABILITIES),
])
def test_capabilities_follow_containerd(requested: dict[str, Any] | None, expected: tuple[str, ...]) -> None:
    assert sec.capabilities(requested) == expected


def test_all_means_what_the_host_has() -> None:
    host = sec.capabilities_in("Name:\tx\nCapBnd:\t000001fffeffffff\n")  # no CAP_SYS_RESOURCE (bit 24)
    assert len(host) == 40 and "CAP_SYS_RESOURCE" not in host and host[-1] == "CAP_CHECKPOINT_RESTORE"
    assert settings(pod([container(privileged=True)]), host_caps=host).capabilities == host
    assert sec.capabilities({"add": ["ALL"]}, host) == host
    assert sec.capabilities_in("Name:\tx\n") == sec.ALL_CAPABILITIES


def test_privileged_gets_everything_and_no_filters() -> None:
    s = settings(pod([container(privileged=True, seccompProfile={"type": "RuntimeDefault"}, capabilities={"drop": ["ALL"]})]))
    assert s.privileged and s.capabilities == sec.ALL_CAPABILITIES and len(s.capabilities) == 41
    assert s.masked_paths == () and s.readonly_paths == () and s.seccomp is None and not s.no_new_privileges


def test_no_new_privileges_and_proc_mount() -> None:
    assert not settings(pod()).no_new_privileges  # unset allowPrivilegeEscalation means allowed
    assert not settings(pod([container(allowPrivilegeEscalation=True)])).no_new_privileges
    assert not sec.no_new_privileges({"allowPrivilegeEscalation": False, "capabilities": {"add": ["CAP_SYS_ADMIN"]}})
    unmasked = settings(pod([container(procMount="Unmasked")]))
    assert unmasked.masked_paths == () and unmasked.readonly_paths == ()
    assert settings(pod([container(procMount="Default")])).masked_paths == oci.DEFAULT_MASKED_PATHS


# --- seccomp ---------------------------------------------------------------------------------------


def _names(profile: dict[str, Any]) -> set[str]:
    return {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule
            for n in rule["names"]}


def test_runtime_default_is_containerds_profile() -> None:
    profile = sec.default_seccomp(oci.DEFAULT_CAPABILITIES, machine="x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = _names(profile)
    assert {"read", "openat", "clone3"} - allowed == {"clone3"} and "chroot" in allowed and "arch_prctl" in allowed
    assert not allowed & {"mount", "unshare", "setns", "bpf", "keyctl", "add_key", "reboot", "init_module", "kexec_load"}
    clone = next(r for r in profile["syscalls"] if r["names"] == ["clone"])
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in profile["syscalls"]
    admin = sec.default_seccomp((*oci.DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"), machine="x86_64")
    assert {"mount", "unshare", "clone", "clone3"} <= _names(admin)
    assert not any(r["names"] == ["clone3"] and r["action"] == "SCMP_ACT_ERRNO" for r in admin["syscalls"])
    assert "chroot" not in _names(sec.default_seccomp(("CAP_KILL",), machine="x86_64"))


def test_seccomp_profiles_from_the_effective_context() -> None:
    p = pod([container(capabilities={"drop": ["ALL"]})], securityContext={"seccompProfile": {"type": "RuntimeDefault"}})
    profile = settings(p).seccomp
    assert profile is not None and profile["defaultAction"] == "SCMP_ACT_ERRNO" and "chroot" not in _names(profile)
    loaded: list[str] = []

    def load(path: str) -> str:
        loaded.append(path)
        return '{"defaultAction": "SCMP_ACT_LOG", "archMap": [], "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}'
    local = pod([container(seccompProfile={"type": "Localhost", "localhostProfile": "profiles/audit.json"})])
    assert settings(local, load=load).seccomp == {
        "defaultAction": "SCMP_ACT_LOG", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    assert loaded == ["/var/lib/tinykube/seccomp/profiles/audit.json"]


def test_a_missing_localhost_profile_fails_creation(tmp_path: Path) -> None:
    missing = pod([container(seccompProfile={"type": "Localhost", "localhostProfile": "nope.json"})])
    with pytest.raises(SecurityError) as failed:
        sec.container_security(missing, missing["spec"]["containers"][0], ImageUser(), str(tmp_path),
                               host_caps=sec.ALL_CAPABILITIES)
    path = tmp_path / "nope.json"
    assert failed.value.reason == "CreateContainerError"
    assert failed.value.message == f'cannot load seccomp profile "{path}": open {path}: no such file or directory'


# --- sysctls, AppArmor and the node's admission --------------------------------------------------


def test_sysctls_go_to_the_runtime_with_dots() -> None:
    p = pod(securityContext={"sysctls": [{"name": "net/ipv4/tcp_syncookies", "value": "1"},
                                         {"name": "kernel.shm_rmid_forced", "value": "0"}]})
    assert settings(p).sysctl == {"net.ipv4.tcp_syncookies": "1", "kernel.shm_rmid_forced": "0"}
    assert sec.normalize_sysctl("net/ipv4/conf/eth0.100/rp_filter") == "net.ipv4.conf.eth0/100.rp_filter"
    assert sec.pod_rejection(p, apparmor_enabled=False) is None


@pytest.mark.parametrize("spec, message", [
    ({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
     'forbidden sysctl: "kernel.msgmax" not allowlisted'),
    ({"hostNetwork": True, "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}},
     'forbidden sysctl: "net.ipv4.tcp_syncookies" not allowed with host net enabled'),
    ({"hostIPC": True, "securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]}},
     'forbidden sysctl: "kernel.shm_rmid_forced" not allowed with host ipc enabled'),
])
def test_unsafe_sysctls_are_refused_by_the_node(spec: dict[str, Any], message: str) -> None:
    assert sec.pod_rejection(pod(**spec), apparmor_enabled=True) == ("SysctlForbidden", message)


def test_apparmor_profiles() -> None:
    local = pod([container(appArmorProfile={"type": "Localhost", "localhostProfile": "k8s-deny-write"})])
    assert settings(local).apparmor_profile == "k8s-deny-write"
    assert sec.pod_rejection(local, apparmor_enabled=False) == (
        "AppArmor", "Cannot enforce AppArmor: AppArmor is not enabled on the host")
    assert sec.pod_rejection(local, apparmor_enabled=True) is None
    annotated = pod()
    annotated["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/c": "localhost/mine"}
    assert settings(annotated).apparmor_profile == "mine"
    unconfined = pod([container(appArmorProfile={"type": "Unconfined"})])
    assert sec.pod_rejection(unconfined, apparmor_enabled=False) is None and settings(unconfined).apparmor_profile == ""


# --- the pod cgroup and OOM scores ---------------------------------------------------------------


def resources(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": extra.pop("name", "c"), "resources": {"requests": requests or {}, "limits": limits or {}}, **extra}


def test_pod_cgroup_limits_the_sum_of_its_containers() -> None:
    guaranteed = pod([resources({"cpu": "500m", "memory": "128Mi"}, {"cpu": "500m", "memory": "128Mi"}),
                      resources({"cpu": "1", "memory": "64Mi"}, {"cpu": "1", "memory": "64Mi"}, name="d")], "Guaranteed")
    assert sec.pod_resources(guaranteed) == Resources(cpu_shares=1536, cpu_quota_us=150_000, cpu_period_us=100_000,
                                                      memory_limit_bytes=192 * 1024 ** 2, pids_limit=4096)
    tutorial = pod([resources({"cpu": "250m", "memory": "64Mi"}, {"cpu": "500m", "memory": "128Mi"})], "Burstable")
    assert sec.pod_resources(tutorial) == Resources(cpu_shares=256, cpu_quota_us=50_000, cpu_period_us=100_000,
                                                    memory_limit_bytes=128 * 1024 ** 2, pids_limit=4096)
    partial = pod([resources({"cpu": "250m"}, {"memory": "128Mi"}), resources({"cpu": "250m"}, name="d")], "Burstable")
    assert sec.pod_resources(partial) == Resources(cpu_shares=512, pids_limit=4096)
    assert sec.pod_resources(pod()) == Resources(cpu_shares=2, pids_limit=4096)


def test_init_containers_and_sidecars_count_as_the_kubelet_counts_them() -> None:
    p = pod([resources({"cpu": "100m", "memory": "100Mi"}, {"cpu": "100m", "memory": "100Mi"})], "Guaranteed",
            initContainers=[resources({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}, name="init"),
                            resources({"cpu": "200m", "memory": "200Mi"}, {"cpu": "200m", "memory": "200Mi"},
                                      name="sidecar", restartPolicy="Always")],
            overhead={"cpu": "10m", "memory": "10Mi"})
    r = sec.pod_resources(p)
    assert r.cpu_quota_us == 101_000  # max(100m + 200m, 1) + 10m overhead
    assert r.memory_limit_bytes == GiB + 10 * 1024 ** 2
    p["spec"]["initContainers"][0]["resources"] = {"requests": {"cpu": "50m"}, "limits": {"cpu": "50m", "memory": "1Mi"}}
    assert sec.pod_resources(p).cpu_quota_us == 31_000  # containers 100m + sidecar 200m + 10m overhead


def test_oom_score_adj_by_qos_class() -> None:
    burstable = pod([resources({"memory": "1Gi"}), resources(name="tiny")], "Burstable")
    c, tiny = burstable["spec"]["containers"]
    assert sec.oom_score_adj(burstable, c, 10 * GiB) == 900
    assert sec.oom_score_adj(burstable, tiny, 10 * GiB) == 999  # 1000 would tie with BestEffort
    assert sec.oom_score_adj(burstable, resources({"memory": "20Gi"}), 10 * GiB) == 3
    assert sec.oom_score_adj(pod(qos="Guaranteed"), c, GiB) == -997
    assert sec.oom_score_adj(pod(), c, GiB) == 1000
    critical = copy.deepcopy(burstable)
    critical["spec"].update(priorityClassName="system-node-critical", priority=2_000_001_000)
    assert sec.oom_score_adj(critical, c, GiB) == -997
    sidecar = resources({"memory": "100Mi"}, name="side", restartPolicy="Always")
    with_sidecar = pod([resources({"memory": "2Gi"})], "Burstable", initContainers=[sidecar])
    assert sec.oom_score_adj(with_sidecar, sidecar, 10 * GiB) == 800  # no higher than the smallest regular container


def test_qos_cgroups_follow_the_kubelet_layout() -> None:
    assert [sec.qos_cgroup(q) for q in ("Guaranteed", "Burstable", "BestEffort")] == [
        "/tinykube", "/tinykube/burstable", "/tinykube/besteffort"]
    assert sec.qos({"spec": {"containers": [resources({"cpu": "1"})]}}) == "Burstable"


# --- fsGroup ----------------------------------------------------------------------------------------


def _tree(root: Path) -> None:
    (root / "sub").mkdir(mode=0o700)
    (root / "sub" / "file").write_text("x")
    (root / "sub" / "file").chmod(0o600)
    (root / "link").symlink_to("sub/file")
    root.chmod(0o700)


def test_fs_group_owns_and_opens_the_volume_to_the_group(tmp_path: Path) -> None:
    gid = os.getgid()  # a group this test may give files to, root or not
    volume = tmp_path / "v"
    volume.mkdir()
    _tree(volume)
    sec.apply_fs_group(volume, gid, None)
    modes = {p.name: stat.S_IMODE(os.lstat(p).st_mode) | (os.lstat(p).st_mode & stat.S_ISGID)
             for p in [volume, volume / "sub", volume / "sub" / "file"]}
    assert modes == {"v": 0o2770, "sub": 0o2770, "file": 0o660}
    assert all(os.lstat(p).st_gid == gid for p in [volume, volume / "sub", volume / "sub" / "file", volume / "link"])
    (volume / "sub" / "file").chmod(0o600)
    sec.apply_fs_group(volume, gid, "OnRootMismatch")  # the root is right: nothing below is touched
    assert stat.S_IMODE((volume / "sub" / "file").stat().st_mode) == 0o600
    sec.apply_fs_group(volume, gid, "Always", read_only=True)
    assert stat.S_IMODE((volume / "sub" / "file").stat().st_mode) == 0o640
    sec.apply_fs_group(volume, None)  # no fsGroup: nothing to do
