"""TLS bootstrap and the Node authorizer, end to end: a ``tinykube node`` joins with the join token,
its CertificateSigningRequest is approved and issued, and with the client certificate it got the
node may update its own Node but not another's, and may not list Secrets.  Its certificates
live SIGNING seconds (``--cluster-signing-duration``), so within the module the node renews its
certificate as itself and keeps working after the first one has expired.
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.e2e.cluster import Cluster, eventually
from tests.e2e.nodes import NodeProcess, split_node_cluster_fixture
from tests.registry import LocalRegistry, requires_registry

pytestmark = [pytest.mark.slow, requires_registry]
SIGNING = 130  # seconds: renewed at 70-84 % of 130 s + the 5 min backdate, i.e. 1-61 s after issue


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[tuple[Cluster, NodeProcess]]:
    yield from split_node_cluster_fixture(tmp_path_factory.mktemp("bootstrap"), registry,
                                          ("--cluster-signing-duration", f"{SIGNING}s"))


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


def client_certificate(agent: NodeProcess) -> x509.Certificate:
    config = yaml.safe_load(Path(agent.data_dir / "agent" / "kubelet.kubeconfig").read_text())
    return x509.load_pem_x509_certificate(base64.b64decode(config["users"][0]["user"]["client-certificate-data"]))


def lease_renewed(cluster: Cluster, agent: NodeProcess) -> datetime.datetime:
    stamp = cluster.kubectl("get", "lease", "-n", "kube-node-lease", agent.name,
                            "-o", "jsonpath={.spec.renewTime}").stdout.strip()
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_the_node_renews_its_certificate_and_works_on_after_the_first_expires(split: tuple[Cluster, NodeProcess]) -> None:
    cluster, agent = split
    eventually(lambda: cluster.kubectl("get", "node", agent.name, check=False).returncode == 0, "the node registered")
    first = client_certificate(agent)
    renewals = eventually(lambda: [r for r in csr_rows(cluster)
                                   if r[3] == f"system:node:{agent.name}" and r[-1] == "Approved,Issued"],
                          "a renewal requested by the node itself", SIGNING)
    assert renewals[0][2] == "kubernetes.io/kube-apiserver-client-kubelet"
    eventually(lambda: client_certificate(agent).serial_number != first.serial_number, "the kubeconfig's new certificate")
    time.sleep(max(0.0, (first.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).total_seconds()))
    eventually(lambda: lease_renewed(cluster, agent) > first.not_valid_after_utc, "a Lease renewal after the expiry",
               25)  # made with the new certificate: the old one is refused by now
    status = cluster.kubectl("get", "node", agent.name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
    assert status.stdout == "True"
    code, out = node_kubectl(cluster, agent, "get", "node", agent.name)
    assert code == 0, out
