"""Hostile input, case by case (issue 8, point 6), and the regressions the property-based and
hostile-network suites found. Each refusal is checked for its status, its problem+json body and
for leaving the store as it was."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mayu_py.store import inventory_path
from tests.support.flask_app import AUTH, Machine, approve, events, file_of, make_app
from tests.support.hostile import StoreCopy, changes, deep, snapshot
from tests.support.tenants import tenant_doc

ACME = tenant_doc("acme", "10.100.0.0/24", 100)
AGENT_HOST = "node-5254000000f0"  # a running machine of the base store: an agent host
HOST = {"name": AGENT_HOST, "cpus": 4, "memory_mib": 8192, "address": "10.0.0.5"}
STATUS = {
    "state": "running",
    "ip": "10.100.0.10",
    "host": AGENT_HOST,
    "message": "",
    "generation": 1,
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One app for the module; each test starts from its base store: one running machine."""
    tmp = tmp_path_factory.mktemp("cases")
    app = make_app(tmp)
    client = app.test_client()
    host = Machine(client, "52-54-00-00-00-f0", address="10.0.0.5")
    host.ipxe()
    approve(client, host.mac)
    credential = file_of(host.provision(), "/etc/mayu/report.token").strip()
    assert host.report("running", credential=credential).status_code == 200
    base = StoreCopy(inventory_path(tmp / "data"))
    app.config["base store"] = base
    yield app
    base.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    base: StoreCopy = app.config["base store"]
    base.restore()
    client = app.test_client()
    client.db = base.db  # type: ignore[attr-defined]
    return client


def refused(
    client: FlaskClient, status: int, send: Callable[[], Any], detail: str = ""
) -> dict[str, Any]:
    """Send; assert the status, the problem+json body and an unchanged store."""
    before = snapshot(client.db)  # type: ignore[attr-defined]
    response = send()
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert detail in json.dumps(problem)
    assert not changes(before, snapshot(client.db))  # type: ignore[attr-defined]
    return problem


def with_tenant(client: FlaskClient) -> None:
    assert client.post("/api/v1/hosts", headers=AUTH, json=HOST).status_code == 200
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201


# -- patterns match whole values ------------------------------------------------------------


@pytest.mark.parametrize("hostname", ["node-a\n", "node-a\r", " node-a", "Node-A", "a..b", "-a"])
def test_hostname_must_be_a_whole_dns_name(client: FlaskClient, hostname: str) -> None:
    Machine(client, "52-54-00-00-00-01").ipxe()
    url = "/api/v1/machines/52-54-00-00-00-01"
    refused(client, 400, lambda: client.patch(url, headers=AUTH, json={"hostname": hostname}))


@pytest.mark.parametrize("name", ["acme\n", "acme\r\n", " acme", "acme\x00"])
def test_tenant_name_must_be_a_whole_dns_label(client: FlaskClient, name: str) -> None:
    doc = copy.deepcopy(ACME)
    doc["metadata"]["name"] = name
    problem = refused(client, 422, lambda: client.post("/api/v1/tenants", headers=AUTH, json=doc))
    assert "metadata.name" in problem["context"]


@pytest.mark.parametrize("node", ["acme-master-0\n", "acme-master-0 ", "acme-master-9"])
def test_status_of_a_node_the_tenant_does_not_have_is_404(client: FlaskClient, node: str) -> None:
    with_tenant(client)
    url = f"/api/v1/tenants/acme/nodes/{quote(node)}/status"
    refused(client, 404, lambda: client.put(url, headers=AUTH, json=STATUS), "no such node")


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("memory", "512Mi\n"),
        ("memory", " 512Mi"),
        ("disk", "2Gi\n"),
        ("disk", "99999999999999999999Ti"),
        ("disk", "65537Gi"),
        ("memory", "5Ti"),
    ],
)
def test_quantities_match_whole_values_within_bounds(
    client: FlaskClient, where: str, value: str
) -> None:
    doc = copy.deepcopy(ACME)
    doc["spec"]["masters"][0][where] = value
    problem = refused(client, 422, lambda: client.post("/api/v1/tenants", headers=AUTH, json=doc))
    assert f"spec.masters[0].{where}" in problem["context"]


@pytest.mark.parametrize("key", ["ssh-ed25519 AAAA a\nssh-rsa BBBB evil", "k\r", "k\x00", ""])
def test_ssh_keys_are_single_lines(client: FlaskClient, key: str) -> None:
    doc = copy.deepcopy(ACME)
    doc["spec"]["sshAuthorizedKeys"] = [key]
    refused(client, 422, lambda: client.post("/api/v1/tenants", headers=AUTH, json=doc))


@pytest.mark.parametrize(
    ("field", "value"), [("cpus", "1"), ("cpus", True), ("cpus", 1.0), ("vni", "100")]
)
def test_tenant_integers_are_integers(client: FlaskClient, field: str, value: Any) -> None:
    doc = copy.deepcopy(ACME)
    target = doc["spec"]["network"] if field == "vni" else doc["spec"]["masters"][0]
    target[field] = value
    refused(client, 422, lambda: client.post("/api/v1/tenants", headers=AUTH, json=doc))


