"""The local-path provisioner and PV binder against a real server, seen through kubectl.

The controller is the one ``tinykube server`` runs; claims are applied with kubectl.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, eventually

pytestmark = pytest.mark.slow

@pytest.fixture
def storage(cluster: Cluster) -> Path:
    """The storage directory of the server's own provisioner."""
    return cluster.data_dir / "storage"


def get_json(cluster: Cluster, *args: str) -> Any:
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def claim(name: str, storage_class: str | None, size: str = "1Gi") -> str:
    class_line = f"  storageClassName: {storage_class}\n" if storage_class is not None else ""
    return (f"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n{class_line}"
            f"  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: {size}\n")


def bound(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    pvc: dict[str, Any] = eventually(lambda: (p := get_json(cluster, "pvc", name, "-n", ns))
                                     and p["status"].get("phase") == "Bound" and p, f"claim {name} Bound")
    return pvc


def test_default_class_is_listed_as_default(cluster: Cluster, storage: Path) -> None:
    rows = eventually(lambda: cluster.kubectl("get", "sc", check=False).stdout.splitlines(), "storage classes")
    assert rows[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"]
    line = next(r for r in rows if r.startswith("local-path"))
    assert line.split()[:6] == ["local-path", "(default)", "rancher.io/local-path", "Delete", "Immediate", "false"]


def test_claim_is_provisioned_bound_and_deleted_with_its_data(cluster: Cluster, ns: str, storage: Path) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=claim("data", "local-path", "2Gi"))
    pvc = bound(cluster, ns, "data")
    uid = pvc["metadata"]["uid"]
    assert pvc["spec"]["volumeName"] == f"pvc-{uid}"
    assert pvc["status"]["capacity"] == {"storage": "2Gi"} and pvc["status"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    row = cluster.kubectl("get", "pvc", "data", "-n", ns, "--no-headers").stdout.split()
    assert row[:6] == ["data", "Bound", f"pvc-{uid}", "2Gi", "RWO", "local-path"]
    pv = get_json(cluster, "pv", f"pvc-{uid}")
    directory = Path(pv["spec"]["hostPath"]["path"])
    assert directory == storage / f"pvc-{uid}_{ns}_data" and directory.is_dir()
    assert pv["status"]["phase"] == "Bound" and pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["claimRef"]["uid"] == uid
    (directory / "file").write_text("data")

    cluster.kubectl("delete", "pvc", "data", "-n", ns)
    eventually(lambda: get_json(cluster, "pv", f"pvc-{uid}") is None, "the PV to be deleted")
    eventually(lambda: not directory.exists(), "the directory to be removed")


def test_retain_keeps_the_volume_released_and_its_data(cluster: Cluster, ns: str, storage: Path) -> None:
    keep = f"keep-{ns}"
    cluster.kubectl("apply", "-f", "-", input=f"apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n"
                                                f"  name: {keep}\nprovisioner: rancher.io/local-path\nreclaimPolicy: Retain\n")
    try:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=claim("kept", keep))
        name = bound(cluster, ns, "kept")["spec"]["volumeName"]
        cluster.kubectl("delete", "pvc", "kept", "-n", ns)
        pv = eventually(lambda: (v := get_json(cluster, "pv", name)) and v["status"]["phase"] == "Released" and v,
                        "the PV to be Released")
        assert Path(pv["spec"]["hostPath"]["path"]).is_dir()
        assert cluster.kubectl("get", "pv", name, "--no-headers").stdout.split()[1:5] == ["1Gi", "RWO", "Retain", "Released"]
    finally:
        for pv in (get_json(cluster, "pv") or {"items": []})["items"]:
            if pv["spec"].get("storageClassName") == keep:
                cluster.kubectl("delete", "pv", pv["metadata"]["name"], check=False)
        cluster.kubectl("delete", "storageclass", keep, check=False)


def test_claim_without_a_class_gets_the_default(cluster: Cluster, ns: str, storage: Path) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=claim("plain", None))
    pvc = bound(cluster, ns, "plain")
    assert pvc["spec"]["storageClassName"] == "local-path"
