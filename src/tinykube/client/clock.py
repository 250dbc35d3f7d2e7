"""The wall clock in the API's two timestamp formats: Time (seconds) and MicroTime (microseconds)."""

from __future__ import annotations

import datetime


def now() -> str:
    """``metav1.Time`` for now: RFC 3339 in UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    """``metav1.MicroTime`` for now (Lease renewals, event times)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