@pytest.mark.parametrize("metadata", [True, [["name", "acme"]], "acme", None])
def test_tenant_metadata_must_be_a_mapping(client: FlaskClient, metadata: Any) -> None:
    doc = copy.deepcopy(ACME) | {"metadata": metadata}
    refused(client, 422, lambda: client.post("/api/v1/tenants", headers=AUTH, json=doc))


# -- kubernetesVersion ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.31", "1.38", "2.0", "1.37\n", "v1.37", "latest", ""])
def test_tenant_kubernetes_version_must_be_supported(client: FlaskClient, version: str) -> None:
    doc = copy.deepcopy(ACME)
    doc["spec"]["kubernetesVersion"] = version
    problem = refused(client, 422, lambda: client.post("/api/v1/tenants", headers=AUTH, json=doc))
    assert "spec.kubernetesVersion" in problem["context"]


# -- agent status and heartbeat fields are type-checked -------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("state", "unknown"),
        ("state", 1),
        ("ip", 10),
        ("ip", "10.100.0.10\n"),
        ("ip", "not-an-ip"),
        ("host", ["h1"]),
        ("host", []),
        ("host", 0),
        ("host", "h1\n"),
        ("message", {"a": 1}),
        ("generation", "1"),
        ("generation", True),
        ("generation", 1.5),
        ("generation", -1),
        ("generation", 2**63),
    ],
)
def test_node_status_fields_are_type_checked(client: FlaskClient, field: str, value: Any) -> None:
    with_tenant(client)
    url = "/api/v1/tenants/acme/nodes/acme-master-0/status"
    body = STATUS | {field: value}
    refused(client, 400, lambda: client.put(url, headers=AUTH, json=body))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", 7),
        ("name", "h1\n"),
        ("name", ""),
        ("cpus", 0),
        ("cpus", -4),
        ("cpus", "4"),
        ("cpus", True),
        ("cpus", 10**6),
        ("memory_mib", 1.5),
        ("memory_mib", 10**30),
        ("address", "10.0.0.5; rm"),
        ("address", 5),
    ],
)
def test_heartbeat_capacities_are_finite_positive_and_bounded(
    client: FlaskClient, field: str, value: Any
) -> None:
    body = HOST | {field: value}
    refused(client, 400, lambda: client.post("/api/v1/hosts", headers=AUTH, json=body))


# -- all or nothing, conflicts --------------------------------------------------------------


def test_machine_patch_with_one_bad_field_changes_nothing(client: FlaskClient) -> None:
    for mac in ("52-54-00-00-00-01", "52-54-00-00-00-02"):
        Machine(client, mac).ipxe()
    url = "/api/v1/machines/52-54-00-00-00-01"
    assert client.patch(url, headers=AUTH, json={"hostname": "taken"}).status_code == 200
    other = "/api/v1/machines/52-54-00-00-00-02"
    for bad, status in (
        ({"rack": "r1", "hostname": "bad\n"}, 400),
        ({"rack": "r1", "state": "nonsense"}, 400),
        ({"rack": "r1", "zone": 7}, 400),
        ({"rack": "r1", "hostname": "taken"}, 409),
    ):
        refused(client, status, lambda bad=bad: client.patch(other, headers=AUTH, json=bad))


def test_machine_patch_with_an_illegal_transition_applies_nothing(client: FlaskClient) -> None:
    Machine(client, "52-54-00-00-00-01").ipxe()
    url = "/api/v1/machines/52-54-00-00-00-01"
    response = client.patch(url, headers=AUTH, json={"rack": "r1", "state": "running"})
    assert response.status_code == 409
    shown = client.get(url, headers=AUTH).get_json()
    assert shown["state"] == "discovered" and "rack" not in shown["labels"]
    assert events(client, "52-54-00-00-00-01")[-1]["kind"] == "transition-refused"


def test_duplicate_tenant_is_409(client: FlaskClient) -> None:
    with_tenant(client)
    problem = refused(client, 409, lambda: client.post("/api/v1/tenants", headers=AUTH, json=ACME))
    assert problem["detail"] == "tenant exists"


def test_patch_of_a_tenant_being_deleted_is_409(client: FlaskClient) -> None:
    with_tenant(client)
    url = "/api/v1/tenants/acme/nodes/acme-master-0/status"
    assert client.put(url, headers=AUTH, json=STATUS).status_code == 200
    assert client.delete("/api/v1/tenants/acme", headers=AUTH).status_code == 202
    spec = {"spec": {"workers": []}}
    refused(client, 409, lambda: client.patch("/api/v1/tenants/acme", headers=AUTH, json=spec))


# -- JSON bodies: nesting, NaN, Infinity ----------------------------------------------------

