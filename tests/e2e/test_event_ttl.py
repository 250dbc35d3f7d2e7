"""Events expire after ``--event-ttl`` (kube-apiserver's flag), seen through the real kubectl.

The server is told ``--event-ttl 2s``; an Event written through either API group must be gone a
few seconds later, while other objects stay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.e2e.cluster import Cluster, eventually

pytestmark = pytest.mark.slow

REGARDING = {"kind": "ConfigMap", "name": "keep", "namespace": "default", "apiVersion": "v1"}
CORE_EVENT = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "core", "namespace": "default"},
              "involvedObject": REGARDING, "reason": "Old", "message": "from core/v1", "type": "Normal"}
NEW_EVENT = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "new", "namespace": "default"},
             "regarding": REGARDING, "reason": "New", "note": "from events.k8s.io", "type": "Normal", "action": "Test",
             "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "tests/e2e",
             "reportingInstance": "tests-e2e"}
KEEP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep", "namespace": "default"}}


def _event_names(c: Cluster) -> set[str]:
    listed = json.loads(c.kubectl("-n", "default", "get", "events", "-o", "json").stdout)
    return {item["metadata"]["name"] for item in listed["items"]}


def test_events_expire_after_the_event_ttl(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "data", extra_args=("--event-ttl", "2s"))
    c.start()
    try:
        c.kubectl("create", "-f", "-", input=yaml.safe_dump_all([KEEP, CORE_EVENT, NEW_EVENT]))
        eventually(lambda: not {"core", "new"} & _event_names(c), "the events to expire", timeout=5)
        assert c.kubectl("-n", "default", "get", "configmap", "keep", check=False).returncode == 0
    finally:
        c.stop()
