"""One contract suite for every Store backend (SQLite now; etcd is added to BACKENDS later)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mayu_py.model import Event, Machine, MachineState
from mayu_py.store import Store
from mayu_py.store.sqlite import MIGRATIONS, SqliteStore

BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda d: SqliteStore(d / "inv.sqlite3"),
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend = BACKENDS[request.param](tmp_path)
    yield backend
    backend.close()


def _machine(mac: str, role: str = "worker") -> Machine:
    return Machine(id=mac, mac=mac, labels={"role": role}, created=1.0, updated=1.0)


def test_put_get_list(store: Store) -> None:
    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine("52:54:00:00:00:02"))
        tx.put_machine(_machine("52:54:00:00:00:01", "controller"))

    store.atomically(txn)
    assert [m.id for m in store.list_machines()] == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
    got = store.get_machine("52:54:00:00:00:01")
    assert got is not None and got.labels == {"role": "controller"}
    assert got.state == MachineState.DISCOVERED
    assert [m.id for m in store.machines_with_label("role", "controller")] == ["52:54:00:00:00:01"]


def test_failed_transaction_leaves_nothing(store: Store) -> None:
    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine("52:54:00:00:00:03"))
        tx.add_event(Event("52:54:00:00:00:03", 1.0, "registered", "test"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.atomically(txn)
    assert store.get_machine("52:54:00:00:00:03") is None
    assert store.events("52:54:00:00:00:03") == []


def test_events_are_ordered_and_keep_details(store: Store) -> None:
    mac = "52:54:00:00:00:04"

    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine(mac))
        for i in range(3):
            tx.add_event(
                Event(mac, float(i), "transition", f"step {i}", "10.0.0.1", "a", "b", {"i": i})
            )

    store.atomically(txn)
    events = store.events(mac)
    assert [e.details["i"] for e in events] == [0, 1, 2]
    assert events[0].seq < events[1].seq < events[2].seq
    assert events[2].source == "10.0.0.1"


def test_delete_machine_forgets_its_record_and_events_only(store: Store) -> None:
    gone, kept = "52:54:00:00:00:06", "52:54:00:00:00:07"

    def txn(tx):  # type: ignore[no-untyped-def]
        for mac in (gone, kept):
            tx.put_machine(_machine(mac))
            tx.add_event(Event(mac, 1.0, "registered", "test"))

    store.atomically(txn)
    store.atomically(lambda tx: tx.delete_machine(gone))
    assert store.get_machine(gone) is None and store.events(gone) == []
    assert [m.id for m in store.list_machines()] == [kept]
    assert [e.kind for e in store.events(kept)] == ["registered"]
    assert store.unknown_events() == []  # no orphaned events of the deleted machine
    store.atomically(lambda tx: tx.delete_machine(gone))  # deleting twice is fine


def test_count_by_label_inside_transaction(store: Store) -> None:
    store.atomically(lambda tx: tx.put_machine(_machine("52:54:00:00:00:05", "controller")))
    assert store.atomically(lambda tx: tx.count_machines_with_label("role", "controller")) == 1


def test_tenants_and_hosts_records(store: Store) -> None:
    store.atomically(lambda tx: tx.put_tenant("acme", {"metadata": {"name": "acme"}}))
    store.atomically(lambda tx: tx.put_host({"name": "h1", "cpus": 2}))
    assert store.get_tenant("acme") == {"metadata": {"name": "acme"}}
    assert store.list_hosts() == [{"name": "h1", "cpus": 2}]
    store.atomically(lambda tx: tx.delete_tenant("acme"))
    assert store.list_tenants() == []


def test_sqlite_schema_is_versioned_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "inv.sqlite3"
    first = SqliteStore(path)
    assert first.schema_version == len(MIGRATIONS)
    first.atomically(lambda tx: tx.put_machine(_machine("52:54:00:00:00:06")))
    first.close()
    second = SqliteStore(path)
    assert second.get_machine("52:54:00:00:00:06") is not None
    assert path.stat().st_mode & 0o777 == 0o600


def test_sqlite_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "inv.sqlite3"
    store = SqliteStore(path)
    store.atomically(lambda tx: None)
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    store.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteStore(path)