JSON_ENDPOINTS = [
    ("POST", "/report?mac=52-54-00-00-00-01&token=x"),
    ("PATCH", "/api/v1/machines/52-54-00-00-00-01"),
    ("POST", "/api/v1/machines/52-54-00-00-00-01/approve"),
    ("POST", "/api/v1/tenants"),
    ("PATCH", "/api/v1/tenants/acme"),
    ("PUT", "/api/v1/tenants/acme/nodes/acme-master-0/status"),
    ("POST", "/api/v1/hosts"),
]
BAD_JSON = {
    "deep": deep(40),
    "deep array": "[" * 5000 + "]" * 5000,
    "NaN": '{"a": NaN}',
    "Infinity": '{"cpus": Infinity}',
    "-Infinity": '{"generation": -Infinity}',
    "not JSON": "{nope",
    "not UTF-8": b"\xff\xfe{}",
}


@pytest.mark.parametrize(("method", "url"), JSON_ENDPOINTS)
def test_bad_json_is_400_on_every_json_endpoint(client: FlaskClient, method: str, url: str) -> None:
    with_tenant(client)
    Machine(client, "52-54-00-00-00-01").ipxe()
    for body in BAD_JSON.values():
        send = lambda body=body: client.open(  # noqa: E731
            url, method=method, headers=AUTH, data=body, content_type="application/json"
        )
        refused(client, 400, send)


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["tökén", "\xff" * 40, "a\tb"])
def test_a_bearer_token_that_is_not_ascii_is_401(client: FlaskClient, token: str) -> None:
    for url in ("/api/v1/machines", "/api/v1/tenants"):
        headers = {"Authorization": f"Bearer {token}"}
        refused(client, 401, lambda url=url, headers=headers: client.get(url, headers=headers))


# -- full DHCP: someone else's boot request changes nothing ---------------------------------


def test_full_dhcp_request_from_another_address_cannot_plant_an_identity(tmp_path: Path) -> None:
    groups = [{"name": "c1", "profile": "controller", "selector": {"mac": "52:54:00:00:00:aa"}}]
    leases = {"52:54:00:00:00:aa": "10.0.0.11"}
    overrides = {("dhcp", "mode"): "full", ("groups",): groups}
    client = make_app(tmp_path, overrides, lease_of=leases.get).test_client()
    uuid = "5f1b8b1e-0c39-4b0b-9e5c-6a8c3f1d2e4a"
    attacker = Machine(client, "52-54-00-00-00-aa", address="10.0.0.66", uuid=uuid[:-1] + "b")
    status, script = attacker.ipxe()
    assert status == 200 and "token=" not in script
    assert client.get("/api/v1/machines", headers=AUTH).get_json()["items"] == []
    alerts = client.get("/api/v1/events", headers=AUTH).get_json()["items"]
    assert alerts[0]["kind"] == "alert" and alerts[0]["source"] == "10.0.0.66"
    # The named machine, from its leased address, is approved by its group and provisions.
    real = Machine(client, "52-54-00-00-00-aa", address="10.0.0.11", uuid=uuid)
    assert "kernel " in real.ipxe()[1]
    shown = client.get("/api/v1/machines/52-54-00-00-00-aa", headers=AUTH).get_json()
    assert shown["uuid"] == uuid and shown["labels"]["role"] == "controller"


def test_report_refusals_do_not_tell_known_from_unknown(client: FlaskClient) -> None:
    known = Machine(client, "52-54-00-00-00-01")
    known.ipxe()
    approve(client, known.mac)
    answers = []
    for mac in (known.mac, "52-54-00-00-00-99", "not-a-mac"):
        response = Machine(client, mac).report("running", credential="c" * 32)
        answers.append((response.status_code, response.get_json()))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 403


def test_a_flood_of_refused_requests_keeps_the_machines_history(tmp_path: Path) -> None:
    client = make_app(tmp_path, {("server", "events_per_machine"): 10}).test_client()
    victim = Machine(client, "52-54-00-00-00-01")
    victim.ipxe()
    approve(client, victim.mac)
    attacker = Machine(client, victim.mac, address="10.0.0.66")
    for _ in range(30):
        assert attacker.stub("x" * 32).status_code == 403
        assert attacker.report("failed", credential="y" * 32).status_code == 403
    kinds = [e["kind"] for e in events(client, victim.mac)]
    assert kinds[:2] == ["discovered", "transition"]  # not pushed out by the flood
    assert len(kinds) == 2 + 10


def test_a_sniffed_boot_token_reports_nothing_from_another_address(client: FlaskClient) -> None:
    victim = Machine(client, "52-54-00-00-00-01")
    victim.ipxe()
    approve(client, victim.mac)
    token = victim.token()  # it travels in the iPXE script and kernel line, over plain HTTP
    attacker = Machine(client, victim.mac, address="10.0.0.66")
    for event in ("failed", "booted", "installed"):
        refused(client, 403, lambda event=event: attacker.report(event, token=token))
    assert victim.report("booted", token=token).status_code == 200
