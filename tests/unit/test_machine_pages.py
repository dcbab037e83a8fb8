"""The machine list a page at a time: every machine exactly once, in id order, by state and
label selector too (a sparse one included), each page read from the store by key and never
the whole inventory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from mayu_py.model import Machine, MachineState
from tests.support.flask_app import AUTH, make_app, services_of

COUNT = 1037


def _mac(n: int) -> str:
    return f"52:54:00:66:{n >> 8:02x}:{n & 0xFF:02x}"


def _rack(n: int) -> str:
    return "rare" if n % 97 == 5 else f"r{n % 3}"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    client = make_app(tmp_path).test_client()
    store = services_of(client).store

    def fill(tx) -> None:  # type: ignore[no-untyped-def]
        for n in range(COUNT):
            tx.put_machine(
                Machine(
                    id=_mac(n),
                    mac=_mac(n),
                    labels={"rack": _rack(n)},
                    state=MachineState.RUNNING if n % 2 else MachineState.INSTALLED,
                    created=float(n),
                    updated=float(n),
                )
            )

    store.atomically(fill)

    def whole(*_: Any) -> None:
        raise AssertionError("a page read the whole inventory")

    monkeypatch.setattr(store, "list_machines", whole)
    return client


def _walk(client: FlaskClient, limit: int, **query: str) -> list[list[str]]:
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        args = {"limit": str(limit), **query} | ({"continue": token} if token else {})
        answer = client.get("/api/v1/machines", query_string=args, headers=AUTH)
        assert answer.status_code == 200, answer.data
        body = answer.get_json()
        pages.append([m["id"] for m in body["items"]])
        token = body["continue"]
        if token is None:
            return pages


@pytest.mark.parametrize(
    ("limit", "query", "wanted"),
    [
        (300, {}, lambda n: True),
        (300, {"state": "running"}, lambda n: n % 2 == 1),
        (7, {"selector": "rack=rare"}, lambda n: _rack(n) == "rare"),
        (
            300,
            {"selector": "rack!=r0", "state": "installed"},
            lambda n: n % 2 == 0 and _rack(n) != "r0",
        ),
    ],
)
def test_pages_hold_every_machine_once_in_order(
    client: FlaskClient, limit: int, query: dict[str, str], wanted: Any
) -> None:
    expected = [_mac(n) for n in range(COUNT) if wanted(n)]
    pages = _walk(
        client, 7 if "selector" in query and query["selector"] == "rack=rare" else 300, **query
    )
    assert [m for page in pages for m in page] == expected
    assert all(pages[:-1]) and pages[-1] or expected == []
    assert len(pages) == max(1, -(-len(expected) // len(pages[0])))
