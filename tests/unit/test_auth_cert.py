"""Client certificates are checked on every request, not only when the connection was made."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tinykube.api.errors import ApiError
from tinykube.apiserver.auth import Authenticator, User


class Transport:
    def __init__(self, cert: dict[str, Any]):
        self.cert = cert

    def get_extra_info(self, name: str) -> Any:
        return self.cert if name == "peercert" else None


class Request:
    def __init__(self, cert: dict[str, Any], path: str = "/api/v1/nodes"):
        self.transport = Transport(cert)
        self.path = path
        self.headers: dict[str, str] = {}


def node_cert(not_after: float) -> dict[str, Any]:
    return {"subject": ((("organizationName", "system:nodes"),), (("commonName", "system:node:n1"),)),
            "notAfter": time.strftime("%b %d %H:%M:%S %Y GMT", time.gmtime(not_after))}


async def test_a_valid_certificate_names_the_user_and_an_expired_one_is_refused() -> None:
    auth = Authenticator({})
    assert await auth.authenticate(Request(node_cert(time.time() + 60))) == User("system:node:n1", ("system:nodes",))  # type: ignore[arg-type]
    with pytest.raises(ApiError) as refused:
        await auth.authenticate(Request(node_cert(time.time() - 1)))  # type: ignore[arg-type]
    assert refused.value.code == 401
