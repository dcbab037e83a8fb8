"""SQLite backend of the Store: WAL, one connection per thread, versioned schema migrations."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mayu_py.model import Event, Machine, MachineState

T = TypeVar("T")

# Each entry migrates the schema from version i to i+1; never edit a shipped entry, append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE machines (
        id TEXT PRIMARY KEY,
        mac TEXT NOT NULL,
        uuid TEXT,
        serial TEXT,
        hostname TEXT,
        ip TEXT,
        labels TEXT NOT NULL DEFAULT '{}',
        profile TEXT,
        state TEXT NOT NULL,
        token_hash TEXT,
        token_consumed INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX machines_uuid ON machines(uuid);
    CREATE INDEX machines_serial ON machines(serial);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        machine_id TEXT NOT NULL,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        cause TEXT NOT NULL,
        source TEXT,
        from_state TEXT,
        to_state TEXT,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_machine ON events(machine_id, seq);
    """,
    """
    CREATE TABLE tenants (name TEXT PRIMARY KEY, record TEXT NOT NULL);
    CREATE TABLE hosts (name TEXT PRIMARY KEY, record TEXT NOT NULL);
    """,
)

_MACHINE_COLUMNS = (
    "id, mac, uuid, serial, hostname, ip, labels, profile, state, token_hash, token_consumed, "
    "created, updated"
)

_EVENT_COLUMNS = "seq, machine_id, time, kind, cause, source, from_state, to_state, details"


def _machine_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Machine:
    (mid, mac, uuid, serial, hostname, ip, labels, profile, state, token_hash, consumed, c, u) = row
    return Machine(
        id=mid,
        mac=mac,
        uuid=uuid,
        serial=serial,
        hostname=hostname,
        ip=ip,
        labels=json.loads(labels),
        profile=profile,
        state=MachineState(state),
        token_hash=token_hash,
        token_consumed=bool(consumed),
        created=c,
        updated=u,
    )


def _event_from_row(row: tuple[Any, ...]) -> Event:
    seq, machine_id, time, kind, cause, source, from_state, to_state, details = row
    return Event(
        machine_id=machine_id,
        time=time,
        kind=kind,
        cause=cause,
        source=source,
        from_state=from_state,
        to_state=to_state,
        details=json.loads(details),
        seq=seq,
    )


