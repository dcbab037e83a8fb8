"""The boot plane and admin plane through Flask's test client on a real SQLite store."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mayu_py.config import load_settings
from mayu_py.server.app import create_app
from mayu_py.store import open_store
from tests.support.boot import boot_token
from tests.support.ignition import file_text

TOKEN = "admin-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(tmp_path: Path, overrides: dict | None = None) -> FlaskClient:
    flat = {("data_dir",): str(tmp_path / "data")}
    flat.update(overrides or {})
    settings = load_settings(None, flat, environ={})
    store = open_store(settings.data_path)
    app = create_app(settings, store, TOKEN)
    return app.test_client()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    yield make_client(tmp_path)


def ipxe(client: FlaskClient, mac: str, **extra: str) -> tuple[int, str]:
    response = client.get("/ipxe", query_string={"mac": mac, **extra})
    return response.status_code, response.get_data(as_text=True)


def test_boot_script_chains_to_ipxe_with_identity(client: FlaskClient) -> None:
    body = client.get("/boot.ipxe").get_data(as_text=True)
    assert body.startswith("#!ipxe")
    assert "/ipxe?mac=${net0/mac:hexhyp}&uuid=${uuid}" in body
    assert body.index("serial=${serial}") > body.index("uuid=")


def test_first_three_are_controllers_then_workers(client: FlaskClient) -> None:
    for i in range(5):
        status, script = ipxe(client, f"52-54-00-00-00-0{i}")
        assert status == 200
        assert "ignition.config.url=http://localhost/ignition?mac=52-54-00-00-00-0" in script
    machines = client.get("/api/v1/machines", headers=AUTH).get_json()["items"]
    roles = [m["labels"]["role"] for m in sorted(machines, key=lambda m: m["id"])]
    assert roles == ["controller"] * 3 + ["worker"] * 2
    assert {m["state"] for m in machines} == {"configured"}


def test_mac_forms_map_to_one_record(client: FlaskClient) -> None:
    for form in ("52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef", "525400ABCDEF"):
        assert ipxe(client, form)[0] == 200
    machines = client.get("/api/v1/machines", headers=AUTH).get_json()["items"]
    assert [m["id"] for m in machines] == ["52:54:00:ab:cd:ef"]


@pytest.mark.parametrize(
    "query",
    [{"mac": "52-54-00-zz-00-01"}, {"mac": ""}, {"mac": "52-54-00-00-00-01", "uuid": "nope"}],
)
def test_malformed_identity_is_400_json(client: FlaskClient, query: dict) -> None:
    response = client.get("/ipxe", query_string=query)
    assert response.status_code == 400
    assert response.is_json and "error" in response.get_json()


def test_ignition_with_token_once_then_403(client: FlaskClient) -> None:
    _, script = ipxe(client, "52-54-00-00-00-01", uuid="5f1b8b1e-0c39-4b0b-9e5c-6a8c3f1d2e4a")
    token = boot_token(script)
    first = client.get("/ignition", query_string={"mac": "52:54:00:00:00:01", "token": token})
    assert first.status_code == 200
    config = json.loads(first.data)
    assert config["ignition"]["version"] == "3.3.0"
    assert "PRIVATE KEY" in first.get_data(as_text=True).replace("%20", " ") or any(
        f["path"].endswith(".key") for f in config["storage"]["files"]
    )
    again = client.get("/ignition", query_string={"mac": "52:54:00:00:00:01", "token": token})
    assert again.status_code == 403
    assert again.is_json and "PRIVATE" not in again.get_data(as_text=True)
    wrong = client.get("/ignition", query_string={"mac": "52:54:00:00:00:01", "token": "x" * 32})
    assert wrong.status_code == 403
    shown = client.get("/api/v1/machines/52-54-00-00-00-01", headers=AUTH).get_json()
    assert shown["state"] == "installing"
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds.count("ignition-refused") == 2


def test_report_moves_state_and_illegal_is_409_recorded(client: FlaskClient) -> None:
    mac = "52-54-00-00-00-07"
    token = boot_token(ipxe(client, mac)[1])
    q = {"mac": mac, "token": token}
    early = client.post("/report", query_string=q, json={"event": "running"})
    assert early.status_code == 409 and early.is_json
    assert client.get("/ignition", query_string=q).status_code == 200
    done = client.post(
        "/report", query_string=q, json={"event": "installed", "details": {"files": []}}
    )
    assert done.status_code == 200 and done.get_json()["state"] == "installed"
    assert (
        client.post("/api/v1/machines/52:54:00:00:00:07/boot-complete", headers=AUTH).status_code
        == 200
    )
    events = client.get(f"/api/v1/machines/{mac}", headers=AUTH).get_json()["events"]
    path = [(e["from"], e["to"]) for e in events if e["kind"] == "transition"]
    assert path == [
        ("discovered", "configured"),
        ("configured", "installing"),
        ("installing", "installed"),
        ("installed", "running"),
    ]
    assert any(e["kind"] == "transition-refused" and e["to"] == "running" for e in events)


def test_report_with_wrong_token_is_403(client: FlaskClient) -> None:
    ipxe(client, "52-54-00-00-00-08")
    response = client.post(
        "/report",
        query_string={"mac": "52-54-00-00-00-08", "token": "bad"},
        json={"event": "installed"},
    )
    assert response.status_code == 403


def test_body_over_limit_is_413(client: FlaskClient) -> None:
    token = boot_token(ipxe(client, "52-54-00-00-00-09")[1])
    big = {"event": "installed", "details": {"blob": "x" * (2 << 20)}}
    response = client.post(
        "/report",
        query_string={"mac": "52-54-00-00-00-09", "token": token},
        data=json.dumps(big),
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.is_json


def test_unknown_machine_denied_is_404_with_event(tmp_path: Path) -> None:
    client = make_client(tmp_path, {("server", "unknown_machines"): "deny"})
    status, _ = ipxe(client, "52-54-00-00-00-0a")
    assert status == 404
    events = client.get("/api/v1/events", headers=AUTH).get_json()["items"]
    assert events[0]["machine_id"] == "52:54:00:00:00:0a" and events[0]["kind"] == "denied"
    assert client.get("/api/v1/machines", headers=AUTH).get_json()["items"] == []


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_admin_api_needs_token(client: FlaskClient, headers: dict) -> None:
    response = client.get("/api/v1/machines", headers=headers)
    assert response.status_code == 401 and response.is_json


def test_set_role_and_label_injection_rendered_literally(client: FlaskClient) -> None:
    mac = "52-54-00-00-00-0b"
    ipxe(client, mac)
    evil = '{{ 7*7 }}" \n{% raw %}x'
    assert (
        client.patch(f"/api/v1/machines/{mac}", headers=AUTH, json={"rack": evil}).status_code
        == 200
    )
    assert (
        client.patch(
            f"/api/v1/machines/{mac}", headers=AUTH, json={"hostname": "h{{7*7}}"}
        ).status_code
        == 400
    )
    token = boot_token(ipxe(client, mac)[1])
    response = client.get("/ignition", query_string={"mac": mac, "token": token})
    assert response.status_code == 200
    files = {f["path"]: f for f in json.loads(response.data)["storage"]["files"]}
    node = json.loads(file_text(files["/etc/mayu/node.json"]))
    assert node["labels"]["rack"] == evil  # rendered literally, not evaluated (no 49)
    assert (
        client.patch(f"/api/v1/machines/{mac}", headers=AUTH, json={"role": "boss"}).status_code
        == 400
    )


def test_assets_range_etag_head_and_escapes(client: FlaskClient, tmp_path: Path) -> None:
    root = tmp_path / "data" / "assets"
    (root / "lab").mkdir(parents=True)
    (root / "lab" / "vmlinuz").write_bytes(bytes(range(256)) * 16)
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "escape")
    full = client.get("/assets/lab/vmlinuz")
    assert full.status_code == 200 and len(full.data) == 4096
    assert full.headers["ETag"] and full.headers["Last-Modified"]
    part = client.get("/assets/lab/vmlinuz", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == bytes(range(10, 20))
    head = client.head("/assets/lab/vmlinuz")
    assert head.status_code == 200 and head.headers["Content-Length"] == "4096" and head.data == b""
    cached = client.get("/assets/lab/vmlinuz", headers={"If-None-Match": full.headers["ETag"]})
    assert cached.status_code == 304
    for bad in (
        "/assets/../secret.txt",
        "/assets/escape",
        "/assets/%2e%2e/secret.txt",
        "/assets/lab/../../secret.txt",
        "/assets/lab",
    ):
        response = client.get(bad)
        assert response.status_code == 404, bad
        assert b"outside" not in response.data


def test_health_and_ready(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").get_json()["ready"] is True


def test_unknown_route_is_json_404(client: FlaskClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404 and response.is_json
