"""SQLite rows of BMC records and BMC actions (tables `bmcs`, `bmc_actions`).

Mixed into the SQLite transaction class: the same connection, the same transaction. A
machine keeps its newest `ACTIONS_KEPT` finished actions; open ones are never trimmed.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from mayu_py.bmc.records import ACTIONS_KEPT, ActionKind, ActionState, BmcAction, StoredBmc

_ACTION_COLUMNS = (
    "id, machine_id, kind, state, requested, cause, source, started, finished, result, error, "
    "error_kind"
)
_FINISHED = tuple(str(s) for s in (ActionState.DONE, ActionState.FAILED))
_OPEN = tuple(str(s) for s in (ActionState.QUEUED, ActionState.RUNNING))


def _action_from_row(row: tuple[Any, ...]) -> BmcAction:
    (aid, machine_id, kind, state, requested, cause, source, started, finished, result,
     error, error_kind) = row  # fmt: skip
    return BmcAction(
        id=aid,
        machine_id=machine_id,
        kind=ActionKind(kind),
        state=ActionState(state),
        requested=requested,
        cause=cause,
        source=source,
        started=started,
        finished=finished,
        result=json.loads(result),
        error=error,
        error_kind=error_kind,
    )


def _action_values(action: BmcAction) -> tuple[Any, ...]:
    return (
        action.machine_id,
        str(action.kind),
        str(action.state),
        action.requested,
        action.cause,
        action.source,
        action.started,
        action.finished,
        json.dumps(action.result, sort_keys=True),
        action.error,
        action.error_kind,
    )


class BmcRows:
    """The BMC part of the Tx protocol over `self._conn`."""

    _conn: sqlite3.Connection

    def get_bmc(self, machine_id: str) -> StoredBmc | None:
        row = self._conn.execute(
            "SELECT machine_id, settings, sealed_password, disk_after_install, updated "
            "FROM bmcs WHERE machine_id = ?",
            (machine_id,),
        ).fetchone()
        if row is None:
            return None
        mid, settings, sealed, disk_after_install, updated = row
        return StoredBmc(mid, json.loads(settings), sealed, bool(disk_after_install), updated)

    def put_bmc(self, bmc: StoredBmc) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO bmcs (machine_id, settings, sealed_password, "
            "disk_after_install, updated) VALUES (?, ?, ?, ?, ?)",
            (
                bmc.machine_id,
                json.dumps(bmc.settings, sort_keys=True),
                bmc.sealed_password,
                int(bmc.disk_after_install),
                bmc.updated,
            ),
        )

    def delete_bmc(self, machine_id: str) -> None:
        self._conn.execute("DELETE FROM bmcs WHERE machine_id = ?", (machine_id,))

    def add_action(self, action: BmcAction) -> BmcAction:
        """Queue an action; returns it with its id. Old finished ones of the machine go."""
        cursor = self._conn.execute(
            f"INSERT INTO bmc_actions ({_ACTION_COLUMNS}) VALUES (NULL, "
            + ", ".join("?" * 11)
            + ")",
            _action_values(action),
        )
        self._conn.execute(
            "DELETE FROM bmc_actions WHERE machine_id = ? AND state IN (?, ?) AND id <= "
            "(SELECT id FROM bmc_actions WHERE machine_id = ? AND state IN (?, ?) "
            "ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (action.machine_id, *_FINISHED, action.machine_id, *_FINISHED, ACTIONS_KEPT),
        )
        return BmcAction(**{**action.__dict__, "id": cursor.lastrowid})

    def get_action(self, action_id: int) -> BmcAction | None:
        row = self._conn.execute(
            f"SELECT {_ACTION_COLUMNS} FROM bmc_actions WHERE id = ?", (action_id,)
        ).fetchone()
        return _action_from_row(row) if row else None

    def update_action(self, action: BmcAction) -> None:
        self._conn.execute(
            "UPDATE bmc_actions SET machine_id = ?, kind = ?, state = ?, requested = ?, "
            "cause = ?, source = ?, started = ?, finished = ?, result = ?, error = ?, "
            "error_kind = ? WHERE id = ?",
            (*_action_values(action), action.id),
        )

    def open_actions(self, limit: int) -> list[BmcAction]:
        """Queued and running actions, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_ACTION_COLUMNS} FROM bmc_actions WHERE state IN (?, ?) ORDER BY id LIMIT ?",
            (*_OPEN, limit),
        ).fetchall()
        return [_action_from_row(r) for r in rows]

    def machine_actions(self, machine_id: str, limit: int) -> list[BmcAction]:
        """A machine's newest actions, newest first."""
        rows = self._conn.execute(
            f"SELECT {_ACTION_COLUMNS} FROM bmc_actions WHERE machine_id = ? "
            "ORDER BY id DESC LIMIT ?",
            (machine_id, limit),
        ).fetchall()
        return [_action_from_row(r) for r in rows]
