"""mayuctl against a running server: outputs, approve, set, reinstall, events, delete,
boot-complete, one-line errors, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import RunningServer, start_server
from tests.support.boot import enroll, fetch_config, ipxe
from tests.support.tenants import tenant_doc

pytestmark = pytest.mark.peer


def test_list_approve_show_set_in_every_format(server: RunningServer) -> None:
    ipxe(server.url, "52-54-00-20-00-01")
    table = server.mayuctl("list")
    assert table.returncode == 0, table.stderr
    assert "52:54:00:20:00:01" in table.stdout and "discovered" in table.stdout
    approved = server.mayuctl(
        "approve", "52-54-00-20-00-01", "--role", "controller", "--label", "rack=r1", "-o", "json"
    )
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["labels"] == {"rack": "r1", "role": "controller"}
    as_json = json.loads(server.mayuctl("list", "-o", "json").stdout)
    as_yaml = yaml.safe_load(server.mayuctl("--output", "yaml", "list").stdout)
    assert as_json == as_yaml and as_json[0]["state"] == "configured"
    changed = server.mayuctl("set", "525400200001", "role", "worker", "-o", "json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["labels"]["role"] == "worker"
    shown = server.mayuctl("show", "52:54:00:20:00:01")
    assert shown.returncode == 0 and "discovered" in shown.stdout and "operator" in shown.stdout


def test_install_boot_complete_reinstall_events_delete(server: RunningServer) -> None:
    mac = "52-54-00-20-00-02"
    token = enroll(server, mac)
    fetch_config(server.url, mac, token, server.ca_file)
    q = {"mac": mac, "token": token}
    assert requests.post(
        f"{server.url}/report", params=q, json={"event": "installed"}, timeout=10
    ).ok
    done = server.mayuctl("boot-complete", mac, "-o", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["state"] == "running"
    again = server.mayuctl("reinstall", mac)
    assert again.returncode == 0 and "power-cycle" in again.stdout, again.stderr
    events = json.loads(server.mayuctl("events", mac, "-o", "json").stdout)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "discovered" and kinds.count("token-issued") == 1
    assert events[-1]["cause"] == "operator requested a reinstall"
    table = server.mayuctl("events", mac)
    assert table.returncode == 0 and "token-issued" in table.stdout
    gone = server.mayuctl("delete", mac)
    assert gone.returncode == 0 and "deleted" in gone.stdout
    assert "no such machine" in server.mayuctl("show", mac).stderr


def test_mayuctl_over_https_with_the_server_ca(server: RunningServer) -> None:
    ipxe(server.url, "52-54-00-20-00-03")
    server.url, plain = server.tls_url, server.url
    try:
        untrusted = server.mayuctl("list")
        assert untrusted.returncode == 1 and "cannot reach" in untrusted.stderr
        trusted = server.mayuctl("--ca-file", str(server.ca_file), "list", "-o", "json")
        assert trusted.returncode == 0, trusted.stderr
        assert json.loads(trusted.stdout)[0]["id"] == "52:54:00:20:00:03"
    finally:
        server.url = plain


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("show", "52-54-00-99-99-99"), "no such machine"),
        (("show", "not-a-mac"), "malformed MAC"),
        (("set", "52-54-00-99-99-98", "state", "flying"), "invalid body: state"),
        (("approve", "52-54-00-99-99-98", "--role", "boss"), "Invalid value"),
        (("approve", "52-54-00-99-99-97", "--role", "worker"), "no such machine"),
        (("reinstall", "52-54-00-99-99-98"), "approved, not reinstalled"),
        (("list", "--output", "xml"), "Invalid value"),
        (("frobnicate",), "No such command"),
    ],
)
def test_errors_are_one_line_exit_2(
    server: RunningServer, args: tuple[str, ...], needle: str
) -> None:
    if "52-54-00-99-99-98" in args:
        ipxe(server.url, "52-54-00-99-99-98")
    result = server.mayuctl(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_wrong_token_is_one_line(server: RunningServer) -> None:
    server.token = "wrong"
    result = server.mayuctl("list")
    assert result.returncode == 2 and "401" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_hosts_approve_rotate_revoke(server: RunningServer) -> None:
    bad = server.mayuctl("hosts", "approve", "lab-host", "--underlay", "not-an-ip")
    assert bad.returncode == 2 and "underlay must be an IP address" in bad.stderr
    approved = server.mayuctl("hosts", "approve", "lab-host", "--underlay", "192.0.2.9")
    assert approved.returncode == 0, approved.stderr
    token = approved.stdout.strip().splitlines()[-1]
    assert token.startswith("lab-host.")
    listing = server.mayuctl("hosts", "list")
    assert "lab-host" in listing.stdout and "operator" in listing.stdout
    rotated = server.mayuctl("hosts", "rotate-token", "lab-host").stdout.strip().splitlines()[-1]
    assert rotated != token
    (listed,) = json.loads(server.mayuctl("hosts", "list", "-o", "json").stdout)
    assert listed["credential"]["underlay"] == "192.0.2.9"  # the enrolled address stays
    heartbeat = {"name": "lab-host", "cpus": 2, "memory_mib": 2048, "images": [{"name": "lab"}]}
    old = requests.post(f"{server.url}/api/v1/hosts", json=heartbeat, timeout=10,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert old.status_code == 401
    new = requests.post(f"{server.url}/api/v1/hosts", json=heartbeat, timeout=10,
                        headers={"Authorization": f"Bearer {rotated}"})  # fmt: skip
    assert new.status_code == 200, new.text
    wide = server.mayuctl("hosts", "list", "-o", "wide")
    assert wide.returncode == 0 and "IMAGES" in wide.stdout and " lab" in wide.stdout
    assert "IMAGES" not in server.mayuctl("hosts", "list").stdout
    revoked = server.mayuctl("hosts", "revoke", "lab-host")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    as_json = json.loads(server.mayuctl("hosts", "list", "-o", "json").stdout)
    assert as_json[0]["credential"]["revoked"] is True
    missing = server.mayuctl("hosts", "revoke", "nope")
    assert missing.returncode == 2 and "no such host" in missing.stderr


def test_a_tenant_kubeconfig_points_at_its_ingress_name(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", config={"tenants": {"ingress_domain": "ing.test"}})
    try:
        doc = tmp_path / "tenant.yaml"
        doc.write_text(yaml.safe_dump(tenant_doc("demo-1", "10.219.1.0/24", 219)))
        assert server.mayuctl("tenants", "create", "-f", str(doc)).returncode == 0
        out = server.mayuctl("tenants", "kubeconfig", "demo-1")
        assert out.returncode == 0, out.stderr
        config = yaml.safe_load(out.stdout)
        assert config["clusters"][0]["cluster"]["server"] == "https://demo-1.api.ing.test:6443"
        assert config["users"][0]["user"]["client-key-data"]
        missing = server.mayuctl("tenants", "kubeconfig", "demo-2")
        assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    finally:
        server.kill()
