"""Container argv, environment, cgroup limits and user follow the kubelet, containerd and runc."""

from __future__ import annotations

import asyncio

from typing import Any

import pytest

from tinykube.node.envvars import pod_env
from tinykube.node.containerspec import argv, environment, expand, limits, user_ids

ENTRYPOINT = ["/ep-1", "foo", "bar"]
CMD = ["/cmd", "zoo", "boo"]


# The four cases of the "Notes" table in "Define a Command and Arguments for a Container".
@pytest.mark.parametrize(("container", "expected"), [
    ({}, ["/ep-1", "foo", "bar", "/cmd", "zoo", "boo"]),
    ({"command": ["/ep-2"]}, ["/ep-2"]),
    ({"args": ["zoo", "boo"]}, ["/ep-1", "foo", "bar", "zoo", "boo"]),
    ({"command": ["/ep-2"], "args": ["zoo", "boo"]}, ["/ep-2", "zoo", "boo"]),
])
def test_argv_combines_command_and_args_with_the_image(container: dict[str, Any], expected: list[str]) -> None:
    assert argv(container, ENTRYPOINT, CMD) == expected


def test_argv_with_empty_lists_falls_back_to_the_image() -> None:
    assert argv({"command": [], "args": []}, ENTRYPOINT, CMD) == ENTRYPOINT + CMD
    assert argv({}, [], []) == []


def test_argv_expands_only_the_pods_command_and_args() -> None:
    env = {"GREETING": "hi"}
    container = {"command": ["echo", "$(GREETING)"], "args": ["$$(GREETING)", "$(UNSET)"]}
    assert argv(container, [], [], env) == ["echo", "hi", "$(GREETING)", "$(UNSET)"]
    assert argv({}, ["sh", "-c"], ["echo $(GREETING) $$"], env) == ["sh", "-c", "echo $(GREETING) $$"]


# third_party/forked/golang/expansion/expand_test.go, doExpansionTest
CONTEXT = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("$(VAR_A)", "A"),
    ("$(VAR_A)-$(VAR_A)", "A-A"),
    ("$(VAR_A)-1", "A-1"),
    ("___$(VAR_B)___", "___B___"),
    ("___$(VAR_C)", "___C"),
    ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
    ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
    ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
    ("f000-$$VAR_A", "f000-$VAR_A"),
    ("foo\\$(VAR_C)bar", "foo\\Cbar"),
    ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
    ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
    ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
    ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
    ("$(VAR_REF)", "$(VAR_A)"),
    ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
    ("foo$(VAR_EMPTY)bar", "foobar"),
    ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
    ("f00__(VAR_A)__", "f00__(VAR_A)__"),
    ("$?_boo_$!", "$?_boo_$!"),
    ("$VAR_A", "$VAR_A"),
    ("$(VAR_DNE)", "$(VAR_DNE)"),
    ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
    ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
    ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
    ("$$$$$$$(VAR_A)", "$$$A"),
    ("$VAR_A)", "$VAR_A)"),
    ("${VAR_A}", "${VAR_A}"),
    ("$(VAR_B)_______$(A", "B_______$(A"),
    ("$(VAR_C)_______$(", "C_______$("),
    ("$(VAR_A)foobarzab$", "Afoobarzab$"),
    ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
    ("--$($($($($--", "--$($($($($--"),
    ("$($($($($--foo$(", "$($($($($--foo$("),
    ("foo0--$($($($(", "foo0--$($($($("),
    ("$(foo$$var)", "$(foo$$var)"),
    ("\n", "\n"),
])
def test_expand_matches_upstream(text: str, expected: str) -> None:
    assert expand(text, CONTEXT) == expected


