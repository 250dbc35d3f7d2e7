"""Pod Security admission end to end: namespace labels set with the real kubectl, and what kubectl prints."""

from __future__ import annotations

import pytest

from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.slow

PRIVILEGED_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: c
    image: busybox
    securityContext:
      privileged: true
"""
RESTRICTED_DETAIL = (
    'privileged (container "c" must not set securityContext.privileged=true), '
    'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), '
    'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
    'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
    'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')


def _apply(cluster: Cluster, ns: str, name: str) -> tuple[int, str, str]:
    result = cluster.kubectl("apply", "-n", ns, "-f", "-", input=PRIVILEGED_POD.format(name=name), check=False)
    return result.returncode, result.stdout, result.stderr


def test_enforce_refuses_a_privileged_pod(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("label", "ns", ns, "pod-security.kubernetes.io/enforce=restricted")
    code, _, err = _apply(cluster, ns, "priv")
    assert code != 0
    assert err.strip() == (f'Error from server (Forbidden): error when creating "STDIN": pods "priv" is forbidden: '
                           f'violates PodSecurity "restricted:latest": {RESTRICTED_DETAIL}')
    assert cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout.strip() == ""


def test_warn_admits_with_a_warning(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("label", "ns", ns, "pod-security.kubernetes.io/warn=restricted")
    code, out, err = _apply(cluster, ns, "priv")
    assert code == 0 and out.strip() == "pod/priv created"
    assert f'Warning: would violate PodSecurity "restricted:latest": {RESTRICTED_DETAIL}' in err.splitlines()


def test_labels_are_validated_and_tightening_warns_about_existing_pods(cluster: Cluster, ns: str) -> None:
    bad = cluster.kubectl("label", "ns", ns, "pod-security.kubernetes.io/enforce=strict", check=False)
    assert bad.returncode != 0
    assert bad.stderr.strip() == (f'The Namespace "{ns}" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: '
                                  'Invalid value: "strict": must be one of privileged, baseline, restricted')
    assert _apply(cluster, ns, "a")[0] == 0 and _apply(cluster, ns, "b")[0] == 0
    tightened = cluster.kubectl("label", "ns", ns, "pod-security.kubernetes.io/enforce=baseline")
    assert tightened.stdout.strip() == f"namespace/{ns} labeled"
    assert tightened.stderr.splitlines() == [
        f'Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce level "baseline:latest"',
        "Warning: a (and 1 other pod): privileged"]
