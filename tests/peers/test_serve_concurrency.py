"""The boot plane under concurrent requests, through the real `mayu serve` (gunicorn, two sync
workers per listener, one SQLite store behind the process-wide writer lock): one machine
asking many times at once ends with exactly one valid token, one token spent many times at
once serves its config exactly once, and a storm of machines a controller group names never
yields more controllers than the cluster is allowed."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import requests

from tests.conftest import RunningServer, start_server
from tests.support.boot import boot_token

pytestmark = pytest.mark.peer

T = TypeVar("T")
PARALLEL = 8


def _all_at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run every call in its own thread, released together."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _get(url: str, params: dict[str, str], verify: str | bool = True) -> requests.Response:
    return requests.get(
        url, params=params, headers={"Connection": "close"}, verify=verify, timeout=30
    )


def _server(tmp_path: Path, groups: list[dict], controllers: int = 3) -> RunningServer:
    config = {"cluster": {"controller_count": controllers}, "groups": groups}
    return start_server(tmp_path / "data", config=config, workers=2)


def test_concurrent_boots_of_one_mac_leave_exactly_one_valid_token(tmp_path: Path) -> None:
    mac = "52-54-00-5e-00-01"
    server = _server(tmp_path, [{"name": "one", "profile": "worker", "selector": {"mac": mac}}])
    try:
        answers = _all_at_once([lambda: _get(f"{server.url}/ipxe", {"mac": mac})] * PARALLEL)
        assert [a.status_code for a in answers] == [200] * PARALLEL
        tokens = {boot_token(a.text) for a in answers}
        assert len(tokens) == PARALLEL
        stubs = [_get(f"{server.url}/ignition", {"mac": mac, "token": t}) for t in tokens]
        assert sorted(s.status_code for s in stubs) == [200] + [403] * (PARALLEL - 1)
    finally:
        server.kill()


def test_one_token_spent_concurrently_serves_its_config_exactly_once(tmp_path: Path) -> None:
    mac = "52-54-00-5e-00-02"
    server = _server(tmp_path, [{"name": "one", "profile": "worker", "selector": {"mac": mac}}])
    try:
        token = boot_token(_get(f"{server.url}/ipxe", {"mac": mac}).text)
        assert _get(f"{server.url}/ignition", {"mac": mac, "token": token}).status_code == 200
        secret = f"{server.tls_url}/ignition"
        params = {"mac": mac, "token": token}
        answers = _all_at_once(
            [lambda: _get(secret, params, verify=str(server.ca_file))] * PARALLEL
        )
        assert sorted(a.status_code for a in answers) == [200] + [403] * (PARALLEL - 1)
        machine = server.api("GET", f"/api/v1/machines/{mac}").json()
        assert machine["state"] == "installing"
    finally:
        server.kill()


def test_a_concurrent_storm_names_no_more_controllers_than_allowed(tmp_path: Path) -> None:
    group = {"name": "rack", "profile": "controller", "selector": {"serial": "rack-7"}}
    server = _server(tmp_path, [group], controllers=3)
    macs = [f"52-54-00-5e-01-{n:02x}" for n in range(12)]
    try:
        answers = _all_at_once(
            [
                lambda mac=mac: _get(f"{server.url}/ipxe", {"mac": mac, "serial": "rack-7"})
                for mac in macs
            ]
        )
        assert [a.status_code for a in answers] == [200] * len(macs)
        provisioning = [a for a in answers if "token=" in a.text]
        machines = server.api("GET", "/api/v1/machines").json()["items"]
        states = Counter((m["labels"].get("role"), m["state"]) for m in machines)
        assert len(provisioning) == 3
        assert states == {("controller", "configured"): 3, (None, "discovered"): 9}
    finally:
        server.kill()
