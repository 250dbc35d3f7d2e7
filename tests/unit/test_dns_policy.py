"""resolv.conf by dnsPolicy and dnsConfig, as the kubelet's DNS configurer builds it."""

from __future__ import annotations

from tinykube.node.launch import dns_config, host_dns
from tinykube.node.runtime.sandbox import DnsConfig

HOST = "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"


def pod(policy: str | None = None, config: dict | None = None) -> dict:
    spec: dict = {"containers": []}
    if policy:
        spec["dnsPolicy"] = policy
    if config:
        spec["dnsConfig"] = config
    return {"metadata": {"namespace": "web"}, "spec": spec}


def test_cluster_first_is_the_default() -> None:
    assert dns_config(pod(), HOST) == DnsConfig(["10.43.0.10"], ["web.svc.cluster.local", "svc.cluster.local",
                                                                 "cluster.local"], ["ndots:5"])


def test_default_uses_the_host() -> None:
    assert dns_config(pod("Default"), HOST) == host_dns(HOST) == DnsConfig(["192.0.2.53"], ["corp.example"], ["edns0"])


def test_none_uses_dns_config_alone() -> None:
    config = {"nameservers": ["192.0.2.1"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}]}
    assert dns_config(pod("None", config), HOST) == DnsConfig(["192.0.2.1"], ["a.example"], ["ndots:2"])


def test_dns_config_merges_into_cluster_first() -> None:
    config = {"nameservers": ["192.0.2.1"], "searches": ["cluster.local", "b.example"],
              "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}
    merged = dns_config(pod("ClusterFirst", config), HOST)
    assert merged.nameservers == ["10.43.0.10", "192.0.2.1"]
    assert merged.searches[-1] == "b.example" and merged.searches.count("cluster.local") == 1
    assert merged.options == ["ndots:1", "edns0"]
