"""The Store contract suite against SQLite, plus what only SQLite has (schema migrations,
file damage). The same suite runs against etcd in tests/peers/test_store_etcd.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mayu_py.model import LabelTerm
from mayu_py.store import Store
from mayu_py.store.errors import StoreUnavailable
from mayu_py.store.sqlite import MIGRATIONS, SqliteStore, _page_query
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


def test_sqlite_migration_indexes_the_labels_already_stored(tmp_path: Path) -> None:
    """A store written before the label index (schema 9) answers selectors after opening."""
    path = tmp_path / "inv.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (9)")
    for script in MIGRATIONS[:9]:
        conn.executescript(script)
    conn.execute(
        "INSERT INTO machines (id, mac, hostname, labels, state, created, updated) VALUES "
        "('52:54:00:00:00:07', '52:54:00:00:00:07', 'n7', '{\"rack\": \"r1\"}', 'running', 1, 1)"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    assert store.schema_version == 10
    found = store.machines_after(None, 10, None, [LabelTerm("rack", "=", "r1")])
    assert [m.id for m in found] == ["52:54:00:00:00:07"]
    store.close()


@pytest.mark.parametrize(
    "selector",
    [
        [],
        [LabelTerm("rack", "=", "r1")],
        [LabelTerm("gpu", "exists"), LabelTerm("rack", "!=", "r1")],
        [LabelTerm("rack", "!=", "r1"), LabelTerm("gpu", "!exists")],
        [LabelTerm("rack", "=", "r1"), LabelTerm("gpu", "=", "yes"), LabelTerm("x", "!exists")],
    ],
    ids=["state", "equal", "exists", "negative", "several"],
)
def test_sqlite_selector_pages_walk_indexes_in_id_order(
    tmp_path: Path, selector: list[LabelTerm]
) -> None:
    """No table scan and no sort: a page reads its rows in id order from an index, so its
    cost does not grow with the inventory (only with the rows a sparse term skips)."""
    store = SqliteStore(tmp_path / "inv.sqlite3")
    sql, args = _page_query("52:54:00:00:00:01", 500, "running", selector)
    plan = [row[3] for row in store._connect().execute(f"EXPLAIN QUERY PLAN {sql}", args)]
    assert not [step for step in plan if step.startswith("SCAN") or "TEMP B-TREE" in step], plan
    store.close()
