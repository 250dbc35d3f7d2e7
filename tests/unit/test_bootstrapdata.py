"""One cluster identity per store: servers with their own data dirs on one store share CA, SA key and token."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
from cryptography import x509

from tinykube import pki
from tinykube.apiserver.bootstrapdata import KEY, cluster_identity
from tinykube.store.sqlite import SqliteStore


def _cert(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _issued_by_ca(paths: pki.Pki) -> bool:
    return _cert(paths.serving_cert).issuer == _cert(paths.ca_cert).subject and \
        _cert(paths.admin_cert).issuer == _cert(paths.ca_cert).subject


async def test_second_server_uses_the_first_ones_ca_key_and_token(store: SqliteStore, tmp_path: Path) -> None:
    a, token_a = await cluster_identity(store, str(tmp_path / "a"), "127.0.0.1")
    b, token_b = await cluster_identity(store, str(tmp_path / "b"), "127.0.0.1", "192.0.2.8")
    assert token_a == token_b and token_a.startswith("K10" + pki.fingerprint(_read(a.ca_cert)))
    for name in ("ca.crt", "ca.key", "sa.key"):
        assert _read(os.path.join(a.directory, name)) == _read(os.path.join(b.directory, name))
    assert (tmp_path / "b" / "token").read_text() == token_a + "\n"
    assert _read(a.serving_cert) != _read(b.serving_cert) and _issued_by_ca(a) and _issued_by_ca(b)
    names = _cert(b.serving_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "10.43.0.1", "192.0.2.8"}
    stored = await store.get(KEY)
    assert stored is not None and set(orjson.loads(stored.value)) == {"ca.crt", "ca.key", "sa.key", "token"}


async def test_the_store_wins_over_a_directory_of_another_cluster(store: SqliteStore, tmp_path: Path) -> None:
    await cluster_identity(store, str(tmp_path / "a"), "127.0.0.1")
    stray = pki.ensure(str(tmp_path / "b" / "tls"), "127.0.0.1")  # a PKI of its own, made before joining
    old_serving = _read(stray.serving_cert)
    b, _ = await cluster_identity(store, str(tmp_path / "b"), "127.0.0.1")
    assert _read(b.ca_cert) == _read(str(tmp_path / "a" / "tls" / "ca.crt"))
    assert _read(b.serving_cert) != old_serving and _issued_by_ca(b)


async def test_servers_starting_at_once_agree_on_one_identity(store: SqliteStore, tmp_path: Path) -> None:
    results = await asyncio.gather(*(cluster_identity(store, str(tmp_path / name), "127.0.0.1") for name in "abc"))
    assert len({token for _, token in results}) == 1
    assert len({_read(paths.ca_cert) for paths, _ in results}) == 1
    assert all(_issued_by_ca(paths) for paths, _ in results)


async def test_a_restart_keeps_everything(store: SqliteStore, tmp_path: Path) -> None:
    first, token = await cluster_identity(store, str(tmp_path / "a"), "127.0.0.1")
    before = {name: _read(os.path.join(first.directory, name)) for name in os.listdir(first.directory)}
    again, token_again = await cluster_identity(store, str(tmp_path / "a"), "127.0.0.1")
    assert token_again == token
    assert {name: _read(os.path.join(again.directory, name)) for name in os.listdir(again.directory)} == before
