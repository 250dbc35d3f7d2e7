"""A container's security settings and its pod's cgroup limits, decided from the Pod as the kubelet decides them.

Pure functions from Pod dicts to what the runtime's ``ContainerSpec`` and ``cgroups`` take, so
that users see what Kubernetes with containerd shows them:

- the effective security context (``securitycontext.DetermineEffectiveSecurityContext``), the
  user (the kubelet's ``getImageUser`` then containerd's ``WithUser``), supplementary groups
  (image groups, the primary group, ``fsGroup``, ``supplementalGroups``: containerd's sorted
  merge), ``runAsNonRoot`` (``kuberuntime/security_context_others.go`` with its messages),
  capabilities (containerd's ``WithCapabilities``, ``ALL`` included), ``privileged``,
  ``allowPrivilegeEscalation`` → no_new_privs (``securitycontext.AddNoNewPrivileges``),
  ``readOnlyRootFilesystem``, ``procMount``, seccomp (``getSeccompProfile``; RuntimeDefault
  is containerd's default profile, ported whole), sysctls and AppArmor;
- the node-side admission of a pod (``SysctlForbidden``, ``AppArmor``);
- the pod cgroup (``cm.ResourceConfigForPod``), ``oom_score_adj`` (``qos/policy.go``);
- fsGroup ownership of volumes (``volume.SetVolumeOwnership``): the one function that touches disk.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import posixpath
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinykube.api import resourcelist
from tinykube.api.defaults import qos_class
from tinykube.api.formats import go_quote
from tinykube.api.quantity import milli_value, value
from tinykube.node import containerspec
from tinykube.node.runtime import cgroups, oci
from tinykube.node.runtime.cgroups import Resources

Obj = dict[str, Any]
Json = dict[str, Any]

# Every capability Linux 5.9+ knows, in bit order; ``ALL`` and ``privileged`` grant those the host has.
ALL_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")

# The pod's security context fields a container inherits unless it sets its own.
_INHERITED = ("seLinuxOptions", "windowsOptions", "runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile",
              "appArmorProfile")

# pkg/kubelet/sysctl/safe_sysctls.go (1.32): namespaced, isolated per pod; name → namespace.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced": "ipc", "net.ipv4.ip_local_port_range": "net", "net.ipv4.tcp_syncookies": "net",
    "net.ipv4.ping_group_range": "net", "net.ipv4.ip_unprivileged_port_start": "net",
    "net.ipv4.ip_local_reserved_ports": "net", "net.ipv4.tcp_keepalive_time": "net",
    "net.ipv4.tcp_fin_timeout": "net", "net.ipv4.tcp_keepalive_intvl": "net",
    "net.ipv4.tcp_keepalive_probes": "net", "net.ipv4.tcp_rmem": "net", "net.ipv4.tcp_wmem": "net"}

# The kubelet's podPidsLimit defaults to -1 (none).  Here the API server, the agent and every pod
# share one host with no PID-pressure eviction, so one fork bomb would starve all of them; 4096
# is far above what real workloads run in one pod and far below the kernel's pid_max.
POD_PIDS_LIMIT = 4096

GUARANTEED_OOM_SCORE_ADJ = -997  # pkg/kubelet/qos/policy.go
BESTEFFORT_OOM_SCORE_ADJ = 1000
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000  # scheduling.SystemCriticalPriority
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"

# SetVolumeOwnership's masks: group read-write (read-only volumes: read), directories setgid and searchable.
RW_MASK, RO_MASK, EXEC_MASK = 0o660, 0o440, 0o110


class SecurityError(Exception):
    """The container cannot be created as asked; ``reason`` is its waiting reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ImageUser:
    """The image's ``User`` and its ``/etc/passwd`` and ``/etc/group`` (empty when absent)."""

    user: str = ""
    passwd: str = ""
    group: str = ""


@dataclass(frozen=True)
class SecuritySettings:
    """The ``ContainerSpec`` fields security decides; the names are ContainerSpec's."""

    uid: int
    gid: int
    additional_gids: list[int]
    capabilities: tuple[str, ...]
    no_new_privileges: bool
    readonly_rootfs: bool
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    privileged: bool = False
    seccomp: Json | None = None
    sysctl: dict[str, str] = field(default_factory=dict)
    apparmor_profile: str = ""


