"""The service proxy's nftables rules read like kube-proxy's (pkg/proxy/nftables/proxier_test.go)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tinykube.node import proxy
from tinykube.node.proxy import (
    ServiceProxy,
    delete_script,
    hashed,
    plan,
    render,
    retire,
    ruleset,
    service_ports,
)

Json = dict[str, Any]
T = "ip tinykube"
SVC1 = "service-ULMVA6XW-ns1/svc1/tcp/p80"  # kube-proxy's own test names these exactly so
EP1 = "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"


def service(ns: str, name: str, ports: list[Json], cluster_ip: str = "10.43.0.41", **spec: Any) -> Json:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "ports": ports, **spec}}


def endpoints(ns: str, name: str, *subsets: Json) -> Json:
    return {"metadata": {"namespace": ns, "name": name}, "subsets": list(subsets)}


def subset(ips: list[str], ports: list[Json], not_ready: list[str] | None = None) -> Json:
    s: Json = {"addresses": [{"ip": ip} for ip in ips], "ports": ports}
    if not_ready:
        s["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return s


P80 = {"name": "p80", "port": 80, "protocol": "TCP"}
SVC = service("ns1", "svc1", [P80])
EPS = endpoints("ns1", "svc1", subset(["10.180.0.1"], [{"name": "p80", "port": 80, "protocol": "TCP"}]))


def lines(script: str) -> list[str]:
    return script.splitlines()


def rules(script: str, chain: str) -> list[str]:
    prefix = f"add rule {T} {chain} "
    return [line.removeprefix(prefix) for line in lines(script) if line.startswith(prefix)]


def elements(script: str, container: str) -> list[str]:
    prefix = f"add element {T} {container} "
    return [line.removeprefix(prefix) for line in lines(script) if line.startswith(prefix)]


def test_chain_names_are_kube_proxys() -> None:
    assert hashed("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert hashed("ns1/svc1/tcp/p80__10.180.0.1/80") == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    long = hashed("n" * 63 + "/" + "s" * 63 + "/tcp/" + "p" * 63 + "__10.42.0.1/8080" + "x" * 40)
    assert len(long) == 240 and long.endswith("...")


def test_full_script_replaces_the_table_in_one_transaction() -> None:
    script = ruleset([], [], ["192.168.0.2"])
    assert lines(script)[:3] == [f'add table {T} {{ comment "rules for tinykube Services" ; }}', f"delete table {T}",
                                 f'add table {T} {{ comment "rules for tinykube Services" ; }}']
    assert f"add chain {T} nat-prerouting {{ type nat hook prerouting priority -100 ; }}" in script
    assert f"add chain {T} nat-output {{ type nat hook output priority -100 ; }}" in script
    assert rules(script, "masquerading") == ["mark and 0x4000 == 0 return", "mark set mark xor 0x4000",
                                             "masquerade fully-random"]
    assert rules(script, "cluster-ips-check") == ["ip daddr @cluster-ips goto reject-chain",
                                                  "ip daddr 10.43.0.0/16 drop"]
    assert elements(script, "nodeport-ips") == ["{ 192.168.0.2 }", "{ 127.0.0.1 }"]
    assert "flush" not in script and script.endswith("\n")


def test_cluster_ip_dnats_to_a_random_endpoint() -> None:
    script = ruleset([SVC], [EPS], ["192.168.0.2"])
    assert elements(script, "cluster-ips") == ["{ 10.43.0.41 }"]
    assert elements(script, "service-ips") == [f"{{ 10.43.0.41 . tcp . 80 : goto {SVC1} }}"]
    assert rules(script, SVC1) == [
        "ip daddr 10.43.0.41 ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
        f"numgen random mod 1 vmap {{ 0 : goto {EP1} }}"]
    assert rules(script, EP1) == ["ip saddr 10.180.0.1 jump mark-for-masquerade",
                                  "meta l4proto tcp dnat to 10.180.0.1:80"]
    assert elements(script, "service-nodeports") == elements(script, "no-endpoint-services") == []


def test_every_ready_endpoint_is_a_choice() -> None:
    eps = endpoints("ns1", "svc1", subset(["10.180.0.9", "10.180.0.10"], [P80], not_ready=["10.180.0.11"]))
    choice = rules(ruleset([SVC], [eps], []), SVC1)[-1]
    assert choice.startswith("numgen random mod 2 vmap { 0 : goto endpoint-")
    assert "10.180.0.9/80 , 1 : goto endpoint-" in choice and choice.endswith("10.180.0.10/80 }")
    assert "10.180.0.11" not in ruleset([SVC], [eps], [])


def test_nodeport_and_external_ips_masquerade_then_share_the_service_chain() -> None:
    svc = service("ns3", "svc3", [{**P80, "nodePort": 30080}], type="NodePort", externalIPs=["192.168.99.33"])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb.example"}]}}
    script = ruleset([svc], [endpoints("ns3", "svc3", subset(["10.42.0.7"], [P80]))], ["192.168.0.2"])
    external, service_chain = "external-4AT6LBPK-ns3/svc3/tcp/p80", "service-4AT6LBPK-ns3/svc3/tcp/p80"
    assert elements(script, "service-nodeports") == [f"{{ tcp . 30080 : goto {external} }}"]
    assert elements(script, "service-ips") == [f"{{ 10.43.0.41 . tcp . 80 : goto {service_chain} }}",
                                               f"{{ 192.168.99.33 . tcp . 80 : goto {external} }}",
                                               f"{{ 1.2.3.4 . tcp . 80 : goto {external} }}"]
    assert rules(script, external) == ["jump mark-for-masquerade", f"goto {service_chain}"]
    assert rules(script, "services") == ["ip daddr . meta l4proto . th dport vmap @service-ips",
                                         "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"]
    assert elements(script, "nodeport-ips") == ["{ 192.168.0.2 }", "{ 127.0.0.1 }"]


def test_localhost_nodeports_are_guarded() -> None:
    guard = rules(ruleset([], [], []), "filter-input")[0]
    assert guard == ("ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state != { established, related } "
                     "ct status & dnat == 0 drop")


def test_service_without_ready_endpoints_is_rejected() -> None:
    svc = service("ns6", "svc6", [{**P80, "nodePort": 30081}], cluster_ip="10.43.0.46", type="NodePort")
    not_ready = endpoints("ns6", "svc6", subset([], [P80], not_ready=["10.42.0.9"]))
    script = ruleset([svc], [not_ready], ["192.168.0.2"])
    assert elements(script, "cluster-ips") == ["{ 10.43.0.46 }"]
    assert elements(script, "no-endpoint-services") == [
        '{ 10.43.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }']
    assert elements(script, "no-endpoint-nodeports") == ['{ tcp . 30081 comment "ns6/svc6:p80" : goto reject-chain }']
    assert elements(script, "service-ips") == elements(script, "service-nodeports") == []
    assert "/svc6/" not in "".join(line for line in lines(script) if line.startswith("add chain"))
    assert rules(script, "reject-chain") == ["meta l4proto tcp reject with tcp reset", "reject"]
    assert rules(script, "filter-output") == ["ct state new jump service-endpoints-check",
                                              "ct state new jump cluster-ips-check"]


def test_client_ip_affinity_uses_a_timed_set_per_endpoint() -> None:
    svc = {**SVC, "spec": {**SVC["spec"], "sessionAffinity": "ClientIP",
                           "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}}
    script = ruleset([svc], [EPS], [])
    affinity = "affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    assert f"add set {T} {affinity} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }}" in lines(script)
    assert rules(script, SVC1)[1] == f"ip saddr @{affinity} goto {EP1}"
    assert rules(script, EP1)[1] == f"update @{affinity} {{ ip saddr }}"
    default = {**SVC, "spec": {**SVC["spec"], "sessionAffinity": "ClientIP"}}
    assert "timeout 10800s" in ruleset([default], [EPS], [])
    assert "affinity-" not in ruleset([SVC], [EPS], [])


def test_named_ports_pick_their_own_endpoint_port_and_protocol() -> None:
    svc = service("ns2", "svc2", [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"},
                                  {"name": "dns-udp", "port": 53, "protocol": "UDP"},
                                  {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353}])
    eps = endpoints("ns2", "svc2",
                    subset(["10.42.0.1"], [{"name": "http", "port": 8080, "protocol": "TCP"},
                                           {"name": "dns-udp", "port": 53, "protocol": "UDP"},
                                           {"name": "dns-tcp", "port": 5353, "protocol": "TCP"}]),
                    subset(["10.42.0.2"], [{"name": "http", "port": 8081, "protocol": "TCP"},
                                           {"name": "dns-tcp", "port": 53, "protocol": "UDP"}]))
    by_name = {sp.port_name: sp.endpoints for sp in service_ports([svc], [eps])}
    assert by_name == {"http": (("10.42.0.1", 8080), ("10.42.0.2", 8081)), "dns-udp": (("10.42.0.1", 53),),
                       "dns-tcp": (("10.42.0.1", 5353),)}
    script = ruleset([svc], [eps], [])
    assert "meta l4proto udp dnat to 10.42.0.1:53" in script
    assert "meta l4proto tcp dnat to 10.42.0.1:5353" in script
    assert "10.43.0.41 . udp . 53 : goto service-" in script and "10.43.0.41 . tcp . 53 : goto service-" in script


def test_unnamed_port_matches_the_unnamed_endpoint_port() -> None:
    svc = service("default", "web", [{"port": 80, "protocol": "TCP", "targetPort": 8080}])
    eps = endpoints("default", "web", subset(["10.42.0.3"], [{"port": 8080, "protocol": "TCP"}]))
    [sp] = service_ports([svc], [eps])
    assert (sp.label, sp.endpoints) == ("default/web", (("10.42.0.3", 8080),))
    assert "service-" + hashed("default/web/tcp/") in ruleset([svc], [eps], [])


def test_headless_external_name_and_ipv6_get_no_rules() -> None:
    headless = service("ns", "headless", [P80], cluster_ip="None")
    external = {"metadata": {"namespace": "ns", "name": "ext"}, "spec": {"type": "ExternalName",
                                                                         "externalName": "example.com"}}
    v6 = service("ns", "v6", [P80], cluster_ip="fd00::1")
    assert service_ports([headless, external, v6], []) == []
    bad_eps = endpoints("ns1", "svc1", subset(["fd00::5", "10.42.0.5"], [P80]))
    assert service_ports([SVC], [bad_eps])[0].endpoints == (("10.42.0.5", 80),)


def test_a_clusterip_the_node_serves_itself_gets_no_rules() -> None:
    """kube-dns has no endpoints: its address is the node's own DNS server, which rules would reject."""
    dns = service("kube-system", "kube-dns", [{"name": "dns", "port": 53, "protocol": "UDP"}], cluster_ip="10.43.0.10")
    assert [sp.name for sp in service_ports([dns, SVC], [], local_ips={"10.43.0.10"})] == ["svc1"]
    assert "10.43.0.10" not in render(plan([dns], [], ["192.168.0.2"], {"10.43.0.10"}))


