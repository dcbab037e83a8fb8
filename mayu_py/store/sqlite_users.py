"""SQLite rows of users (table `users`): the people who operate the server, tokens hashed.

Mixed into the SQLite transaction class: the same connection, the same transaction.
"""

from __future__ import annotations

import sqlite3

from mayu_py.model import User

_USER_COLUMNS = "name, token_hash, created, updated"


class UserRows:
    """The user part of the Tx protocol over `self._conn`."""

    _conn: sqlite3.Connection

    def get_user(self, name: str) -> User | None:
        row = self._conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)
        ).fetchone()
        return User(*row) if row else None

    def put_user(self, user: User) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?)",
            (user.name, user.token_hash, user.created, user.updated),
        )

    def delete_user(self, name: str) -> None:
        self._conn.execute("DELETE FROM users WHERE name = ?", (name,))

    def list_users(self) -> list[User]:
        rows = self._conn.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name").fetchall()
        return [User(*row) for row in rows]
