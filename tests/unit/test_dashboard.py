"""The dashboard through Flask's test client on a real SQLite store: HTTPS only, login with a
person's token, the session cookie's flags and lifetime, CSRF on every action, live panels
answering 304 when unchanged, actions recorded under the user's name."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from mayu_py.server.ui.sessions import LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECONDS
from tests.support.dashboard import TLS, add_user, csrf_of, login
from tests.support.flask_app import ADMIN_TOKEN, AUTH, Machine, events, make_app, services_of
from tests.support.tenants import acme

MAC = "52:54:00:d0:00:01"


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    return make_app(tmp_path).test_client()


@pytest.fixture
def alice(client: FlaskClient) -> str:
    """alice logged in; her session's CSRF token."""
    return login(client, add_user(client, "alice"))


def state_of(client: FlaskClient, mac: str = MAC) -> str:
    return client.get(f"/api/v1/machines/{mac}", headers=AUTH).get_json()["state"]


def cookie_flags(set_cookie: str) -> tuple[str, set[str]]:
    name, _, rest = set_cookie.partition("=")
    return name, {part.strip().split("=")[0].lower() for part in rest.split(";")[1:]}


def test_plain_http_is_redirected_to_https_and_refuses_logins(client: FlaskClient) -> None:
    page = client.get("/ui/machines/52:54:00:d0:00:01?x=1")
    assert page.status_code == 303
    assert page.headers["Location"] == "https://127.0.0.1:8443/ui/machines/52:54:00:d0:00:01?x=1"
    token = add_user(client, "alice")
    refused = client.post("/ui/login", data={"token": token, "csrf_token": "x"})
    assert refused.status_code == 403 and "HTTPS only" in refused.text
    assert "Set-Cookie" not in refused.headers


def test_login_sets_a_strict_secure_http_only_session_cookie(client: FlaskClient) -> None:
    token = add_user(client, "alice")
    form = client.get("/ui/login?next=/ui/hosts", environ_base=TLS)
    assert form.status_code == 200
    name, flags = cookie_flags(form.headers["Set-Cookie"])
    assert name == LOGIN_COOKIE and {"secure", "httponly", "samesite"} <= flags
    answer = client.post(
        "/ui/login",
        data={"csrf_token": csrf_of(form.text), "token": token, "next": "/ui/hosts"},
        environ_base=TLS,
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/hosts"
    session = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE))
    assert "; Secure" in session and "; HttpOnly" in session and "; SameSite=Strict" in session
    assert "; Path=/" in session and "Domain" not in session  # a __Host- cookie
    alerts = client.get("/api/v1/events", headers=AUTH).get_json()["items"]
    assert (alerts[0]["kind"], alerts[0]["source"]) == ("user-login", "user:alice@127.0.0.1")


@pytest.mark.parametrize(
    ("token", "status", "says"),
    [
        ("user.alice.wrong", 401, "wrong token"),
        ("", 401, "wrong token"),
        (ADMIN_TOKEN, 403, "shared admin token is for automation"),
    ],
)
def test_wrong_tokens_do_not_log_in(
    client: FlaskClient, token: str, status: int, says: str
) -> None:
    add_user(client, "alice")
    form = client.get("/ui/login", environ_base=TLS)
    answer = client.post(
        "/ui/login", data={"csrf_token": csrf_of(form.text), "token": token}, environ_base=TLS
    )
    assert answer.status_code == status and says in answer.text
    assert not any(c.startswith(SESSION_COOKIE) for c in answer.headers.getlist("Set-Cookie"))
    assert client.get("/ui/", environ_base=TLS).status_code == 303  # still logged out


def test_login_without_its_nonce_is_refused(client: FlaskClient) -> None:
    token = add_user(client, "alice")
    client.get("/ui/login", environ_base=TLS)  # the nonce cookie, but not the form's value
    answer = client.post("/ui/login", data={"token": token}, environ_base=TLS)
    assert answer.status_code == 403 and "CSRF" in answer.text
    fresh = client.application.test_client()
    forged = fresh.post(
        "/ui/login", data={"token": token, "csrf_token": "a" * 43}, environ_base=TLS
    )
    assert forged.status_code == 403


