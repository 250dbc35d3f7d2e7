"""One cluster identity per store: the CA, service-account key and join token all its API servers share.

k3s's bootstrap data.  Several API servers on one store must trust the same CA (one kubeconfig
works against every one of them), verify tokens with the same service-account key, and accept
the same join token.  So the first server to start puts its CA certificate and key, its
service-account key and its token under one reserved key, written create-if-absent: of two
servers starting at once, both end up with whichever got there first.  Every server copies
them into its own ``<data-dir>/tls`` and ``<data-dir>/token`` - the store wins over what the
directory had, and certificates of another CA are issued again - and signs its own serving
certificate (its own addresses) and client certificates with the shared CA.

The key is outside ``/registry/``, so no API request can reach it.  Unlike k3s's, the data is
not encrypted with the token: a joining server is not given the token (it learns it here), so
there would be nothing to decrypt with.  Access to the store protects it, as it protects every
Secret (for etcd: client-certificate TLS).  With SQLite the store belongs to the data
directory, so files and store always agree and nothing visible changes.
"""

from __future__ import annotations

import logging
import os

import orjson

from tinykube import pki
from tinykube.apiserver.auth import load_or_create_token, save_token
from tinykube.store.base import KeyExists, Store

log = logging.getLogger(__name__)

KEY = "/bootstrap/cluster"
TOKEN = "token"  # the join token, beside the PKI's files


async def cluster_identity(store: Store, data_dir: str, bind: str, advertise: str = "") -> tuple[pki.Pki, str]:
    """This server's PKI (under ``<data-dir>/tls``, with the cluster's CA) and the cluster's join token."""
    directory, token_file = os.path.join(data_dir, "tls"), os.path.join(data_dir, "token")
    stored = await store.get(KEY)
    if stored is None:
        data = await _publish(store, directory, token_file, bind, advertise)
    else:
        data = orjson.loads(stored.value)
    if pki.adopt(pki.Pki(directory), {name: text for name, text in data.items() if name != TOKEN}):
        log.info("%s: the cluster's CA and service-account key copied from the store", directory)
    token = str(data[TOKEN])
    if _read(token_file) != token:
        save_token(token_file, token)
    return pki.ensure(directory, bind, advertise), token


async def _publish(store: Store, directory: str, token_file: str, bind: str, advertise: str) -> dict[str, str]:
    """Our identity (made now if the directory has none) as the cluster's; another's if it got there first."""
    paths = pki.ensure(directory, bind, advertise)
    with open(paths.ca_cert, "rb") as f:
        data = {**pki.shared(paths), TOKEN: load_or_create_token(token_file, f.read())}
    try:
        await store.create(KEY, orjson.dumps(data))
    except KeyExists:
        stored = await store.get(KEY)
        assert stored is not None  # the key is never deleted
        return dict(orjson.loads(stored.value))
    return data


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""
