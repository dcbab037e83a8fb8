"""What the boot plane costs the SQLite store, statement by statement: every statement of a
machine's whole conversation finds its rows through an index (none scans a table, so none
grows with the inventory), and the answers that do not change (an installed machine booting
its disk, /boot.ipxe) write nothing at all."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mayu_py.model import Machine as StoredMachine
from mayu_py.model import MachineState
from mayu_py.store.sqlite import SqliteStore, _SqliteTx
from tests.support.flask_app import Machine, make_app, services_of

INVENTORY = 300
CONTROLLER = "52-54-00-78-00-01"  # a config group names it: approved by its boot request
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    group = {"name": "one", "profile": "controller", "selector": {"mac": CONTROLLER}}
    client = make_app(tmp_path, {("groups",): [group]}).test_client()
    store = services_of(client).store
    assert isinstance(store, SqliteStore)

    def fill(tx) -> None:  # type: ignore[no-untyped-def]
        for n in range(INVENTORY):
            mac = f"52:54:00:77:{n >> 8:02x}:{n & 0xFF:02x}"
            tx.put_machine(
                StoredMachine(
                    id=mac,
                    mac=mac,
                    labels={"role": "controller" if n < 2 else "worker"},
                    state=MachineState.RUNNING,
                    registered_from="10.0.0.2",
                    created=float(n),
                    updated=float(n),
                )
            )

    store.atomically(fill)
    yield client


def _traced(client: FlaskClient) -> tuple[sqlite3.Connection, list[str]]:
    """The store connection this thread uses (the test client runs the app here) and the
    statements it executes from now on."""
    store = services_of(client).store
    conn = store._connect()  # type: ignore[attr-defined]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    return conn, statements


def _scans(conn: sqlite3.Connection, statement: str) -> list[str]:
    """The table (or whole-index) scans in a statement's query plan (a constant row or a
    subquery's few rows are not)."""
    plan = conn.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
    return [row[3] for row in plan if re.match(r"SCAN (?!CONSTANT ROW|\()", row[3])]


def test_every_statement_of_a_conversation_uses_an_index(client: FlaskClient) -> None:
    conn, statements = _traced(client)
    Machine(client, "52-54-00-78-00-09").ipxe()  # discovered, waits
    Machine(client, CONTROLLER).provision()  # discovered, approved (controllers counted) ...
    assert "token=" not in Machine(client, CONTROLLER).ipxe()[1]  # ... boots its disk
    conn.set_trace_callback(None)
    queries = [s for s in statements if s.split()[0].upper() in ("SELECT", *WRITES[:4])]
    assert len(queries) > 10
    scanning = {q: scans for q in queries if (scans := _scans(conn, q))}
    assert scanning == {}, "\n".join(f"{q}\n  {s}" for q, s in scanning.items())


def test_controller_count_is_an_index_lookup(client: FlaskClient) -> None:
    conn, _ = _traced(client)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM machines WHERE role = 'controller'"
    ).fetchall()
    assert [row[3] for row in plan] == [
        "SEARCH machines USING COVERING INDEX machines_role (role=?)"
    ]


def test_an_installed_machine_booting_its_disk_writes_nothing(client: FlaskClient) -> None:
    machine = Machine(client, CONTROLLER)
    machine.provision()
    store = services_of(client).store
    watcher = sqlite3.connect(store.path)  # type: ignore[attr-defined]
    version = watcher.execute("PRAGMA data_version").fetchone()[0]
    _, statements = _traced(client)
    wal = Path(f"{store.path}-wal")  # type: ignore[attr-defined]
    size = wal.stat().st_size
    for _ in range(3):
        status, script = machine.ipxe()
        assert status == 200 and "token=" not in script
        assert client.get("/boot.ipxe").status_code == 200
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
    assert wal.stat().st_size == size
    assert [s for s in statements if s.split()[0].upper() in WRITES] == []
    # A write by anyone is seen by the same watcher: the check above can fail.
    mac = CONTROLLER.replace("-", ":")
    store.atomically(lambda tx: tx.put_machine(tx.get_machine(mac)))
    assert watcher.execute("PRAGMA data_version").fetchone()[0] != version


def test_a_new_machine_is_written_once_and_trimmed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovered, approved by its group and given a window in one request: one write of
    its row and one retention pass over its three events, not three of each."""
    group = {"name": "all", "profile": "worker", "selector": {}}
    client = make_app(tmp_path, {("groups",): [group]}).test_client()
    calls: list[str] = []
    for name in ("put_machine", "add_event", "trim_events"):
        original = getattr(_SqliteTx, name)

        def counted(self, *args, _name=name, _original=original):  # type: ignore[no-untyped-def]
            calls.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(_SqliteTx, name, counted)
    _, statements = _traced(client)
    status, script = Machine(client, "52-54-00-78-00-0a").ipxe()
    assert status == 200 and "token=" in script
    assert sorted(calls) == ["add_event"] * 3 + ["put_machine", "trim_events"]
    trims = [s for s in statements if s.startswith("DELETE FROM events")]
    assert len(trims) == 1
