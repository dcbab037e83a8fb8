"""The Store contract suite against SQLite, plus what only SQLite has (schema migrations,
file damage). The same suite runs against etcd in tests/peers/test_store_etcd.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mayu_py.bmc.records import ActionKind, ActionState, BmcAction, StoredBmc
from mayu_py.model import Event
from mayu_py.store import Store
from mayu_py.store.errors import StoreUnavailable
from mayu_py.store.sqlite import MIGRATIONS, SqliteStore
from mayu_py.store.sqlite_bmc import ACTIONS_KEPT
from tests.support.store_contract import *  # noqa: F403
from tests.support.store_contract import _machine


@pytest.fixture
def open_backend(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    opened: list[SqliteStore] = []

    def open_(events_kept: int = 200, alerts_kept: int = 1000) -> Store:
        opened.append(SqliteStore(tmp_path / "inv.sqlite3", events_kept, alerts_kept))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


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
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    store.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        SqliteStore(path)


@pytest.mark.parametrize("damage", ["garbage", "locked"])
def test_sqlite_unusable_store_is_one_clear_error(
    tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mayu_py.store.sqlite.BUSY_TIMEOUT_SECONDS", 0.2)  # locked: give up soon
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


# BMC records: SQLite only until the etcd backend keeps them too.


def test_bmc_records_and_actions(store: Store) -> None:
    mac, other = "52:54:00:00:00:31", "52:54:00:00:00:32"
    bmc = StoredBmc(mac, {"protocol": "ipmi", "address": "10.0.0.9"}, "v1:sealed", False, 5.0)
    store.atomically(lambda tx: tx.put_bmc(bmc))
    assert store.get_bmc(mac) == bmc
    store.atomically(lambda tx: tx.put_bmc(replace(bmc, disk_after_install=True)))
    assert store.get_bmc(mac) == replace(bmc, disk_after_install=True)

    def queue(tx):  # type: ignore[no-untyped-def]
        return [
            tx.add_action(BmcAction(m, kind, 1.0 + i, "operator", "10.0.0.1"))
            for i, (m, kind) in enumerate(
                [
                    (mac, ActionKind.POWER_ON),
                    (other, ActionKind.REINSTALL),
                    (mac, ActionKind.BOOTDEV_DISK),
                ]
            )  # fmt: skip
        ]

    queued = store.atomically(queue)
    assert [a.id for a in queued] == sorted({a.id for a in queued})
    assert store.get_action(queued[1].id) == queued[1]
    done = replace(queued[0], state=ActionState.DONE, started=2.0, finished=3.0,
                   result={"state": "on"})  # fmt: skip
    store.atomically(lambda tx: tx.update_action(done))
    assert store.get_action(done.id) == done
    opened = store.atomically(lambda tx: tx.open_actions(10))
    assert [a.id for a in opened] == [queued[1].id, queued[2].id]
    assert [a.id for a in store.machine_actions(mac)] == [queued[2].id, done.id]

    store.atomically(lambda tx: tx.delete_machine(mac))
    assert store.get_bmc(mac) is None and store.machine_actions(mac) == []
    assert store.get_action(queued[1].id) == queued[1]  # another machine's stays
    store.atomically(lambda tx: tx.delete_bmc(other))
    assert store.get_bmc(other) is None


def test_finished_actions_are_trimmed_open_ones_kept(store: Store) -> None:
    mac = "52:54:00:00:00:33"
    waiting = store.atomically(
        lambda tx: tx.add_action(BmcAction(mac, ActionKind.POWER_OFF, 0.5, "operator"))
    )
    for i in range(ACTIONS_KEPT + 5):

        def txn(tx, i=i):  # type: ignore[no-untyped-def]
            action = tx.add_action(BmcAction(mac, ActionKind.POWER_STATUS, 1.0 + i, "operator"))
            tx.update_action(replace(action, state=ActionState.DONE))

        store.atomically(txn)
    kept = store.machine_actions(mac, 1000)
    assert waiting.id in {a.id for a in kept}
    # Trimmed when one is added: the newest ACTIONS_KEPT finished ones, plus the one added.
    finished = [a for a in kept if a.id != waiting.id]
    assert len(finished) == ACTIONS_KEPT + 1
    assert [a.requested for a in finished] == [1.0 + i for i in range(ACTIONS_KEPT + 4, 3, -1)]


def test_discovered_machines_with_a_bmc_are_never_stale(store: Store) -> None:
    mac = "52:54:00:00:00:34"
    store.atomically(lambda tx: tx.put_machine(replace(_machine(mac), labels={})))
    assert store.atomically(lambda tx: tx.stale_discovered(10.0, 10)) == [mac]
    store.atomically(lambda tx: tx.put_bmc(StoredBmc(mac, {}, "v1:x")))
    assert store.atomically(lambda tx: tx.stale_discovered(10.0, 10)) == []


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
