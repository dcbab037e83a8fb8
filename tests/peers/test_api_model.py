"""The admin API against a model of it, in sequences: hypothesis' stateful testing drives a
live `mayu serve` with machines booting (/ipxe), approved, labelled, unlabelled and deleted,
and operators added and removed, in random orders chosen from a small set of names (so
sequences collide: approving twice, deleting what is gone, adding a user twice). After every
step the server must agree with the model: each machine's state and labels, the listing by
label selector, the listing page by page, the users.

The strategies never depend on the server's answers (the model decides what exists), so a
sequence replays identically: derandomized, no example database, bounded in examples and
steps so it fits CI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.conftest import RunningServer, start_server

pytestmark = pytest.mark.peer

MACS = [f"52:54:00:ab:00:0{n}" for n in range(1, 5)]
USERS = ["ann", "bob"]
KEYS = ["rack", "zone"]
VALUES = ["a", "b"]
ROLES = ["controller", "worker"]
# Every step comes from 127.0.0.1: lift the discovery bounds, keep everything else default
# (no group: a machine that boots is only discovered).
CONFIG = {"server": {"discovery": {"per_source_per_minute": 100_000, "per_minute": 1_000_000}}}
RUN = settings(
    max_examples=15,
    stateful_step_count=12,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(Path(tmp_path_factory.mktemp("model")) / "data", config=CONFIG)
    try:
        yield server
    finally:
        server.kill()


def _url_mac(mac: str) -> str:
    return mac.replace(":", "-")


def test_the_api_agrees_with_its_model_in_any_sequence(live: RunningServer) -> None:
    class ApiModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.machines: dict[str, dict[str, Any]] = {}  # mac -> {"state", "labels"}
            self.users: set[str] = set()
            for machine in self._all_machines():  # a fresh server for every sequence
                assert live.api("DELETE", f"/api/v1/machines/{machine['id']}").ok
            for user in live.api("GET", "/api/v1/users").json()["items"]:
                assert live.api("DELETE", f"/api/v1/users/{user['name']}").ok

        def _all_machines(self, **query: Any) -> list[dict[str, Any]]:
            answer = live.api("GET", "/api/v1/machines", params=query)
            assert answer.status_code == 200, answer.text
            return answer.json()["items"]

        def _expect(self, answer: requests.Response, status: int) -> dict[str, Any]:
            assert answer.status_code == status, (answer.status_code, answer.text)
            body = answer.json()
            if status >= 400:  # RFC 9457 problem details
                assert answer.headers["Content-Type"].startswith("application/problem+json")
                assert body["status"] == status and body["title"], body
            return body

        @rule(mac=st.sampled_from(MACS))
        def boot(self, mac: str) -> None:
            answer = requests.get(f"{live.url}/ipxe", params={"mac": _url_mac(mac)}, timeout=10)
            assert answer.status_code == 200, answer.text
            self.machines.setdefault(mac, {"state": "discovered", "labels": {}})

        @rule(mac=st.sampled_from(MACS), role=st.sampled_from(ROLES))
        def approve(self, mac: str, role: str) -> None:
            answer = live.api("POST", f"/api/v1/machines/{mac}/approve", json={"role": role})
            machine = self.machines.get(mac)
            if machine is None:
                self._expect(answer, 404)
            elif machine["state"] != "discovered":
                self._expect(answer, 409)
            else:
                body = self._expect(answer, 200)
                machine["state"] = "configured"
                machine["labels"]["role"] = role
                assert body["state"] == "configured" and body["labels"] == machine["labels"]

        @rule(
            mac=st.sampled_from(MACS),
            key=st.sampled_from(KEYS),
            value=st.sampled_from([*VALUES, None]),
        )
        def label(self, mac: str, key: str, value: str | None) -> None:
            answer = live.api("PATCH", f"/api/v1/machines/{mac}", json={key: value})
            machine = self.machines.get(mac)
            if machine is None:
                self._expect(answer, 404)
                return
            body = self._expect(answer, 200)
            if value is None:
                machine["labels"].pop(key, None)
            else:
                machine["labels"][key] = value
            assert body["labels"] == machine["labels"]

        @rule(mac=st.sampled_from(MACS))
        def delete(self, mac: str) -> None:
            answer = live.api("DELETE", f"/api/v1/machines/{mac}")
            if self.machines.pop(mac, None) is None:
                self._expect(answer, 404)
            else:
                assert self._expect(answer, 200)["id"] == mac

        @rule(name=st.sampled_from(USERS))
        def add_user(self, name: str) -> None:
            answer = live.api("POST", "/api/v1/users", json={"name": name})
            if name in self.users:
                self._expect(answer, 409)
            else:
                assert self._expect(answer, 201)["token"]
                self.users.add(name)

        @rule(name=st.sampled_from(USERS))
        def remove_user(self, name: str) -> None:
            answer = live.api("DELETE", f"/api/v1/users/{name}")
            if name in self.users:
                self._expect(answer, 200)
                self.users.remove(name)
            else:
                self._expect(answer, 404)

        @invariant()
        def machines_agree(self) -> None:
            shown = {
                m["id"]: {"state": m["state"], "labels": m["labels"]} for m in self._all_machines()
            }
            assert shown == self.machines

        @invariant()
        def selectors_agree(self) -> None:
            for key in KEYS:
                wanted = {mac for mac, m in self.machines.items() if m["labels"].get(key) == "a"}
                listed = {m["id"] for m in self._all_machines(selector=f"{key}=a")}
                assert listed == wanted, key
                lacking = {mac for mac, m in self.machines.items() if key not in m["labels"]}
                assert {m["id"] for m in self._all_machines(selector=f"!{key}")} == lacking

        @invariant()
        def pages_agree(self) -> None:
            seen: list[str] = []
            query: dict[str, Any] = {"limit": 1}
            for _ in range(len(MACS) + 1):
                page = live.api("GET", "/api/v1/machines", params=query).json()
                seen += [m["id"] for m in page["items"]]
                if not page["continue"]:
                    break
                query["continue"] = page["continue"]
            assert sorted(seen) == sorted(self.machines) and len(seen) == len(set(seen))

        @invariant()
        def users_agree(self) -> None:
            listed = {u["name"] for u in live.api("GET", "/api/v1/users").json()["items"]}
            assert listed == self.users

    run_state_machine_as_test(ApiModel, settings=RUN)
