"""SIGKILL of `mayu serve` with reports in flight loses no acknowledged report."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import start_server
from tests.support.boot import register

pytestmark = pytest.mark.peer

MACHINES = 12
MAX_REPORTS_PER_THREAD = 400


def test_acknowledged_reports_survive_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, workers=2)
    macs = [f"52:54:00:30:00:{i:02x}" for i in range(MACHINES)]
    tokens = {mac: register(server.url, mac) for mac in macs}
    for mac in macs:
        booted = requests.post(
            f"{server.url}/report",
            params={"mac": mac, "token": tokens[mac]},
            json={"event": "booted"},
            timeout=10,
        )
        assert booted.status_code == 200, booted.text
    acked: dict[str, list[int]] = {mac: [] for mac in macs}
    stop = threading.Event()

    def hammer(mac: str) -> None:
        session = requests.Session()
        for n in range(MAX_REPORTS_PER_THREAD):
            if stop.is_set():
                return
            try:
                response = session.post(
                    f"{server.url}/report",
                    params={"mac": mac, "token": tokens[mac]},
                    json={"event": "installed", "details": {"n": n}},
                    timeout=5,
                )
            except requests.RequestException:
                return
            if response.status_code == 200:
                acked[mac].append(n)

    threads = [threading.Thread(target=hammer, args=(mac,)) for mac in macs]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    server.kill(signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    total = sum(len(v) for v in acked.values())
    assert total > 50, f"too few reports acknowledged before the kill ({total})"

    restarted = start_server(data, workers=1, token=server.token)
    try:
        for mac in macs:
            events = restarted.api("GET", f"/api/v1/machines/{mac}").json()["events"]
            recorded = {e["details"].get("n") for e in events if e["cause"] == "report installed"}
            missing = [n for n in acked[mac] if n not in recorded]
            assert not missing, f"{mac}: acknowledged reports lost: {missing[:10]}"
    finally:
        restarted.kill()
