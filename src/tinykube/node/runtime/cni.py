"""Attach a pod's network namespace to the node's bridge by running CNI plugins, per CNI spec 1.0.

A pod gets two attachments: ``loopback`` on ``lo`` and the node's network list on ``eth0``
(``bridge`` with ``host-local`` IPAM, then ``portmap`` when the pod maps host ports).  Plan,
then act: :func:`plan` is pure and returns everything ADD will run; the sandbox stores that
plan with ADD's result, and DEL replays exactly it, so a config change on the node never leaves
an IP allocated or a port rule behind.

Invocation follows the spec (and libcni): the plugin's config on stdin, ``CNI_*`` parameters
in the environment, a JSON result or error on stdout; in a list, each plugin gets the previous
plugin's result as ``prevResult`` and ``runtimeConfig`` for the capabilities it declares; DEL
runs the list in reverse with the cached ADD result as ``prevResult``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tinykube.node.runtime import proc

CNI_VERSION = "1.0.0"  # what the Debian plugins (1.1.1) speak
POD_IFNAME = "eth0"

Json = dict[str, Any]


class CniError(Exception):
    """A plugin failed; ``code`` and ``msg`` are the spec's error fields."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"CNI {plugin} {command} failed: {msg}" + (f" ({details})" if details else ""))
        self.plugin = plugin
        self.code = code
        self.msg = msg


@dataclass(frozen=True)
class CniConfig:
    """The node's pod network: one bridge, one subnet (the node's pod CIDR) allocated by host-local."""

    bridge: str = "tinykube0"
    subnet: str = "10.42.0.0/24"
    gateway: str | None = None  # default: the subnet's first address
    state_dir: Path = Path("/run/tinykube/cni")  # host-local's allocations: on tmpfs, they die with the pods at reboot
    bin_dir: Path = Path("/usr/lib/cni")
    network_name: str = "tinykube"
    mtu: int | None = None


@dataclass(frozen=True)
class PortMapping:
    """A hostPort: traffic to ``host_ip:host_port`` goes to the pod's ``container_port``."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass(frozen=True)
class NetworkPlan:
    """What ADD runs and DEL replays for one pod: stored beside the pod, as JSON."""

    container_id: str
    netns: str
    loopback: Json
    network: Json  # a CNI network configuration list
    runtime_config: Json = field(default_factory=dict)

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Json) -> NetworkPlan:
        return cls(**data)


@dataclass(frozen=True)
class Attachment:
    """The pod's address on the node network, and ADD's full result (DEL's ``prevResult``)."""

    ip: str
    gateway: str
    result: Json


def gateway_of(cfg: CniConfig) -> str:
    return cfg.gateway or str(next(ipaddress.ip_network(cfg.subnet).hosts()))


def plan(cfg: CniConfig, container_id: str, netns: str, ports: list[PortMapping] | None = None) -> NetworkPlan:
    """The loopback config and the network list for one pod; portmap only when ports are mapped.

    Leaving portmap out when there is nothing to map saves one plugin exec (3-15 ms) on the
    start path and one on the stop path; DEL stays correct because it replays this plan.
    """
    bridge: Json = {
        "type": "bridge", "bridge": cfg.bridge, "isGateway": True, "hairpinMode": True, "ipMasq": False,
        "ipam": {"type": "host-local", "dataDir": str(cfg.state_dir), "routes": [{"dst": "0.0.0.0/0"}],
                 "ranges": [[{"subnet": cfg.subnet, "gateway": gateway_of(cfg)}]]},
    }
    if cfg.mtu:
        bridge["mtu"] = cfg.mtu
    plugins = [bridge]
    runtime_config: Json = {}
    if ports:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
        runtime_config["portMappings"] = [
            {"hostPort": p.host_port, "containerPort": p.container_port, "protocol": p.protocol.lower(),
             "hostIP": p.host_ip} for p in ports]
    return NetworkPlan(
        container_id=container_id, netns=netns,
        loopback={"cniVersion": CNI_VERSION, "name": "lo", "type": "loopback"},
        network={"cniVersion": CNI_VERSION, "name": cfg.network_name, "plugins": plugins},
        runtime_config=runtime_config)


def plugin_config(network: Json, plugin: Json, runtime_config: Json, prev_result: Json | None) -> Json:
    """One list entry as the plugin sees it: name, version, prevResult, its capabilities' args."""
    conf = {**plugin, "cniVersion": network["cniVersion"], "name": network["name"]}
    wanted = {k: v for k, v in runtime_config.items() if plugin.get("capabilities", {}).get(k)}
    if wanted:
        conf["runtimeConfig"] = wanted
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def first_address(result: Json) -> tuple[str, str]:
    """(ip, gateway) of the first IP in a CNI result; the pod IP the API reports."""
    ip = result["ips"][0]
    return ip["address"].split("/")[0], ip.get("gateway", "")


async def add(bin_dir: Path, p: NetworkPlan) -> Attachment:
    """ADD loopback and the network list concurrently (they touch different interfaces)."""
    _, result = await asyncio.gather(_invoke(bin_dir, "ADD", p.loopback, p, "lo"), _add_list(bin_dir, p))
    ip, gateway = first_address(result)
    return Attachment(ip, gateway, result)


async def delete(bin_dir: Path, p: NetworkPlan, prev_result: Json | None) -> None:
    """DEL the network list in reverse, and loopback; safe to repeat (plugins make DEL idempotent)."""
    await asyncio.gather(_invoke(bin_dir, "DEL", p.loopback, p, "lo"), _del_list(bin_dir, p, prev_result))


async def _add_list(bin_dir: Path, p: NetworkPlan) -> Json:
    result: Json | None = None
    for plugin in p.network["plugins"]:
        conf = plugin_config(p.network, plugin, p.runtime_config, result)
        result = await _invoke(bin_dir, "ADD", conf, p, POD_IFNAME)
    return result or {}


async def _del_list(bin_dir: Path, p: NetworkPlan, prev_result: Json | None) -> None:
    for plugin in reversed(p.network["plugins"]):
        await _invoke(bin_dir, "DEL", plugin_config(p.network, plugin, p.runtime_config, prev_result), p, POD_IFNAME)


async def _invoke(bin_dir: Path, command: str, conf: Json, p: NetworkPlan, ifname: str) -> Json:
    """Run one plugin; its JSON stdout is the result (ADD) or the error (non-zero exit)."""
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": p.container_id, "CNI_NETNS": p.netns,
           "CNI_IFNAME": ifname, "CNI_PATH": str(bin_dir)}
    done = await proc.run(str(bin_dir / conf["type"]), input=orjson.dumps(conf), env=env)
    if done.returncode != 0:
        raise _error(conf["type"], command, done.stdout, done.stderr)
    return orjson.loads(done.stdout) if done.stdout.strip() else {}


def _error(plugin: str, command: str, out: bytes, err: bytes) -> CniError:
    try:
        e = orjson.loads(out)
        return CniError(plugin, command, int(e.get("code", 999)), e.get("msg", ""), e.get("details", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return CniError(plugin, command, 999, (out + err).decode(errors="replace").strip())
