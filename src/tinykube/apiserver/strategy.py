"""Per-kind rules applied on writes, as kube-apiserver's ``rest.RESTCreateStrategy`` does them.

On create the server owns identity (uid, creationTimestamp; the fresh status is set by
``api.defaults`` on create); on an
update of the main resource the status is kept, and on an update of ``/status`` everything but
the status is kept.  These are pure functions of the objects and a timestamp.
"""

from __future__ import annotations

import copy
import random
import uuid
from typing import Any

from tinykube.api.errors import ApiError, invalid, required
from tinykube.api.registry import ResourceType

# Kinds whose status belongs to a /status subresource: a write to the main resource keeps it.
_STATUS_OWNED = frozenset({"Pod", "Service", "Namespace", "Node", "PersistentVolume", "PersistentVolumeClaim",
                           "ResourceQuota", "CertificateSigningRequest"})
_CSR_DECISIONS = ("Approved", "Denied")
_SERVER_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion",
                    "selfLink", "generation")
# names.SimpleNameGenerator: 5 characters from an alphabet without vowels and look-alikes.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def generate_name(prefix: str) -> str:
    return prefix + "".join(random.choice(_ALPHABET) for _ in range(5))


def prepare_create(rt: ResourceType, obj: dict[str, Any], namespace: str | None, now: str) -> None:
    """Server-owned fields of a new object: identity, timestamps, namespace, fresh status."""
    meta = obj.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(meta["generateName"])
    if not meta.get("name"):
        raise invalid(rt.kind, "", [required("metadata.name", "name or generateName is required")])
    if rt.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now
    obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind


def prepare_update(rt: ResourceType, new: dict[str, Any], old: dict[str, Any], subresource: str) -> dict[str, Any]:
    """The object to store for an update: what the client may change, the rest from ``old``."""
    if rt.kind == "CertificateSigningRequest" and subresource in ("status", "approval"):
        return _csr_subresource(new, old, subresource)
    if subresource == "status":
        merged = copy.deepcopy(old)
        merged["status"] = new.get("status", {})
        return merged
    if subresource == "finalize":  # namespaces: only spec.finalizers may change
        merged = copy.deepcopy(old)
        merged.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
        return merged
    meta = new.setdefault("metadata", {})
    old_meta = old["metadata"]
    for key in ("creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    meta.setdefault("uid", old_meta["uid"])  # a different uid is refused by validation as immutable
    meta["resourceVersion"] = old_meta.get("resourceVersion", "")  # checked by the caller; an unconditional update
    new["apiVersion"], new["kind"] = rt.group_version, rt.kind
    if rt.kind == "Namespace":  # finalizers change only through /finalize
        new.setdefault("spec", {})["finalizers"] = (old.get("spec") or {}).get("finalizers") or []
    if rt.kind == "CertificateSigningRequest":  # csrStrategy: the spec never changes after create
        new["spec"] = copy.deepcopy(old.get("spec") or {})
    if rt.kind in _STATUS_OWNED:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    return new


def _csr_subresource(new: dict[str, Any], old: dict[str, Any], subresource: str) -> dict[str, Any]:
    """csrStatusStrategy/csrApprovalStrategy: /approval changes only the conditions (the certificate
    stays), /status everything in the status but the Approved/Denied decisions (only /approval makes those)."""
    merged = copy.deepcopy(old)
    status = copy.deepcopy(new.get("status") or {})
    old_status = old.get("status") or {}
    if subresource == "approval":
        status.pop("certificate", None)
        if old_status.get("certificate"):
            status["certificate"] = old_status["certificate"]
    else:
        kept = [c for c in old_status.get("conditions") or [] if c.get("type") in _CSR_DECISIONS]
        others = [c for c in status.get("conditions") or [] if c.get("type") not in _CSR_DECISIONS]
        if kept or others:
            status["conditions"] = kept + others
    merged["status"] = status
    return merged


def check_identity(rt: ResourceType, obj: dict[str, Any], info_name: str, namespace: str | None) -> None:
    """The body's name and namespace must match the URL (400 BadRequest as upstream)."""
    meta = obj.get("metadata") or {}
    if info_name and meta.get("name") and meta["name"] != info_name:
        raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)"
                       % (meta["name"], info_name))
    if rt.namespaced and namespace and meta.get("namespace") and meta["namespace"] != namespace:
        raise ApiError(400, "BadRequest",
                       "the namespace of the provided object does not match the namespace sent on the request")
