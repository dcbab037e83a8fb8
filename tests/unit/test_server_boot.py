"""The boot plane through Flask's test client on a real SQLite store: enrollment, provisioning
windows bound to an address, the stub/secret split, local boot, reports, assets."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.support.boot import boot_token
from tests.support.flask_app import (
    AUTH,
    Machine,
    approve,
    events,
    file_of,
    has_private_key,
    make_app,
    services_of,
    set_clock,
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    yield make_app(tmp_path).test_client()


def machine_json(client: FlaskClient, mac: str) -> dict:
    response = client.get(f"/api/v1/machines/{mac}", headers=AUTH)
    assert response.status_code == 200, response.data
    return response.get_json()


def test_boot_script_chains_to_ipxe_and_handles_wait_and_local_boot(client: FlaskClient) -> None:
    response = client.get("/boot.ipxe")
    body = response.get_data(as_text=True)
    assert body.startswith("#!ipxe")
    assert "/ipxe?mac=${net0/mac:hexhyp}&uuid=${uuid}" in body
    assert body.index("serial=${serial}") > body.index("uuid=")
    assert "&& exit ||" in body and "isset ${mayu_wait} && goto retry" in body
    assert response.headers["Cache-Control"] == "no-store"


def test_unknown_machines_are_discovered_without_role_or_token(client: FlaskClient) -> None:
    for i in range(5):
        status, script = Machine(client, f"52-54-00-00-00-0{i}").ipxe()
        assert status == 200
        assert "token=" not in script and "kernel" not in script
        assert "waiting for approval" in script and "set mayu_wait 1" in script
    machines = client.get("/api/v1/machines", headers=AUTH).get_json()["items"]
    assert len(machines) == 5
    assert {m["state"] for m in machines} == {"discovered"}
    assert all("role" not in m["labels"] for m in machines)


def test_mac_forms_map_to_one_record(client: FlaskClient) -> None:
    for form in ("52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef", "525400ABCDEF"):
        assert Machine(client, form).ipxe()[0] == 200
    machines = client.get("/api/v1/machines", headers=AUTH).get_json()["items"]
    assert [m["id"] for m in machines] == ["52:54:00:ab:cd:ef"]


@pytest.mark.parametrize(
    "query",
    [
        {"mac": "52-54-00-zz-00-01"},
        {"mac": ""},
        {"mac": "52-54-00-00-00-01\n"},
        {"mac": "52-54-00-00-00-01", "uuid": "nope"},
        {"mac": "52-54-00-00-00-01", "serial": "bad\x01serial"},
    ],
)
def test_malformed_identity_is_400_problem_json(client: FlaskClient, query: dict) -> None:
    response = client.get("/ipxe", query_string=query)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 400 and body["title"] == "Bad Request" and body["detail"]
    assert client.get("/api/v1/machines", headers=AUTH).get_json()["items"] == []


def test_approved_machine_gets_installer_with_token(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    response = approve(client, m.mac)
    assert response.status_code == 200 and response.get_json()["state"] == "configured"
    assert response.get_json()["labels"]["role"] == "worker"
    status, script = m.ipxe()
    assert status == 200 and "kernel " in script and "ignition.config.url=" in script
    token = boot_token(script)
    record = machine_json(client, m.mac)
    assert record["profile"] == "worker" and record["window_expires"] is not None
    issued = [e for e in record["events"] if e["kind"] == "token-issued"]
    assert len(issued) == 1 and issued[0]["details"]["address"] == m.address
    assert token not in json.dumps(record)  # only its hash is stored


def test_config_group_naming_a_machine_approves_it(tmp_path: Path) -> None:
    groups = [
        {"name": "c1", "profile": "controller", "selector": {"mac": "52:54:00:00:00:aa"}},
        {"name": "workers", "profile": "worker", "selector": {"rack": "r9", "role": "worker"}},
    ]
    client = make_app(tmp_path, {("groups",): groups}).test_client()
    status, script = Machine(client, "52-54-00-00-00-aa").ipxe()
    assert status == 200 and "kernel " in script
    assert machine_json(client, "52-54-00-00-00-aa")["labels"]["role"] == "controller"
    status, script = Machine(client, "52-54-00-00-00-bb").ipxe()
    assert "waiting for approval" in script


def test_controllers_are_named_never_beyond_the_count(tmp_path: Path) -> None:
    client = make_app(tmp_path, {("cluster", "controller_count"): 1}).test_client()
    for mac in ("52-54-00-00-00-01", "52-54-00-00-00-02"):
        Machine(client, mac).ipxe()
    assert approve(client, "52-54-00-00-00-01", "controller").status_code == 200
    refused = approve(client, "52-54-00-00-00-02", "controller")
    assert refused.status_code == 409 and "controller" in refused.get_json()["detail"]
    assert machine_json(client, "52-54-00-00-00-02")["state"] == "discovered"
    assert approve(client, "52-54-00-00-00-02", "worker").status_code == 200
    assert approve(client, "52-54-00-00-00-02", "worker").status_code == 409  # not discovered


def test_stub_has_no_secret_and_merges_the_exact_secret_over_https(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    token = m.token()
    stub = m.stub(token)
    assert stub.status_code == 200 and stub.headers["Cache-Control"] == "no-store"
    assert not has_private_key(stub.data) and b"PRIVATE" not in stub.data
    ignition = json.loads(stub.data)["ignition"]
    merge = ignition["config"]["merge"][0]
    assert merge["source"].startswith("https://") and f"token={token}" in merge["source"]
    ca = ignition["security"]["tls"]["certificateAuthorities"][0]["source"]
    assert ca.startswith("data:") and ";base64," in ca
    assert m.stub(token).data == stub.data  # rendered once: the hash names stable bytes
    secret = m.secret(token)
    assert secret.status_code == 200 and has_private_key(secret.data)
    assert merge["verification"]["hash"] == "sha512-" + hashlib.sha512(secret.data).hexdigest()
    assert machine_json(client, m.mac)["state"] == "installing"
    replay = m.secret(token)
    assert replay.status_code == 403 and b"storage" not in replay.data
    assert m.stub(token).status_code == 403


def test_secret_never_over_plain_http_unless_insecure_option(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    assert not has_private_key(m.stub(m.token()).data)
    insecure = make_app(
        tmp_path / "b", {("server", "insecure_secrets_over_http"): True}
    ).test_client()
    n = Machine(insecure, "52-54-00-00-00-02")
    n.ipxe()
    approve(insecure, n.mac)
    assert has_private_key(n.stub(n.token()).data)


def test_token_is_bound_to_the_address_that_asked(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    token = m.token()
    attacker = Machine(client, m.mac, address="10.0.0.66")
    assert attacker.stub(token).status_code == 403
    assert attacker.secret(token).status_code == 403
    status, script = attacker.ipxe()
    assert status == 200 and "token=" not in script
    kinds = [e["kind"] for e in events(client, m.mac)]
    assert kinds.count("ignition-refused") == 2 and "alert" in kinds
    # The real machine still provisions, with the token it holds.
    assert m.secret(token).status_code == 200


def test_same_address_may_boot_again_inside_the_window(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    first, second = m.token(), m.token()
    assert first != second
    assert m.stub(first).status_code == 403
    assert m.secret(second).status_code == 200


def test_full_dhcp_binds_the_token_to_the_leased_address(tmp_path: Path) -> None:
    leases = {"52:54:00:00:00:01": "10.0.0.11"}
    overrides = {("dhcp", "mode"): "full"}
    client = make_app(tmp_path, overrides, lease_of=leases.get).test_client()
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    impostor = Machine(client, m.mac, address="10.0.0.66")
    status, script = impostor.ipxe()
    assert "token=" not in script
    assert any("leased to 10.0.0.11" in e["cause"] for e in events(client, m.mac))
    unleased = Machine(client, "52-54-00-00-00-02")
    assert "token=" not in unleased.ipxe()[1]
    assert approve(client, unleased.mac).status_code == 404  # not even discovered
    assert m.secret(m.token()).status_code == 200


def test_window_that_runs_out_fails_the_machine(client: FlaskClient) -> None:
    now = [1_000_000.0]
    set_clock(client, lambda: now[0])
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    token = m.token()
    now[0] += services_of(client).settings.server.provisioning_window_seconds + 1
    assert m.stub(token).status_code == 403
    listed = client.get("/api/v1/machines", headers=AUTH).get_json()["items"]
    assert listed[0]["state"] == "failed"
    assert any(e["kind"] == "window-expired" for e in events(client, m.mac))
    assert "failed" in m.ipxe()[1] and "token=" not in m.ipxe()[1]


def test_installed_machine_boots_its_disk_with_no_token_and_no_write(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    m.provision()
    before = events(client, m.mac)
    status, bios = m.ipxe()
    assert status == 200 and "sanboot --no-describe --drive 0x80" in bios
    assert "token=" not in bios and "kernel" not in bios
    uefi = Machine(client, m.mac, platform="efi").ipxe()[1]
    assert uefi.strip().endswith("exit") and "sanboot" not in uefi
    assert events(client, m.mac) == before


def test_reinstall_opens_exactly_one_new_window(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    m.provision()
    response = client.post(f"/api/v1/machines/{m.mac}/reinstall", headers=AUTH)
    assert response.status_code == 202 and "power-cycle" in response.get_json()["next"]
    config = m.provision()
    assert file_of(config, "/etc/hostname").strip() == "node-525400000001"
    kinds = [e["kind"] for e in events(client, m.mac)]
    assert kinds.count("token-issued") == 2
    assert "sanboot" in m.ipxe()[1]


def test_maintenance_revokes_the_outstanding_token(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    token = m.token()
    response = client.patch(
        f"/api/v1/machines/{m.mac}", headers=AUTH, json={"state": "maintenance"}
    )
    assert response.status_code == 200
    assert m.stub(token).status_code == 403
    assert "sanboot" in m.ipxe()[1]


def test_reports_with_token_then_with_the_machines_own_credential(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    token = m.token()
    assert m.report("running", token=token).status_code == 409  # configured -> running
    m.secret(token)
    n = Machine(client, "52-54-00-00-00-02")
    n.ipxe()
    approve(client, n.mac)
    n_config = n.provision()
    n_credential = file_of(n_config, "/etc/mayu/report.token").strip()
    assert m.report("installed", token=token).status_code == 200
    # The window is closed: the boot token no longer reports; the credential does.
    assert n.report("running", token=token).status_code == 403
    assert m.report("running", token=token).status_code == 403
    assert m.report("running", credential=n_credential).status_code == 403
    assert n.report("running", credential=n_credential).status_code == 200
    assert n.report("running", credential=n_credential).status_code == 200  # every boot
    path = [(e["from"], e["to"]) for e in events(client, n.mac) if e["kind"] == "transition"]
    assert path[-3:] == [
        ("configured", "installing"),
        ("installing", "installed"),
        ("installed", "running"),
    ]


def test_a_repeated_installed_report_is_answered_again_and_changes_nothing(
    client: FlaskClient,
) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    token = m.token()
    m.secret(token)
    assert m.report("installed", token=token).status_code == 200
    before = events(client, m.mac)
    # The answer was lost (its server died): the installer reports again with the same token.
    assert m.report("installed", token=token).status_code == 200
    assert events(client, m.mac) == before
    assert machine_json(client, m.mac)["state"] == "installed"
    # The spent token makes no other report and opens nothing.
    assert m.report("running", token=token).status_code == 403
    assert m.report("installed", token="x" + token[1:]).status_code == 403
    assert m.stub(token).status_code == 403
    # After a reinstall the old token does not even repeat.
    client.post(f"/api/v1/machines/{m.mac}/reinstall", headers=AUTH)
    m.ipxe()
    assert m.report("installed", token=token).status_code == 403


def test_refusals_look_the_same_for_known_and_unknown_machines(client: FlaskClient) -> None:
    known = Machine(client, "52-54-00-00-00-01")
    known.ipxe()
    unknown = Machine(client, "52-54-00-00-00-99")
    for probe in (
        lambda m: m.stub("x" * 32),
        lambda m: m.secret("x" * 32),
        lambda m: m.report("running", token="x" * 32),
        lambda m: m.report("running", credential="y" * 32),
    ):
        a, b = probe(known), probe(unknown)
        assert a.status_code == b.status_code == 403
        assert a.get_json() == b.get_json()
    assert client.get("/api/v1/machines", headers=AUTH).get_json()["items"][0][
        "id"
    ] == known.mac.replace("-", ":")
    alerts = client.get("/api/v1/events", headers=AUTH).get_json()["items"]
    assert {a["machine_id"] for a in alerts} == {"52:54:00:00:00:99"}


def test_another_identity_for_a_known_mac_is_recorded_not_applied(client: FlaskClient) -> None:
    uuid = "5f1b8b1e-0c39-4b0b-9e5c-6a8c3f1d2e4a"
    m = Machine(client, "52-54-00-00-00-01", uuid=uuid)
    m.ipxe()
    approve(client, m.mac)
    spoof = Machine(client, m.mac, uuid="00000000-0000-0000-0000-000000000001", address="10.0.0.11")
    status, script = spoof.ipxe()
    assert status == 200 and "token=" not in script
    record = machine_json(client, m.mac)
    assert record["uuid"] == uuid and record["state"] == "configured"
    mismatch = [e for e in record["events"] if e["kind"] == "identity-mismatch"]
    assert mismatch and mismatch[0]["details"]["uuid"]["presented"].endswith("0001")
    assert "kernel " in m.ipxe()[1]


def test_head_has_no_side_effects(client: FlaskClient) -> None:
    for path in ("/ipxe", "/ignition"):
        response = client.head(path, query_string={"mac": "52-54-00-00-00-01", "token": "x"})
        assert response.status_code == 405 and response.headers["Allow"] == "GET"
    assert client.get("/api/v1/machines", headers=AUTH).get_json()["items"] == []
    assert client.get("/api/v1/events", headers=AUTH).get_json()["items"] == []


def test_discovery_is_rate_limited_per_source_and_expires(tmp_path: Path) -> None:
    overrides = {("server", "discovery"): {"per_source_per_minute": 3, "ttl_seconds": 600}}
    client = make_app(tmp_path, overrides).test_client()
    now = [1_000_000.0]
    set_clock(client, lambda: now[0])
    statuses = [Machine(client, f"52-54-00-00-01-{i:02x}").ipxe()[0] for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert Machine(client, "52-54-00-00-02-01", address="10.0.0.12").ipxe()[0] == 200
    assert len(client.get("/api/v1/machines", headers=AUTH).get_json()["items"]) == 4
    now[0] += 601
    Machine(client, "52-54-00-00-03-01", address="10.0.0.13").ipxe()  # sweeps stale records
    items = client.get("/api/v1/machines", headers=AUTH).get_json()["items"]
    assert [m["id"] for m in items] == ["52:54:00:00:03:01"]


def test_unknown_machine_denied_by_policy_is_404_with_alert(tmp_path: Path) -> None:
    client = make_app(tmp_path, {("server", "unknown_machines"): "deny"}).test_client()
    status, _ = Machine(client, "52-54-00-00-00-0a").ipxe()
    assert status == 404
    alerts = client.get("/api/v1/events", headers=AUTH).get_json()["items"]
    assert alerts[0]["machine_id"] == "52:54:00:00:00:0a" and alerts[0]["kind"] == "denied"
    assert client.get("/api/v1/machines", headers=AUTH).get_json()["items"] == []


def test_events_are_kept_per_machine_up_to_the_limit(tmp_path: Path) -> None:
    client = make_app(tmp_path, {("server", "events_per_machine"): 10}).test_client()
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    for _ in range(15):
        m.token()
    kept = events(client, m.mac)
    assert len(kept) == 10 and all(e["kind"] == "token-issued" for e in kept)


def test_report_body_limits(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-01")
    m.ipxe()
    approve(client, m.mac)
    token = m.token()
    q = {"mac": m.mac, "token": token}
    env = {"REMOTE_ADDR": m.address}
    too_big = {"event": "failed", "details": {"log": "x" * 20000}}
    response = client.post("/report", query_string=q, json=too_big, environ_base=env)
    assert response.status_code == 400
    huge = json.dumps({"event": "failed", "details": {"blob": "x" * (2 << 20)}})
    response = client.post(
        "/report", query_string=q, data=huge, content_type="application/json", environ_base=env
    )
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    for body in (
        '{"event": NaN}',
        '{"event": "failed", "details": {"n": Infinity}}',
        "[" * 100 + "]" * 100,
        "{nope",
    ):
        response = client.post(
            "/report", query_string=q, data=body, content_type="application/json", environ_base=env
        )
        assert response.status_code == 400, body
    assert machine_json(client, m.mac)["state"] == "configured"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-admin-token"}]
)
def test_admin_api_needs_token(client: FlaskClient, headers: dict) -> None:
    response = client.get("/api/v1/machines", headers=headers)
    assert response.status_code == 401 and response.mimetype == "application/problem+json"


def test_patch_is_all_or_nothing_and_hostnames_are_unique(client: FlaskClient) -> None:
    for mac in ("52-54-00-00-00-01", "52-54-00-00-00-02"):
        Machine(client, mac).ipxe()
    url = "/api/v1/machines/52-54-00-00-00-01"
    before = machine_json(client, "52-54-00-00-00-01")
    for bad in (
        {"hostname": "good-name", "role": "boss"},
        {"rack": "r1", "hostname": "bad\n"},
        {"rack": "r1", "state": "nonsense"},
        {"rack": 7},
        {"rack": "r1\n"},
    ):
        assert client.patch(url, headers=AUTH, json=bad).status_code == 400, bad
    after = machine_json(client, "52-54-00-00-00-01")
    assert after["labels"] == before["labels"] and after["hostname"] == before["hostname"]
    assert client.patch(url, headers=AUTH, json={"hostname": "node-a"}).status_code == 200
    taken = client.patch(
        "/api/v1/machines/52-54-00-00-00-02", headers=AUTH, json={"hostname": "node-a"}
    )
    assert taken.status_code == 409


def test_label_injection_rendered_literally(client: FlaskClient) -> None:
    m = Machine(client, "52-54-00-00-00-0b")
    m.ipxe()
    evil = "x7-7_.y"
    assert (
        client.patch(f"/api/v1/machines/{m.mac}", headers=AUTH, json={"rack": evil}).status_code
        == 200
    )
    assert (
        client.patch(
            f"/api/v1/machines/{m.mac}", headers=AUTH, json={"rack": "{{ 7*7 }}"}
        ).status_code
        == 400
    )
    assert (
        client.patch(
            f"/api/v1/machines/{m.mac}", headers=AUTH, json={"hostname": "h{{7*7}}"}
        ).status_code
        == 400
    )
    approve(client, m.mac)
    config = m.provision()
    node = json.loads(file_of(config, "/etc/mayu/node.json"))
    assert node["labels"]["rack"] == evil


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
        "/assets/lab/%00",
    ):
        response = client.get(bad)
        assert response.status_code == 404, bad
        assert b"outside" not in response.data


def test_health_and_ready(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").get_json()["ready"] is True


def test_ready_is_503_when_the_store_cannot_commit(client: FlaskClient, tmp_path: Path) -> None:
    store = services_of(client).store
    store.close()
    blocker = sqlite3.connect(tmp_path / "data" / "inventory.sqlite3", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.get("/readyz")
        assert response.status_code == 503 and response.get_json()["checks"]["store"] != "ok"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert client.get("/readyz").status_code == 200


def test_unknown_route_is_problem_json_404(client: FlaskClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
