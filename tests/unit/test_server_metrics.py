"""The server's /metrics through Flask's test client on a real SQLite store: who may scrape,
what the boot conversation counts, bounded labels; and the store's transaction observer."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mayu_py.errors import Conflict, NotFound
from mayu_py.server.metrics import ServerMetrics
from mayu_py.store import TxOutcome
from mayu_py.store import sqlite as sqlite_store
from mayu_py.store.errors import StoreUnavailable
from mayu_py.store.sqlite import SqliteStore
from tests.support.flask_app import AUTH, Machine, approve, file_of, make_app, set_clock
from tests.support.prometheus import Samples, parse, value

METRICS_TOKEN = "scrape-only-token-0123456789abcdef-0123"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    app = make_app(tmp_path, {("server", "metrics_token"): METRICS_TOKEN})
    yield app.test_client()


def scrape(client: FlaskClient, token: str = METRICS_TOKEN) -> Samples:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return parse(response.get_data(as_text=True))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef-0123456"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Authorization": "Bearer t\u00e9st"},  # not ASCII: refused, not a 500
    ],
)
def test_metrics_refuse_a_scrape_without_a_good_token(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"
    assert b"mayu_" not in response.data


def test_metrics_take_the_admin_or_the_scrape_token_which_opens_nothing_else(
    client: FlaskClient,
) -> None:
    assert scrape(client, AUTH["Authorization"].split()[1])
    assert scrape(client, METRICS_TOKEN)
    refused = client.get("/api/v1/machines", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert refused.status_code == 401


def test_without_a_scrape_token_only_the_admin_token_scrapes(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    assert scrape(client, AUTH["Authorization"].split()[1])
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_the_boot_conversation_is_counted(client: FlaskClient) -> None:
    """Discover, approve, token, stub, secret, installed, running with the report credential;
    a spent token and a wrong credential refused."""
    m = Machine(client, "52-54-00-00-00-01")
    assert m.ipxe()[0] == 200  # discovered
    assert approve(client, m.mac).status_code == 200
    token = m.token()
    assert m.stub(token).status_code == 200
    secret = m.secret(token)
    assert secret.status_code == 200
    credential = file_of(secret.get_json(), "/etc/mayu/report.token").strip()
    assert m.report("installed", token=token).status_code == 200
    assert m.report("running", credential=credential).status_code == 200
    assert m.report("running", credential=credential).status_code == 200  # every boot: no new
    assert m.secret(token).status_code == 403  # spent
    assert m.report("running", credential="z" * 40).status_code == 403
    Machine(client, "52-54-00-00-00-02").ipxe()

    s = scrape(client)
    assert value(s, "mayu_boot_tokens_issued_total") == 1
    assert value(s, "mayu_boot_tokens_consumed_total") == 1
    assert value(s, "mayu_boot_tokens_refused_total", endpoint="ignition") == 1
    assert value(s, "mayu_boot_tokens_refused_total", endpoint="report") == 1
    assert value(s, "mayu_provisioning_duration_seconds_count") == 1
    assert 0 <= value(s, "mayu_provisioning_duration_seconds_sum") < 60
    assert value(s, "mayu_ignition_render_duration_seconds_count", target="machine") == 1
    assert value(s, "mayu_machines", state="running") == 1
    assert value(s, "mayu_machines", state="discovered") == 1
    assert value(s, "mayu_machines", state="failed") == 0
    ipxe = {"endpoint": "boot.machine_boot_script", "method": "GET", "status": "200"}
    assert value(s, "mayu_http_requests_total", **ipxe) == 3
    reports = {"endpoint": "boot.phone_home", "method": "POST"}
    assert value(s, "mayu_http_requests_total", **reports, status="200") == 3
    assert value(s, "mayu_http_requests_total", **reports, status="403") == 1
    timed = {"endpoint": "boot.machine_ignition", "status": "403"}
    assert value(s, "mayu_http_request_duration_seconds_count", **timed) == 1
    assert value(s, "mayu_http_requests_in_progress") == 1  # this scrape


def test_provisioning_is_timed_from_the_latest_approval_or_reinstall(
    client: FlaskClient,
) -> None:
    now = [100.0]
    set_clock(client, lambda: now[0])
    m = Machine(client, "52-54-00-00-00-03")
    m.ipxe()
    now[0] = 160.0  # discovery to approval is the operator's wait, not provisioning
    approve(client, m.mac)
    credential = file_of(m.provision(), "/etc/mayu/report.token").strip()
    now[0] = 190.0
    assert m.report("running", credential=credential).status_code == 200
    now[0] = 1000.0
    assert client.post(f"/api/v1/machines/{m.mac}/reinstall", headers=AUTH).status_code == 202
    credential = file_of(m.provision(), "/etc/mayu/report.token").strip()
    now[0] = 1500.0
    assert m.report("running", credential=credential).status_code == 200
    s = scrape(client)
    assert value(s, "mayu_provisioning_duration_seconds_count") == 2
    assert value(s, "mayu_provisioning_duration_seconds_sum") == 30 + 500
    assert value(s, "mayu_provisioning_duration_seconds_bucket", le="30.0") == 1
    assert value(s, "mayu_boot_tokens_issued_total") == 2
    assert value(s, "mayu_boot_tokens_consumed_total") == 2


def test_labels_never_carry_the_raw_path_or_an_unknown_method(client: FlaskClient) -> None:
    client.get("/no/such/secret-path-52-54-00-00-00-09")
    client.open("/ipxe", method="FROBNICATE")
    client.get("/assets/../../etc/passwd")
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert "secret-path" not in text and "passwd" not in text and "FROBNICATE" not in text
    s = scrape(client)
    assert value(s, "mayu_http_requests_total", endpoint="unmatched", method="GET", status="404")
    assert value(s, "mayu_http_requests_total", endpoint="unmatched", method="other", status="405")


# -- the store's transaction observer -----------------------------------------------------


def observed_store(tmp_path: Path) -> tuple[SqliteStore, list[tuple[float, TxOutcome]]]:
    seen: list[tuple[float, TxOutcome]] = []
    store = SqliteStore(tmp_path / "s.sqlite3", observer=lambda s, o: seen.append((s, o)))
    return store, seen


def test_store_reports_commits_rollbacks_and_conflicts(tmp_path: Path) -> None:
    store, seen = observed_store(tmp_path)
    store.atomically(lambda tx: tx.get_machine("x"))

    def conflicting(_tx: object) -> None:
        raise Conflict("taken")

    def missing(_tx: object) -> None:
        raise NotFound("no such machine")

    for fn, error in ((conflicting, Conflict), (missing, NotFound)):
        with pytest.raises(error):
            store.atomically(fn)
    assert [o for _, o in seen] == ["committed", "conflict", "rolled_back"]
    assert all(0 <= s < 5 for s, _ in seen)


def test_store_reports_a_busy_write_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_SECONDS", 0.2)
    store, seen = observed_store(tmp_path)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable):
            store.atomically(lambda tx: tx.get_machine("x"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [o for _, o in seen] == ["busy"]
    assert seen[0][0] >= 0.15  # it waited for the lock


def test_server_metrics_count_store_failures_by_reason(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    for outcome in ("committed", "rolled_back", "conflict", "busy", "busy"):
        metrics.store_transaction(0.001, outcome)  # type: ignore[arg-type]
    store = SqliteStore(tmp_path / "s.sqlite3")
    s = parse(metrics.exposition(store).decode())
    assert value(s, "mayu_store_transaction_duration_seconds_count") == 5
    assert value(s, "mayu_store_transaction_failures_total", reason="busy") == 2
    assert value(s, "mayu_store_transaction_failures_total", reason="conflict") == 1
    assert ("mayu_store_transaction_failures_total", (("reason", "rolled_back"),)) not in s