def test_next_never_leaves_the_dashboard(client: FlaskClient) -> None:
    token = add_user(client, "alice")
    for target in ("https://evil.example/", "//evil.example/ui/", "/api/v1/machines", "/ui/\\x"):
        form = client.get("/ui/login", environ_base=TLS)
        data = {"csrf_token": csrf_of(form.text), "token": token, "next": target}
        answer = client.post("/ui/login", data=data, environ_base=TLS)
        assert answer.headers["Location"] == "/ui/", target


def test_without_a_session_pages_go_to_login_and_the_rest_is_401(client: FlaskClient) -> None:
    Machine(client, MAC).ipxe()
    page = client.get(f"/ui/machines/{MAC}", environ_base=TLS)
    assert page.status_code == 303
    assert page.headers["Location"] == f"/ui/login?next=/ui/machines/{MAC}"
    assert client.get("/ui/live/board", environ_base=TLS).status_code == 401
    action = client.post(
        f"/ui/machines/{MAC}/reinstall", data={"csrf_token": "x"}, environ_base=TLS
    )
    assert action.status_code == 401 and state_of(client) == "discovered"
    assert client.get("/ui/static/dashboard.js", environ_base=TLS).status_code == 200


def _session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(SESSION_COOKIE)
    assert cookie is not None
    return cookie.value


