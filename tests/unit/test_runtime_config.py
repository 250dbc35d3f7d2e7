"""The runtime's pure halves: OCI config, CNI plan, /etc files, cgroup names and values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tinykube.node.runtime import cgroups, cni
from tinykube.node.runtime.cgroups import Hierarchy, Resources
from tinykube.node.runtime.cni import CniConfig, PortMapping
from tinykube.node.runtime.containers import rfc3339_nano
from tinykube.node.runtime.oci import (
    DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, ContainerSpec, Mount, build_config)
from tinykube.node.runtime.sandbox import DnsConfig, HostEntry, Sandbox, hosts_content, resolv_content


@dataclass(frozen=True)
class Pins:
    netns: Path = Path("/run/tk/sandboxes/u/net")
    ipc: Path = Path("/run/tk/sandboxes/u/ipc")
    uts: Path = Path("/run/tk/sandboxes/u/uts")
    shm_dir: Path | None = Path("/run/tk/sandboxes/u/shm")
    pid_ns: Path | None = None


def spec(**kwargs: object) -> ContainerSpec:
    base: dict[str, object] = {"id": "c1", "pod_uid": "u", "name": "app", "args": ["sh"], "log_path": "/l/0.log",
                               "rootfs_layers": [Path("/layers/a")]}
    return ContainerSpec(**{**base, **kwargs})  # type: ignore[arg-type]


def by_destination(config: dict) -> dict[str, dict]:
    return {m["destination"]: m for m in config["mounts"]}


def test_process_defaults_follow_containerd() -> None:
    process = build_config(spec(env=["A=1"]), "/r")["process"]
    assert process["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1"]
    assert process["capabilities"] == {"bounding": list(DEFAULT_CAPABILITIES), "effective": list(DEFAULT_CAPABILITIES),
                                       "permitted": list(DEFAULT_CAPABILITIES)}
    assert len(DEFAULT_CAPABILITIES) == 14 and "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES
    assert process["user"] == {"uid": 0, "gid": 0} and process["cwd"] == "/" and process["terminal"] is False
    assert process["noNewPrivileges"] is False and "rlimits" not in process and "oomScoreAdj" not in process


def test_process_user_path_and_privileges() -> None:
    process = build_config(spec(env=["PATH=/bin"], uid=1000, gid=1000, additional_gids=[5], no_new_privileges=True,
                                oom_score_adj=1000, cwd="/tmp"), "/r")["process"]
    assert process["env"] == ["PATH=/bin"]
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [5]}
    assert (process["noNewPrivileges"], process["oomScoreAdj"], process["cwd"]) == (True, 1000, "/tmp")


def test_namespaces_join_the_sandbox_pins() -> None:
    linux = build_config(spec(sandbox=Pins(), cgroup_path="/tinykube/besteffort/podu/c1"), "/r")["linux"]
    assert linux["namespaces"] == [
        {"type": "pid"}, {"type": "mount"}, {"type": "network", "path": "/run/tk/sandboxes/u/net"},
        {"type": "ipc", "path": "/run/tk/sandboxes/u/ipc"}, {"type": "uts", "path": "/run/tk/sandboxes/u/uts"}]
    assert linux["cgroupsPath"] == "/tinykube/besteffort/podu/c1"
    assert linux["maskedPaths"] == list(DEFAULT_MASKED_PATHS) and linux["readonlyPaths"] == list(DEFAULT_READONLY_PATHS)


def test_a_pod_sharing_its_pid_namespace_joins_its_pin() -> None:
    namespaces = build_config(spec(sandbox=Pins(pid_ns=Path("/run/tk/sandboxes/u/pid"))), "/r")["linux"]["namespaces"]
    assert namespaces[0] == {"type": "pid", "path": "/run/tk/sandboxes/u/pid"}
    assert [n["type"] for n in namespaces] == ["pid", "mount", "network", "ipc", "uts"]


def test_without_a_sandbox_the_container_gets_its_own_namespaces() -> None:
    linux = build_config(spec(), "/r")["linux"]
    assert [n for n in linux["namespaces"] if "path" in n] == []
    assert "cgroupsPath" not in linux


def test_default_mounts_are_containerds_without_run() -> None:
    mounts = by_destination(build_config(spec(), "/r"))
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert mounts["/sys"]["options"] == ["nosuid", "noexec", "nodev", "ro"]
    assert mounts["/dev/shm"]["type"] == "tmpfs"


def test_the_pods_shm_and_spec_mounts_replace_defaults_parents_first() -> None:
    volumes = [Mount("/v/deep", "/data/sub"), Mount("/v/data", "/data", "bind", ["rbind", "ro"]),
               Mount("/v/mq", "/dev/mqueue")]
    config = build_config(spec(sandbox=Pins(), mounts=volumes), "/r")
    mounts = by_destination(config)
    assert mounts["/dev/shm"] == {"destination": "/dev/shm", "type": "bind", "source": "/run/tk/sandboxes/u/shm",
                                  "options": ["rbind", "rprivate", "rw"]}
    assert mounts["/dev/mqueue"]["source"] == "/v/mq"
    order = [m["destination"] for m in config["mounts"]]
    assert order.index("/data") < order.index("/data/sub") and order.count("/dev/mqueue") == 1
    own_shm = build_config(spec(sandbox=Pins(), mounts=[Mount("/v/shm", "/dev/shm")]), "/r")["mounts"]
    assert [m["source"] for m in own_shm if m["destination"] == "/dev/shm"] == ["/v/shm"]


def test_sandbox_mounts_its_etc_files() -> None:
    sandbox = Sandbox("u", "web", Path("n"), Path("i"), Path("t"), "10.42.0.5", "10.42.0.1", Path("/s/hosts"),
                      Path("/s/resolv.conf"), Path("/s/hostname"), Path("/s/shm"))
    assert [(m.destination, m.options[-1]) for m in sandbox.mounts(readonly=True)] == [
        ("/etc/hosts", "ro"), ("/etc/resolv.conf", "ro"), ("/etc/hostname", "ro")]
    assert Sandbox.from_json(sandbox.to_json()) == sandbox
    shared = Sandbox("u", "web", Path("n"), Path("i"), Path("t"), "10.42.0.5", "10.42.0.1", Path("/s/hosts"),
                     Path("/s/resolv.conf"), Path("/s/hostname"), Path("/s/shm"), Path("/s/pid"))
    assert Sandbox.from_json(shared.to_json()) == shared
    record = sandbox.to_json()
    del record["pid_ns"]  # a sandbox.json written before shared PID namespaces existed
    assert Sandbox.from_json(record) == sandbox


def test_resources_and_no_swap() -> None:
    r = Resources(cpu_shares=512, cpu_quota_us=50_000, cpu_period_us=100_000, memory_limit_bytes=1 << 20, pids_limit=64)
    resources = build_config(spec(resources=r), "/r", swap_accounting=True)["linux"]["resources"]
    assert resources == {"devices": [{"allow": False, "access": "rwm"}],
                         "cpu": {"shares": 512, "quota": 50_000, "period": 100_000},
                         "memory": {"limit": 1 << 20, "swap": 1 << 20}, "pids": {"limit": 64}}
    without = build_config(spec(resources=Resources(memory_limit_bytes=5)), "/r", swap_accounting=False)
    assert without["linux"]["resources"]["memory"] == {"limit": 5}


def test_security_fields_are_absent_by_default() -> None:
    config = build_config(spec(), "/r")
    assert "seccomp" not in config["linux"] and "sysctl" not in config["linux"]
    assert "apparmorProfile" not in config["process"]


def test_seccomp_sysctls_and_apparmor_reach_the_config() -> None:
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    config = build_config(spec(seccomp=profile, sysctl={"net.ipv4.tcp_syncookies": "1"}, apparmor_profile="k8s-deny"),
                          "/r")
    assert config["linux"]["seccomp"] == profile and config["linux"]["sysctl"] == {"net.ipv4.tcp_syncookies": "1"}
    assert config["process"]["apparmorProfile"] == "k8s-deny"


def test_privileged_opens_sys_cgroupfs_and_devices() -> None:
    config = build_config(spec(privileged=True, resources=Resources(cpu_shares=2)), "/r")
    mounts = by_destination(config)
    assert mounts["/sys"]["options"] == ["nosuid", "noexec", "nodev", "rw"]
    assert mounts["/sys/fs/cgroup"]["options"][-1] == "rw"
    assert config["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert by_destination(build_config(spec(), "/r"))["/sys/fs/cgroup"]["options"][-1] == "ro"


def test_root_and_rootfs_choice() -> None:
    config = build_config(spec(readonly_rootfs=True), "/bundle/rootfs")
    assert config["root"] == {"path": "/bundle/rootfs", "readonly": True}
    with pytest.raises(ValueError):
        spec(rootfs_dir=Path("/plain"))
    with pytest.raises(ValueError):
        spec(rootfs_layers=[])


def test_rfc3339_nano() -> None:
    assert rfc3339_nano(1_795_000_000_000_000_001) == "2026-11-18T11:06:40.000000001Z"
    assert rfc3339_nano(None) == ""


def test_cni_plan_without_ports_is_bridge_only() -> None:
    plan = cni.plan(CniConfig(bridge="tk0", subnet="10.42.3.0/24", state_dir=Path("/s")), "uid", "/ns/net")
    assert plan.loopback == {"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}
    [bridge] = plan.network["plugins"]
    assert (bridge["bridge"], bridge["isGateway"], bridge["hairpinMode"], bridge["ipMasq"]) == ("tk0", True, True, False)
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.42.3.0/24", "gateway": "10.42.3.1"}]]
    assert bridge["ipam"]["dataDir"] == "/s" and plan.runtime_config == {}
    assert cni.NetworkPlan.from_json(plan.to_json()) == plan


def test_cni_plan_with_ports_adds_portmap_and_its_capability_args() -> None:
    plan = cni.plan(CniConfig(), "uid", "/ns/net", [PortMapping(8080, 80, "TCP", "127.0.0.1")])
    bridge, portmap = plan.network["plugins"]
    mappings = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]
    conf = cni.plugin_config(plan.network, portmap, plan.runtime_config, {"ips": []})
    assert conf["runtimeConfig"] == {"portMappings": mappings} and conf["prevResult"] == {"ips": []}
    assert (conf["name"], conf["cniVersion"]) == ("tinykube", "1.0.0")
    first = cni.plugin_config(plan.network, bridge, plan.runtime_config, None)
    assert "runtimeConfig" not in first and "prevResult" not in first


def test_first_address() -> None:
    result = {"ips": [{"address": "10.42.0.7/24", "gateway": "10.42.0.1", "interface": 2}]}
    assert cni.first_address(result) == ("10.42.0.7", "10.42.0.1")


def test_hosts_file_is_the_kubelets() -> None:
    assert hosts_content("10.42.0.7", "web") == (
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
        "10.42.0.7\tweb\n")
    with_domain = hosts_content("10.42.0.7", "web", "sub.ns.svc.cluster.local", [HostEntry("1.2.3.4", ["a", "b"])])
    assert with_domain.endswith("10.42.0.7\tweb.sub.ns.svc.cluster.local\tweb\n\n"
                                "# Entries added by HostAliases.\n1.2.3.4\ta\tb\n")


def test_resolv_conf_is_containerds() -> None:
    dns = DnsConfig(["10.43.0.10"], ["ns.svc.cluster.local", "svc.cluster.local"], ["ndots:5"])
    assert resolv_content(dns) == ("search ns.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\n"
                                   "options ndots:5\n")
    assert resolv_content(DnsConfig()) == ""


MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 27 0:40 / /mnt/other rw,relatime - cgroup cgroup rw,pids
"""


