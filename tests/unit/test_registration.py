"""The Node a tinykube agent registers looks like one a 1.32 kubelet registers (nodestatus/setters.go)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinykube.node.host import HostFacts, hugepages, parse_hugepage_dir, parse_meminfo, parse_os_release
from tinykube.node.registration import (
    KUBELET_VERSION,
    allocatable,
    binary_si,
    capacity,
    conditions,
    node_object,
    node_status,
)

FACTS = HostFacts(cpus=4, memory_bytes=16279124 * 1024, storage_bytes=61202244 * 1024, kernel="6.8.0-45-generic",
                  os_image="Ubuntu 24.04.1 LTS", architecture="amd64", runtime_version="runc://1.1.12",
                  internal_ip="192.0.2.10", hostname="worker-1", machine_id="3d1219c7c4c5404aaa1f6d2a48adfda4",
                  system_uuid="ec2a1b2c-0000-4000-8000-000000000001", boot_id="037ce3e5-ccf9-43ec-8904-5668d7117b5b",
                  hugepages=((1 << 30, 0), (2 << 20, 0)))
STAMP = "2024-05-01T10:00:00Z"


@pytest.mark.parametrize(("n", "text"), [
    (16 << 30, "16Gi"), (16279124 * 1024, "16279124Ki"), (56403987978, "56403987978"), (2 << 20, "2Mi"), (0, "0"),
])
def test_binary_si(n: int, text: str) -> None:
    assert binary_si(n) == text


def test_capacity_is_sorted_like_a_go_map() -> None:
    assert list(capacity(FACTS).items()) == [
        ("cpu", "4"), ("ephemeral-storage", "61202244Ki"), ("hugepages-1Gi", "0"), ("hugepages-2Mi", "0"),
        ("memory", "16279124Ki"), ("pods", "110")]


def test_allocatable_leaves_the_default_eviction_thresholds() -> None:
    # memory.available<100Mi and nodefs.available<10% (as float32, hence ...978 and not ...071)
    assert allocatable(FACTS) == {"cpu": "4", "ephemeral-storage": "56403987978", "hugepages-1Gi": "0",
                                  "hugepages-2Mi": "0", "memory": "16176724Ki", "pods": "110"}


def test_conditions_wording_and_order() -> None:
    conds = conditions(STAMP)
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in conds] == [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status")]
    assert all(c["lastHeartbeatTime"] == c["lastTransitionTime"] == STAMP for c in conds)
    not_ready = conditions(STAMP, ready=False)[-1]
    assert (not_ready["status"], not_ready["reason"]) == ("False", "KubeletNotReady")


def test_node_status_shape() -> None:
    status = node_status("worker-1", FACTS, 10250, STAMP)
    assert status["addresses"] == [{"type": "InternalIP", "address": "192.0.2.10"},
                                   {"type": "Hostname", "address": "worker-1"}]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert status["nodeInfo"] == {
        "machineID": "3d1219c7c4c5404aaa1f6d2a48adfda4", "systemUUID": "ec2a1b2c-0000-4000-8000-000000000001",
        "bootID": "037ce3e5-ccf9-43ec-8904-5668d7117b5b", "kernelVersion": "6.8.0-45-generic",
        "osImage": "Ubuntu 24.04.1 LTS", "containerRuntimeVersion": "runc://1.1.12",
        "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,  # DisableNodeKubeProxyVersion is off
        "operatingSystem": "linux", "architecture": "amd64"}
    assert KUBELET_VERSION.startswith("v1.32.")
    assert status["capacity"] == capacity(FACTS) and status["allocatable"] == allocatable(FACTS)


def test_node_object_labels_and_annotations() -> None:
    meta = node_object("worker-1", FACTS, 10250)["metadata"]
    assert meta["annotations"] == {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}
    assert {k: v for k, v in meta["labels"].items() if "node-role" not in k} == {
        "kubernetes.io/hostname": "worker-1", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}


def test_host_parsers(tmp_path: Path) -> None:
    assert parse_meminfo("MemTotal:       16279124 kB\nMemFree: 1 kB\n") == 16279124 * 1024
    with pytest.raises(ValueError):
        parse_meminfo("MemFree: 1 kB\n")
    assert parse_os_release('NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n') == "Ubuntu 24.04.1 LTS"
    assert parse_os_release("") == "Linux"
    assert parse_hugepage_dir("hugepages-2048kB") == 2 << 20
    assert parse_hugepage_dir("hugepages-1048576kB") == 1 << 30
    assert parse_hugepage_dir("README") is None
    for name, count in (("hugepages-2048kB", "8\n"), ("hugepages-1048576kB", "0\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "nr_hugepages").write_text(count)
    assert hugepages(str(tmp_path)) == ((1 << 30, 0), (2 << 20, 8))
    assert hugepages(str(tmp_path / "missing")) == ()


def test_reserved_huge_pages_are_capacity() -> None:
    facts = HostFacts(**{**FACTS.__dict__, "hugepages": ((2 << 20, 8),)})
    assert capacity(facts)["hugepages-2Mi"] == "16Mi"
    assert allocatable(facts)["hugepages-2Mi"] == "16Mi"
    assert allocatable(facts)["memory"] == "16160340Ki"  # 16176724Ki less the 16Mi of huge pages