def test_forged_and_expired_sessions_are_refused(
    client: FlaskClient, alice: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    genuine = _session_cookie(client)
    payload, _, signature = genuine.rpartition(".")
    client.set_cookie(SESSION_COOKIE, payload + "." + signature[::-1], secure=True)
    assert client.get("/ui/", environ_base=TLS).status_code == 303
    key = bytes.fromhex((tmp_path / "data" / "ui-session.key").read_text().strip())
    signer = URLSafeTimedSerializer(
        key, salt="mayu-ui-session", signer_kwargs={"digest_method": hashlib.sha256}
    )
    with monkeypatch.context() as patch:
        issued = int(time.time()) - SESSION_SECONDS - 5
        patch.setattr(TimestampSigner, "get_timestamp", lambda _self: issued)
        expired = signer.dumps(signer.loads(genuine))
    client.set_cookie(SESSION_COOKIE, expired, secure=True)
    assert client.get("/ui/", environ_base=TLS).status_code == 303
    client.set_cookie(SESSION_COOKIE, genuine, secure=True)
    assert client.get("/ui/", environ_base=TLS).status_code == 200


def test_rotating_or_removing_the_token_ends_the_session(client: FlaskClient, alice: str) -> None:
    assert client.get("/ui/", environ_base=TLS).status_code == 200
    assert client.post("/api/v1/users/alice/rotate-token", headers=AUTH).status_code == 200
    assert client.get("/ui/", environ_base=TLS).status_code == 303
    token = client.post("/api/v1/users/alice/rotate-token", headers=AUTH).get_json()["token"]
    login(client, token)
    assert client.delete("/api/v1/users/alice", headers=AUTH).status_code == 200
    assert client.get("/ui/", environ_base=TLS).status_code == 303


def test_logout_ends_the_browser_session(client: FlaskClient, alice: str) -> None:
    answer = client.post("/ui/logout", data={"csrf_token": alice}, environ_base=TLS)
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/login"
    assert client.get_cookie(SESSION_COOKIE) is None
    assert client.get("/ui/", environ_base=TLS).status_code == 303


@pytest.mark.parametrize("csrf", [None, "", "wrong-token", "é"])
def test_actions_need_the_sessions_csrf_token(
    client: FlaskClient, alice: str, csrf: str | None
) -> None:
    Machine(client, MAC).ipxe()
    data = {"role": "worker"} | ({"csrf_token": csrf} if csrf is not None else {})
    answer = client.post(f"/ui/machines/{MAC}/approve", data=data, environ_base=TLS)
    assert answer.status_code == 403 and "CSRF" in answer.text
    assert answer.mimetype == "text/html"
    assert state_of(client) == "discovered"


def test_actions_run_as_the_user(client: FlaskClient, alice: str) -> None:
    machine = Machine(client, MAC)
    machine.ipxe()
    approve = client.post(
        f"/ui/machines/{MAC}/approve",
        data={"csrf_token": alice, "role": "worker"},
        environ_base=TLS,
    )
    assert approve.status_code == 303 and approve.headers["Location"] == f"/ui/machines/{MAC}"
    assert state_of(client) == "configured"
    machine.provision()
    assert state_of(client) == "installed"
    by_header = client.post(
        f"/ui/machines/{MAC}/reinstall", headers={"X-CSRF-Token": alice}, environ_base=TLS
    )
    assert by_header.status_code == 303 and state_of(client) == "configured"
    maintenance = client.post(
        f"/ui/machines/{MAC}/maintenance", data={"csrf_token": alice}, environ_base=TLS
    )
    assert maintenance.status_code == 303 and state_of(client) == "maintenance"
    mine = [e for e in events(client, MAC) if e["source"] == "user:alice@127.0.0.1"]
    assert [(e["from"], e["to"]) for e in mine] == [
        ("discovered", "configured"),
        ("installed", "configured"),
        ("configured", "maintenance"),
    ]


def test_power_needs_a_bmc_and_is_queued_as_the_user(client: FlaskClient, alice: str) -> None:
    Machine(client, MAC).ipxe()
    page = client.get(f"/ui/machines/{MAC}", environ_base=TLS).text
    assert 'id="power-on"' not in page
    refused = client.post(
        f"/ui/machines/{MAC}/power", data={"csrf_token": alice, "action": "on"}, environ_base=TLS
    )
    assert refused.status_code == 409 and "no BMC" in refused.text
    assert f'href="/ui/machines/{MAC}"' in refused.text  # back to the machine
    bmc = {"protocol": "ipmi", "address": "10.0.0.200", "username": "u", "password": "p"}
    assert client.put(f"/api/v1/machines/{MAC}/bmc", headers=AUTH, json=bmc).status_code == 200
    page = client.get(f"/ui/machines/{MAC}", environ_base=TLS).text
    assert all(f'id="power-{a}"' in page for a in ("on", "off", "cycle"))
    bad = client.post(
        f"/ui/machines/{MAC}/power",
        data={"csrf_token": alice, "action": "status"},
        environ_base=TLS,
    )
    assert bad.status_code == 400
    answer = client.post(
        f"/ui/machines/{MAC}/power", data={"csrf_token": alice, "action": "cycle"}, environ_base=TLS
    )
    assert answer.status_code == 303
    actions = services_of(client).store.machine_actions(MAC)
    assert [(str(a.kind), a.source) for a in actions] == [("power-cycle", "user:alice@127.0.0.1")]
    page = client.get(f"/ui/machines/{MAC}", environ_base=TLS).text
    assert "power-cycle" in page and "user:alice@127.0.0.1" in page


def test_action_errors_are_pages_with_their_status(client: FlaskClient, alice: str) -> None:
    Machine(client, MAC).ipxe()
    bad_role = client.post(
        f"/ui/machines/{MAC}/approve", data={"csrf_token": alice, "role": "boss"}, environ_base=TLS
    )
    assert bad_role.status_code == 400 and bad_role.mimetype == "text/html"
    assert "role must be controller or worker" in bad_role.text
    twice = client.post(
        f"/ui/machines/{MAC}/reinstall", data={"csrf_token": alice}, environ_base=TLS
    )
    assert twice.status_code == 409
    unknown = client.get("/ui/machines/52:54:00:ff:ff:ff", environ_base=TLS)
    assert unknown.status_code == 404 and "no such machine" in unknown.text
    malformed = client.get("/ui/machines/not-a-mac", environ_base=TLS)
    assert malformed.status_code == 400


def test_live_panels_answer_304_until_their_data_changes(client: FlaskClient, alice: str) -> None:
    machine = Machine(client, MAC)
    machine.ipxe()
    first = client.get("/ui/live/board", environ_base=TLS)
    assert first.status_code == 200 and first.headers["ETag"]
    assert 'id="state-discovered"' in first.text and MAC in first.text
    assert "<html" not in first.text  # a fragment
    again = client.get(
        "/ui/live/board", headers={"If-None-Match": first.headers["ETag"]}, environ_base=TLS
    )
    assert again.status_code == 304 and again.data == b""
    client.post(
        f"/ui/machines/{MAC}/approve",
        data={"csrf_token": alice, "role": "worker"},
        environ_base=TLS,
    )
    changed = client.get(
        "/ui/live/board", headers={"If-None-Match": first.headers["ETag"]}, environ_base=TLS
    )
    assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]
    timeline = client.get(f"/ui/live/machine/{MAC}", environ_base=TLS)
    assert timeline.status_code == 200 and "approved by operator as worker" in timeline.text
    assert client.get("/ui/live/nothing", environ_base=TLS).status_code == 404
    assert client.get("/ui/live/machine/52:54:00:ff:ff:ff", environ_base=TLS).status_code == 404


