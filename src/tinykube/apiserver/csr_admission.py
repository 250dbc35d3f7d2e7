"""A new CertificateSigningRequest names its requestor: the authenticated caller, never the body.

csrStrategy.PrepareForCreate: ``spec.username``, ``spec.groups`` (and uid, extra) are overwritten
with the user who sent the request, and a new request starts without status, so an approver can
trust who asked for a certificate.
"""

from __future__ import annotations

from typing import Any

from tinykube.api.registry import ResourceType
from tinykube.apiserver.authz import CURRENT_USER


async def set_requestor(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[str] | None:
    """Mutating admission hook (creates of CertificateSigningRequests only)."""
    if rt.kind != "CertificateSigningRequest" or old is not None:
        return None
    user = CURRENT_USER.get()
    spec = obj.setdefault("spec", {})
    for key in ("username", "uid", "groups", "extra"):
        spec.pop(key, None)
    if user is not None:
        spec["username"] = user.name
        if user.groups:
            spec["groups"] = list(user.groups)
    obj.pop("status", None)
    return None
