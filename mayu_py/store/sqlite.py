"""SQLite backend of the Store: WAL, one connection per thread, versioned schema migrations."""

from __future__ import annotations

import itertools
import json
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mayu_py.bmc.records import BmcAction, StoredBmc
from mayu_py.errors import Conflict
from mayu_py.model import (
    REFUSAL_EVENTS,
    AgentCredential,
    Event,
    LabelTerm,
    Machine,
    MachineState,
    PendingConfig,
    User,
)
from mayu_py.store import TxObserver, TxOutcome, observed, sqlite_writer
from mayu_py.store.errors import StoreUnavailable
from mayu_py.store.sqlite_bmc import BmcRows
from mayu_py.store.sqlite_users import UserRows
from mayu_py.tenants import HostInfo, TenantRecord

T = TypeVar("T")

# Numbers the connections this process opens (a state version names its connection).
_CONNECTIONS = itertools.count()

# How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_SECONDS = 5.0
# Readiness: a store that cannot take a write within this long is not ready.
PING_TIMEOUT_SECONDS = 1.0

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
    """
    ALTER TABLE machines ADD COLUMN window_expires REAL;
    ALTER TABLE machines ADD COLUMN window_address TEXT;
    ALTER TABLE machines ADD COLUMN report_hash TEXT;
    ALTER TABLE machines ADD COLUMN registered_from TEXT;
    ALTER TABLE machines ADD COLUMN role TEXT;
    UPDATE machines SET role = json_extract(labels, '$.role');
    DROP INDEX machines_uuid;
    DROP INDEX machines_serial;
    CREATE INDEX machines_window ON machines(window_expires) WHERE window_expires IS NOT NULL;
    CREATE INDEX machines_state ON machines(state, updated);
    CREATE INDEX machines_registered ON machines(registered_from, created);
    CREATE INDEX machines_created ON machines(created);
    CREATE INDEX machines_role ON machines(role);
    CREATE UNIQUE INDEX machines_hostname ON machines(hostname);
    CREATE TABLE pending_configs (
        machine_id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        body BLOB NOT NULL,
        sha512 TEXT NOT NULL,
        report_hash TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE alerts (
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
    INSERT INTO alerts (machine_id, time, kind, cause, source, from_state, to_state, details)
        SELECT machine_id, time, kind, cause, source, from_state, to_state, details
        FROM events WHERE machine_id NOT IN (SELECT id FROM machines) ORDER BY seq;
    DELETE FROM events WHERE machine_id NOT IN (SELECT id FROM machines);
    CREATE TABLE probe (id INTEGER PRIMARY KEY, time REAL NOT NULL);
    """,
    """
    ALTER TABLE pending_configs ADD COLUMN agent_token_hash TEXT NOT NULL DEFAULT '';
    CREATE TABLE agent_credentials (
        host TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        origin TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    """,
    """
    CREATE TABLE bmcs (
        machine_id TEXT PRIMARY KEY,
        settings TEXT NOT NULL,
        sealed_password TEXT NOT NULL,
        disk_after_install INTEGER NOT NULL DEFAULT 0,
        updated REAL NOT NULL
    );
    CREATE TABLE bmc_actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        machine_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        requested REAL NOT NULL,
        cause TEXT NOT NULL,
        source TEXT,
        started REAL,
        finished REAL,
        result TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        error_kind TEXT
    );
    CREATE INDEX bmc_actions_open ON bmc_actions(state, id);
    CREATE INDEX bmc_actions_machine ON bmc_actions(machine_id, id);
    """,
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    """,
    """
    CREATE TABLE shared (name TEXT PRIMARY KEY, record TEXT NOT NULL);
    """,
    # Registrations per second, counted as machines are inserted (source '' counts them all):
    # the discovery rate limits sum at most ~60 rows instead of counting every machine
    # registered in the last minute. Counts older than two minutes go (every source's, by the
    # second index), so the table holds at most two minutes of registrations.
    """
    CREATE TABLE registrations (
        source TEXT NOT NULL,
        second INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (source, second)
    ) WITHOUT ROWID;
    CREATE INDEX registrations_second ON registrations(second);
    INSERT INTO registrations (source, second, count)
        SELECT '', CAST(created AS INTEGER), COUNT(*) FROM machines
        WHERE created > unixepoch() - 120 GROUP BY CAST(created AS INTEGER);
    INSERT INTO registrations (source, second, count)
        SELECT registered_from, CAST(created AS INTEGER), COUNT(*) FROM machines
        WHERE created > unixepoch() - 120 AND registered_from IS NOT NULL
        GROUP BY registered_from, CAST(created AS INTEGER);
    CREATE TRIGGER machines_registrations AFTER INSERT ON machines BEGIN
        INSERT INTO registrations (source, second, count)
            VALUES ('', CAST(NEW.created AS INTEGER), 1)
            ON CONFLICT DO UPDATE SET count = count + 1;
        INSERT INTO registrations (source, second, count)
            SELECT NEW.registered_from, CAST(NEW.created AS INTEGER), 1
            WHERE NEW.registered_from IS NOT NULL
            ON CONFLICT DO UPDATE SET count = count + 1;
        DELETE FROM registrations WHERE second < CAST(NEW.created AS INTEGER) - 120;
    END;
    """,
    """
    ALTER TABLE agent_credentials ADD COLUMN underlay TEXT NOT NULL DEFAULT '';
    """,
    # Every machine's labels, one row each, kept by triggers from `machines.labels`: a label
    # selector is answered from these indexes (by key and value, by key, by machine) instead
    # of decoding every machine's labels. Machines by state in id order: a page of one state.
    """
    CREATE INDEX machines_state_id ON machines(state, id);
    CREATE TABLE machine_labels (
        machine_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (machine_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX machine_labels_value ON machine_labels(key, value, machine_id);
    CREATE INDEX machine_labels_key ON machine_labels(key, machine_id);
    INSERT INTO machine_labels (machine_id, key, value)
        SELECT machines.id, labels.key, labels.value FROM machines, json_each(machines.labels)
        AS labels;
    CREATE TRIGGER machines_labels_insert AFTER INSERT ON machines BEGIN
        INSERT INTO machine_labels (machine_id, key, value)
            SELECT NEW.id, key, value FROM json_each(NEW.labels);
    END;
    CREATE TRIGGER machines_labels_update AFTER UPDATE OF labels ON machines
    WHEN NEW.labels IS NOT OLD.labels BEGIN
        DELETE FROM machine_labels WHERE machine_id = OLD.id;
        INSERT INTO machine_labels (machine_id, key, value)
            SELECT NEW.id, key, value FROM json_each(NEW.labels);
    END;
    CREATE TRIGGER machines_labels_delete AFTER DELETE ON machines BEGIN
        DELETE FROM machine_labels WHERE machine_id = OLD.id;
    END;
    """,
)

_MACHINE_COLUMNS = (
    "id, mac, uuid, serial, hostname, ip, labels, profile, state, token_hash, token_consumed, "
    "window_expires, window_address, report_hash, registered_from, created, updated"
)
_UPDATED_COLUMNS = [c.strip() for c in _MACHINE_COLUMNS.split(",") if c.strip() != "id"] + ["role"]
_MACHINE_PLACEHOLDERS = ", ".join("?" * (_MACHINE_COLUMNS.count(",") + 1))

_PUT_MACHINE = (
    f"INSERT INTO machines ({_MACHINE_COLUMNS}, role) VALUES ({_MACHINE_PLACEHOLDERS}, ?) "
    "ON CONFLICT(id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _UPDATED_COLUMNS)
)
_GET_MACHINE = f"SELECT {_MACHINE_COLUMNS} FROM machines WHERE id = ?"

_REFUSALS = "(" + ", ".join(f"'{kind}'" for kind in sorted(REFUSAL_EVENTS)) + ")"
# The retention DELETE of one machine's events, by budget (refusals: True, the rest: False).
_TRIM_EVENTS = {
    refusals: f"DELETE FROM events WHERE machine_id = ? AND {budget} AND seq <= (SELECT seq "
    f"FROM events WHERE machine_id = ? AND {budget} ORDER BY seq DESC LIMIT 1 OFFSET ?)"
    for refusals, budget in ((True, f"kind IN {_REFUSALS}"), (False, f"kind NOT IN {_REFUSALS}"))
}
_EVENT_COLUMNS = "seq, machine_id, time, kind, cause, source, from_state, to_state, details"


# A selector term tested on the machine at hand: its label's value (NULL when unset) against
# the term (an unset label differs from every value).
_TERM_TESTS = {"=": "= ?", "!=": "IS NOT ?", "exists": "IS NOT NULL", "!exists": "IS NULL"}
_MACHINE_ROWS = ", ".join(f"machines.{c.strip()}" for c in _MACHINE_COLUMNS.split(","))


def _page_query(
    after: str, limit: int, state: str | None, selector: Sequence[LabelTerm]
) -> tuple[str, list[Any]]:
    """The SELECT of a page of machines (and its arguments): walked in id order from the
    primary key (or the state index), or from the label index of one term when the selector
    has an `=` or an `exists` term."""
    lead = next((t for t in selector if t.op == "="), None) or next(
        (t for t in selector if t.op == "exists"), None
    )
    args: list[Any] = []
    if lead is None:
        source, order, where = "machines", "machines.id", ["machines.id > ?"]
    else:
        source = "machine_labels AS lead JOIN machines ON machines.id = lead.machine_id"
        order, where = "lead.machine_id", ["lead.key = ?"]
        args.append(lead.key)
        if lead.op == "=":
            where.append("lead.value = ?")
            args.append(lead.value)
        where.append("lead.machine_id > ?")
    args.append(after)
    if state is not None:  # by index when it leads (a `+` keeps it from leading otherwise)
        where.append("machines.state = ?" if lead is None else "+machines.state = ?")
        args.append(state)
    for term in selector:
        if term is lead:
            continue
        where.append(
            "(SELECT value FROM machine_labels WHERE machine_id = machines.id AND key = ?) "
            + _TERM_TESTS[term.op]
        )
        args += [term.key, term.value] if term.op in ("=", "!=") else [term.key]
    args.append(limit)
    sql = (
        f"SELECT {_MACHINE_ROWS} FROM {source} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
    )
    return sql, args


def _statements(script: str) -> list[str]:
    """The SQL statements of a migration script (a trigger's body holds semicolons too)."""
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    return statements


def _machine_from_row(row: tuple[Any, ...]) -> Machine:
    (mid, mac, uuid, serial, hostname, ip, labels, profile, state, token_hash, consumed) = row[:11]
    window_expires, window_address, report_hash, registered_from, created, updated = row[11:]
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
        window_expires=window_expires,
        window_address=window_address,
        report_hash=report_hash,
        registered_from=registered_from,
        created=created,
        updated=updated,
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


def _outcome(exc: BaseException) -> TxOutcome:
    """How a transaction that raised `exc` ended."""
    if isinstance(exc, Conflict):
        return "conflict"
    if isinstance(exc, StoreUnavailable):
        code = getattr(exc.__cause__, "sqlite_errorcode", 0) & 0xFF
        return "busy" if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) else "error"
    return "rolled_back"


def _event_values(event: Event) -> tuple[Any, ...]:
    return (
        event.machine_id,
        event.time,
        event.kind,
        event.cause,
        event.source,
        event.from_state,
        event.to_state,
        json.dumps(event.details, sort_keys=True),
    )


class _SqliteTx(BmcRows, UserRows):
    """The Tx protocol over one open transaction."""

    def __init__(self, conn: sqlite3.Connection, events_kept: int, alerts_kept: int) -> None:
        self._conn = conn
        self._events_kept = events_kept
        self._alerts_kept = alerts_kept
        # (machine, refusal budget) whose events grew in this transaction: trimmed once each
        # before it commits, not once per event.
        self._to_trim: set[tuple[str, bool]] = set()

    # -- machines ---------------------------------------------------------------------------

    def get_machine(self, machine_id: str) -> Machine | None:
        row = self._conn.execute(_GET_MACHINE, (machine_id,)).fetchone()
        return _machine_from_row(row) if row else None

    def put_machine(self, machine: Machine) -> None:
        """Insert or update by id; a hostname another machine has is a Conflict (409)."""
        try:
            self._conn.execute(
                _PUT_MACHINE,
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
                    machine.window_expires,
                    machine.window_address,
                    machine.report_hash,
                    machine.registered_from,
                    machine.created,
                    machine.updated,
                    machine.role,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(
                "hostname taken by another machine", {"hostname": machine.hostname}
            ) from exc

    def delete_machine(self, machine_id: str) -> None:
        for table, column in (
            ("machines", "id"),
            ("events", "machine_id"),
            ("pending_configs", "machine_id"),
            ("bmcs", "machine_id"),
            ("bmc_actions", "machine_id"),
        ):
            self._conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (machine_id,))

    def hostname_owner(self, hostname: str) -> str | None:
        row = self._conn.execute(
            "SELECT id FROM machines WHERE hostname = ?", (hostname,)
        ).fetchone()
        return row[0] if row else None

    def count_with_role(self, role: str) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM machines WHERE role = ?", (role,))
        return int(row.fetchone()[0])

    def registrations_since(self, since: float, source: str | None, limit: int) -> int:
        """How many machines were registered after `since` (from `source`, when given; at
        most 120 s ago), up to `limit`: the machines of the second `since` falls in one by
        one (index range), whole seconds after it from the per-second counts."""
        whole = math.floor(since) + 1
        if source is None:
            edge = "SELECT 1 FROM machines WHERE created > ? AND created < ? LIMIT ?"
            args: tuple[Any, ...] = (since, whole, limit, "", whole)
        else:
            edge = (
                "SELECT 1 FROM machines WHERE registered_from = ? AND created > ? "
                "AND created < ? LIMIT ?"
            )
            args = (source, since, whole, limit, source, whole)
        row = self._conn.execute(
            f"SELECT (SELECT COUNT(*) FROM ({edge})) + (SELECT COALESCE(SUM(count), 0) "
            "FROM registrations WHERE source = ? AND second >= ?)",
            args,
        ).fetchone()
        return min(int(row[0]), limit)

    def expired_windows(self, now: float, limit: int) -> list[Machine]:
        rows = self._conn.execute(
            f"SELECT {_MACHINE_COLUMNS} FROM machines WHERE window_expires IS NOT NULL "
            "AND window_expires <= ? ORDER BY window_expires LIMIT ?",
            (now, limit),
        ).fetchall()
        return [_machine_from_row(r) for r in rows]

    def stale_discovered(self, before: float, limit: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT id FROM machines WHERE state = ? AND updated < ? "
            "AND id NOT IN (SELECT machine_id FROM bmcs) LIMIT ?",
            (str(MachineState.DISCOVERED), before, limit),
        ).fetchall()
        return [r[0] for r in rows]

    # -- events and alerts ------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        """Record an event of a machine; only its newest `events_kept` are kept, counted
        apart for refusals (REFUSAL_EVENTS) and for the rest, so refusals anyone can cause
        never push the machine's own history out."""
        self._conn.execute(
            "INSERT INTO events (machine_id, time, kind, cause, source, from_state, to_state, "
            "details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            _event_values(event),
        )
        self._to_trim.add((event.machine_id, event.kind in REFUSAL_EVENTS))

    def restore_event(self, event: Event) -> None:
        """Events are numbered across machines here: an event keeps its number when no
        other has it and it is above the machine's newest (a backup of SQLite), else it gets
        the next one (a backup of etcd, numbered per machine; the order stays)."""
        conn = self._conn
        if conn.execute(
            "SELECT 1 FROM events WHERE machine_id = ? AND time = ? AND kind = ? AND cause = ?",
            (event.machine_id, event.time, event.kind, event.cause),
        ).fetchone():
            return
        newest = conn.execute(
            "SELECT MAX(seq) FROM events WHERE machine_id = ?", (event.machine_id,)
        ).fetchone()[0]
        taken = (newest or 0) >= (event.seq or 0) or conn.execute(
            "SELECT 1 FROM events WHERE seq = ?", (event.seq,)
        ).fetchone()
        conn.execute(
            "INSERT INTO events (seq, machine_id, time, kind, cause, source, from_state, "
            "to_state, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (None if taken else event.seq, *_event_values(event)),
        )
        self._to_trim.add((event.machine_id, event.kind in REFUSAL_EVENTS))

    def trim_events(self) -> None:
        """Keep the newest `events_kept` events of each machine (and budget) that got events
        in this transaction: run once, before it commits."""
        for machine_id, refusals in self._to_trim:
            self._conn.execute(_TRIM_EVENTS[refusals], (machine_id, machine_id, self._events_kept))
        self._to_trim.clear()

    def add_alert(self, event: Event) -> None:
        """Record an event about no enrolled machine (unknown MAC, refused request); only the
        newest `alerts_kept` are kept."""
        cursor = self._conn.execute(
            "INSERT INTO alerts (machine_id, time, kind, cause, source, from_state, to_state, "
            "details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            _event_values(event),
        )
        self._conn.execute(
            "DELETE FROM alerts WHERE seq <= ?", ((cursor.lastrowid or 0) - self._alerts_kept,)
        )

    # -- pending secret configs -------------------------------------------------------------

    def put_pending_config(self, pending: PendingConfig) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO pending_configs (machine_id, token_hash, body, sha512, "
            "report_hash, created, agent_token_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                pending.machine_id,
                pending.token_hash,
                pending.body,
                pending.sha512,
                pending.report_hash,
                pending.created,
                pending.agent_token_hash,
            ),
        )

    def get_pending_config(self, machine_id: str) -> PendingConfig | None:
        row = self._conn.execute(
            "SELECT machine_id, token_hash, body, sha512, report_hash, created, "
            "agent_token_hash FROM pending_configs WHERE machine_id = ?",
            (machine_id,),
        ).fetchone()
        if row is None:
            return None
        mid, token_hash, body, sha512, report_hash, created, agent_hash = row
        return PendingConfig(mid, token_hash, bytes(body), sha512, report_hash, created, agent_hash)

    # -- agent credentials ------------------------------------------------------------------

    def get_agent_credential(self, host: str) -> AgentCredential | None:
        row = self._conn.execute(
            "SELECT host, token_hash, origin, revoked, created, updated, underlay "
            "FROM agent_credentials WHERE host = ?",
            (host,),
        ).fetchone()
        if row is None:
            return None
        name, token_hash, origin, revoked, created, updated, underlay = row
        return AgentCredential(name, token_hash, origin, bool(revoked), created, updated, underlay)

    def put_agent_credential(self, credential: AgentCredential) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO agent_credentials (host, token_hash, origin, revoked, "
            "created, updated, underlay) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                credential.host,
                credential.token_hash,
                credential.origin,
                int(credential.revoked),
                credential.created,
                credential.updated,
                credential.underlay,
            ),
        )

    def list_agent_credentials(self) -> list[AgentCredential]:
        rows = self._conn.execute("SELECT host FROM agent_credentials ORDER BY host").fetchall()
        return [c for (host,) in rows if (c := self.get_agent_credential(host)) is not None]

    def delete_host(self, name: str) -> None:
        self._conn.execute("DELETE FROM hosts WHERE name = ?", (name,))

    def machine_named(self, hostname: str) -> Machine | None:
        row = self._conn.execute(
            f"SELECT {_MACHINE_COLUMNS} FROM machines WHERE hostname = ?", (hostname,)
        ).fetchone()
        return _machine_from_row(row) if row else None

    def delete_pending_config(self, machine_id: str) -> None:
        self._conn.execute("DELETE FROM pending_configs WHERE machine_id = ?", (machine_id,))

    def probe(self) -> None:
        """A write that proves the store can commit (readiness)."""
        self._conn.execute("INSERT OR REPLACE INTO probe (id, time) VALUES (1, julianday())")

    # -- tenants and hosts ------------------------------------------------------------------

    def get_tenant(self, name: str) -> TenantRecord | None:
        data = self._get_record("tenants", name)
        return TenantRecord.from_json(data) if data is not None else None

    def put_tenant(self, record: TenantRecord) -> None:
        self._put_record("tenants", record.name, record.to_json())

    def delete_tenant(self, name: str) -> None:
        self._conn.execute("DELETE FROM tenants WHERE name = ?", (name,))

    def list_tenants(self) -> list[TenantRecord]:
        return [TenantRecord.from_json(data) for data in self._list_records("tenants")]

    def list_hosts(self) -> list[HostInfo]:
        return [HostInfo.from_json(data) for data in self._list_records("hosts")]

    def put_host(self, host: HostInfo) -> None:
        self._put_record("hosts", host.name, host.to_json())

    def get_shared(self, name: str) -> dict[str, Any] | None:
        return self._get_record("shared", name)

    def put_shared(self, name: str, record: dict[str, Any]) -> None:
        self._put_record("shared", name, record)

    def delete_shared(self, name: str) -> None:
        self._conn.execute("DELETE FROM shared WHERE name = ?", (name,))

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

    def __init__(
        self,
        path: Path,
        events_kept: int = 200,
        alerts_kept: int = 1000,
        observer: TxObserver | None = None,
    ) -> None:
        self.path = Path(path)
        self.events_kept = events_kept
        self.alerts_kept = alerts_kept
        self._observer = observer
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise StoreUnavailable.from_error(self.path, exc) from exc

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid != os.getpid():
            # Inherited through fork (a preloaded gunicorn app): SQLite connections and the
            # writer lock's open file must not be shared with the parent; open our own.
            conn = None
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL keeps every committed transaction across a process crash (SIGKILL);
            # only an OS crash or power loss can lose the last commits.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            sqlite_writer.prepare(conn)
            self._local.serial = next(_CONNECTIONS)
            self._local.writer = sqlite_writer.WriterLock(self.path)
            self._local.pid = os.getpid()
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
                raise StoreUnavailable(
                    f"store {self.path}: schema version {version} is newer than this mayu "
                    f"({len(MIGRATIONS)}); upgrade mayu",
                    {"path": str(self.path)},
                )
            for script in MIGRATIONS[version:]:
                for statement in _statements(script):
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

    def _tx(self, conn: sqlite3.Connection) -> _SqliteTx:
        return _SqliteTx(conn, self.events_kept, self.alerts_kept)

    def atomically(self, fn: Callable[[_SqliteTx], T]) -> T:
        return observed(self._observer, _outcome, self._transaction, fn)

    def _transaction(self, fn: Callable[[_SqliteTx], T]) -> T:
        conn = self._connect()
        writer: sqlite_writer.WriterLock = self._local.writer
        writer.acquire()
        committed = False
        try:
            result = self._locked_transaction(conn, fn)
            committed = True
        finally:
            due = writer.release(committed)
        if due:
            sqlite_writer.checkpoint(conn)
        return result

    def _locked_transaction(self, conn: sqlite3.Connection, fn: Callable[[_SqliteTx], T]) -> T:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable.from_error(self.path, exc) from exc
        try:
            tx = self._tx(conn)
            result = fn(tx)
            tx.trim_events()
        except sqlite3.OperationalError as exc:
            conn.execute("ROLLBACK")
            raise StoreUnavailable.from_error(self.path, exc) from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.execute("ROLLBACK")
            raise StoreUnavailable.from_error(self.path, exc) from exc
        return result

    def get_machine(self, machine_id: str) -> Machine | None:
        return self._tx(self._connect()).get_machine(machine_id)

    def state_version(self) -> tuple[int, int, int]:
        """This thread's connection (its number in the process), SQLite's `data_version` on
        it (moves when any other connection, in any process, commits) and its own commits
        (which `data_version` does not count)."""
        conn = self._connect()
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        return self._local.serial, version, self._local.writer.commits

    def list_machines(self, state: str | None = None) -> list[Machine]:
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        rows = self._connect().execute(
            f"SELECT {_MACHINE_COLUMNS} FROM machines {where} ORDER BY id", args
        )
        return [_machine_from_row(r) for r in rows.fetchall()]

    def machines_after(
        self,
        after: str | None,
        limit: int,
        state: str | None = None,
        selector: Sequence[LabelTerm] = (),
    ) -> list[Machine]:
        """By the primary key from `after` on, or with a label selector by the label index
        of its first `=` (else `exists`) term, which is in machine id order too; a state and
        the other terms filter the rows it walks (each term one lookup by machine and key)."""
        sql, args = _page_query(after or "", limit, state, selector)
        rows = self._connect().execute(sql, args)
        return [_machine_from_row(r) for r in rows.fetchall()]

    def machine_counts(self) -> dict[str, int]:
        rows = self._connect().execute("SELECT state, COUNT(*) FROM machines GROUP BY state")
        return {state: int(count) for state, count in rows.fetchall()}

    def machines_with_role(self, role: str) -> list[Machine]:
        rows = self._connect().execute(
            f"SELECT {_MACHINE_COLUMNS} FROM machines WHERE role = ? ORDER BY created, id",
            (role,),
        )
        return [_machine_from_row(r) for r in rows.fetchall()]

    def alerts(self, limit: int = 100) -> list[Event]:
        """The newest events about no enrolled machine, newest first."""
        rows = self._connect().execute(
            f"SELECT {_EVENT_COLUMNS} FROM alerts ORDER BY seq DESC LIMIT ?", (limit,)
        )
        return [_event_from_row(r) for r in rows.fetchall()]

    def events(self, machine_id: str) -> list[Event]:
        rows = self._connect().execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE machine_id = ? ORDER BY seq",
            (machine_id,),
        )
        return [_event_from_row(r) for r in rows.fetchall()]

    def get_pending_config(self, machine_id: str) -> PendingConfig | None:
        return self._tx(self._connect()).get_pending_config(machine_id)

    def machine_and_pending(self, machine_id: str) -> tuple[Machine | None, PendingConfig | None]:
        conn = self._connect()
        tx = self._tx(conn)
        conn.execute("BEGIN")  # deferred: a read snapshot (WAL), no write lock
        try:
            return tx.get_machine(machine_id), tx.get_pending_config(machine_id)
        finally:
            conn.execute("COMMIT")

    def get_agent_credential(self, host: str) -> AgentCredential | None:
        return self._tx(self._connect()).get_agent_credential(host)

    def machine_named(self, hostname: str) -> Machine | None:
        return self._tx(self._connect()).machine_named(hostname)

    def list_agent_credentials(self) -> list[AgentCredential]:
        return self._tx(self._connect()).list_agent_credentials()

    def list_tenants(self) -> list[TenantRecord]:
        return self._tx(self._connect()).list_tenants()

    def get_tenant(self, name: str) -> TenantRecord | None:
        return self._tx(self._connect()).get_tenant(name)

    def list_hosts(self) -> list[HostInfo]:
        return self._tx(self._connect()).list_hosts()

    def get_bmc(self, machine_id: str) -> StoredBmc | None:
        return self._tx(self._connect()).get_bmc(machine_id)

    def get_action(self, action_id: int) -> BmcAction | None:
        return self._tx(self._connect()).get_action(action_id)

    def machine_actions(self, machine_id: str, limit: int = 50) -> list[BmcAction]:
        return self._tx(self._connect()).machine_actions(machine_id, limit)

    def get_shared(self, name: str) -> dict[str, Any] | None:
        return self._tx(self._connect()).get_shared(name)

    def shared_names(self) -> list[str]:
        rows = self._connect().execute("SELECT name FROM shared ORDER BY name")
        return [r[0] for r in rows.fetchall()]

    def bmc_ids(self) -> list[str]:
        rows = self._connect().execute("SELECT machine_id FROM bmcs ORDER BY machine_id")
        return [r[0] for r in rows.fetchall()]

    def action_ids(self) -> list[int]:
        rows = self._connect().execute("SELECT id FROM bmc_actions ORDER BY id")
        return [int(r[0]) for r in rows.fetchall()]

    def get_user(self, name: str) -> User | None:
        return self._tx(self._connect()).get_user(name)

    def list_users(self) -> list[User]:
        return self._tx(self._connect()).list_users()

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store can commit a write right now."""

        conn = self._connect()
        conn.execute(f"PRAGMA busy_timeout={int(PING_TIMEOUT_SECONDS * 1000)}")
        try:
            self.atomically(lambda tx: tx.probe())
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.writer.close()
            self._local.conn = None
