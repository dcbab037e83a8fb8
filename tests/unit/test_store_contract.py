"""The Store contract suite against SQLite, plus what only SQLite has (schema migrations,
file damage). The same suite runs against etcd in tests/peers/test_store_etcd.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mayu_py.model import Event
from mayu_py.store import Store
from mayu_py.store.errors import StoreUnavailable
from mayu_py.store.sqlite import MIGRATIONS, SqliteStore
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
