"""/metrics of a real `mayu serve` (two gunicorn servers, two workers each) after machines went
through the whole boot conversation: the counters match the events in the store, both listeners
report the whole server, and a dead worker's live gauges leave while its counts stay."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import RunningServer
from tests.support.boot import fetch_config, ipxe, register
from tests.support.flask_app import file_of
from tests.support.prometheus import Samples, assert_matches_store, parse, value

pytestmark = pytest.mark.peer

MACS = ["52-54-00-6d-00-01", "52-54-00-6d-00-02", "52-54-00-6d-00-03"]
WAITING = "52-54-00-6d-00-09"


def scrape(base: str, token: str, ca: Path | None = None) -> Samples:
    response = requests.get(
        f"{base}/metrics",
        headers={"Authorization": f"Bearer {token}"},
        verify=str(ca) if ca else True,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return parse(response.text)


def report(base: str, mac: str, event: str, ca: Path | None = None, **auth: str) -> int:
    query = {"mac": mac, **({"token": auth["token"]} if "token" in auth else {})}
    headers = {"Authorization": f"Bearer {auth['credential']}"} if "credential" in auth else {}
    response = requests.post(
        f"{base}/report",
        params=query,
        json={"event": event},
        headers=headers,
        verify=str(ca) if ca else True,
        timeout=10,
    )
    return response.status_code


def provision(server: RunningServer, mac: str) -> str:
    """Discover, approve, boot, stub + secret, installed (boot token), running (report
    credential, over HTTPS); returns the spent boot token."""
    assert "waiting for approval" in ipxe(server.url, mac)
    approved = server.api("POST", f"/api/v1/machines/{mac}/approve", json={"role": "worker"})
    assert approved.status_code == 200, approved.text
    token = register(server.url, mac)
    config = fetch_config(server.url, mac, token, server.ca_file)
    assert report(server.url, mac, "installed", token=token) == 200
    credential = file_of(config, "/etc/mayu/report.token").strip()
    assert report(server.tls_url, mac, "running", server.ca_file, credential=credential) == 200
    return token


def store_events(server: RunningServer) -> list[dict[str, Any]]:
    """Every event the store keeps: each machine's, and the alerts about no machine."""
    machines = server.api("GET", "/api/v1/machines").json()["items"]
    found = server.api("GET", "/api/v1/events").json()["items"]
    for machine in machines:
        found += server.api("GET", f"/api/v1/machines/{machine['id']}/events").json()["items"]
    return found


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def is_tls_listener(pid: int) -> bool:
    return b"tls_listener" in Path(f"/proc/{pid}/cmdline").read_bytes()


def workers_of(server: RunningServer) -> list[int]:
    """The gunicorn workers of the plain listener (children of serve, not the HTTPS child)."""
    return [p for p in children(server.process.pid) if not is_tls_listener(p)]


def wait_gone(paths: list[Path], what: str) -> None:
    deadline = time.monotonic() + 30
    while any(p.exists() for p in paths):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_counters_match_the_store_on_both_listeners(server: RunningServer) -> None:
    spent = [provision(server, mac) for mac in MACS]
    ipxe(server.url, WAITING)
    secret_again = requests.get(
        f"{server.tls_url}/ignition",
        params={"mac": MACS[0], "token": spent[0]},
        verify=str(server.ca_file),
        timeout=10,
    )
    assert secret_again.status_code == 403
    assert report(server.url, MACS[1], "running", credential="w" * 43) == 403
    unknown = requests.get(
        f"{server.url}/ignition", params={"mac": "52-54-00-6d-00-77", "token": "t"}, timeout=10
    )
    assert unknown.status_code == 403

    events = store_events(server)
    kinds = Counter(e["kind"] for e in events)
    states = Counter(m["state"] for m in server.api("GET", "/api/v1/machines").json()["items"])
    assert kinds["token-issued"] == 3
    assert kinds["ignition-refused"] == 2 and kinds["report-refused"] == 1

    plain = scrape(server.url, server.token)
    tls = scrape(server.tls_url, server.token, server.ca_file)
    for s in (plain, tls):
        assert_matches_store(s, events)
        # Tokens are spent on the HTTPS listener only; the plain one reports them too.
        assert value(s, "mayu_boot_tokens_consumed_total") == 3
        assert value(s, "mayu_provisioning_duration_seconds_count") == 3
        assert value(s, "mayu_ignition_render_duration_seconds_count", target="machine") == 3
        for state in ("discovered", "running", "installing", "failed"):
            assert value(s, "mayu_machines", state=state) == states[state], state
        ipxe_ok = {"endpoint": "boot.machine_boot_script", "method": "GET", "status": "200"}
        assert value(s, "mayu_http_requests_total", **ipxe_ok) == 2 * len(MACS) + 1
        stub_and_secret = {"endpoint": "boot.machine_ignition", "method": "GET", "status": "200"}
        assert value(s, "mayu_http_requests_total", **stub_and_secret) == 2 * len(MACS)
        assert value(s, "mayu_store_transaction_duration_seconds_count") > 3 * len(MACS)
        assert not [k for k in s if k[0] == "mayu_store_transaction_failures_total"]
        assert value(s, "mayu_dnsmasq_restarts_total") == 0


