"""Authorization: may this authenticated user do this to this resource (kube-apiserver's Node,RBAC chain)?

``system:masters`` may do everything.  Bootstrap tokens (``system:bootstrappers``) may only ask for
a client certificate (CertificateSigningRequests).  Nodes (``system:node:<name>`` in
``system:nodes``) get the Node authorizer's rules: their own Node and Lease, reads of the
Secrets, ConfigMaps, PVCs, PVs and service-account tokens their pods reference, status writes of
pods; :func:`node_restriction` is the NodeRestriction admission plugin that limits those writes
to the node's own objects (as upstream, the authorizer lets a node write any Node, and admission
refuses the wrong one).  Everybody else (service
accounts, anything without a group above) is allowed everything: there is no RBAC yet.

The agent runs kube-proxy's and CoreDNS's roles too, so a node may also read every Node, Service,
Endpoints, EndpointSlice, Namespace and Pod, as those components' ClusterRoles allow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from tinykube.api.errors import ApiError, forbidden
from tinykube.api.registry import ResourceType
from tinykube.apiserver.auth import User
from tinykube.apiserver.requests import RequestInfo

Obj = dict[str, Any]
NODE_PREFIX = "system:node:"
NODES_GROUP, MASTERS_GROUP, BOOTSTRAPPERS_GROUP = "system:nodes", "system:masters", "system:bootstrappers"
NODE_LEASE_NAMESPACE = "kube-node-lease"

# The caller of the request being served: set by the middleware, read by admission (NodeRestriction, CSR requestor).
CURRENT_USER: ContextVar[User | None] = ContextVar("current_user", default=None)

_READ = frozenset({"get", "list", "watch"})
# What every node may do regardless of the graph: bootstrappolicy.NodeRules() plus the reads of
# kube-proxy (system:node-proxier) and CoreDNS (system:coredns), which the agent also runs.
_NODE_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("", "services"): _READ, ("", "endpoints"): _READ, ("", "namespaces"): _READ,
    ("discovery.k8s.io", "endpointslices"): _READ,
    ("", "events"): frozenset({"create", "update", "patch"}),
    ("events.k8s.io", "events"): frozenset({"create", "update", "patch"}),
    ("certificates.k8s.io", "certificatesigningrequests"): frozenset({"create", "get", "list", "watch"}),
}
_BOOTSTRAP_RULES = {("certificates.k8s.io", "certificatesigningrequests"): frozenset({"create", "get", "list", "watch"})}


@dataclass(frozen=True)
class Attributes:
    """authorizer.Attributes of one resource request."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    node_name_selector: str = ""  # the value of a ``spec.nodeName=`` field selector on a list or watch


def attributes(method: str, info: RequestInfo, query: Mapping[str, str]) -> Attributes:
    """The verb and names of a request, as RequestInfoFactory derives them.

    A list or watch with a ``metadata.name=`` field selector names its object (how kubelets
    watch single Secrets and ConfigMaps); a DELETE without a name is deletecollection.
    """
    selectors = _field_selector(query.get("fieldSelector", ""))
    name = info.name
    verb = _verb(method, bool(name), query)
    if verb in ("list", "watch") and not name:
        name = selectors.get("metadata.name", "")
    return Attributes(verb, info.rt.group, info.rt.resource, info.subresource, info.namespace or "", name,
                      selectors.get("spec.nodeName", ""))


def _verb(method: str, named: bool, query: Mapping[str, str]) -> str:
    if method in ("GET", "HEAD"):
        if query.get("watch") in ("1", "true"):
            return "watch"
        return "get" if named else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, "delete" if named else "deletecollection")


def _field_selector(text: str) -> dict[str, str]:
    """The ``field=value`` (and ``field==value``) terms of a field selector; others are not scoping."""
    terms: dict[str, str] = {}
    for term in filter(None, text.split(",")):
        if "!=" in term:
            continue
        key, _, value = term.replace("==", "=").partition("=")
        terms[key.strip()] = value.strip()
    return terms


def forbidden_error(user: User, attrs: Attributes, reason: str) -> ApiError:
    """403 worded as kube-apiserver's ``forbiddenMessage`` followed by the authorizer's reason."""
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    message = (f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.group}" {scope}'
               + (f": {reason}" if reason else ""))
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    prefix = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    return forbidden(f"{prefix} is forbidden: {message}", attrs.resource, attrs.name, attrs.group)


def node_name(user: User) -> str | None:
    """nodeidentifier: the node a user is, or None for a user that is not a node."""
    if NODES_GROUP in user.groups and user.name.startswith(NODE_PREFIX):
        return user.name[len(NODE_PREFIX):]
    return None


# --- the graph: which objects a node's pods reference -------------------------------------------

