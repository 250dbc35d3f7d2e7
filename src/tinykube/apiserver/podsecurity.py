"""Pod Security admission: the namespace's ``pod-security.kubernetes.io/*`` labels enforced on pods.

A port of ``staging/src/k8s.io/pod-security-admission`` (v1.32): the ``baseline`` and ``restricted``
checks with their versions (``latest`` is v1.32; a newer version is evaluated as v1.32), the
label parsing, and the admission decisions with kube-apiserver's words:

- ``enforce`` refuses a pod with 403 ``pods "x" is forbidden: violates PodSecurity "restricted:latest": ...``;
- ``warn`` answers ``would violate PodSecurity "...": ...`` as a Warning header, for pods and for
  the templates of pod controllers (which are never refused);
- a namespace with invalid labels is refused (422); tightening ``enforce`` warns about the
  namespace's existing pods that would be refused;
- ``audit`` is parsed and validated but, with no audit log, records nothing.

No exemptions are configured (the default of kube-apiserver).  Unsafe sysctls are refused by the
node (``SysctlForbidden``), as upstream does, not here: the ``sysctls`` check only applies when a
namespace asks for ``baseline`` or ``restricted``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinykube.api import conversion
from tinykube.api.errors import FieldError, forbidden, invalid, invalid_value
from tinykube.api.formats import go_quote
from tinykube.api.registry import ResourceType, lookup
from tinykube.apiserver.cache import ObjectCache
from tinykube.store.base import Store

Obj = dict[str, Any]
Version = tuple[int, int]

LABEL_PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")
LEVELS = ("privileged", "baseline", "restricted")
LATEST: Version = (1, 32)  # the newest version any check has; "latest" and newer versions mean this
_VERSION = re.compile(r"^v1\.(0|[1-9][0-9]*)$")

NAMESPACES = lookup("", "v1", "namespaces")
PODS = lookup("", "v1", "pods")
assert NAMESPACES is not None and PODS is not None

# Pod controllers and where their pod template is (DefaultPodSpecExtractor).
TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "replicationcontrollers"): ("spec", "template"), ("", "podtemplates"): ("template",),
    ("apps", "replicasets"): ("spec", "template"), ("apps", "deployments"): ("spec", "template"),
    ("apps", "statefulsets"): ("spec", "template"), ("apps", "daemonsets"): ("spec", "template"),
    ("batch", "jobs"): ("spec", "template"), ("batch", "cronjobs"): ("spec", "jobTemplate", "spec", "template"),
}


# --- levels, versions, policies ----------------------------------------------------------------


@dataclass(frozen=True)
class LevelVersion:
    """A level at a policy version, printed as in messages: ``restricted:latest``, ``baseline:v1.25``."""

    level: str
    version: Version | None = None  # None: latest

    def __str__(self) -> str:
        version = "latest" if self.version is None else f"v{self.version[0]}.{self.version[1]}"
        return f"{self.level}:{version}"


@dataclass(frozen=True)
class Policy:
    """A namespace's level per mode; unlabelled modes are privileged (kube-apiserver's default config)."""

    enforce: LevelVersion = LevelVersion("privileged")
    audit: LevelVersion = LevelVersion("privileged")
    warn: LevelVersion = LevelVersion("privileged")

    def all_privileged(self) -> bool:
        return all(lv.level == "privileged" for lv in (self.enforce, self.audit, self.warn))


def policy_to_evaluate(labels: dict[str, str] | None) -> tuple[Policy, list[FieldError]]:
    """``PolicyToEvaluate``: the labels over the defaults (privileged:latest), and the labels' errors.

    A bad enforce level fails closed (restricted); a bad audit or warn level fails open.
    """
    labels = labels or {}
    modes: dict[str, LevelVersion] = {}
    errors: list[FieldError] = []
    for mode in MODES:
        level, version = "privileged", None
        if LABEL_PREFIX + mode in labels:
            level = labels[LABEL_PREFIX + mode]
            if level not in LEVELS:
                errors.append(invalid_value(f"metadata.labels[{LABEL_PREFIX}{mode}]", level,
                                            "must be one of " + ", ".join(LEVELS)))
                level = "restricted" if mode == "enforce" else "privileged"
        key = f"{LABEL_PREFIX}{mode}-version"
        if key in labels:
            version = _parse_version(labels[key], key, errors)
        modes[mode] = LevelVersion(level, version)
    return Policy(**modes), errors


def _parse_version(text: str, key: str, errors: list[FieldError]) -> Version | None:
    if text == "latest":
        return None
    match = _VERSION.match(text)
    if match is None:
        errors.append(invalid_value(f"metadata.labels[{key}]", text, 'must be "latest" or "v1.x"'))
        return None
    return (1, int(match.group(1)))


# --- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """A failed check: the short reason (listed per pod) and the detail (shown for one object)."""

    reason: str
    detail: str = ""


CheckFn = Callable[[Obj, Obj], "Violation | None"]  # (pod metadata, pod spec)


@dataclass(frozen=True)
class Check:
    """One check: its level and the implementation of each policy version (oldest first)."""

    id: str
    level: str
    versions: tuple[tuple[Version, CheckFn], ...]
    overrides: tuple[str, ...] = ()  # baseline checks a restricted check replaces

    def at(self, version: Version) -> CheckFn | None:
        chosen = None
        for minimum, fn in self.versions:
            if minimum <= version:
                chosen = fn
        return chosen


def _containers(spec: Obj) -> list[Obj]:
    """``visitContainers``: init containers, containers, ephemeral containers."""
    return [c for kind in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(kind) or []]


def _sc(obj: Obj) -> Obj:
    return obj.get("securityContext") or {}


def _join_quote(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _containers_phrase(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_join_quote(names)}"


def _setters(pod_bad: bool, containers: list[str]) -> list[str]:
    """``pod`` and/or ``container(s) "a", "b"``: who set a forbidden value."""
    return (["pod"] if pod_bad else []) + ([_containers_phrase(containers)] if containers else [])


def _windows(spec: Obj) -> bool:
    """From policy v1.25, restricted checks that cannot apply to Windows pods skip them."""
    return (spec.get("os") or {}).get("name") == "windows"


def _windows_exempt(fn: CheckFn) -> CheckFn:
    return lambda meta, spec: None if _windows(spec) else fn(meta, spec)


def host_namespaces(meta: Obj, spec: Obj) -> Violation | None:
    found = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    return Violation("host namespaces", ", ".join(found)) if found else None


def privileged(meta: Obj, spec: Obj) -> Violation | None:
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("privileged")]
    if not bad:
        return None
    return Violation("privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true")


BASELINE_CAPABILITIES = frozenset(("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"))


def capabilities_baseline(meta: Obj, spec: Obj) -> Violation | None:
    bad, caps = [], set()
    for c in _containers(spec):
        extra = [str(a) for a in ((_sc(c).get("capabilities") or {}).get("add") or []) if a not in BASELINE_CAPABILITIES]
        if extra:
            bad.append(c.get("name", ""))
            caps.update(extra)
    if not bad:
        return None
    return Violation("non-default capabilities", f"{_containers_phrase(bad)} must not include "
                                                 f"{_join_quote(sorted(caps))} in securityContext.capabilities.add")


def host_path_volumes(meta: Obj, spec: Obj) -> Violation | None:
    bad = [v.get("name", "") for v in spec.get("volumes") or [] if v.get("hostPath") is not None]
    return Violation("hostPath volumes", f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)}") if bad else None


def host_ports(meta: Obj, spec: Obj) -> Violation | None:
    bad, ports = [], set()
    for c in _containers(spec):
        used = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if used:
            bad.append(c.get("name", ""))
            ports.update(used)
    if not bad:
        return None
    return Violation("hostPort", f"{_containers_phrase(bad)} {_plural('uses', 'use', len(bad))} "
                                 f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}")


def app_armor_profile(meta: Obj, spec: Obj) -> Violation | None:
    """Fields (RuntimeDefault or Localhost) and the deprecated annotations (runtime/default, localhost/*)."""
    allowed = ("RuntimeDefault", "Localhost")
    values: set[str] = set()
    pod_profile = _sc(spec).get("appArmorProfile")
    pod_bad = pod_profile is not None and pod_profile.get("type") not in allowed
    if pod_bad:
        values.add(str(pod_profile.get("type", "")))
    bad = []
    for c in _containers(spec):
        profile = _sc(c).get("appArmorProfile")
        if profile is not None and profile.get("type") not in allowed:
            bad.append(c.get("name", ""))
            values.add(str(profile.get("type", "")))
    setters = _setters(pod_bad, bad)
    annotations = sorted(f"{k}={go_quote(v)}" for k, v in (meta.get("annotations") or {}).items()
                         if k.startswith("container.apparmor.security.beta.kubernetes.io/")
                         and v not in ("", "runtime/default") and not v.startswith("localhost/"))
    if annotations:
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if not setters:
        return None
    listed = sorted(values) + annotations
    return Violation(_plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(listed)),
                     f"{' and '.join(setters)} must not set AppArmor profile type to {_join_quote(listed)}")


def _se_linux(types: frozenset[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> Violation | None:
        bad_types: set[str] = set()
        flags = {"user": False, "role": False}

        def valid(opts: Obj | None) -> bool:
            if opts is None:
                return True
            ok = opts.get("type", "") in types
            if not ok:
                bad_types.add(opts.get("type", ""))
            for key in flags:
                if opts.get(key):
                    flags[key], ok = True, False
            return ok
        pod_bad = not valid(_sc(spec).get("seLinuxOptions"))
        setters = _setters(pod_bad, [c.get("name", "") for c in _containers(spec)
                                     if not valid(_sc(c).get("seLinuxOptions"))])
        if not setters:
            return None
        data = [f"{_plural('type', 'types', len(bad_types))} {_join_quote(sorted(bad_types))}"] if bad_types else []
        data += [f"{key} may not be set" for key, set_ in flags.items() if set_]
        return Violation("seLinuxOptions", f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: "
                                           f"{'; '.join(data)}")
    return check


def proc_mount(meta: Obj, spec: Obj) -> Violation | None:
    bad, types = [], set()
    for c in _containers(spec):
        mount = _sc(c).get("procMount")
        if mount is not None and mount != "Default":
            bad.append(c.get("name", ""))
            types.add(mount)
    if not bad:
        return None
    return Violation("procMount", f"{_containers_phrase(bad)} must not set securityContext.procMount to "
                                  f"{_join_quote(sorted(types))}")


_SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"


def seccomp_baseline_annotations(meta: Obj, spec: Obj) -> Violation | None:
    """Before v1.19 the profile was an annotation: runtime/default, docker/default or localhost/*."""
    annotations = meta.get("annotations") or {}
    keys = [_SECCOMP_POD_ANNOTATION] + [_SECCOMP_CONTAINER_ANNOTATION + c.get("name", "") for c in _containers(spec)]
    bad = sorted({f"{k}={go_quote(annotations[k])}" for k in keys if k in annotations
                  and annotations[k] not in ("runtime/default", "docker/default")
                  and not annotations[k].startswith("localhost/")})
    if not bad:
        return None
    return Violation("seccompProfile", f"forbidden {_plural('annotation', 'annotations', len(bad))} {', '.join(bad)}")


def _seccomp_check(required: bool) -> CheckFn:
    """``seccompProfile`` fields: only RuntimeDefault or Localhost; ``required`` (restricted): must be set."""
    def check(meta: Obj, spec: Obj) -> Violation | None:
        allowed, values = ("RuntimeDefault", "Localhost"), set()
        pod_profile = _sc(spec).get("seccompProfile")
        pod_bad = pod_profile is not None and pod_profile.get("type") not in allowed
        if pod_bad:
            values.add(str(pod_profile.get("type", "")))
        explicit, implicit = [], []
        for c in _containers(spec):
            profile = _sc(c).get("seccompProfile")
            if profile is not None and profile.get("type") not in allowed:
                explicit.append(c.get("name", ""))
                values.add(str(profile.get("type", "")))
            elif profile is None and (pod_profile is None or pod_bad):
                implicit.append(c.get("name", ""))
        setters = _setters(pod_bad, explicit)
        if setters:
            return Violation("seccompProfile", f"{' and '.join(setters)} must not set securityContext.seccompProfile.type "
                                               f"to {_join_quote(sorted(values))}")
        if required and implicit:
            return Violation("seccompProfile", f"pod or {_containers_phrase(implicit)} must set securityContext."
                                               'seccompProfile.type to "RuntimeDefault" or "Localhost"')
        return None
    return check


_SYSCTLS_1_0 = frozenset(("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                          "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"))
_SYSCTLS_1_27 = _SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
_SYSCTLS_1_29 = _SYSCTLS_1_27 | {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                                 "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
_SYSCTLS_1_32 = _SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}


def _sysctls(allowed: frozenset[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> Violation | None:
        bad = [s.get("name", "") for s in _sc(spec).get("sysctls") or [] if s.get("name") not in allowed]
        return Violation("forbidden sysctls", ", ".join(bad)) if bad else None
    return check


def windows_host_process(meta: Obj, spec: Obj) -> Violation | None:
    def host_process(sc: Obj) -> bool:
        return bool((sc.get("windowsOptions") or {}).get("hostProcess"))
    setters = _setters(host_process(_sc(spec)), [c.get("name", "") for c in _containers(spec) if host_process(_sc(c))])
    if not setters:
        return None
    return Violation("hostProcess", f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true")


def allow_privilege_escalation(meta: Obj, spec: Obj) -> Violation | None:
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return Violation("allowPrivilegeEscalation != false",
                     f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false")


def capabilities_restricted(meta: Obj, spec: Obj) -> Violation | None:
    missing_drop, adding, caps = [], [], set()
    for c in _containers(spec):
        requested = _sc(c).get("capabilities")
        if requested is None:
            missing_drop.append(c.get("name", ""))
            continue
        if "ALL" not in (requested.get("drop") or []):
            missing_drop.append(c.get("name", ""))
        extra = [str(a) for a in requested.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            adding.append(c.get("name", ""))
            caps.update(extra)
    details = [f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]'] if missing_drop else []
    if adding:
        details.append(f"{_containers_phrase(adding)} must not include {_join_quote(sorted(caps))} "
                       "in securityContext.capabilities.add")
    return Violation("unrestricted capabilities", "; ".join(details)) if details else None


_ALLOWED_VOLUMES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                    "secret")
_NAMED_VOLUMES = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
                  "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte",
                  "azureDisk", "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos")


def restricted_volumes(meta: Obj, spec: Obj) -> Violation | None:
    bad, types = [], set()
    for volume in spec.get("volumes") or []:
        if any(volume.get(kind) is not None for kind in _ALLOWED_VOLUMES):
            continue
        bad.append(volume.get("name", ""))
        types.add(next((kind for kind in _NAMED_VOLUMES if volume.get(kind) is not None), "unknown"))
    if not bad:
        return None
    return Violation("restricted volume types", f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)} "
                                                f"{_plural('uses', 'use', len(bad))} "
                                                f"{_plural('restricted volume type', 'restricted volume types', len(types))} "
                                                f"{_join_quote(sorted(types))}")


def run_as_non_root(meta: Obj, spec: Obj) -> Violation | None:
    pod_value = _sc(spec).get("runAsNonRoot")
    explicit = [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsNonRoot") is False]
    implicit = [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsNonRoot") is None and pod_value is not True]
    setters = _setters(pod_value is False, explicit)
    if setters:
        return Violation("runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false")
    if implicit:
        return Violation("runAsNonRoot != true",
                         f"pod or {_containers_phrase(implicit)} must set securityContext.runAsNonRoot=true")
    return None


def run_as_user(meta: Obj, spec: Obj) -> Violation | None:
    setters = _setters(_sc(spec).get("runAsUser") == 0, [c.get("name", "") for c in _containers(spec)
                                                          if _sc(c).get("runAsUser") == 0])
    return Violation("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


_SELINUX_1_0 = frozenset(("", "container_t", "container_init_t", "container_kvm_t"))

CHECKS = (
    Check("appArmorProfile", "baseline", (((1, 0), app_armor_profile),)),
    Check("capabilities_baseline", "baseline", (((1, 0), capabilities_baseline),)),
    Check("hostNamespaces", "baseline", (((1, 0), host_namespaces),)),
    Check("hostPathVolumes", "baseline", (((1, 0), host_path_volumes),)),
    Check("hostPorts", "baseline", (((1, 0), host_ports),)),
    Check("privileged", "baseline", (((1, 0), privileged),)),
    Check("procMount", "baseline", (((1, 0), proc_mount),)),
    Check("seLinuxOptions", "baseline", (((1, 0), _se_linux(_SELINUX_1_0)),
                                         ((1, 31), _se_linux(_SELINUX_1_0 | {"container_engine_t"})))),
    Check("seccompProfile_baseline", "baseline", (((1, 0), seccomp_baseline_annotations),
                                                  ((1, 19), _seccomp_check(required=False)))),
    Check("sysctls", "baseline", (((1, 0), _sysctls(_SYSCTLS_1_0)), ((1, 27), _sysctls(_SYSCTLS_1_27)),
                                  ((1, 29), _sysctls(_SYSCTLS_1_29)), ((1, 32), _sysctls(_SYSCTLS_1_32)))),
    Check("windowsHostProcess", "baseline", (((1, 0), windows_host_process),)),
    Check("allowPrivilegeEscalation", "restricted", (((1, 8), allow_privilege_escalation),
                                                     ((1, 25), _windows_exempt(allow_privilege_escalation)))),
    Check("capabilities_restricted", "restricted", (((1, 22), capabilities_restricted),
                                                    ((1, 25), _windows_exempt(capabilities_restricted))),
          overrides=("capabilities_baseline",)),
    Check("restrictedVolumes", "restricted", (((1, 0), restricted_volumes),), overrides=("hostPathVolumes",)),
    Check("runAsNonRoot", "restricted", (((1, 0), run_as_non_root),)),
    Check("runAsUser", "restricted", (((1, 23), run_as_user),)),
    Check("seccompProfile_restricted", "restricted", (((1, 19), _seccomp_check(required=True)),
                                                      ((1, 25), _windows_exempt(_seccomp_check(required=True)))),
          overrides=("seccompProfile_baseline",)),
)  # baseline then restricted, each sorted by id (Go's byte order): the order reasons are listed in


def evaluate(lv: LevelVersion, meta: Obj, spec: Obj) -> list[Violation]:
    """``checkRegistry.EvaluatePod``: the violations of ``lv`` (none for privileged)."""
    if lv.level == "privileged":
        return []
    version = min(lv.version or LATEST, LATEST)
    active = [(c, c.at(version)) for c in CHECKS if c.level == "baseline" or lv.level == "restricted"]
    active = [(c, fn) for c, fn in active if fn is not None]
    overridden = {o for c, _ in active for o in c.overrides}
    return [v for c, fn in active if c.id not in overridden and (v := fn(meta, spec)) is not None]


def forbidden_detail(violations: list[Violation]) -> str:
    """``AggregateCheckResult.ForbiddenDetail``: ``reason (detail), reason, ...``."""
    return ", ".join(f"{v.reason} ({v.detail})" if v.detail else v.reason for v in violations)


def forbidden_reason(violations: list[Violation]) -> str:
    """``AggregateCheckResult.ForbiddenReason``: the reasons only, as namespace warnings list them."""
    return ", ".join(v.reason for v in violations)


# --- the admission plugin ------------------------------------------------------------------------


def significant_update(new: Obj, old: Obj) -> bool:
    """``isSignificantPodUpdate``: images, seccomp annotations or the set of (ephemeral) containers changed."""
    annotations = (new.get("metadata") or {}).get("annotations") or {}
    old_annotations = (old.get("metadata") or {}).get("annotations") or {}
    if annotations.get(_SECCOMP_POD_ANNOTATION) != old_annotations.get(_SECCOMP_POD_ANNOTATION):
        return True
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    for kind in ("containers", "initContainers"):
        if len(spec.get(kind) or []) != len(old_spec.get(kind) or []):
            return True
    old_by_name = {c.get("name"): c for c in _containers(old_spec)}
    for c in _containers(spec):
        before = old_by_name.get(c.get("name"))
        key = _SECCOMP_CONTAINER_ANNOTATION + c.get("name", "")
        if before is None or c.get("image") != before.get("image") or annotations.get(key) != old_annotations.get(key):
            return True
    return False


def pod_template(rt: ResourceType, obj: Obj) -> Obj | None:
    """The pod template of a pod controller, or None (not a controller, or none given)."""
    path = TEMPLATES.get((rt.group, rt.resource))
    template: Any = obj if path else None
    for key in path or ():
        template = template.get(key) if isinstance(template, dict) else None
    return template if isinstance(template, dict) else None


class PodSecurityAdmission:
    """The admission hook (see :class:`~tinykube.apiserver.storage.Storage`); returns warnings."""

    def __init__(self, store: Store, namespaces: ObjectCache | None = None):
        self.store = store
        self._namespaces = namespaces or ObjectCache(store, NAMESPACES)  # the namespace lister (unstarted: live reads)

    async def admit(self, rt: ResourceType, obj: Obj, old: Obj | None) -> list[str] | None:
        if not rt.group and rt.kind == "Namespace":
            return await self._namespace(obj, old)
        if not rt.group and rt.kind == "Pod":
            if old is not None and not significant_update(obj, old):
                return None
            return await self._evaluate(obj, obj, enforce=True)
        template = pod_template(rt, obj)
        return await self._evaluate(obj, template, enforce=False) if template is not None else None

    async def _labels(self, namespace: str) -> dict[str, str] | None:
        ns = await self._namespaces.fetch(None, namespace)
        return None if ns is None else (ns.get("metadata") or {}).get("labels") or {}

    async def _evaluate(self, obj: Obj, pod: Obj, enforce: bool) -> list[str] | None:
        """``EvaluatePod``: refuse on enforce (pods only), else warn; audit has nowhere to go."""
        labels = await self._labels(obj["metadata"].get("namespace", ""))
        if labels is None:
            return None
        policy, _ = policy_to_evaluate(labels)
        if policy.all_privileged():
            return None
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if enforce:
            violations = evaluate(policy.enforce, meta, spec)
            if violations:
                name = obj["metadata"].get("name", "")
                raise forbidden(f'pods "{name}" is forbidden: violates PodSecurity "{policy.enforce}": '
                                f"{forbidden_detail(violations)}", "pods", name)
        violations = evaluate(policy.warn, meta, spec)
        if not violations:
            return None
        return [f'would violate PodSecurity "{policy.warn}": {forbidden_detail(violations)}']

    async def _namespace(self, ns: Obj, old: Obj | None) -> list[str] | None:
        """``ValidateNamespace``: valid labels; a stricter enforce level warns about existing pods."""
        labels = (ns.get("metadata") or {}).get("labels") or {}
        policy, errors = policy_to_evaluate(labels)
        old_policy, old_errors = policy_to_evaluate(((old or {}).get("metadata") or {}).get("labels"))
        if errors and errors != old_errors:  # labels that were already invalid do not block other updates
            raise invalid("Namespace", ns["metadata"].get("name", ""), errors)
        if old is None or not _tightened(policy.enforce, old_policy.enforce):
            return None
        return await self._existing_pods(ns["metadata"]["name"], policy.enforce)

    async def _existing_pods(self, namespace: str, enforce: LevelVersion) -> list[str] | None:
        """``EvaluatePodsInNamespace``: one warning per distinct set of reasons, naming the first pod."""
        listed = await self.store.list(PODS.list_prefix(namespace))
        pods = [conversion.decoded(PODS, kv.value, kv.mod_revision) for kv in listed.items]
        by_reason: dict[str, list[str]] = {}
        for pod in pods:
            violations = evaluate(enforce, pod.get("metadata") or {}, pod.get("spec") or {})
            if violations:
                by_reason.setdefault(forbidden_reason(violations), []).append(pod["metadata"]["name"])
        if not by_reason:
            return None
        header = f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level "{enforce}"'
        return [header, *sorted(_pod_warning(names, reason) for reason, names in by_reason.items())]


def _tightened(new: LevelVersion, old: LevelVersion) -> bool:
    """Whether a new enforce level can refuse pods the old one let in (the cases upstream re-checks)."""
    if new == old or new.level == "privileged":
        return False
    return new.version != old.version or LEVELS.index(new.level) > LEVELS.index(old.level)


def _pod_warning(names: list[str], reason: str) -> str:
    """``decoratePodWarnings``: ``pod: reasons``, ``pod (and 1 other pod): ...``, ``(and N other pods)``."""
    first, others = min(names), len(names) - 1
    if others == 0:
        return f"{first}: {reason}"
    return f"{first} (and {others} other {_plural('pod', 'pods', others)}): {reason}"