def test_environment_expands_against_earlier_container_variables_only() -> None:
    container = {"env": [
        {"name": "FOO", "value": "bar"},
        {"name": "ZOO", "value": "$(FOO)-1"},
        {"name": "BLU", "value": "$(ZOO)-2"},
        {"name": "EARLY", "value": "$(LATE)"},
        {"name": "LATE", "value": "x"},
        {"name": "MYPATH", "value": "$(PATH):/extra"},   # the image's Env is not visible to expansion
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "FROM_SECRET", "value": "$(SECRET)"},
        {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k", "optional": True}}},
        {"name": "EMPTY"},
    ]}
    async def fetch(resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return {"data": {"k": "czNjcjN0"}} if (resource, name) == ("secrets", "s") else None

    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [container]}}
    own = asyncio.run(pod_env(pod, container, fetch, {}))
    env = environment(["PATH=/usr/bin:/bin", "HOME=/root"], own)
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/root", "FOO": "bar", "ZOO": "bar-1", "BLU": "bar-1-2",
                   "EARLY": "$(LATE)", "LATE": "x", "MYPATH": "$(PATH):/extra", "SECRET": "s3cr3t",
                   "FROM_SECRET": "s3cr3t", "EMPTY": ""}
    assert list(env) == ["PATH", "HOME", "FOO", "ZOO", "BLU", "EARLY", "LATE", "MYPATH", "SECRET", "FROM_SECRET",
                         "EMPTY"]


def test_a_container_variable_overrides_the_image_in_place() -> None:
    env = environment(["PATH=/bin", "LANG=C"], {"PATH": "/opt/bin"})
    assert list(env.items()) == [("PATH", "/opt/bin"), ("LANG", "C")]


def resources(requests: dict[str, str] | None = None, lims: dict[str, str] | None = None) -> dict[str, Any]:
    return {"resources": {"requests": requests or {}, "limits": lims or {}}}


@pytest.mark.parametrize(("container", "shares", "quota", "memory"), [
    ({}, 2, -1, 0),
    (resources({"cpu": "250m"}), 256, -1, 0),
    (resources({"cpu": "1"}), 1024, -1, 0),
    (resources({"cpu": "1m"}), 2, -1, 0),                             # at least MinShares
    (resources({"cpu": "300"}), 262144, -1, 0),                       # at most MaxShares
    (resources({"cpu": "250m"}, {"cpu": "500m"}), 256, 50000, 0),
    (resources(None, {"cpu": "500m"}), 512, 50000, 0),                # no request: shares from the limit
    (resources({"cpu": "0"}, {"cpu": "2"}), 2048, 200000, 0),
    (resources(None, {"cpu": "5m"}), 5, 1000, 0),                     # quota at least 1 ms
    (resources(None, {"memory": "128Mi"}), 2, -1, 134217728),
    (resources(None, {"memory": "1G"}), 2, -1, 1000000000),
    (resources(None, {"memory": "100.5"}), 2, -1, 101),               # Value() rounds up
])
def test_limits(container: dict[str, Any], shares: int, quota: int, memory: int) -> None:
    got = limits(container)
    assert (got.cpu_shares, got.cpu_quota_us, got.cpu_period_us, got.memory_limit_bytes) == (shares, quota, 100000,
                                                                                               memory)


PASSWD = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:102:nginx:/var/cache/nginx:/sbin/nologin\n"
GROUP = "root:x:0:\nnginx:x:102:\nstaff:x:50:nginx\n"


@pytest.mark.parametrize(("user", "expected"), [
    ("", (0, 0)),
    ("nginx", (101, 102)),
    ("101", (101, 102)),          # a known uid takes its passwd group
    ("1000", (1000, 0)),          # an unknown uid runs with group 0
    ("1000:2000", (1000, 2000)),
    ("nginx:50", (101, 50)),
    ("nginx:staff", (101, 50)),
    ("1000:staff", (1000, 50)),
])
def test_user_ids(user: str, expected: tuple[int, int]) -> None:
    assert user_ids(user, PASSWD, GROUP) == expected


def test_unknown_user_and_group_are_worded_as_runc_does() -> None:
    with pytest.raises(ValueError, match="^unable to find user app: no matching entries in passwd file$"):
        user_ids("app", PASSWD, GROUP)
    with pytest.raises(ValueError, match="^unable to find group wheel: no matching entries in group file$"):
        user_ids("nginx:wheel", PASSWD, GROUP)
    with pytest.raises(ValueError, match="^unable to find user app: no matching entries in passwd file$"):
        user_ids("app", "", "")
