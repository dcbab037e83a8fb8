"""The Store contract suite against SQLite, plus what only SQLite has (schema migrations,
file damage). The same suite runs against etcd in tests/peers/test_store_etcd.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mayu_py.store import Store
from mayu_py.store.errors import StoreUnavailable
from mayu_py.store.sqlite import MIGRATIONS, SqliteStore
from tests.support.store_contract import *  # noqa: F403
from tests.support.store_contract import _machine


def _opener(path: Path) -> Iterator[Callable[..., Store]]:
    opened: list[SqliteStore] = []

    def open_(events_kept: int = 200, alerts_kept: int = 1000) -> Store:
        opened.append(SqliteStore(path, events_kept, alerts_kept))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def open_backend(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    yield from _opener(tmp_path / "inv.sqlite3")


@pytest.fixture
def empty_backend(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    yield from _opener(tmp_path / "other.sqlite3")


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
