"""Playing a machine's part of the boot conversation against a real `mayu serve`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import requests

_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_-]+)")


def boot_token(script: str) -> str:
    """The one-time boot token inside a machine's iPXE script."""
    match = _TOKEN.search(script)
    assert match, f"no boot token in the iPXE script:\n{script}"
    return match.group(1)


def ipxe(url: str, mac: str, **identity: str) -> str:
    """GET /ipxe as the machine with this MAC would; returns the script."""
    response = requests.get(f"{url}/ipxe", params={"mac": mac, **identity}, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def register(url: str, mac: str, **identity: str) -> str:
    """GET /ipxe for a machine a config group approves; returns its fresh boot token."""
    return boot_token(ipxe(url, mac, **identity))


def enroll(server: Any, mac: str, role: str = "worker", **identity: str) -> str:
    """Boot an unknown machine (discovered), approve it as the operator, boot it again;
    returns its boot token. `server` is a tests.conftest.RunningServer."""
    ipxe(server.url, mac, **identity)
    response = server.api("POST", f"/api/v1/machines/{mac}/approve", json={"role": role})
    assert response.status_code == 200, response.text
    return register(server.url, mac, **identity)


def fetch_config(url: str, mac: str, token: str, ca_file: Path) -> dict[str, Any]:
    """Fetch the stub over HTTP, then the real config it names over HTTPS (verified with the
    server CA); returns the real config."""
    stub = requests.get(f"{url}/ignition", params={"mac": mac, "token": token}, timeout=30)
    assert stub.status_code == 200, stub.text
    source = stub.json()["ignition"]["config"]["merge"][0]["source"]
    secret = requests.get(source, verify=str(ca_file), timeout=30)
    assert secret.status_code == 200, secret.text
    return json.loads(secret.content)
