"""The agent's cheap watch of its desired nodes against a real `mayu serve`: ETag/304, wake."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests

from mayu_py.agent.source import ApiSource
from mayu_py.tenants import HostRegistration
from tests.conftest import RunningServer
from tests.support.tenants import acme
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer


ACME = acme()
WAKE_S = 10.0  # a timeout only: the wait returns when the watch wakes the agent


def test_unchanged_desired_nodes_cost_a_304(server: RunningServer) -> None:
    host = {"name": "h1", "cpus": 2, "memory_mib": 4096}
    assert server.api("POST", "/api/v1/hosts", json=host).status_code == 200
    first = server.api("GET", "/api/v1/hosts/h1/nodes")
    etag = first.headers["ETag"]
    again = requests.get(
        f"{server.url}/api/v1/hosts/h1/nodes",
        headers={"Authorization": f"Bearer {server.token}", "If-None-Match": etag},
        timeout=10,
    )
    assert again.status_code == 304 and again.content == b""
    assert server.api("POST", "/api/v1/tenants", json=ACME).status_code == 201
    changed = requests.get(
        f"{server.url}/api/v1/hosts/h1/nodes",
        headers={"Authorization": f"Bearer {server.token}", "If-None-Match": etag},
        timeout=10,
    )
    assert changed.status_code == 200 and len(changed.json()) == 3


def test_watch_wakes_the_agent_on_a_change_only(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    unchanged = []  # the watch's conditional GETs answered 304
    request = requests.Session.request

    def counting(self: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
        response = request(self, method, url, **kwargs)
        if response.status_code == 304:
            unchanged.append(url)
        return response

    monkeypatch.setattr(requests.Session, "request", counting)
    source = ApiSource(server.url, server.token, "h1")
    source.register(HostRegistration("h1", 2, 4096, "127.0.0.1"))
    source.start_watch(every_s=0.1)
    try:
        wait_for("three unchanged answers to the watch", lambda: len(unchanged) >= 3)
        assert not source.wake_event.is_set(), "woke without a change"
        assert server.api("POST", "/api/v1/tenants", json=ACME).status_code == 201
        assert source.wake_event.wait(WAKE_S), "a new tenant did not wake the agent"
        source.wake_event.clear()
        doc = copy.deepcopy(ACME["spec"])
        doc["workers"] = doc["workers"][:1]
        patched = server.api(
            "PATCH", "/api/v1/tenants/acme", json={"spec": {"workers": doc["workers"]}}
        )
        assert patched.status_code == 200, patched.text
        assert source.wake_event.wait(WAKE_S), "a scale-down did not wake the agent"
    finally:
        source.close()