def test_pages_carry_a_strict_content_security_policy(client: FlaskClient, alice: str) -> None:
    for path in ("/ui/", "/ui/hosts", "/ui/tenants", "/ui/login"):
        page = client.get(path, environ_base=TLS)
        assert page.status_code == 200, path
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "<script>" not in page.text and " style=" not in page.text  # nothing inline
    script = client.get("/ui/static/dashboard.js", environ_base=TLS)
    assert script.status_code == 200 and "fetch(" in script.text
    assert client.get("/ui/static/dashboard.css", environ_base=TLS).status_code == 200


def test_hosts_and_tenants_pages_show_placement_and_node_states(
    client: FlaskClient, alice: str
) -> None:
    body = {"name": "h1", "cpus": 8, "memory_mib": 16384, "address": "10.0.0.21"}
    assert client.post("/api/v1/hosts", headers=AUTH, json=body).status_code == 200
    assert client.post("/api/v1/tenants", headers=AUTH, json=acme()).status_code == 201
    hosts = client.get("/ui/hosts", environ_base=TLS).text
    assert 'id="host-h1"' in hosts and "CPUs 3 / 8" in hosts and "1536 / 16384 MiB" in hosts
    assert "base images not reported" in hosts  # an agent that does not tell them
    told = body | {"images": [{"name": "lab"}, {"name": "flatcar"}]}
    assert client.post("/api/v1/hosts", headers=AUTH, json=told).status_code == 200
    assert "base images lab, flatcar" in client.get("/ui/hosts", environ_base=TLS).text
    assert hosts.count("<td>acme</td>") == 3
    report = {"state": "ready", "ip": "10.100.0.10", "host": "h1", "generation": 1}
    put = client.put("/api/v1/tenants/acme/nodes/acme-master-0/status", headers=AUTH, json=report)
    assert put.status_code == 200, put.get_json()
    tenants = client.get("/ui/live/tenants", environ_base=TLS).text
    assert 'id="tenant-acme"' in tenants and "node-ready" in tenants and "10.100.0.10" in tenants
    assert tenants.count("node-pending") == 2
    # the conditions of the tenant and of each node, with their reasons
    assert "<strong>Progressing</strong> True · Creating" in tenants
    assert "Ready=True (Ready)" in tenants and tenants.count("Ready=False (Creating)") == 2


def test_session_cookie_is_refused_over_plain_http(client: FlaskClient, alice: str) -> None:
    """The browser never sends a Secure cookie over plain HTTP; the server does not take one
    either (the plain listener redirects every dashboard GET)."""
    assert _session_cookie(client)  # the test client would send it
    assert client.get("/ui/live/board").status_code == 303
    assert client.post("/ui/logout", data={"csrf_token": alice}).status_code == 403
