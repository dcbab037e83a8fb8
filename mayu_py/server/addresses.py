"""Comparing the textual IP addresses requests come from."""

from __future__ import annotations

import ipaddress


def same_address(a: str | None, b: str | None) -> bool:
    """Two textual IP addresses name the same address (None or garbage never matches)."""
    if not a or not b:
        return False
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False
