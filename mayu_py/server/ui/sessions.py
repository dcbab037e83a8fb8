"""Dashboard sessions: a signed cookie naming the user, bound to their token, carrying the
session's CSRF token; and the login form's own CSRF nonce.

The session cookie `__Host-mayu-session` is `HttpOnly; SameSite=Strict; Secure; Path=/` and
only the HTTPS listener sets or accepts it. It is signed (HMAC-SHA256, itsdangerous) with
<data-dir>/ui-session.key (0600, shared by both listeners and every worker), expires after
SESSION_SECONDS, and names the `updated` time of the user's record: rotating or removing the
user's token ends their sessions at once. Nothing about a session is kept on the server.

The login form is guarded by a double-submit nonce: GET /ui/login sets `__Host-mayu-login`
(same flags, ten minutes) and puts the same value in the form; a POST without both equal is
refused, so another site cannot log a browser in under someone else's account.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from mayu_py.model import User

SESSION_COOKIE = "__Host-mayu-session"
LOGIN_COOKIE = "__Host-mayu-login"
SESSION_SECONDS = 12 * 3600
LOGIN_FORM_SECONDS = 600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class UiSession:
    user: str
    generation: float  # the user record's `updated` when the session began
    csrf: str


def same_secret(expected: str, presented: str | None) -> bool:
    """Constant-time equality of two secrets; a missing one never matches."""
    return bool(presented) and hmac.compare_digest(expected.encode(), str(presented).encode())


def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Strict"
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="Strict")


class UiSessions:
    """Issues and reads session cookies signed with the dashboard's key."""

    def __init__(self, key: bytes) -> None:
        self._serializer = URLSafeTimedSerializer(
            key, salt="mayu-ui-session", signer_kwargs={"digest_method": hashlib.sha256}
        )

    def issue(self, user: User) -> tuple[str, UiSession]:
        """A new session of `user` (with a fresh CSRF token) and its cookie value."""
        session = UiSession(user.name, user.updated, secrets.token_urlsafe(32))
        cookie = self._serializer.dumps(
            {"u": session.user, "g": session.generation, "c": session.csrf}
        )
        return cookie, session

    def read(self, cookie: str | None) -> UiSession | None:
        """The session a cookie carries, unless it is absent, forged or expired."""
        if not cookie:
            return None
        try:
            data: Any = self._serializer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        user, generation, csrf = data.get("u"), data.get("g"), data.get("c")
        if not (
            isinstance(user, str) and isinstance(generation, int | float) and isinstance(csrf, str)
        ):
            return None
        return UiSession(user, float(generation), csrf)

    @staticmethod
    def current(session: UiSession, user: User | None) -> bool:
        """The session's user still exists with the token the session began with."""
        return user is not None and user.updated == session.generation