PodLister = Callable[[str | None], Awaitable[list[Obj]]]  # namespace (None = all) -> pods
ObjectGetter = Callable[[str, str | None, str], Awaitable[Obj | None]]  # resource, namespace, name -> object


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _volume_references(pod: Obj, volume: Obj) -> Iterator[tuple[str, str]]:
    if (volume.get("secret") or {}).get("secretName"):
        yield "secrets", volume["secret"]["secretName"]
    if (volume.get("configMap") or {}).get("name"):
        yield "configmaps", volume["configMap"]["name"]
    if (volume.get("persistentVolumeClaim") or {}).get("claimName"):
        yield "persistentvolumeclaims", volume["persistentVolumeClaim"]["claimName"]
    if volume.get("ephemeral"):
        yield "persistentvolumeclaims", f"{pod['metadata']['name']}-{volume['name']}"
    for source in (volume.get("projected") or {}).get("sources") or []:
        if (source.get("secret") or {}).get("name"):
            yield "secrets", source["secret"]["name"]
        if (source.get("configMap") or {}).get("name"):
            yield "configmaps", source["configMap"]["name"]


def _container_references(container: Obj) -> Iterator[tuple[str, str]]:
    for env in container.get("env") or []:
        source = env.get("valueFrom") or {}
        if (source.get("secretKeyRef") or {}).get("name"):
            yield "secrets", source["secretKeyRef"]["name"]
        if (source.get("configMapKeyRef") or {}).get("name"):
            yield "configmaps", source["configMapKeyRef"]["name"]
    for env_from in container.get("envFrom") or []:
        if (env_from.get("secretRef") or {}).get("name"):
            yield "secrets", env_from["secretRef"]["name"]
        if (env_from.get("configMapRef") or {}).get("name"):
            yield "configmaps", env_from["configMapRef"]["name"]


def pod_references(pod: Obj) -> set[tuple[str, str]]:
    """(resource, name) of every object in the pod's namespace the graph links it to (graph_populator)."""
    spec = pod.get("spec") or {}
    refs = {("serviceaccounts", spec.get("serviceAccountName") or "default")}
    refs.update(("secrets", s["name"]) for s in spec.get("imagePullSecrets") or [] if s.get("name"))
    for volume in spec.get("volumes") or []:
        refs.update(_volume_references(pod, volume))
    for container in _containers(spec):
        refs.update(_container_references(container))
    return refs


class Authorizer:
    """The Node authorizer (graph reads are live lookups, not a watch-fed graph) in front of allow-all."""

    def __init__(self, pods: PodLister, get: ObjectGetter):
        self._pods = pods
        self._get = get

    async def authorize(self, user: User | None, attrs: Attributes) -> None:
        """Return if allowed; raise 403 with the deciding authorizer's reason otherwise."""
        if user is None or MASTERS_GROUP in user.groups:
            return
        node = node_name(user)
        if node is not None:
            reason = await self._node(node, attrs)
        elif BOOTSTRAPPERS_GROUP in user.groups:
            reason = None if _rules_allow(_BOOTSTRAP_RULES, attrs) else ""
        else:
            return  # no RBAC yet: every other authenticated user may do everything
        if reason is not None:
            raise forbidden_error(user, attrs, reason)

    async def _node(self, node: str, attrs: Attributes) -> str | None:
        """None when allowed, else the Node authorizer's reason ("" when it has none)."""
        key = (attrs.group, attrs.resource)
        if key in (("", "secrets"), ("", "configmaps")):
            return await self._read_namespaced(node, attrs)
        if key == ("", "persistentvolumeclaims"):
            return await self._get_related(node, attrs)
        if key == ("", "persistentvolumes"):
            return await self._get_volume(node, attrs)
        if key == ("", "serviceaccounts"):
            return await self._create_token(node, attrs)
        if key == ("coordination.k8s.io", "leases"):
            return _lease(node, attrs)
        if key == ("", "nodes"):
            return _node_object(node, attrs)
        if key == ("", "pods"):
            return await self._pod(node, attrs)
        return None if _rules_allow(_NODE_RULES, attrs) else ""

    async def _read_namespaced(self, node: str, attrs: Attributes) -> str | None:
        if attrs.verb not in _READ:
            return "can only read resources of this type"
        if attrs.subresource:
            return "cannot read subresource"
        if not attrs.namespace:
            return "can only read namespaced object of this type"
        return await self._related(node, attrs)

    async def _get_related(self, node: str, attrs: Attributes) -> str | None:
        if attrs.verb != "get":
            return "can only get individual resources of this type"
        if attrs.subresource:
            return "cannot get subresource"
        return await self._related(node, attrs)

    async def _related(self, node: str, attrs: Attributes) -> str | None:
        """authorize(): a path from the object to the node, through a pod bound to it."""
        if not attrs.name:
            return "No Object name found"
        for pod in await self._node_pods(node, attrs.namespace):
            if (attrs.resource, attrs.name) in pod_references(pod):
                return None
        return _no_relationship(node)

    async def _get_volume(self, node: str, attrs: Attributes) -> str | None:
        """node <- pod <- pvc <- pv: the PV must be bound to a claim one of the node's pods uses."""
        if attrs.verb != "get":
            return "can only get individual resources of this type"
        if attrs.subresource:
            return "cannot get subresource"
        if not attrs.name:
            return "No Object name found"
        for pod in await self._node_pods(node, None):
            for resource, claim_name in pod_references(pod):
                if resource != "persistentvolumeclaims":
                    continue
                claim = await self._get("persistentvolumeclaims", pod["metadata"]["namespace"], claim_name)
                if claim is not None and (claim.get("spec") or {}).get("volumeName") == attrs.name:
                    return None
        return _no_relationship(node)

    async def _create_token(self, node: str, attrs: Attributes) -> str | None:
        if attrs.verb != "create" or not attrs.name:
            return "can only create tokens for individual service accounts"
        if attrs.subresource != "token":
            return "can only create token subresource of serviceaccount"
        return await self._related(node, attrs)

    async def _pod(self, node: str, attrs: Attributes) -> str | None:
        """authorizePod, except that list and watch are open (CoreDNS's role).  Status writes are
        NodeRestriction's (:func:`node_restriction`); deletes and evictions, which pass no admission
        here, are checked against the pod's binding on the spot with NodeRestriction's words."""
        if attrs.subresource == "" and attrs.verb in _READ:
            return None
        if attrs.subresource == "status" and attrs.verb in ("update", "patch"):
            return None
        action = {("", "delete"): "delete", ("eviction", "create"): "evict"}.get((attrs.subresource, attrs.verb))
        if action is None:
            return ""
        pod = await self._get("pods", attrs.namespace, attrs.name)
        if pod is not None and (pod.get("spec") or {}).get("nodeName") != node:
            raise _restricted("pods", attrs.name, f'node "{node}" can only {action} pods with spec.nodeName set to itself')
        return None

    async def _node_pods(self, node: str, namespace: str | None) -> list[Obj]:
        return [p for p in await self._pods(namespace) if (p.get("spec") or {}).get("nodeName") == node]


