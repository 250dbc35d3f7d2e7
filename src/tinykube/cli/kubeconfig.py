"""Kubeconfig files: the admin one in the data dir, and a ``tinykube`` context merged into ~/.kube/config."""

from __future__ import annotations

import base64
import os
from typing import Any

import yaml

CONTEXT = "tinykube"


def _b64(filename: str) -> str:
    with open(filename, "rb") as f:
        return base64.b64encode(f.read()).decode()


def admin_config(server: str, ca_file: str, cert_file: str, key_file: str, name: str = CONTEXT) -> dict[str, Any]:
    """A kubeconfig with the CA and the admin client certificate embedded."""
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_file)}}],
        "users": [{"name": name, "user": {"client-certificate-data": _b64(cert_file), "client-key-data": _b64(key_file)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
    }


def write(filename: str, config: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(filename) or ".", exist_ok=True)
    fd = os.open(filename + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, default_flow_style=False)
    os.replace(filename + ".tmp", filename)


def merge(filename: str, config: dict[str, Any]) -> None:
    """Replace our cluster/user/context entries in an existing kubeconfig and make ours current."""
    existing: dict[str, Any] = {}
    if os.path.exists(filename):
        with open(filename) as f:
            existing = yaml.safe_load(f) or {}
    existing.setdefault("apiVersion", "v1")
    existing.setdefault("kind", "Config")
    for section in ("clusters", "users", "contexts"):
        ours = {entry["name"] for entry in config[section]}
        kept = [e for e in existing.get(section) or [] if e.get("name") not in ours]
        existing[section] = kept + config[section]
    existing["current-context"] = config["current-context"]
    write(filename, existing)
