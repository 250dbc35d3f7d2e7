"""The registry of kinds the API serves: one :class:`ResourceType` per group/version/resource.

Discovery, routing, storage keys, OpenAPI and Table printing all read this one list, so a new
kind is added here and nowhere else.  Storage prefixes follow kube-apiserver's etcd layout
(``/registry/pods/NS/NAME``; services under ``services/specs``, nodes under ``minions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CRUD = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """Everything the server needs to know about one resource in one group-version."""

    group: str
    version: str
    resource: str  # plural, lower case: "pods"
    kind: str  # "Pod"
    namespaced: bool
    singular: str
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = CRUD
    categories: tuple[str, ...] = ()
    subresources: dict[str, str] = field(default_factory=dict)  # name -> response kind
    storage: str = ""  # key prefix in the store, without trailing slash

    @property
    def group_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise (the apiVersion field)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def definition(self) -> str:
        """The schema name in the upstream OpenAPI definitions, e.g. ``io.k8s.api.core.v1.Pod``."""
        return _DEFINITION_PREFIX[self.group] + f".{self.version}.{self.kind}"

    @property
    def prefix(self) -> str:
        """Store key prefix for all objects of this resource (ends without a slash)."""
        return self.storage or f"/registry/{self.resource}"

    def key(self, namespace: str | None, name: str) -> str:
        """The store key of one object: ``/registry/pods/default/web``."""
        if self.namespaced:
            return f"{self.prefix}/{namespace}/{name}"
        return f"{self.prefix}/{name}"

    def list_prefix(self, namespace: str | None) -> str:
        """The store prefix covering a namespace (or everything when ``namespace`` is None)."""
        if self.namespaced and namespace:
            return f"{self.prefix}/{namespace}/"
        return f"{self.prefix}/"


_DEFINITION_PREFIX = {
    "": "io.k8s.api.core",
    "events.k8s.io": "io.k8s.api.events",
    "coordination.k8s.io": "io.k8s.api.coordination",
    "discovery.k8s.io": "io.k8s.api.discovery",
    "storage.k8s.io": "io.k8s.api.storage",
    "certificates.k8s.io": "io.k8s.api.certificates",
}


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, "namespace", ("ns",),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                 subresources={"status": "Namespace", "finalize": "Namespace"}),
    ResourceType("", "v1", "pods", "Pod", True, "pod", ("po",), categories=("all",),
                 subresources={"status": "Pod", "binding": "Binding", "log": "Pod", "exec": "PodExecOptions",
                               "attach": "PodAttachOptions", "portforward": "PodPortForwardOptions",
                               "eviction": "Eviction"}),
    ResourceType("", "v1", "events", "Event", True, "event", ("ev",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, "configmap", ("cm",)),
    ResourceType("", "v1", "secrets", "Secret", True, "secret"),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, "serviceaccount", ("sa",),
                 subresources={"token": "TokenRequest"}),
    ResourceType("", "v1", "services", "Service", True, "service", ("svc",), categories=("all",),
                 verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
                 subresources={"status": "Service"}, storage="/registry/services/specs"),
    ResourceType("", "v1", "endpoints", "Endpoints", True, "endpoints", ("ep",),
                 storage="/registry/services/endpoints"),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, "persistentvolumeclaim",
                 ("pvc",), subresources={"status": "PersistentVolumeClaim"}),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", False, "persistentvolume", ("pv",),
                 subresources={"status": "PersistentVolume"}),
    ResourceType("", "v1", "nodes", "Node", False, "node", ("no",), subresources={"status": "Node"},
                 storage="/registry/minions"),
    ResourceType("", "v1", "limitranges", "LimitRange", True, "limitrange", ("limits",)),
    ResourceType("", "v1", "resourcequotas", "ResourceQuota", True, "resourcequota", ("quota",),
                 subresources={"status": "ResourceQuota"}),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, "event", ("ev",), storage="/registry/events"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, "lease"),
    ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, "storageclass", ("sc",)),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, "endpointslice"),
    ResourceType("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", False,
                 "certificatesigningrequest", ("csr",),
                 subresources={"approval": "CertificateSigningRequest", "status": "CertificateSigningRequest"}),
)


# Served by a delegate, never stored: metrics.k8s.io is metrics-server's aggregated API, answered
# here from the node agents (its route precedes the generic CRUD one).  Discovery and ``lookup``
# see these; storage, OpenAPI and the namespace controller do not.  metrics-server names no
# singular (``GetSingularName`` is "").
DELEGATED: tuple[ResourceType, ...] = (
    ResourceType("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", False, "", verbs=("get", "list")),
    ResourceType("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", True, "", verbs=("get", "list")),
)
SERVED = RESOURCES + DELEGATED  # what discovery lists: aggregated groups last, as kube-apiserver orders them


def by_group_version() -> dict[str, list[ResourceType]]:
    """Served resources (delegated ones too) grouped by ``apiVersion`` string, in registry order."""
    out: dict[str, list[ResourceType]] = {}
    for rt in SERVED:
        out.setdefault(rt.group_version, []).append(rt)
    return out


_INDEX = {(rt.group, rt.version, rt.resource): rt for rt in SERVED}
_BY_KIND = {(rt.group_version, rt.kind): rt for rt in RESOURCES}


def lookup(group: str, version: str, resource: str) -> ResourceType | None:
    """The resource served at ``/api(s)/group/version/resource``, if any."""
    return _INDEX.get((group, version, resource))


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    """The resource for an object's ``apiVersion`` and ``kind``."""
    return _BY_KIND.get((api_version, kind))