# --- the effective security context -------------------------------------------------------------


def effective_context(pod: Obj, container: Obj) -> Obj:
    """The pod's inheritable fields overlaid by the container's own (``DetermineEffectiveSecurityContext``)."""
    pod_sc = ((pod.get("spec") or {}).get("securityContext")) or {}
    own = container.get("securityContext") or {}
    inherited = {k: pod_sc[k] for k in _INHERITED if pod_sc.get(k) is not None}
    return {**inherited, **{k: v for k, v in own.items() if v is not None}}


def pod_name(pod: Obj) -> str:
    """``format.Pod``: ``NAME_NAMESPACE(UID)``, how the kubelet names a pod in messages."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def _read(path: str) -> str:
    return Path(path).read_text()


@functools.cache
def host_capabilities() -> tuple[str, ...]:
    """containerd's ``cap.Current()``: the agent's own bounding set, all that a container can be given."""
    return capabilities_in(_read("/proc/self/status"))


def capabilities_in(status: str) -> tuple[str, ...]:
    """The capabilities of the ``CapBnd`` mask in a ``/proc/<pid>/status`` text."""
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return tuple(c for bit, c in enumerate(ALL_CAPABILITIES) if mask >> bit & 1)
    return ALL_CAPABILITIES


def container_security(pod: Obj, container: Obj, image: ImageUser, seccomp_root: str,
                       load: Callable[[str], str] = _read, host_caps: tuple[str, ...] | None = None) -> SecuritySettings:
    """Everything security sets on one container, or :class:`SecurityError` with the kubelet's words.

    ``seccomp_root`` is where ``Localhost`` profiles live (the kubelet's ``<root>/seccomp``);
    ``load`` reads one and ``host_caps`` (default :func:`host_capabilities`) is what ``ALL``
    means, both injectable so that the rest stays pure.
    """
    sc = effective_context(pod, container)
    verify_run_as_non_root(pod, container, sc, image.user)
    uid, gid, groups = _user(pod, sc, image)
    privileged = bool(sc.get("privileged"))
    every = host_capabilities() if host_caps is None else host_caps
    caps = every if privileged else capabilities(sc.get("capabilities"), every)
    unmasked = privileged or sc.get("procMount") == "Unmasked"
    return SecuritySettings(
        uid=uid, gid=gid, additional_gids=groups, capabilities=caps,
        no_new_privileges=no_new_privileges(sc), readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        masked_paths=() if unmasked else oci.DEFAULT_MASKED_PATHS,
        readonly_paths=() if unmasked else oci.DEFAULT_READONLY_PATHS,
        privileged=privileged,
        seccomp=None if privileged else seccomp_profile(sc.get("seccompProfile"), caps, seccomp_root, load),
        sysctl=sysctls(pod), apparmor_profile=apparmor_profile(pod, container, sc))


def verify_run_as_non_root(pod: Obj, container: Obj, sc: Obj, image_user: str) -> None:
    """``verifyRunAsNonRoot``: refuse a container that would run as root (CreateContainerConfigError)."""
    if not sc.get("runAsNonRoot"):
        return
    where = f"(pod: {go_quote(pod_name(pod))}, container: {container.get('name', '')})"
    if sc.get("runAsUser") is not None:
        if sc["runAsUser"] == 0:
            raise SecurityError("CreateContainerConfigError", f"container's runAsUser breaks non-root policy {where}")
        return
    name = image_user.partition(":")[0]
    if name and not name.isdigit():
        raise SecurityError("CreateContainerConfigError", f"container has runAsNonRoot and image has non-numeric "
                                                          f"user ({name}), cannot verify user is non-root {where}")
    if int(name or 0) == 0:  # no USER in the image: the kubelet takes it as root
        raise SecurityError("CreateContainerConfigError", f"container has runAsNonRoot and image will run as root {where}")


def _user(pod: Obj, sc: Obj, image: ImageUser) -> tuple[int, int, list[int]]:
    """uid, gid and supplementary groups, as the kubelet asks containerd and containerd resolves them.

    The kubelet always passes a user (runAsUser, else the image's uid or name, else 0), so the
    group part of the image's ``USER`` is never used; runAsGroup, or the passwd entry, gives the gid.
    """
    image_name = image.user.partition(":")[0]
    user = str(sc["runAsUser"]) if sc.get("runAsUser") is not None else image_name or "0"
    group = f":{sc['runAsGroup']}" if sc.get("runAsGroup") is not None else ""
    try:
        uid, gid = containerspec.user_ids(user + group, image.passwd, image.group)
    except ValueError as e:
        raise SecurityError("CreateContainerError", str(e)) from e
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    extra = [pod_sc["fsGroup"]] if pod_sc.get("fsGroup") is not None else []
    extra += pod_sc.get("supplementalGroups") or []
    return uid, gid, sorted({gid, *_image_groups(user, image), *extra})


def _image_groups(user: str, image: ImageUser) -> list[int]:
    """Groups of the image's /etc/group listing the user as a member (containerd's ``WithAdditionalGIDs``)."""
    name = user
    if user.isdigit():
        entry = next((f for f in _entries(image.passwd, 3) if f[2] == user), None)
        if entry is None:
            return []
        name = entry[0]
    return [int(f[2]) for f in _entries(image.group, 3)
            if f[0] != name and name in f[3].split(",") and f[2].isdigit()]


def _entries(text: str, fields: int) -> list[list[str]]:
    """The ``:``-separated lines of a passwd/group file that have at least ``fields + 1`` fields."""
    return [line.split(":") for line in text.splitlines() if line.count(":") >= fields]


# --- capabilities, privileges, paths ------------------------------------------------------------


def capabilities(requested: Obj | None, every: tuple[str, ...] = ALL_CAPABILITIES) -> tuple[str, ...]:
    """containerd's ``WithCapabilities``: ``ALL`` (``every``) first, add then drop; then single adds, then drops."""
    if not requested:
        return oci.DEFAULT_CAPABILITIES
    add = [str(c) for c in requested.get("add") or []]
    drop = [str(c) for c in requested.get("drop") or []]
    caps = list(oci.DEFAULT_CAPABILITIES)
    if any(c.upper() == "ALL" for c in add):
        caps = list(every)
    if any(c.upper() == "ALL" for c in drop):
        caps = []
    caps += [f"CAP_{c.upper()}" for c in add if c.upper() != "ALL" and f"CAP_{c.upper()}" not in caps]
    dropped = {f"CAP_{c.upper()}" for c in drop}
    return tuple(c for c in caps if c not in dropped)


def no_new_privileges(sc: Obj) -> bool:
    """``AddNoNewPrivileges``: only an explicit ``allowPrivilegeEscalation: false`` sets no_new_privs.

    Validation refuses false together with ``privileged`` or an added ``CAP_SYS_ADMIN`` (the docs:
    escalation is then always allowed); both are checked again here so the runtime never gets that mix.
    """
    if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged"):
        return False
    return "CAP_SYS_ADMIN" not in ((sc.get("capabilities") or {}).get("add") or [])


def sysctls(pod: Obj) -> dict[str, str]:
    """The pod's sysctls for the OCI ``linux.sysctl`` (names with dots, as the kubelet normalizes them)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    return {normalize_sysctl(s["name"]): str(s.get("value", "")) for s in pod_sc.get("sysctls") or []}


def normalize_sysctl(name: str) -> str:
    """``utilsysctl.NormalizeName``: ``net/ipv4/conf/eth0.1/x`` → ``net.ipv4.conf.eth0/1.x``."""
    first_slash, first_dot = name.find("/"), name.find(".")
    if first_slash == -1 or (first_dot != -1 and first_dot < first_slash):
        return name
    return name.translate(str.maketrans("/.", "./"))


# --- seccomp -------------------------------------------------------------------------------------


def seccomp_profile(profile: Obj | None, caps: tuple[str, ...], root: str, load: Callable[[str], str]) -> Json | None:
    """The OCI ``linux.seccomp`` for the effective ``seccompProfile`` (none: Unconfined, the kubelet default)."""
    kind = (profile or {}).get("type")
    if kind == "RuntimeDefault":
        return default_seccomp(caps)
    if kind != "Localhost":
        return None
    path = posixpath.normpath(posixpath.join(root, (profile or {}).get("localhostProfile") or ""))
    try:
        loaded = json.loads(load(path))
    except OSError as e:
        raise SecurityError("CreateContainerError", f"cannot load seccomp profile {go_quote(path)}: "
                                                    f"open {path}: {_go_errno(e)}") from e
    except ValueError as e:
        raise SecurityError("CreateContainerError", f"decoding seccomp profile failed {go_quote(path)}: {e}") from e
    return _oci_seccomp(loaded)


def _go_errno(e: OSError) -> str:
    """How Go words an errno: Python's strerror with a lower-case first letter."""
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


_OCI_SECCOMP_FIELDS = ("defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath",
                       "listenerMetadata", "syscalls")


def _oci_seccomp(loaded: Any) -> Json:
    """containerd's ``WithProfile`` decodes the file as an OCI ``LinuxSeccomp``: other fields are dropped."""
    if not isinstance(loaded, dict):
        raise SecurityError("CreateContainerError", "decoding seccomp profile failed: not a JSON object")
    return {k: loaded[k] for k in _OCI_SECCOMP_FIELDS if k in loaded}


# containerd's contrib/seccomp DefaultProfile (v1.7): allowed whatever the capabilities.
_ALLOWED_SYSCALLS = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create
epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap
mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap nanosleep
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 poll ppoll
ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64
pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction
rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield
seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg
sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl
shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socket socketcall socketpair
splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill
time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes
vfork vmsplice wait4 waitid waitpid write writev
""".split()

# Allowed only with a capability in the bounding set.
_CAPABILITY_SYSCALLS = {
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_ADMIN": ("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                      "lookup_dcookie", "mount", "mount_setattr", "move_mount", "name_to_handle_at", "open_tree",
                      "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
                      "syslog", "umount", "umount2", "unshare"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}

_ARCHES = {  # machine → (SCMP architectures, arch-specific syscalls)
    "x86_64": (("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"), ("arch_prctl", "modify_ldt")),
    "aarch64": (("SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"), ("arm_fadvise64_64", "arm_sync_file_range",
                                                        "sync_file_range2", "breakpoint", "cacheflush", "set_tls")),
}
_PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)  # the personality() values allowed
_CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP
_ENOSYS = 38


def default_seccomp(caps: tuple[str, ...], machine: str = "") -> Json:
    """containerd's RuntimeDefault profile for a container with ``caps``: EPERM unless allowed."""
    arches, arch_calls = _ARCHES.get(machine or platform.machine(), ((), ()))
    rules: list[Json] = [_allow(_ALLOWED_SYSCALLS)]
    rules += [_allow(["personality"], [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]) for v in _PERSONALITIES]
    rules.append(_allow(["ptrace"]))  # kernels from 4.8 on keep ptrace inside seccomp
    if arch_calls:
        rules.append(_allow(list(arch_calls)))
    rules += [_allow(list(_CAPABILITY_SYSCALLS[c])) for c in caps if c in _CAPABILITY_SYSCALLS]
    if "CAP_SYS_ADMIN" not in caps:  # no new namespaces; clone3 (flags unreadable) says ENOSYS so libc falls back
        rules.append(_allow(["clone"], [{"index": 0, "value": _CLONE_NAMESPACES, "valueTwo": 0,
                                         "op": "SCMP_CMP_MASKED_EQ"}]))
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    return {"defaultAction": "SCMP_ACT_ERRNO", "architectures": list(arches), "syscalls": rules}


def _allow(names: list[str], args: list[Json] | None = None) -> Json:
    rule: Json = {"names": names, "action": "SCMP_ACT_ALLOW"}
    if args:
        rule["args"] = args
    return rule


# --- AppArmor and the node's pod admission ------------------------------------------------------


def apparmor_profile(pod: Obj, container: Obj, sc: Obj) -> str:
    """The ``Localhost`` profile to confine the process with, or "" (RuntimeDefault and Unconfined).

    containerd's own ``cri-containerd.apparmor.d`` is not generated here, so RuntimeDefault runs
    unconfined; the deprecated annotation is honoured as the kubelet does when no field is set.
    """
    profile = sc.get("appArmorProfile")
    if profile is not None:
        return str(profile.get("localhostProfile") or "") if profile.get("type") == "Localhost" else ""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(APPARMOR_ANNOTATION_PREFIX + container.get("name", ""), "")
    return value[len("localhost/"):] if value.startswith("localhost/") else ""


def pod_rejection(pod: Obj, apparmor_enabled: bool) -> tuple[str, str] | None:
    """Why the node refuses a pod (reason, message) before running it, as the kubelet's admit handlers.

    Unsafe sysctls are refused here (``SysctlForbidden``), not by the API server: that is where
    upstream refuses them, since which sysctls are allowed is each kubelet's configuration.
    """
    spec = pod.get("spec") or {}
    for entry in ((spec.get("securityContext") or {}).get("sysctls")) or []:
        problem = _sysctl_problem(normalize_sysctl(entry.get("name", "")), spec)
        if problem:
            return "SysctlForbidden", f"forbidden sysctl: {problem}"
    if not apparmor_enabled and _apparmor_required(pod):
        return "AppArmor", "Cannot enforce AppArmor: AppArmor is not enabled on the host"
    return None


def _sysctl_problem(name: str, spec: Obj) -> str:
    namespace = SAFE_SYSCTLS.get(name)
    if namespace is None:
        return f"{go_quote(name)} not allowlisted"
    if (namespace == "ipc" and spec.get("hostIPC")) or (namespace == "net" and spec.get("hostNetwork")):
        return f"{go_quote(name)} not allowed with host {namespace} enabled"
    return ""


def _apparmor_required(pod: Obj) -> bool:
    """``apparmor.isRequired``: some profile other than Unconfined is asked for."""
    spec = pod.get("spec") or {}
    contexts = [spec.get("securityContext") or {}] + [c.get("securityContext") or {} for c in _containers(spec)]
    if any((sc.get("appArmorProfile") or {}).get("type") not in (None, "Unconfined") for sc in contexts):
        return True
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return any(v != "unconfined" for k, v in annotations.items() if k.startswith(APPARMOR_ANNOTATION_PREFIX))


def _containers(spec: Obj) -> Iterator[Obj]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(kind) or []


# --- the pod cgroup and OOM scores --------------------------------------------------------------


def qos(pod: Obj) -> str:
    """``GetPodQOS``: the class the API recorded, computed when the status has none."""
    return (pod.get("status") or {}).get("qosClass") or qos_class(pod)


def qos_cgroup(qos_name: str) -> str:
    """The QoS parent of a pod's cgroup: ``/tinykube`` (Guaranteed, as ``/kubepods``) or ``/tinykube/<class>``."""
    return posixpath.dirname(cgroups.pod_cgroup_path("", qos_name))


def pod_resources(pod: Obj, pids_limit: int = POD_PIDS_LIMIT) -> Resources:
    """``ResourceConfigForPod``: the pod cgroup bounds the sum of its containers.

    cpu.shares from the summed requests; the CFS quota and memory limit only when every
    container declares a limit (always for Guaranteed); BestEffort pods get the minimum shares.
    ``pids_limit`` (the node's ``--pod-max-pids``) applies to every pod; negative: none.
    """
    pids = pids_limit if pids_limit >= 0 else None
    pod_qos = qos(pod)
    if pod_qos == "BestEffort":
        return Resources(cpu_shares=containerspec.MIN_SHARES, pids_limit=pids)
    spec = pod.get("spec") or {}
    cpu_request = pod_total(pod, "requests", "cpu")
    cpu_limit, memory_limit = pod_total(pod, "limits", "cpu"), pod_total(pod, "limits", "memory")
    cpu = containerspec.limits({"resources": {"requests": {"cpu": f"{cpu_request}m"},
                                              "limits": {"cpu": f"{cpu_limit}m"} if cpu_limit else {}}})
    shares = cpu.cpu_shares if cpu_request else containerspec.MIN_SHARES  # limits() would fall back to the limit
    guaranteed = pod_qos == "Guaranteed"
    quota = guaranteed or _all_declare(spec, "cpu")
    memory = guaranteed or _all_declare(spec, "memory")
    return Resources(cpu_shares=shares, cpu_quota_us=cpu.cpu_quota_us if quota else None,
                     cpu_period_us=cpu.cpu_period_us if quota else None,
                     memory_limit_bytes=memory_limit if memory else None, pids_limit=pids)


def pod_total(pod: Obj, kind: str, resource: str) -> int:
    """``PodRequests``/``PodLimits`` of one resource (``kind`` requests or limits), as api/resourcelist
    aggregates them: millicores for cpu, else units."""
    totals = resourcelist.pod_requests(pod) if kind == "requests" else resourcelist.pod_limits(pod)
    amount = totals.get(resource)
    if amount is None:
        return 0
    return milli_value(amount.value) if resource == "cpu" else value(amount.value)


def _amount(container: Obj, kind: str, resource: str, parse: Callable[[str], int]) -> int:
    quantity = (((container.get("resources") or {}).get(kind)) or {}).get(resource)
    return parse(quantity) if quantity is not None else 0


def _all_declare(spec: Obj, resource: str) -> bool:
    """Whether every (init) container sets a non-zero limit for ``resource``."""
    parse = milli_value if resource == "cpu" else value
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    return all(_amount(c, "limits", resource, parse) > 0 for c in containers)


def oom_score_adj(pod: Obj, container: Obj, memory_capacity: int) -> int:
    """``GetContainerOOMScoreAdjust``: -997 Guaranteed (and node-critical), 1000 BestEffort, else by request.

    A Burstable container requesting x% of the node's memory gets 1000 - 10x, kept within
    [3, 999]; a sidecar never scores above the pod's smallest regular container.
    """
    pod_qos = qos(pod)
    if _node_critical(pod) or pod_qos == "Guaranteed":
        return GUARANTEED_OOM_SCORE_ADJ
    if pod_qos == "BestEffort":
        return BESTEFFORT_OOM_SCORE_ADJ
    score = 1000 - (1000 * _amount(container, "requests", "memory", value)) // memory_capacity
    if _is_sidecar(pod, container):
        smallest = min((_amount(c, "requests", "memory", value) for c in (pod.get("spec") or {}).get("containers") or []),
                       default=0)
        if smallest:
            score = min(score, 1000 - (1000 * smallest) // memory_capacity)
    if score < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    return score - 1 if score == BESTEFFORT_OOM_SCORE_ADJ else score


def _node_critical(pod: Obj) -> bool:
    """``IsNodeCriticalPod``: a critical pod (static, mirror, or system priority) of ``system-node-critical``."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    critical = (MIRROR_ANNOTATION in annotations or annotations.get("kubernetes.io/config.source", "api") != "api"
                or (spec.get("priority") or 0) >= SYSTEM_CRITICAL_PRIORITY)
    return critical and spec.get("priorityClassName") == "system-node-critical"


def _is_sidecar(pod: Obj, container: Obj) -> bool:
    inits = (pod.get("spec") or {}).get("initContainers") or []
    return container.get("restartPolicy") == "Always" and any(c.get("name") == container.get("name") for c in inits)


# --- fsGroup ownership of volumes (disk I/O) ----------------------------------------------------


def apply_fs_group(path: str | Path, gid: int | None, policy: str | None = None, read_only: bool = False) -> None:
    """``SetVolumeOwnership``: give the volume to group ``gid``, group-writable, directories setgid.

    Every entry under ``path`` gets the group (symlinks themselves, never their targets) and
    g+rw (g+r for a read-only volume); directories also g+x and setgid so new files inherit the
    group.  ``OnRootMismatch`` skips the walk when the root already has the group and modes.
    """
    if gid is None:
        return
    if policy == "OnRootMismatch" and not _needs_change(Path(path), gid, read_only):
        return
    _own(str(path), gid, read_only)
    for directory, dirs, files in os.walk(path):  # symlinked directories are listed, not entered
        for name in dirs + files:
            _own(os.path.join(directory, name), gid, read_only)


def _own(entry: str, gid: int, read_only: bool) -> None:
    info = os.lstat(entry)
    os.lchown(entry, -1, gid)
    if stat.S_ISLNK(info.st_mode):  # chmod would follow the link and change the target's mode
        return
    mask = RO_MASK if read_only else RW_MASK
    if stat.S_ISDIR(info.st_mode):
        mask |= stat.S_ISGID | EXEC_MASK
    os.chmod(entry, stat.S_IMODE(info.st_mode) | mask)


def _needs_change(root: Path, gid: int, read_only: bool) -> bool:
    """``requiresPermissionChange``: the root's group or its group bits (and setgid) are not yet right."""
    try:
        info = root.stat()
    except OSError:
        return True
    if info.st_gid != gid or not stat.S_ISDIR(info.st_mode):
        return True
    wanted = (RO_MASK if read_only else RW_MASK) | EXEC_MASK
    return (stat.S_IMODE(info.st_mode) & wanted) != wanted or not info.st_mode & stat.S_ISGID