def test_a_dead_workers_live_gauges_go_and_its_counts_stay(server: RunningServer) -> None:
    for _ in range(8):  # both workers serve something, most likely
        ipxe(server.url, WAITING)
    before = scrape(server.url, server.token)
    directory = server.data_dir / "metrics"
    live = [p for p in workers_of(server) if (directory / f"gauge_livesum_{p}.db").exists()]
    assert live, sorted(os.listdir(directory))
    victim = live[0]
    os.kill(victim, signal.SIGKILL)
    wait_gone(
        [directory / f"gauge_livesum_{victim}.db"],
        "child_exit did not drop the dead worker's gauges",
    )
    assert (directory / f"counter_{victim}.db").exists()
    after = scrape(server.url, server.token)
    ipxe_ok = {"endpoint": "boot.machine_boot_script", "method": "GET", "status": "200"}
    assert value(after, "mayu_http_requests_total", **ipxe_ok) == 8
    assert value(after, "mayu_http_requests_total", **ipxe_ok) == value(
        before, "mayu_http_requests_total", **ipxe_ok
    )
    assert value(after, "mayu_http_requests_in_progress") == 1  # this scrape only


def test_a_killed_https_listeners_live_gauges_go_at_the_next_scrape(
    server: RunningServer,
) -> None:
    for _ in range(4):
        scrape(server.tls_url, server.token, server.ca_file)
    (listener,) = [p for p in children(server.process.pid) if is_tls_listener(p)]
    directory = server.data_dir / "metrics"
    old = [listener, *children(listener)]
    stale = [directory / f"gauge_livesum_{p}.db" for p in old]
    assert any(p.exists() for p in stale), sorted(os.listdir(directory))
    os.kill(listener, signal.SIGKILL)  # its workers follow (PR_SET_PDEATHSIG)
    wait_gone([Path(f"/proc/{p}") for p in old], "the HTTPS listener's workers live on")
    scrape(server.url, server.token)  # no gunicorn reaped them: a scrape sweeps
    assert not [p for p in stale if p.exists()]
    deadline = time.monotonic() + 30
    while True:
        try:
            after = scrape(server.tls_url, server.token, server.ca_file)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "the HTTPS listener did not come back"
            time.sleep(0.2)
    assert value(after, "mayu_http_requests_in_progress") == 1  # this scrape only
    scrapes = {"endpoint": "monitoring.metrics", "method": "GET", "status": "200"}
    # 4 on the killed HTTPS listener (its counts stay) and 1 on the plain one.
    assert value(after, "mayu_http_requests_total", **scrapes) == 5


def test_a_new_server_starts_from_zero(tmp_path: Path) -> None:
    from tests.conftest import start_server

    first = start_server(tmp_path / "data")
    try:
        ipxe(first.url, WAITING)
    finally:
        first.kill()
    second = start_server(tmp_path / "data")
    try:
        s = scrape(second.url, second.token)
        assert value(s, "mayu_machines", state="discovered") == 1  # the store kept it
        ipxe_ok = {"endpoint": "boot.machine_boot_script", "method": "GET", "status": "200"}
        assert value(s, "mayu_http_requests_total", **ipxe_ok) == 0  # counters did not
    finally:
        second.kill()
