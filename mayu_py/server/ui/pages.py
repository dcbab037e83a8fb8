"""The dashboard's pages, their live panels and the operator's actions.

Each page is one live panel: the page renders it once, and static/dashboard.js fetches
`/ui/live/<panel>[/<item>]` every 1.5 s with the panel's ETag (a hash of the panel's data,
views.py), so an unchanged panel costs one store read and a 304, no rendering. Panels read
the store directly, never writing (a poll must not take the write lock a boot storm needs).

Actions go through the same services as the admin API, with the logged-in user in the events'
source; each answers 303 back to the machine's page (an error: a page with the status).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import g, redirect, request, url_for
from werkzeug.wrappers import Response

from mayu_py.errors import BadRequest, NotFound
from mayu_py.model import MachineState, canonical_mac
from mayu_py.server.auth import event_source
from mayu_py.server.context import Services, services
from mayu_py.server.ui import views
from mayu_py.server.ui.blueprint import bp, render_page


@dataclass(frozen=True)
class Panel:
    """A live panel: its fragment template and the data it shows (given the item, if any)."""

    fragment: str
    data: Callable[[Services, str | None], dict[str, Any]]


def _board(svc: Services, _item: str | None) -> dict[str, Any]:
    return views.board(svc.store.list_machines())


def _machine(svc: Services, item: str | None) -> dict[str, Any]:
    mac = canonical_mac(item or "")
    machine = svc.store.get_machine(mac)
    if machine is None:
        raise NotFound("no such machine", {"id": mac})
    return views.machine_page(
        machine, svc.store.events(mac), svc.store.get_bmc(mac), svc.store.machine_actions(mac)
    )


def _hosts(svc: Services, _item: str | None) -> dict[str, Any]:
    return views.hosts_page(svc.store.list_hosts(), svc.store.list_tenants(), time.time())


def _tenants(svc: Services, _item: str | None) -> dict[str, Any]:
    return views.tenants_page(svc.tenants.list())


PANELS = {
    "board": Panel("_board.html", _board),
    "machine": Panel("_machine.html", _machine),
    "hosts": Panel("_hosts.html", _hosts),
    "tenants": Panel("_tenants.html", _tenants),
}


def _panel(name: str, item: str | None) -> tuple[Panel, dict[str, Any], str]:
    panel = PANELS.get(name)
    if panel is None:
        raise NotFound("no such panel", {"panel": name[:32]})
    data = panel.data(services(), item)
    return panel, data, views.etag(name, data, g.ui_session.csrf)


def _page(template: str, title: str, name: str, item: str | None = None) -> Response:
    panel, data, tag = _panel(name, item)
    live = url_for("ui.live", panel=name, item=item)
    return render_page(
        template, title=title, fragment=panel.fragment, data=data, live=live, etag=f'"{tag}"'
    )


@bp.get("/")
def board() -> Response:
    return _page("page.html", "Machines", "board")


@bp.get("/machines/<machine_id>")
def machine(machine_id: str) -> Response:
    return _page("page.html", f"Machine {canonical_mac(machine_id)}", "machine", machine_id)


@bp.get("/hosts")
def hosts() -> Response:
    return _page("page.html", "Hosts", "hosts")


@bp.get("/tenants")
def tenants() -> Response:
    return _page("page.html", "Tenants", "tenants")


@bp.get("/live/<panel>", defaults={"item": None})
@bp.get("/live/<panel>/<item>")
def live(panel: str, item: str | None) -> Response:
    """A panel's fragment, or 304 when its data did not change since the ETag presented."""
    found, data, tag = _panel(panel, item)
    if tag in request.if_none_match:
        response = Response(status=304)
    else:
        response = render_page(found.fragment, data=data)
    response.set_etag(tag)
    return response


def _back(machine_id: str) -> Response:
    target = url_for("ui.machine", machine_id=canonical_mac(machine_id))
    return redirect(target, 303)


@bp.post("/machines/<machine_id>/approve")
def approve(machine_id: str) -> Response:
    role = request.form.get("role", "")
    services().machines.approve(machine_id, role, {}, event_source())
    return _back(machine_id)


@bp.post("/machines/<machine_id>/reinstall")
def reinstall(machine_id: str) -> Response:
    services().machines.reinstall(machine_id, event_source())
    return _back(machine_id)


@bp.post("/machines/<machine_id>/maintenance")
def maintenance(machine_id: str) -> Response:
    changes = {"state": str(MachineState.MAINTENANCE)}
    services().machines.update(machine_id, changes, event_source())
    return _back(machine_id)


@bp.post("/machines/<machine_id>/power")
def power(machine_id: str) -> Response:
    action = request.form.get("action", "")
    if action not in views.POWER_ACTIONS:
        raise BadRequest("the power action is on, off or cycle", {"action": action[:16]})
    services().power.power(machine_id, action, event_source())
    return _back(machine_id)
