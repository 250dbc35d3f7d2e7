"""Service environment variables: the docker-link style ``<NAME>_SERVICE_HOST`` a container starts with.

As the kubelet's ``getServiceEnvVarMap`` and ``pkg/kubelet/envvars/envvars.go``: every Service
with a cluster IP in the pod's namespace when ``enableServiceLinks`` is on, and the
``kubernetes`` Service of ``default`` always; headless and ExternalName Services have no address
to publish and are skipped.  Pure: the caller lists the Services.
"""

from __future__ import annotations

from typing import Any

MASTER_SERVICES = ("kubernetes",)  # masterServices: published to every pod
MASTER_NAMESPACE = "default"


def _variable_name(name: str) -> str:
    """``makeEnvVariableName``: upper case, dashes to underscores."""
    return name.replace("-", "_").upper()


def _host_port(ip: str, port: int) -> str:
    """``net.JoinHostPort``: IPv6 addresses are bracketed."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _has_cluster_ip(service: dict[str, Any]) -> bool:
    return (service.get("spec") or {}).get("clusterIP") not in (None, "", "None")


def _link_variables(prefix: str, ip: str, ports: list[dict[str, Any]]) -> dict[str, str]:
    """``makeLinkVariables``: ``<P>_PORT`` for the first port, then ``<P>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]``."""
    env: dict[str, str] = {}
    for index, port in enumerate(ports):
        protocol = port.get("protocol") or "TCP"
        url = f"{protocol.lower()}://{_host_port(ip, port['port'])}"
        if index == 0:
            env[f"{prefix}_PORT"] = url
        port_prefix = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
        env.update({port_prefix: url, f"{port_prefix}_PROTO": protocol.lower(),
                    f"{port_prefix}_PORT": str(port["port"]), f"{port_prefix}_ADDR": ip})
    return env


def service_variables(service: dict[str, Any]) -> dict[str, str]:
    """``FromServices`` for one Service: host, first port, named ports, then the link variables."""
    spec = service.get("spec") or {}
    ports = spec.get("ports") or []
    if not _has_cluster_ip(service) or not ports:
        return {}
    prefix = _variable_name(service["metadata"]["name"])
    env = {f"{prefix}_SERVICE_HOST": spec["clusterIP"], f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    for port in ports:
        if port.get("name"):
            env[f"{prefix}_SERVICE_PORT_{_variable_name(port['name'])}"] = str(port["port"])
    return {**env, **_link_variables(prefix, spec["clusterIP"], ports)}


def _published(service: dict[str, Any], enable_service_links: bool, namespace: str | None) -> bool:
    meta = service.get("metadata") or {}
    if meta.get("namespace") == MASTER_NAMESPACE and meta.get("name") in MASTER_SERVICES:
        return True
    return enable_service_links and (namespace is None or meta.get("namespace") == namespace)


def service_env(services: list[dict[str, Any]], enable_service_links: bool,
                namespace: str | None = None) -> dict[str, str]:
    """The Service variables of a pod in ``namespace``.

    ``services`` may be every Service of the cluster when ``namespace`` is given; without it
    they are taken to be the pod's namespace's already (plus ``default/kubernetes``).  A name
    that occurs twice (``kubernetes`` in ``default`` and in the pod's own namespace) publishes
    the pod's namespace's Service, as the kubelet's map does.
    """
    chosen: dict[str, dict[str, Any]] = {}
    for service in services:
        if not _has_cluster_ip(service) or not _published(service, enable_service_links, namespace):
            continue
        meta = service["metadata"]
        is_master = meta.get("namespace") == MASTER_NAMESPACE and meta["name"] in MASTER_SERVICES
        if not is_master or meta["name"] not in chosen:
            chosen[meta["name"]] = service
    env: dict[str, str] = {}
    for service in chosen.values():
        env.update(service_variables(service))
    return env
