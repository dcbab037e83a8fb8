"""Logging in to the dashboard with a user's own token, and logging out.

The shared admin token does not log in: it is for automation, and the dashboard's audit trail
names people (`mayuctl users add NAME` gives one their token). A login is recorded as an alert
about `user:NAME`; a wrong token is a 401 and is only logged (an alert per guess would let
anyone flush the alert list). Where to go after the login (`next`) is only ever a /ui/ path.
"""

from __future__ import annotations

import logging
import secrets

from flask import redirect, request, url_for
from werkzeug.wrappers import Response

from mayu_py.errors import Forbidden
from mayu_py.server.context import services
from mayu_py.server.ui.blueprint import bp, render_page, ui
from mayu_py.server.ui.sessions import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_FORM_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    clear_cookie,
    same_secret,
    set_cookie,
)
from mayu_py.server.users import audit_source

log = logging.getLogger(__name__)

SHARED_TOKEN_REFUSED = (
    "the shared admin token is for automation: log in with your own token "
    "(an operator gives you one with `mayuctl users add NAME`)"
)


def safe_next(target: str | None) -> str | None:
    """`target` when it is a path of the dashboard, else None (no open redirect)."""
    if not target or not target.startswith("/ui/") or "\\" in target or "//" in target:
        return None
    return target


def _form(status: int = 200, error: str | None = None) -> Response:
    """The login form with a fresh double-submit nonce in the form and in its cookie."""
    nonce = secrets.token_urlsafe(32)
    wanted = safe_next(request.values.get("next")) or ""
    response = render_page(
        "login.html", status, title="Log in", error=error, nonce=nonce, next_url=wanted
    )
    set_cookie(response, LOGIN_COOKIE, nonce, LOGIN_FORM_SECONDS)
    return response


@bp.get("/login")
def login_form() -> Response:
    return _form()


@bp.post("/login")
def login() -> Response:
    if not same_secret(request.cookies.get(LOGIN_COOKIE, ""), request.form.get(CSRF_FIELD)):
        raise Forbidden("missing or wrong CSRF token: reload the login page and try again")
    svc = services()
    token = request.form.get("token", "").strip()
    if token and same_secret(svc.admin_token, token):
        return _form(403, SHARED_TOKEN_REFUSED)
    user = svc.users.authenticate(token) if token else None
    if user is None:
        log.info("dashboard login refused from %s: wrong token", request.remote_addr)
        return _form(401, "wrong token")
    cookie, _session = ui().sessions.issue(user)
    svc.users.record_login(user.name, audit_source(user.name, request.remote_addr))
    target = safe_next(request.form.get("next")) or url_for("ui.board")
    response = redirect(target, 303)
    set_cookie(response, SESSION_COOKIE, cookie, SESSION_SECONDS)
    clear_cookie(response, LOGIN_COOKIE)
    return response


@bp.post("/logout")
def logout() -> Response:
    response = redirect(url_for("ui.login_form"), 303)
    clear_cookie(response, SESSION_COOKIE)
    return response