def test_a_key_already_taken_skips_the_later_service() -> None:
    first, second = service("a", "first", [P80]), service("b", "second", [P80])
    script = ruleset([second, first], [], [])
    assert elements(script, "no-endpoint-services") == [
        '{ 10.43.0.41 . tcp . 80 comment "a/first:p80" : goto reject-chain }']
    assert elements(script, "cluster-ips") == ["{ 10.43.0.41 }"]


def test_update_script_flushes_in_place_and_keeps_affinity_sets() -> None:
    sticky = {**SVC, "spec": {**SVC["spec"], "sessionAffinity": "ClientIP"}}
    two = endpoints("ns1", "svc1", subset(["10.180.0.1", "10.180.0.2"], [P80]))
    before, after = plan([sticky], [two], []), plan([sticky], [EPS], [])
    gone = "endpoint-" + hashed("ns1/svc1/tcp/p80__10.180.0.2/80")
    script = render(after, "tinykube", before, retired=[gone, EP1])
    assert "delete table" not in script
    assert f"flush table {T}" in lines(script) and f"flush map {T} service-ips" in lines(script)
    assert f"delete chain {T} {gone}" in lines(script)
    assert f"delete chain {T} {EP1}" not in lines(script)  # in use again: kept
    assert [line for line in lines(script) if line.startswith("delete set")] == [
        f"delete set {T} affinity-" + hashed("ns1/svc1/tcp/p80__10.180.0.2/80")]
    assert f"add set {T} affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80" in script
    assert "flush set ip tinykube affinity" not in script


