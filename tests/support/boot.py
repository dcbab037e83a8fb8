"""Playing a machine's part of the boot conversation over plain HTTP."""

from __future__ import annotations

import re

import requests

_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_-]+)")


def boot_token(script: str) -> str:
    """The one-time boot token inside a machine's iPXE script."""
    match = _TOKEN.search(script)
    assert match, f"no boot token in the iPXE script:\n{script}"
    return match.group(1)


def register(url: str, mac: str, **identity: str) -> str:
    """GET /ipxe as the machine with this MAC would; returns its fresh boot token."""
    response = requests.get(f"{url}/ipxe", params={"mac": mac, **identity}, timeout=10)
    assert response.status_code == 200, response.text
    return boot_token(response.text)
