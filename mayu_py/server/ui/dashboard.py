"""The web dashboard at /ui (docs/dashboard.md): `install` adds it to the server's app.

Machines by state with their event timelines, hosts with capacity and the tenant nodes placed
on them, tenants with their nodes, updated live while machines boot; the operator's actions
(approve, reinstall, power, maintenance) for people logged in with their own token. Rendered
on the server (Jinja2); one small script and one stylesheet, served from the package (no build
step, nothing from elsewhere).
"""

from __future__ import annotations

from flask import Flask

from mayu_py.config import Settings
from mayu_py.server.tokens import load_or_create_key
from mayu_py.server.ui import login, pages
from mayu_py.server.ui.blueprint import Ui, bp, template_environment
from mayu_py.server.ui.sessions import UiSessions

SESSION_KEY_FILE = "ui-session.key"
ROUTES = (login, pages)  # the modules that add the blueprint's routes


def install(app: Flask, settings: Settings) -> None:
    """Serve the dashboard from `app`; its sessions are signed with <data-dir>/ui-session.key
    (0600, made at the first start), shared by both listeners."""
    key = load_or_create_key(settings.data_path / SESSION_KEY_FILE)
    app.extensions["mayu.ui"] = Ui(UiSessions(key), template_environment())
    app.register_blueprint(bp)
