"""Service environment variables, as the kubelet's envvars.FromServices writes them."""

from __future__ import annotations

from typing import Any

from tinykube.node.servicelinks import service_env, service_variables


def service(name: str, namespace: str, cluster_ip: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"clusterIP": cluster_ip, "ports": ports}}


KUBERNETES = service("kubernetes", "default", "10.43.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}])
MYSERVICE = service("my-service", "web", "10.43.0.20", [{"name": "http", "port": 80, "protocol": "TCP"},
                                                        {"name": "dns-udp", "port": 53, "protocol": "UDP"}])


def test_docker_link_variables_of_one_service() -> None:
    assert service_variables(MYSERVICE) == {
        "MY_SERVICE_SERVICE_HOST": "10.43.0.20",
        "MY_SERVICE_SERVICE_PORT": "80",
        "MY_SERVICE_SERVICE_PORT_HTTP": "80",
        "MY_SERVICE_SERVICE_PORT_DNS_UDP": "53",
        "MY_SERVICE_PORT": "tcp://10.43.0.20:80",
        "MY_SERVICE_PORT_80_TCP": "tcp://10.43.0.20:80",
        "MY_SERVICE_PORT_80_TCP_PROTO": "tcp",
        "MY_SERVICE_PORT_80_TCP_PORT": "80",
        "MY_SERVICE_PORT_80_TCP_ADDR": "10.43.0.20",
        "MY_SERVICE_PORT_53_UDP": "udp://10.43.0.20:53",
        "MY_SERVICE_PORT_53_UDP_PROTO": "udp",
        "MY_SERVICE_PORT_53_UDP_PORT": "53",
        "MY_SERVICE_PORT_53_UDP_ADDR": "10.43.0.20",
    }


def test_unnamed_port_and_ipv6_address() -> None:
    env = service_variables(service("v6", "web", "fd00::5", [{"port": 8080}]))
    assert env == {"V6_SERVICE_HOST": "fd00::5", "V6_SERVICE_PORT": "8080", "V6_PORT": "tcp://[fd00::5]:8080",
                   "V6_PORT_8080_TCP": "tcp://[fd00::5]:8080", "V6_PORT_8080_TCP_PROTO": "tcp",
                   "V6_PORT_8080_TCP_PORT": "8080", "V6_PORT_8080_TCP_ADDR": "fd00::5"}


def test_kubernetes_always_headless_and_other_namespaces_never() -> None:
    headless = service("db", "web", "None", [{"port": 5432}])
    other = service("other", "elsewhere", "10.43.0.30", [{"port": 1}])
    everything = [KUBERNETES, MYSERVICE, headless, other]
    env = service_env(everything, True, "web")
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1" and env["KUBERNETES_PORT_443_TCP_PORT"] == "443"
    assert env["MY_SERVICE_SERVICE_HOST"] == "10.43.0.20"
    assert not any(k.startswith(("DB_", "OTHER_")) for k in env)
    assert set(service_env(everything, False, "web")) == {k for k in env if k.startswith("KUBERNETES_")}
    assert service_env([KUBERNETES, MYSERVICE], True) == {**service_variables(KUBERNETES), **service_variables(MYSERVICE)}


def test_a_kubernetes_service_of_the_pods_namespace_wins() -> None:
    own = service("kubernetes", "web", "10.43.0.99", [{"port": 1}])
    for order in ([KUBERNETES, own], [own, KUBERNETES]):
        assert service_env(order, True, "web")["KUBERNETES_SERVICE_HOST"] == "10.43.0.99"
    assert service_env([KUBERNETES, own], False, "web")["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"