def test_retired_chains_wait_before_deletion() -> None:
    a = endpoints("ns1", "svc1", subset(["10.180.0.1"], [P80]))
    b = endpoints("ns1", "svc1", subset(["10.180.0.2"], [P80]))
    pa, pb = plan([SVC], [a], []), plan([SVC], [b], [])
    retired = retire(pa, pb, {}, (), now=10.0)
    assert retired == {EP1: 10.0}
    assert retire(pb, pb, retired, (), now=10.5) == {EP1: 10.0}
    assert retire(pb, pb, retired, {EP1}, now=11.0) == {}
    assert retire(pb, pa, retired, (), now=10.5) == {  # EP1 back in use, the other one retires
        "endpoint-" + hashed("ns1/svc1/tcp/p80__10.180.0.2/80"): 10.5}


def test_delete_script_tolerates_a_missing_table() -> None:
    assert delete_script("tk") == "add table ip tk\ndelete table ip tk\n"


needs_nft = pytest.mark.skipif(not shutil.which("nft") or os.geteuid() != 0, reason="nft -c needs nft and root")


def _rich() -> tuple[list[Json], list[Json]]:
    svcs = [{**service("ns1", "svc1", [{**P80, "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP"},
                                       {"name": "s", "port": 9, "protocol": "SCTP"}],
                       type="NodePort", externalIPs=["192.168.99.22"], sessionAffinity="ClientIP")},
            service("ns2", "empty", [{"port": 80, "protocol": "TCP", "nodePort": 30081}], cluster_ip="10.43.0.42",
                    type="NodePort")]
    eps = [endpoints("ns1", "svc1", subset(["10.42.0.5", "10.42.0.6"], [
        {"name": "p80", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"},
        {"name": "s", "port": 9, "protocol": "SCTP"}]))]
    return svcs, eps


def _check(script: str) -> None:
    """``nft -c``: the kernel validates the transaction and nothing is applied."""
    result = subprocess.run(["nft", "-c", "-f", "-"], input=script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@needs_nft
def test_nft_accepts_the_full_script() -> None:
    _check(ruleset(*_rich(), ["192.168.0.2"]))


@needs_nft
def test_nft_accepts_an_update_after_the_full_script() -> None:
    svcs, eps = _rich()
    before = plan(svcs, eps, ["192.168.0.2"])
    after = plan(svcs[1:], [], ["192.168.0.2"])
    retired = list(before.chains)[:2]  # still exist: deleting them must be valid
    _check(render(before) + render(after, previous=before, retired=retired))


def _fake_nft(tmp_path: Path) -> tuple[str, Path]:
    """An ``nft`` that records each script and fails while a ``fail`` file exists."""
    log, fail = tmp_path / "scripts", tmp_path / "fail"
    nft = tmp_path / "nft"
    nft.write_text(f"#!/bin/sh\n[ -e {fail} ] && {{ echo 'Error: boom' >&2; exit 1; }}\n"
                   f"cat >> {log}\necho '#end' >> {log}\n")
    nft.chmod(0o755)
    return str(nft), log


def _scripts(log: Path) -> list[str]:
    return [s for s in log.read_text().split("#end\n") if s] if log.exists() else []


async def test_sync_replaces_first_then_updates_only_on_change(tmp_path: Path) -> None:
    nft, log = _fake_nft(tmp_path)
    p = ServiceProxy(None, ["192.168.0.2"], nft)  # type: ignore[arg-type]  # sync never calls the API
    await p.on_service("ADDED", SVC)
    await p.on_endpoints("ADDED", EPS)
    await p.sync()
    await p.sync()
    await p.on_endpoints("MODIFIED", endpoints("ns1", "svc1", subset(["10.180.0.2"], [P80])))
    await p.sync()
    first, second = _scripts(log)
    assert "delete table ip tinykube" in first and "10.180.0.1:80" in first
    assert "delete table" not in second and "flush table ip tinykube" in second and "10.180.0.2:80" in second


async def test_failed_sync_is_followed_by_a_full_replace(tmp_path: Path) -> None:
    nft, log = _fake_nft(tmp_path)
    p = ServiceProxy(None, [], nft)  # type: ignore[arg-type]
    await p.on_service("ADDED", SVC)
    await p.sync()
    await p.on_service("DELETED", SVC)
    (tmp_path / "fail").touch()
    with pytest.raises(proxy.ProxyError, match="boom"):
        await p.sync()
    (tmp_path / "fail").unlink()
    await p.sync()
    assert ["delete table ip tinykube" in s for s in _scripts(log)] == [True, True]


async def test_unused_chains_are_deleted_a_while_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy, "STALE_CHAIN_DELAY", 0.0)
    nft, log = _fake_nft(tmp_path)
    p = ServiceProxy(None, [], nft)  # type: ignore[arg-type]
    await p.on_service("ADDED", SVC)
    await p.on_endpoints("ADDED", EPS)
    await p.sync()
    await p.on_endpoints("DELETED", EPS)
    await p.sync()
    await p.sync()
    await p.sync()
    full, emptied, deleted = _scripts(log)
    assert f"delete chain {T}" not in emptied
    assert f"delete chain {T} {EP1}" in deleted and f"delete chain {T} {SVC1}" in deleted
