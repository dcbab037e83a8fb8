"""People who operate the server: their own tokens for the admin API and the dashboard.

A user token is `user.<name>.<random>`, shown once when the user is added or the token is
rotated, and kept only as its hash (like agent tokens). It opens what the shared admin token
opens, but user management stays with the shared token (a leaked personal token cannot mint
others; a user may rotate their own). Events caused by a user's request name them in their
`source`: `user:<name>@<address>` (`audit_source`); adding, rotating and removing users, and
dashboard logins, are recorded as alerts about `user:<name>`. Rotating a token ends the
user's dashboard sessions (they are bound to the record's `updated` time); removing the user
ends everything at once.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

from mayu_py.errors import BadRequest, Conflict, NotFound
from mayu_py.model import Event, User
from mayu_py.server.tokens import token_hash, token_matches
from mayu_py.store import Store, Tx

TOKEN_PREFIX = "user."
_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


def check_user_name(name: object) -> str:
    """The name, unless it is not a lower-case name of up to 32 letters, digits and `-`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = name[:64] if isinstance(name, str) else type(name).__name__
        raise BadRequest(
            "a user name is 1-32 lower-case letters, digits or '-', starting with a letter",
            {"name": shown},
        )
    return name


def new_user_token(name: str) -> str:
    return f"{TOKEN_PREFIX}{name}.{secrets.token_urlsafe(32)}"


def audit_source(user: str | None, address: str | None) -> str | None:
    """An event's `source` for a request: the address, and the user who made it, if any."""
    if user is None:
        return address
    return f"user:{user}@{address}" if address else f"user:{user}"


class UserService:
    """Add, rotate, remove and authenticate users."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def authenticate(self, token: str) -> User | None:
        """The user a presented token belongs to, or None (any other token costs no read)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        name, sep, _ = token[len(TOKEN_PREFIX) :].partition(".")
        if not sep or not _NAME.fullmatch(name):
            return None
        user = self.store.get_user(name)
        return user if user is not None and token_matches(token, user.token_hash) else None

    def get(self, name: str) -> User | None:
        return self.store.get_user(name) if _NAME.fullmatch(name) else None

    def list(self) -> list[User]:
        return self.store.list_users()

    def add(self, name: str, source: str | None) -> str:
        """A new user; returns their token (shown once)."""
        check_user_name(name)

        def txn(tx: Tx) -> str:
            if tx.get_user(name) is not None:
                raise Conflict("user exists (rotate its token instead)", {"name": name})
            return self._mint(tx, name, None, "user added", source)

        return self.store.atomically(txn)

    def rotate(self, name: str, source: str | None) -> str:
        """A new token for a user; the old one and their dashboard sessions stop at once."""

        def txn(tx: Tx) -> str:
            return self._mint(tx, name, self._existing(tx, name), "user token rotated", source)

        return self.store.atomically(txn)

    def remove(self, name: str, source: str | None) -> User:
        def txn(tx: Tx) -> User:
            user = self._existing(tx, name)
            tx.delete_user(name)
            self._record(tx, name, "user-removed", "user removed", source)
            return user

        return self.store.atomically(txn)

    def record_login(self, name: str, source: str | None) -> None:
        self.store.atomically(
            lambda tx: self._record(tx, name, "user-login", "logged in to the dashboard", source)
        )

    def _mint(
        self, tx: Tx, name: str, previous: User | None, cause: str, source: str | None
    ) -> str:
        now = self.clock()
        token = new_user_token(name)
        created = previous.created if previous else now
        tx.put_user(User(name, token_hash(token), created, now))
        self._record(tx, name, "user-token", cause, source)
        return token

    @staticmethod
    def _existing(tx: Tx, name: str) -> User:
        user = tx.get_user(check_user_name(name))
        if user is None:
            raise NotFound("no such user", {"name": name})
        return user

    def _record(self, tx: Tx, name: str, kind: str, cause: str, source: str | None) -> None:
        tx.add_alert(Event(f"user:{name}", self.clock(), kind, cause, source))
