"""Users through Flask's test client on a real SQLite store: per-person tokens (shown once,
stored hashed), who may manage them, and events that name the person who caused them."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mayu_py.server.tokens import token_hash
from tests.support.dashboard import add_user
from tests.support.flask_app import AUTH, Machine, events, make_app, services_of

MAC = "52:54:00:a1:00:01"


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    return make_app(tmp_path).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_user_token_is_shown_once_and_stored_hashed(client: FlaskClient) -> None:
    token = add_user(client, "alice")
    assert token.startswith("user.alice.") and len(token) > 50
    stored = services_of(client).store.get_user("alice")
    assert stored is not None and stored.token_hash == token_hash(token)
    listed = client.get("/api/v1/users", headers=AUTH).get_json()["items"]
    assert [u["name"] for u in listed] == ["alice"] and "token" not in listed[0]
    assert token not in client.get("/api/v1/users", headers=AUTH).text
    again = client.post("/api/v1/users", headers=AUTH, json={"name": "alice"})
    assert again.status_code == 409


@pytest.mark.parametrize("name", ["Alice", "1bob", "a" * 33, "al.ice", "", 7])
def test_user_names_are_checked(client: FlaskClient, name: object) -> None:
    answer = client.post("/api/v1/users", headers=AUTH, json={"name": name})
    assert answer.status_code == 400
    assert answer.mimetype == "application/problem+json"


def test_a_user_token_opens_the_admin_api_but_not_user_management(client: FlaskClient) -> None:
    alice, bob = add_user(client, "alice"), add_user(client, "bob")
    assert client.get("/api/v1/machines", headers=bearer(alice)).status_code == 200
    assert client.get("/api/v1/tenants", headers=bearer(alice)).status_code == 200
    assert client.get("/api/v1/users", headers=bearer(alice)).status_code == 200
    refused = client.post("/api/v1/users", headers=bearer(alice), json={"name": "mallory"})
    assert refused.status_code == 403 and "shared admin token" in refused.get_json()["detail"]
    assert client.delete("/api/v1/users/bob", headers=bearer(alice)).status_code == 403
    other = client.post("/api/v1/users/bob/rotate-token", headers=bearer(alice))
    assert other.status_code == 403
    assert client.get("/api/v1/machines", headers=bearer(bob)).status_code == 200


def test_rotating_and_removing_stop_the_old_token_at_once(client: FlaskClient) -> None:
    old = add_user(client, "alice")
    rotated = client.post("/api/v1/users/alice/rotate-token", headers=bearer(old))
    assert rotated.status_code == 200  # a user may rotate their own
    new = rotated.get_json()["token"]
    assert client.get("/api/v1/machines", headers=bearer(old)).status_code == 401
    assert client.get("/api/v1/machines", headers=bearer(new)).status_code == 200
    assert client.delete("/api/v1/users/alice", headers=AUTH).status_code == 200
    assert client.get("/api/v1/machines", headers=bearer(new)).status_code == 401
    assert client.delete("/api/v1/users/alice", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "token",
    ["user.alice.wrong", "user.alice", "user..x", "user.Alice.x", "user.nobody.x", "alice"],
)
def test_wrong_user_tokens_are_refused(client: FlaskClient, token: str) -> None:
    add_user(client, "alice")
    answer = client.get("/api/v1/machines", headers=bearer(token))
    assert answer.status_code == 401 and answer.mimetype == "application/problem+json"


def test_events_name_the_user_and_the_shared_token_stays_anonymous(client: FlaskClient) -> None:
    alice = add_user(client, "alice")
    Machine(client, MAC).ipxe()
    approved = client.post(
        f"/api/v1/machines/{MAC}/approve", headers=bearer(alice), json={"role": "worker"}
    )
    assert approved.status_code == 200
    bmc = {"protocol": "ipmi", "address": "10.0.0.200", "username": "u", "password": "p"}
    assert client.put(f"/api/v1/machines/{MAC}/bmc", headers=AUTH, json=bmc).status_code == 200
    power = client.post(
        f"/api/v1/machines/{MAC}/power", headers=bearer(alice), json={"action": "on"}
    )
    assert power.status_code == 202
    assert power.get_json()["action"]["source"] == "user:alice@127.0.0.1"
    sources = {e["kind"]: e["source"] for e in events(client, MAC)}
    assert sources["transition"] == "user:alice@127.0.0.1"
    assert sources["power-requested"] == "user:alice@127.0.0.1"
    assert sources["bmc-set"] == "127.0.0.1"  # the shared token: automation, no person


def test_user_management_is_in_the_audit_trail(client: FlaskClient) -> None:
    token = add_user(client, "alice")
    client.post("/api/v1/users/alice/rotate-token", headers=bearer(token))
    client.delete("/api/v1/users/alice", headers=AUTH)
    alerts = client.get("/api/v1/events", headers=AUTH).get_json()["items"]
    trail = [(a["machine_id"], a["kind"], a["source"]) for a in reversed(alerts)]
    assert trail == [
        ("user:alice", "user-token", "127.0.0.1"),
        ("user:alice", "user-token", "user:alice@127.0.0.1"),
        ("user:alice", "user-removed", "127.0.0.1"),
    ]
