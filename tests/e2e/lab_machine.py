"""A lab machine's side of the boot conversation, played by the test from the machine's own
address inside the lab namespace, and the event histories the lab's machines must show.

Every function that talks to the server runs on the namespace's thread (`InNamespace.call`):
the lab addresses exist only there.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.netns import InNamespace

# The events of one provisioning after the approval: (kind, cause, to state).
PROVISIONED = [
    ("token-issued", "provisioning window opened", None),
    ("transition", "secret config served over HTTPS; boot token spent", "installing"),
    ("transition", "report installed (boot token)", "installed"),
]
REINSTALL = ("transition", "operator requested a reinstall", "configured")


def first_provisioning(m: topo.LabMachine, role: str) -> list[tuple[str, str, str | None]]:
    """A fresh lab machine's whole history: discovered, approved by its config group,
    provisioned (one token), installed."""
    return [
        ("discovered", "first boot request of an unknown machine", "discovered"),
        ("transition", f"approved by config group {m.name} as {role}", "configured"),
        *PROVISIONED,
    ]


def history(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(e["kind"], e["cause"], e["to"]) for e in events]


def tokens_issued(events: list[dict[str, Any]]) -> int:
    return sum(e["kind"] == "token-issued" for e in events)


def served_sha512(events: list[dict[str, Any]]) -> list[str]:
    """The SHA-512 of every secret config the machine was served, in order."""
    return [e["details"]["sha512"] for e in events if e["cause"].startswith("secret config")]


def reported_files(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The files the machine's last `installed` report says real Ignition wrote, by path."""
    installed = [e for e in events if e["to"] == "installed"][-1]
    return {f["path"]: f for f in installed["details"]["files"]}


def ignition_fetches(console: str, m: topo.LabMachine) -> tuple[bool, list[str]]:
    """From a console log: whether Ignition got the stub over plain HTTP, and the SHA-512 of
    each config it merged from the HTTPS listener (which it verified against the stub)."""
    query = rf"ignition\?mac={m.mac.replace(':', '-')}&token=[\w-]+"
    stub = re.search(rf"GET {re.escape(topo.SERVER_URL)}/{query}: attempt", console)
    merged = re.findall(
        rf"fetched referenced config at {re.escape(topo.SERVER_TLS_URL)}/{query} with "
        r"SHA512: ([0-9a-f]{128})",
        console,
    )
    return stub is not None, merged


def decode_data_url(source: str) -> bytes | None:
    if not source.startswith("data:"):
        return None
    meta, _, payload = source[5:].partition(",")
    if meta.endswith(";base64"):
        return base64.b64decode(payload)
    return urllib.parse.unquote_to_bytes(payload)


def _get(conn: http.client.HTTPConnection, path: str) -> bytes:
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status, body[:500])
        return body
    finally:
        conn.close()


def get_from(source_ip: str, path: str) -> bytes:
    """GET path from the lab server's plain listener with source address source_ip."""
    conn = http.client.HTTPConnection(
        topo.SERVER_IP, topo.PORT, timeout=10, source_address=(source_ip, 0)
    )
    return _get(conn, path)


def get_tls_from(source_ip: str, url: str, ca_pem: str) -> bytes:
    """GET an https URL with only `ca_pem` trusted and the host name checked (the server
    certificate must name the address in the URL), from source address source_ip."""
    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cadata=ca_pem)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    conn = http.client.HTTPSConnection(
        str(parts.hostname),
        parts.port,
        timeout=10,
        source_address=(source_ip, 0),
        context=context,
    )
    return _get(conn, f"{parts.path}?{parts.query}")


@contextmanager
def machine_address(m: topo.LabMachine) -> Iterator[None]:
    """The machine's (reserved) address on the lab bridge while its VM is off, so that the
    test's requests come from it: boot tokens are bound to the machine's address."""
    cmd = ["ip", "-n", topo.NAMESPACE, "addr", "{}", f"{m.ip}/32", "dev", topo.BRIDGE]
    subprocess.run([a.format("add") for a in cmd], check=True)
    try:
        yield
    finally:
        subprocess.run([a.format("del") for a in cmd], check=True)


def boot_script(ns: InNamespace, m: topo.LabMachine, platform: str) -> str:
    """The iPXE script the server gives the machine (VM off: asked from its address)."""
    query = urllib.parse.urlencode(
        {"mac": m.mac.replace(":", "-"), "uuid": m.uuid, "platform": platform, "serial": m.serial}
    )
    with machine_address(m):
        return ns.call(get_from, m.ip, f"/ipxe?{query}").decode()


def provision_as(
    ns: InNamespace, client: LabClient, m: topo.LabMachine
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reinstall the machine and play its provisioning (VM off, from its address): the iPXE
    script, the stub over HTTP, the real config over HTTPS with the stub's pinned CA and
    hash. Returns (stub, config)."""
    client.request("POST", f"/api/v1/machines/{m.mac}/reinstall")
    query = f"mac={m.mac.replace(':', '-')}&uuid={m.uuid}&serial={m.serial}"
    with machine_address(m):
        script = ns.call(get_from, m.ip, f"/ipxe?{query}").decode()
        url = re.search(r"ignition\.config\.url=(\S+)", script)
        assert url, script
        stub = json.loads(ns.call(get_from, m.ip, url.group(1).removeprefix(topo.SERVER_URL)))
        (merge,) = stub["ignition"]["config"]["merge"]
        (ca,) = stub["ignition"]["security"]["tls"]["certificateAuthorities"]
        ca_pem = decode_data_url(ca["source"])
        assert ca_pem is not None and merge["source"].startswith(f"{topo.SERVER_TLS_URL}/")
        body = ns.call(get_tls_from, m.ip, merge["source"], ca_pem.decode())
    assert merge["verification"]["hash"] == f"sha512-{hashlib.sha512(body).hexdigest()}"
    return stub, json.loads(body)