class _SqliteTx:
    """The Tx protocol over one open transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get_machine(self, machine_id: str) -> Machine | None:
        row = self._conn.execute(
            f"SELECT {_MACHINE_COLUMNS} FROM machines WHERE id = ?", (machine_id,)
        ).fetchone()
        return _machine_from_row(row) if row else None

    def put_machine(self, machine: Machine) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO machines ({_MACHINE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                machine.id,
                machine.mac,
                machine.uuid,
                machine.serial,
                machine.hostname,
                machine.ip,
                json.dumps(machine.labels, sort_keys=True),
                machine.profile,
                str(machine.state),
                machine.token_hash,
                int(machine.token_consumed),
                machine.created,
                machine.updated,
            ),
        )

    def delete_machine(self, machine_id: str) -> None:
        self._conn.execute("DELETE FROM events WHERE machine_id = ?", (machine_id,))
        self._conn.execute("DELETE FROM machines WHERE id = ?", (machine_id,))

    def add_event(self, event: Event) -> None:
        self._conn.execute(
            "INSERT INTO events (machine_id, time, kind, cause, source, from_state, to_state, "
            "details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.machine_id,
                event.time,
                event.kind,
                event.cause,
                event.source,
                event.from_state,
                event.to_state,
                json.dumps(event.details, sort_keys=True),
            ),
        )

    def count_machines_with_label(self, key: str, value: str) -> int:
        row = self._conn.execute(
            "SELECT COUNT(*) FROM machines WHERE json_extract(labels, ?) = ?",
            (f'$."{key}"', value),
        ).fetchone()
        return int(row[0])

    def get_tenant(self, name: str) -> dict[str, Any] | None:
        return self._get_record("tenants", name)

    def put_tenant(self, name: str, record: dict[str, Any]) -> None:
        self._put_record("tenants", name, record)

    def delete_tenant(self, name: str) -> None:
        self._conn.execute("DELETE FROM tenants WHERE name = ?", (name,))

    def list_tenants(self) -> list[dict[str, Any]]:
        return self._list_records("tenants")

    def list_hosts(self) -> list[dict[str, Any]]:
        return self._list_records("hosts")

    def put_host(self, record: dict[str, Any]) -> None:
        self._put_record("hosts", record["name"], record)

    def _get_record(self, table: str, name: str) -> dict[str, Any] | None:
        row = self._conn.execute(f"SELECT record FROM {table} WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def _put_record(self, table: str, name: str, record: dict[str, Any]) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO {table} (name, record) VALUES (?, ?)",
            (name, json.dumps(record, sort_keys=True)),
        )

    def _list_records(self, table: str) -> list[dict[str, Any]]:
        rows = self._conn.execute(f"SELECT record FROM {table} ORDER BY name").fetchall()
        return [json.loads(r[0]) for r in rows]


class SqliteStore:
    """The default Store backend: one SQLite file in WAL mode."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL keeps every committed transaction across a process crash (SIGKILL);
            # only an OS crash or power loss can lose the last commits.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def _migrate(self) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path}: schema version {version} is newer than this mayu "
                    f"({len(MIGRATIONS)}); upgrade mayu"
                )
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.path.chmod(0o600)

    @property
    def schema_version(self) -> int:
        return int(self._connect().execute("SELECT version FROM schema_version").fetchone()[0])

    def atomically(self, fn: Callable[[_SqliteTx], T]) -> T:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(_SqliteTx(conn))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def get_machine(self, machine_id: str) -> Machine | None:
        return _SqliteTx(self._connect()).get_machine(machine_id)

    def find_machine(self, *, uuid: str | None = None, serial: str | None = None) -> Machine | None:
        column, value = ("uuid", uuid) if uuid else ("serial", serial)
        if not value:
            return None
        row = (
            self._connect()
            .execute(f"SELECT {_MACHINE_COLUMNS} FROM machines WHERE {column} = ?", (value,))
            .fetchone()
        )
        return _machine_from_row(row) if row else None

    def list_machines(self) -> list[Machine]:
        rows = self._connect().execute(f"SELECT {_MACHINE_COLUMNS} FROM machines ORDER BY id")
        return [_machine_from_row(r) for r in rows.fetchall()]

    def machines_with_label(self, key: str, value: str) -> list[Machine]:
        rows = self._connect().execute(
            f"SELECT {_MACHINE_COLUMNS} FROM machines WHERE json_extract(labels, ?) = ? "
            "ORDER BY created, id",
            (f'$."{key}"', value),
        )
        return [_machine_from_row(r) for r in rows.fetchall()]

    def unknown_events(self, limit: int = 100) -> list[Event]:
        """Latest events of machines that have no record (e.g. denied unknown machines)."""
        rows = self._connect().execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE machine_id NOT IN "
            "(SELECT id FROM machines) ORDER BY seq DESC LIMIT ?",
            (limit,),
        )
        return [_event_from_row(r) for r in rows.fetchall()]

    def events(self, machine_id: str) -> list[Event]:
        rows = self._connect().execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE machine_id = ? ORDER BY seq",
            (machine_id,),
        )
        return [_event_from_row(r) for r in rows.fetchall()]

    def list_tenants(self) -> list[dict[str, Any]]:
        return _SqliteTx(self._connect()).list_tenants()

    def get_tenant(self, name: str) -> dict[str, Any] | None:
        return _SqliteTx(self._connect()).get_tenant(name)

    def list_hosts(self) -> list[dict[str, Any]]:
        return _SqliteTx(self._connect()).list_hosts()

    def ping(self) -> None:
        self._connect().execute("SELECT 1").fetchone()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
