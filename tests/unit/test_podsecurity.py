"""Pod Security admission: the checks' exact words, levels and versions, labels, and the hook in Storage."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tinykube.api import conversion
from tinykube.api.errors import ApiError
from tinykube.api.registry import ResourceType, lookup
from tinykube.apiserver import podsecurity as ps
from tinykube.apiserver.podsecurity import LevelVersion, PodSecurityAdmission
from tinykube.apiserver.storage import Storage, WriteOptions
from tinykube.store.base import KeyValue, ListResult
from tinykube.store.sqlite import SqliteStore

NAMESPACES, PODS = lookup("", "v1", "namespaces"), lookup("", "v1", "pods")
assert NAMESPACES is not None and PODS is not None
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment", True, "deployment")
RESTRICTED, BASELINE = LevelVersion("restricted"), LevelVersion("baseline")

# The tutorial's security-pod (pod-tutorial.ko.md, "Security Context 예시").
SECURITY_POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "security-pod", "namespace": "ns"},
    "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000},
             "containers": [{"name": "app", "image": "nginx:1.14.2",
                             "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                 "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
                             "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
             "volumes": [{"name": "tmp", "emptyDir": {}}]}}

PRIVILEGED_DETAIL = (
    'privileged (container "c" must not set securityContext.privileged=true), '
    'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), '
    'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
    'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
    'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')


def pod(name: str = "x", **spec: Any) -> dict[str, Any]:
    spec.setdefault("containers", [{"name": "c", "image": "busybox"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def privileged_pod(name: str = "x") -> dict[str, Any]:
    return pod(name, containers=[{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}])


def detail(lv: LevelVersion, obj: dict[str, Any]) -> str:
    return ps.forbidden_detail(ps.evaluate(lv, obj.get("metadata") or {}, obj["spec"]))


# --- levels and checks -------------------------------------------------------------------------


def test_security_pod_passes_baseline_and_misses_only_seccomp_for_restricted() -> None:
    assert detail(BASELINE, SECURITY_POD) == ""
    assert detail(RESTRICTED, SECURITY_POD) == ('seccompProfile (pod or container "app" must set '
                                                'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')
    hardened = copy.deepcopy(SECURITY_POD)
    hardened["spec"]["securityContext"]["seccompProfile"] = {"type": "RuntimeDefault"}
    assert detail(RESTRICTED, hardened) == ""


def test_privileged_pod_against_each_level() -> None:
    assert detail(LevelVersion("privileged"), privileged_pod()) == ""
    assert detail(BASELINE, privileged_pod()) == 'privileged (container "c" must not set securityContext.privileged=true)'
    assert detail(RESTRICTED, privileged_pod()) == PRIVILEGED_DETAIL


def test_restricted_lists_baseline_checks_first_without_the_overridden_ones() -> None:
    spec = {"hostNetwork": True, "hostPID": True, "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
            "containers": [{"name": "container-00", "securityContext": {"privileged": True, "runAsUser": 0}}]}
    assert detail(RESTRICTED, {"spec": spec}) == (
        'host namespaces (hostNetwork=true, hostPID=true), '
        'privileged (container "container-00" must not set securityContext.privileged=true), '
        'allowPrivilegeEscalation != false (container "container-00" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "container-00" must set securityContext.capabilities.drop=["ALL"]), '
        'restricted volume types (volume "host" uses restricted volume type "hostPath"), '
        'runAsNonRoot != true (pod or container "container-00" must set securityContext.runAsNonRoot=true), '
        'runAsUser=0 (container "container-00" must not set runAsUser=0), '
        'seccompProfile (pod or container "container-00" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")')
    assert detail(BASELINE, {"spec": spec}).startswith('host namespaces (hostNetwork=true, hostPID=true), '
                                                       'hostPath volumes (volume "host"), privileged')


@pytest.mark.parametrize("spec, expected", [
    ({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}]},
                     {"name": "b", "ports": [{"containerPort": 81, "hostPort": 81}]}]},
     'hostPort (containers "a", "b" use hostPorts 8080, 81)'),
    ({"containers": [{"name": "a", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_TIME", "CHOWN"]}}}]},
     'non-default capabilities (container "a" must not include "NET_ADMIN", "SYS_TIME" in '
     'securityContext.capabilities.add)'),
    ({"containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}}]},
     'procMount (container "a" must not set securityContext.procMount to "Unmasked")'),
    ({"securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "u"}},
      "containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"role": "r"}}}]},
     'seLinuxOptions (pod and container "a" set forbidden securityContext.seLinuxOptions: type "spc_t"; '
     'user may not be set; role may not be set)'),
    ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [{"name": "a"}]},
     'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'),
    ({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}, "containers": [{"name": "a"}]},
     'forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")'),
    ({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_rmem", "value": "1"},
                                      {"name": "vm.swappiness", "value": "1"}]}, "containers": [{"name": "a"}]},
     "forbidden sysctls (kernel.msgmax, vm.swappiness)"),
    ({"securityContext": {"windowsOptions": {"hostProcess": True}}, "containers": [{"name": "a"}]},
     "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"),
])
def test_baseline_checks_word_their_findings_as_upstream(spec: dict[str, Any], expected: str) -> None:
    assert detail(BASELINE, {"spec": spec}) == expected


def test_apparmor_annotations_are_checked_too() -> None:
    meta = {"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined",
                            "container.apparmor.security.beta.kubernetes.io/b": "localhost/mine"}}
    assert detail(BASELINE, {"metadata": meta, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}) == (
        'forbidden AppArmor profile (annotation must not set AppArmor profile type to '
        '"container.apparmor.security.beta.kubernetes.io/a="unconfined"")')


def test_restricted_capabilities_volumes_and_explicit_false() -> None:
    spec = {"securityContext": {"runAsNonRoot": False, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}, {"name": "i", "image": {"reference": "x"}}],
            "containers": [{"name": "a", "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "NET_ADMIN"]}}}]}
    assert detail(RESTRICTED, {"spec": spec}) == (  # capabilities_restricted replaces the baseline check
        'unrestricted capabilities (container "a" must not include "NET_ADMIN" in securityContext.capabilities.add), '
        'restricted volume types (volumes "n", "i" use restricted volume types "nfs", "unknown"), '
        'runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)')


def test_versions_pick_the_check_revision_of_the_policy() -> None:
    sysctl = {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]},
              "containers": [{"name": "a"}]}
    assert detail(LevelVersion("baseline", (1, 28)), {"spec": sysctl}) == "forbidden sysctls (net.ipv4.tcp_keepalive_time)"
    assert detail(LevelVersion("baseline", (1, 29)), {"spec": sysctl}) == ""
    assert detail(LevelVersion("baseline", (1, 99)), {"spec": sysctl}) == ""
    # restricted:v1.21 predates capabilities_restricted: the baseline capabilities check still applies.
    old = detail(LevelVersion("restricted", (1, 21)), privileged_pod())
    assert "unrestricted capabilities" not in old and old.startswith("privileged (")
    windows = pod(os={"name": "windows"}, securityContext={"runAsNonRoot": True})
    assert detail(LevelVersion("restricted", (1, 24)), windows).startswith("allowPrivilegeEscalation != false")
    assert detail(RESTRICTED, windows) == ""
    annotated = pod()
    annotated["metadata"]["annotations"] = {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}
    assert detail(LevelVersion("baseline", (1, 18)), annotated) == (
        'seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")')
    assert detail(BASELINE, annotated) == ""


def test_labels_parse_with_their_field_errors() -> None:
    policy, errors = ps.policy_to_evaluate({"pod-security.kubernetes.io/enforce": "restricted",
                                            "pod-security.kubernetes.io/warn": "baseline",
                                            "pod-security.kubernetes.io/warn-version": "v1.25"})
    assert (str(policy.enforce), str(policy.warn), str(policy.audit)) == (
        "restricted:latest", "baseline:v1.25", "privileged:latest")
    assert errors == []
    policy, errors = ps.policy_to_evaluate({"pod-security.kubernetes.io/enforce": "strict",
                                            "pod-security.kubernetes.io/audit": "nope",
                                            "pod-security.kubernetes.io/enforce-version": "1.30"})
    assert (policy.enforce.level, policy.audit.level) == ("restricted", "privileged")  # closed / open
    assert [str(e) for e in errors] == [
        'metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": '
        "must be one of privileged, baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "1.30": must be "latest" or "v1.x"',
        'metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "nope": '
        "must be one of privileged, baseline, restricted"]


def test_only_significant_pod_updates_are_evaluated() -> None:
    old = privileged_pod()
    status_only = copy.deepcopy(old)
    status_only["status"] = {"phase": "Running"}
    assert not ps.significant_update(status_only, old)
    new_image = copy.deepcopy(old)
    new_image["spec"]["containers"][0]["image"] = "busybox:2"
    assert ps.significant_update(new_image, old)
    debug = copy.deepcopy(old)
    debug["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    assert ps.significant_update(debug, old)


# --- the admission hook --------------------------------------------------------------------------


class FakeStore:
    """What the hook reads: namespaces by key, pods by prefix."""

    def __init__(self, *objects: tuple[ResourceType, dict[str, Any]]):
        self.data = {rt.key(o["metadata"].get("namespace"), o["metadata"]["name"]): conversion.stored(rt, o)
                     for rt, o in objects}

    async def get(self, key: str) -> KeyValue | None:
        return KeyValue(key, self.data[key], 1, 1) if key in self.data else None

    async def list(self, prefix: str, start_after: str = "", limit: int = 0) -> ListResult:
        return ListResult([KeyValue(k, v, 1, 1) for k, v in sorted(self.data.items()) if k.startswith(prefix)], 1)


def namespace(**labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "ns", "labels": {f"pod-security.kubernetes.io/{k}": v for k, v in labels.items()}}}


def admission(*objects: tuple[ResourceType, dict[str, Any]]) -> PodSecurityAdmission:
    return PodSecurityAdmission(FakeStore(*objects))  # type: ignore[arg-type]


async def test_enforce_refuses_with_403_and_the_exact_message() -> None:
    hook = admission((NAMESPACES, namespace(enforce="restricted")))
    with pytest.raises(ApiError) as refused:
        await hook.admit(PODS, privileged_pod(), None)
    assert refused.value.code == 403 and refused.value.reason == "Forbidden"
    assert refused.value.message == f'pods "x" is forbidden: violates PodSecurity "restricted:latest": {PRIVILEGED_DETAIL}'
    assert refused.value.details == {"name": "x", "kind": "pods"}
    with pytest.raises(ApiError, match='pods "x" is forbidden: violates PodSecurity "restricted:latest": '
                                       "allowPrivilegeEscalation != false"):
        await hook.admit(PODS, pod(), None)


async def test_warn_mode_yields_warnings_and_never_refuses() -> None:
    hook = admission((NAMESPACES, namespace(enforce="baseline", warn="restricted", audit="restricted")))
    warnings = await hook.admit(PODS, copy.deepcopy(SECURITY_POD), None)
    assert warnings == ['would violate PodSecurity "restricted:latest": seccompProfile (pod or container "app" must set '
                        'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")']
    with pytest.raises(ApiError, match="violates PodSecurity \"baseline:latest\": privileged"):
        await hook.admit(PODS, privileged_pod(), None)
    assert await admission((NAMESPACES, namespace())).admit(PODS, privileged_pod(), None) is None


async def test_pod_controllers_get_warnings_for_their_template() -> None:
    hook = admission((NAMESPACES, namespace(enforce="restricted", warn="baseline")))
    deployment = {"metadata": {"name": "d", "namespace": "ns"},
                  "spec": {"template": {"metadata": {}, "spec": privileged_pod()["spec"]}}}
    assert await hook.admit(DEPLOYMENTS, deployment, None) == [
        'would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)']
    unchanged_status = copy.deepcopy(privileged_pod())
    assert await hook.admit(PODS, unchanged_status, privileged_pod()) is None


async def test_namespace_labels_are_validated() -> None:
    hook = admission()
    with pytest.raises(ApiError) as refused:
        await hook.admit(NAMESPACES, namespace(enforce="strict"), None)
    assert refused.value.code == 422
    assert refused.value.message == ('Namespace "ns" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: '
                                     'Invalid value: "strict": must be one of privileged, baseline, restricted')
    stale = namespace(enforce="strict")
    relabelled = copy.deepcopy(stale)
    relabelled["metadata"]["labels"]["team"] = "a"
    assert await hook.admit(NAMESPACES, relabelled, stale) is None  # already invalid: other updates pass


async def test_tightening_enforce_warns_about_existing_pods() -> None:
    hook = admission((PODS, privileged_pod("b")), (PODS, privileged_pod("a")), (PODS, pod("c")),
                     (PODS, copy.deepcopy(SECURITY_POD)))
    warnings = await hook.admit(NAMESPACES, namespace(enforce="restricted"), namespace())
    assert warnings == [
        'existing pods in namespace "ns" violate the new PodSecurity enforce level "restricted:latest"',
        "a (and 1 other pod): privileged, allowPrivilegeEscalation != false, unrestricted capabilities, "
        "runAsNonRoot != true, seccompProfile",
        "c: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
        "security-pod: seccompProfile"]
    assert await hook.admit(NAMESPACES, namespace(enforce="baseline"), namespace(enforce="restricted")) is None
    assert await hook.admit(NAMESPACES, namespace(enforce="privileged"), namespace()) is None


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = SqliteStore(str(tmp_path / "store.db"))
    await store.start()
    try:
        yield Storage(store, admission=[PodSecurityAdmission(store).admit])
    finally:
        await store.close()


async def test_storage_passes_warnings_to_the_response(storage: Storage) -> None:
    await storage.create(NAMESPACES, namespace(warn="restricted"), None, WriteOptions())
    opts = WriteOptions()
    await storage.create(PODS, privileged_pod(), "ns", opts)
    assert opts.warnings == [f'would violate PodSecurity "restricted:latest": {PRIVILEGED_DETAIL}']
    old, revision = await storage.get(NAMESPACES, None, "ns")
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    opts = WriteOptions()
    await storage.update(NAMESPACES, new, old, revision, opts)
    assert opts.warnings == ['existing pods in namespace "ns" violate the new PodSecurity enforce level "baseline:latest"',
                             "x: privileged"]
