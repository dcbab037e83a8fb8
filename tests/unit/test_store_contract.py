"""One contract suite for every Store backend (SQLite now; etcd is added to BACKENDS later)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mayu_py.errors import Conflict
from mayu_py.model import Event, Machine, MachineState, PendingConfig
from mayu_py.store import Store
from mayu_py.store.errors import StoreUnavailable
from mayu_py.store.sqlite import MIGRATIONS, SqliteStore
from mayu_py.tenants import (
    HostInfo,
    ImageInfo,
    NodeReport,
    NodeState,
    ReportedNode,
    TenantRecord,
    parse_tenant,
)
from tests.support.tenants import acme

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
    assert [m.id for m in store.machines_with_role("controller")] == ["52:54:00:00:00:01"]


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
    assert store.alerts() == []  # no orphaned events of the deleted machine
    store.atomically(lambda tx: tx.delete_machine(gone))  # deleting twice is fine


def test_count_by_role_inside_transaction(store: Store) -> None:
    store.atomically(lambda tx: tx.put_machine(_machine("52:54:00:00:00:05", "controller")))
    store.atomically(lambda tx: tx.put_machine(_machine("52:54:00:00:00:06", "worker")))
    assert store.atomically(lambda tx: tx.count_with_role("controller")) == 1


def test_delete_machine_takes_its_events_and_pending_config(store: Store) -> None:
    mac = "52:54:00:00:00:07"
    pending = PendingConfig(mac, "h", b"{}", "s" * 128, "r", 1.0)

    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine(mac))
        tx.add_event(Event(mac, 1.0, "x", "test"))
        tx.put_pending_config(pending)

    store.atomically(txn)
    assert store.get_pending_config(mac) == pending
    store.atomically(lambda tx: tx.delete_machine(mac))
    assert store.get_machine(mac) is None and store.events(mac) == []
    assert store.get_pending_config(mac) is None


def test_hostnames_are_unique(store: Store) -> None:
    first = replace(_machine("52:54:00:00:00:08"), hostname="same")
    store.atomically(lambda tx: tx.put_machine(first))
    assert store.atomically(lambda tx: tx.hostname_owner("same")) == first.id
    with pytest.raises(Conflict, match="hostname"):
        store.atomically(
            lambda tx: tx.put_machine(replace(_machine("52:54:00:00:00:09"), hostname="same"))
        )


def test_bounded_queries(store: Store) -> None:
    def txn(tx):  # type: ignore[no-untyped-def]
        for i in range(6):
            machine = replace(
                _machine(f"52:54:00:00:01:{i:02x}"),
                registered_from="10.0.0.1" if i < 4 else "10.0.0.2",
                created=100.0 + i,
                updated=100.0 + i,
                window_expires=200.0 + i if i % 2 else None,
            )
            tx.put_machine(machine)

    store.atomically(txn)
    count = store.atomically(lambda tx: tx.registrations_since(101.5, "10.0.0.1", 10))
    assert count == 2
    assert store.atomically(lambda tx: tx.registrations_since(0, None, 3)) == 3  # capped
    expired = store.atomically(lambda tx: tx.expired_windows(203.5, 10))
    assert [m.id for m in expired] == ["52:54:00:00:01:01", "52:54:00:00:01:03"]
    stale = store.atomically(lambda tx: tx.stale_discovered(102.5, 10))
    assert sorted(stale) == ["52:54:00:00:01:00", "52:54:00:00:01:01", "52:54:00:00:01:02"]


def test_event_and_alert_retention(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3", events_kept=3, alerts_kept=2)
    mac = "52:54:00:00:00:0a"

    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine(mac))
        for i in range(5):
            tx.add_event(Event(mac, float(i), "e", f"event {i}"))
            tx.add_alert(Event("52:54:00:00:00:ff", float(i), "a", f"alert {i}"))

    store.atomically(txn)
    assert [e.cause for e in store.events(mac)] == ["event 2", "event 3", "event 4"]
    assert [e.cause for e in store.alerts()] == ["alert 4", "alert 3"]


def test_refusals_cannot_push_a_machines_history_out(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3", events_kept=3)
    mac = "52:54:00:00:00:0a"

    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine(mac))
        for i in range(3):
            tx.add_event(Event(mac, float(i), "transition", f"step {i}"))
        for i in range(50):
            tx.add_event(Event(mac, 10.0 + i, "ignition-refused", f"flood {i}"))

    store.atomically(txn)
    causes = [e.cause for e in store.events(mac)]
    assert causes == ["step 0", "step 1", "step 2", "flood 47", "flood 48", "flood 49"]


def test_tenants_and_hosts_records(store: Store) -> None:
    tenant = parse_tenant(acme(), {"lab": ImageInfo("lab")}, [])
    report = NodeReport("acme", "acme-master-0", NodeState.READY, "10.100.0.10", "h1", "", 1)
    reported = ReportedNode(report, 5.0)
    record = TenantRecord(tenant, {"acme-master-0": "h1"}, {"acme-master-0": reported})
    store.atomically(lambda tx: tx.put_tenant(record))
    store.atomically(lambda tx: tx.put_host(HostInfo("h1", 2, 4096, 7.0, "192.0.2.5")))
    assert store.get_tenant("acme") == record
    assert store.atomically(lambda tx: tx.list_tenants()) == [record]
    assert store.list_hosts() == [HostInfo("h1", 2, 4096, 7.0, "192.0.2.5")]
    deleting = dataclasses.replace(record, deleting=True)
    store.atomically(lambda tx: tx.put_tenant(deleting))
    assert store.get_tenant("acme") == deleting
    store.atomically(lambda tx: tx.delete_tenant("acme"))
    assert store.list_tenants() == [] and store.get_tenant("acme") is None


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
    with pytest.raises(StoreUnavailable, match="newer"):
        SqliteStore(path)


@pytest.mark.parametrize("damage", ["garbage", "locked"])
def test_sqlite_unusable_store_is_one_clear_error(tmp_path: Path, damage: str) -> None:
    import sqlite3

    path = tmp_path / "inv.sqlite3"
    SqliteStore(path).close()
    blocker = None
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        blocker = sqlite3.connect(path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable) as info:
            store = SqliteStore(path)
            store.ping()
        assert str(path) in info.value.message and "\n" not in info.value.message
    finally:
        if blocker is not None:
            blocker.rollback()
            blocker.close()
