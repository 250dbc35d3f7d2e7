"""The official ``kubernetes`` Python client drives pods and configmaps, unmodified."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client, config, watch

from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.slow


@pytest.fixture
def core(cluster: Cluster) -> client.CoreV1Api:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    return client.CoreV1Api(api_client)


def _pod(name: str) -> client.V1Pod:
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels={"app": "py"}),
                        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))


def test_pod_lifecycle(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_pod(ns, _pod("py-pod"))
    assert created.metadata.uid and created.status.phase == "Pending"
    assert core.read_namespaced_pod("py-pod", ns).spec.containers[0].image == "busybox"
    listed = core.list_namespaced_pod(ns, label_selector="app=py")
    assert [p.metadata.name for p in listed.items] == ["py-pod"]
    patched = core.patch_namespaced_pod("py-pod", ns, {"metadata": {"labels": {"patched": "yes"}}})
    assert patched.metadata.labels["patched"] == "yes"
    core.delete_namespaced_pod("py-pod", ns)
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod("py-pod", ns)
    assert err.value.status == 404


def test_configmap_lifecycle_and_watch(core: client.CoreV1Api, ns: str) -> None:
    seen: list[tuple[str, str]] = []
    start = core.list_namespaced_config_map(ns).metadata.resource_version

    def follow() -> None:
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=5):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    thread = threading.Thread(target=follow)
    thread.start()
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm"), data={"k": "v"})
    core.create_namespaced_config_map(ns, body)
    core.patch_namespaced_config_map("py-cm", ns, {"data": {"k": "v2"}})
    assert core.read_namespaced_config_map("py-cm", ns).data == {"k": "v2"}
    core.delete_namespaced_config_map("py-cm", ns)
    thread.join(timeout=10)
    assert ("ADDED", "py-cm") in seen and ("MODIFIED", "py-cm") in seen and ("DELETED", "py-cm") in seen


def test_eviction(core: client.CoreV1Api, ns: str) -> None:
    """pods/eviction as kubectl drain uses it: refused when malformed or preconditions fail; else the
    pod is marked DisruptionTarget and deleted gracefully (its node, which does not exist here, would end it)."""
    bound = _pod("evictee")
    bound.spec.node_name = "absent-node"
    uid = core.create_namespaced_pod(ns, bound).metadata.uid

    def evict(name: str, **options: object) -> None:
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=ns),
                                 delete_options=client.V1DeleteOptions(**options) if options else None)
        core.create_namespaced_pod_eviction("evictee", ns, body)

    for name, options, status, text in (
            ("other", {}, 400, "name in URL does not match name in Eviction object"),
            ("evictee", {"preconditions": client.V1Preconditions(uid="not-its-uid")}, 409, "Precondition failed: UID")):
        with pytest.raises(client.ApiException) as err:
            evict(name, **options)
        assert err.value.status == status and text in err.value.body
    assert not core.read_namespaced_pod("evictee", ns).metadata.deletion_timestamp
    evict("evictee", preconditions=client.V1Preconditions(uid=uid))
    pod = core.read_namespaced_pod("evictee", ns)
    assert pod.metadata.deletion_timestamp and pod.metadata.deletion_grace_period_seconds == 30
    target = next(c for c in pod.status.conditions if c.type == "DisruptionTarget")
    assert (target.status, target.reason, target.message) == ("True", "EvictionByEvictionAPI", "Eviction API: evicting")
    core.delete_namespaced_pod("evictee", ns, grace_period_seconds=0)
    with pytest.raises(client.ApiException) as err:
        evict("evictee")
    assert err.value.status == 404
