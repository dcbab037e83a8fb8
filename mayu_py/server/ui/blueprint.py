"""The dashboard's blueprint and what every one of its requests goes through.

Served on the HTTPS listener only: a plain-HTTP GET is redirected there, and any other
plain-HTTP request refused (403), because the session cookie is `Secure` and the login form
carries a token. Every other request but the login form and the static files needs a current
session (sessions.py): pages without one go to the login form, anything else is a 401. Every
POST needs the session's CSRF token (form field or `X-CSRF-Token` header), else 403. Every
answer carries a strict Content-Security-Policy (scripts and styles from /ui/static only), and
errors are HTML pages with their status (the API's stay problem+json).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, g, redirect, request, url_for
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from werkzeug.wrappers import Response as AnyResponse

from mayu_py.errors import Forbidden, MayuError, Unauthorized
from mayu_py.server.auth import Principal
from mayu_py.server.boot import TLS_ENVIRON_KEY
from mayu_py.server.context import services
from mayu_py.server.ui.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    UiSessions,
    same_secret,
)
from mayu_py.server.urls import server_urls

log = logging.getLogger(__name__)

bp = Blueprint("ui", __name__, url_prefix="/ui", static_folder="static", static_url_path="/static")
TEMPLATES = Path(__file__).resolve().parent / "templates"
PUBLIC_ENDPOINTS = frozenset({"ui.login_form", "ui.login", "ui.static"})
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Ui:
    """The dashboard's per-app parts: its session signer and its template environment."""

    sessions: UiSessions
    templates: Environment


def template_environment() -> Environment:
    """Autoescaped, strict (a missing variable is an error), with Flask's url_for."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["url_for"] = url_for
    return env


def ui() -> Ui:
    return current_app.extensions["mayu.ui"]


def render_page(template: str, status: int = 200, **context: Any) -> Response:
    """A page (or fragment) for the current request, with the session's user and CSRF token."""
    session = g.get("ui_session")
    html = (
        ui()
        .templates.get_template(template)
        .render(
            user=session.user if session else None,
            csrf=session.csrf if session else "",
            csrf_field=CSRF_FIELD,
            endpoint=request.endpoint,
            **context,
        )
    )
    return Response(html, status=status, mimetype="text/html")


def https_base() -> str:
    return server_urls(services().settings, request.host_url).https


def over_tls() -> bool:
    return bool(request.environ.get(TLS_ENVIRON_KEY))


@bp.before_request
def _gate() -> AnyResponse | None:
    if not over_tls():
        if request.method in ("GET", "HEAD"):
            return redirect(https_base() + request.full_path.rstrip("?"), 303)
        raise Forbidden(
            "the dashboard takes logins and actions over HTTPS only",
            {"https": https_base() + "/ui/"},
        )
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    session = ui().sessions.read(request.cookies.get(SESSION_COOKIE))
    user = services().users.get(session.user) if session else None
    if session is None or not UiSessions.current(session, user):
        if request.method == "GET" and request.endpoint != "ui.live":
            target = url_for("ui.login_form", next=request.full_path.rstrip("?"))
            return redirect(target, 303)
        raise Unauthorized("log in to the dashboard first", {"login": url_for("ui.login_form")})
    g.principal = Principal(admin=True, user=session.user)
    g.ui_session = session
    if request.method == "POST":
        presented = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not same_secret(session.csrf, presented):
            raise Forbidden("missing or wrong CSRF token: reload the page and try again")
    return None


@bp.after_request
def _headers(response: AnyResponse) -> AnyResponse:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "ui.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(MayuError)
def _error(exc: MayuError) -> Response:
    if exc.status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    machine_id = (request.view_args or {}).get("machine_id")
    return render_page(
        "error.html",
        exc.status,
        title=_phrase(exc.status),
        code=exc.status,
        message=exc.message,
        detail=exc.detail,
        machine_id=machine_id,
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