def _no_relationship(node: str) -> str:
    return f"no relationship found between node '{node}' and this object"


def _rules_allow(rules: dict[tuple[str, str], frozenset[str]], attrs: Attributes) -> bool:
    return not attrs.subresource and attrs.verb in rules.get((attrs.group, attrs.resource), frozenset())


def _lease(node: str, attrs: Attributes) -> str | None:
    if attrs.verb not in ("get", "create", "update", "patch", "delete"):
        return "can only get, create, update, patch, or delete a node lease"
    if attrs.namespace != NODE_LEASE_NAMESPACE:
        return f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
    if attrs.verb != "create" and attrs.name != node:
        return "can only access node lease with the same name as the requesting node"
    return None


def _node_object(node: str, attrs: Attributes) -> str | None:
    """authorizeNode: writes are allowed and left to NodeRestriction (which knows the object);
    reads of every Node stay open (kube-proxy's and the agent's routes need them)."""
    writes = {"": ("create", "update", "patch"), "status": ("update", "patch")}
    if attrs.verb in writes.get(attrs.subresource, ()):
        return None
    return None if attrs.subresource == "" and attrs.verb in _READ else ""


def _restricted(resource: str, name: str, reason: str, group: str = "") -> ApiError:
    """admission.NewForbidden: ``<resource> "<name>" is forbidden: <reason>``."""
    qualified = f"{resource}.{group}" if group else resource
    return forbidden(f'{qualified} "{name}" is forbidden: {reason}', resource, name, group)


async def node_restriction(rt: ResourceType, obj: Obj, old: Obj | None) -> list[str] | None:
    """NodeRestriction admission: a node writes only its own Node and Lease, and the status of
    pods bound to it (the only pod update the authorizer lets a node make)."""
    user = CURRENT_USER.get()
    node = node_name(user) if user is not None else None
    if node is None:
        return None
    name = obj["metadata"]["name"]
    key = (rt.group, rt.resource)
    if key == ("", "nodes") and name != node:
        raise _restricted("nodes", name, f'node "{node}" is not allowed to modify node "{name}"')
    if key == ("coordination.k8s.io", "leases") and old is None and name != node:
        raise _restricted("leases", name, "can only access node lease with the same name as the requesting node",
                          "coordination.k8s.io")
    if key == ("", "pods") and old is not None and (old.get("spec") or {}).get("nodeName") != node:
        raise _restricted("pods", name, f'node "{node}" can only update pod status for pods with spec.nodeName set to itself')
    return None