def test_hierarchies_and_layout_from_mountinfo() -> None:
    found = cgroups.parse_hierarchies(MOUNTINFO)
    assert [(h.path.name, h.version, sorted(h.controllers)) for h in found] == [
        ("cpu,cpuacct", 1, ["cpu", "cpuacct"]), ("memory", 1, ["memory"]), ("systemd", 1, ["name=systemd", "xattr"]),
        ("unified", 2, [])]
    assert cgroups.layout_of(found) == "hybrid"
    assert cgroups.layout_of(found[:3]) == "v1"
    assert cgroups.layout_of([Hierarchy(Path("/sys/fs/cgroup"), 2, frozenset())]) == "v2"


def test_cgroup_names() -> None:
    assert cgroups.pod_cgroup_path("u1", "Burstable") == "/tinykube/burstable/podu1"
    assert cgroups.pod_cgroup_path("u1", "BestEffort") == "/tinykube/besteffort/podu1"
    assert cgroups.pod_cgroup_path("u1", "Guaranteed") == "/tinykube/podu1"
    assert cgroups.container_cgroup("u1", "burstable", "c9") == "/tinykube/burstable/podu1/c9"
    with pytest.raises(ValueError):
        cgroups.pod_cgroup_path("u1", "gold")


def test_resource_files_per_version() -> None:
    r = Resources(cpu_shares=1024, cpu_quota_us=20_000, cpu_period_us=100_000, memory_limit_bytes=64, pids_limit=10)
    assert cgroups.resource_writes(r, 1) == [
        ("cpu", "cpu.shares", "1024"), ("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "20000"),
        ("memory", "memory.limit_in_bytes", "64"), ("pids", "pids.max", "10")]
    assert cgroups.resource_writes(r, 2) == [
        ("cpu", "cpu.weight", "39"), ("cpu", "cpu.max", "20000 100000"), ("memory", "memory.max", "64"),
        ("pids", "pids.max", "10")]
    assert cgroups.resource_writes(Resources(), 1) == []
    assert cgroups.shares_to_weight(2) == 1 and cgroups.shares_to_weight(262144) == 10000
