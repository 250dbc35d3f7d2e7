"""TLS bootstrap and the Node authorizer, end to end: a ``tinykube node`` joins with the join token,
its CertificateSigningRequest is approved and issued, and with the client certificate it got the
node may update its own Node but not another's, and may not list Secrets.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.cluster import Cluster, eventually
from tests.e2e.nodes import NodeProcess, split_node_cluster_fixture
from tests.registry import LocalRegistry, requires_registry

pytestmark = [pytest.mark.slow, requires_registry]


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[tuple[Cluster, NodeProcess]]:
    yield from split_node_cluster_fixture(tmp_path_factory.mktemp("bootstrap"), registry)


def node_kubectl(cluster: Cluster, agent: NodeProcess, *args: str) -> tuple[int, str]:
    """kubectl with the node's own kubeconfig (its bootstrapped client certificate)."""
    config = agent.data_dir / "agent" / "kubelet.kubeconfig"
    env = {**cluster.env(), "KUBECONFIG": str(config)}
    result = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, timeout=60)
    return result.returncode, result.stdout + result.stderr


def csr_rows(cluster: Cluster) -> list[list[str]]:
    return [line.split() for line in cluster.kubectl("get", "csr", "--no-headers").stdout.splitlines()]


def test_the_node_gets_an_issued_client_certificate(split: tuple[Cluster, NodeProcess]) -> None:
    cluster, agent = split
    rows = eventually(lambda: [r for r in csr_rows(cluster) if r[-1] == "Approved,Issued"], "an issued CSR")
    assert rows[0][2:5] == ["kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:" + _token_id(cluster),
                            "<none>"], rows
    header = cluster.kubectl("get", "csr").stdout.splitlines()[0].split()
    assert header == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    eventually(lambda: cluster.kubectl("get", "node", agent.name, check=False).returncode == 0, "the node registered")
    config = yaml.safe_load(Path(agent.data_dir / "agent" / "kubelet.kubeconfig").read_text())
    assert config["users"][0]["user"]["client-certificate-data"]


def _token_id(cluster: Cluster) -> str:
    return (cluster.data_dir / "token").read_text().strip().rpartition(":")[2][:6]


def test_the_node_may_update_only_its_own_node(split: tuple[Cluster, NodeProcess]) -> None:
    cluster, agent = split
    eventually(lambda: cluster.kubectl("get", "node", agent.name, check=False).returncode == 0, "the node registered")
    code, out = node_kubectl(cluster, agent, "label", "node", agent.name, "bootstrap-test=yes", "--overwrite")
    assert code == 0, out
    cluster.kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "someone-else"}}))
    try:
        code, out = node_kubectl(cluster, agent, "label", "node", "someone-else", "bootstrap-test=yes")
        assert code != 0
        assert f'nodes "someone-else" is forbidden: node "{agent.name}" is not allowed to modify node "someone-else"' in out
    finally:
        cluster.kubectl("delete", "node", "someone-else")


def test_the_node_may_not_list_secrets(split: tuple[Cluster, NodeProcess]) -> None:
    cluster, agent = split
    code, out = node_kubectl(cluster, agent, "get", "secrets", "-A")
    assert code != 0
    assert (f'secrets is forbidden: User "system:node:{agent.name}" cannot list resource "secrets" in API group "" '
            "at the cluster scope: can only read namespaced object of this type") in out
    code, out = node_kubectl(cluster, agent, "get", "secrets", "-n", "default")
    assert code != 0 and "No Object name found" in out
