"""Admin plane, BMC power (bearer token): a machine's BMC, power and boot device actions.

`PUT/GET/DELETE /api/v1/machines/ID/bmc`; `POST /api/v1/machines/ID/power {"action": ...}`
and `POST /api/v1/machines/ID/bootdev {"device": ...}` answer 202 with the queued action
(and its URL in `Location`), which `GET /api/v1/actions/N` follows to `done` or `failed`.
Checks that need no BMC call are answered at once: 404, 409 (no BMC), 400, 422.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from mayu_py.bmc.records import BmcAction
from mayu_py.errors import BadRequest
from mayu_py.server.auth import event_source, require_admin_token
from mayu_py.server.context import services
from mayu_py.server.jsonbody import json_body

bp = Blueprint("power", __name__, url_prefix="/api/v1")
bp.before_request(require_admin_token)


def _body() -> dict[str, Any]:
    body = json_body(services().settings.server.max_json_depth)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def accepted(action: BmcAction, extra: dict[str, Any] | None = None) -> tuple[Response, int]:
    """202 with the queued action; `Location` is where to follow it."""
    response = jsonify((extra or {}) | {"action": action.to_json()})
    response.headers["Location"] = f"/api/v1/actions/{action.id}"
    return response, 202


@bp.put("/machines/<machine_id>/bmc")
def set_bmc(machine_id: str) -> Response:
    return jsonify(services().power.set_bmc(machine_id, _body(), event_source()))


@bp.get("/machines/<machine_id>/bmc")
def show_bmc(machine_id: str) -> Response:
    return jsonify(services().power.get_bmc(machine_id))


@bp.delete("/machines/<machine_id>/bmc")
def delete_bmc(machine_id: str) -> tuple[str, int]:
    services().power.delete_bmc(machine_id, event_source())
    return "", 204


@bp.post("/machines/<machine_id>/power")
def power(machine_id: str) -> tuple[Response, int]:
    action = services().power.power(machine_id, _body().get("action"), event_source())
    return accepted(action)


@bp.post("/machines/<machine_id>/bootdev")
def boot_device(machine_id: str) -> tuple[Response, int]:
    device = _body().get("device")
    return accepted(services().power.boot_device(machine_id, device, event_source()))


@bp.get("/machines/<machine_id>/actions")
def machine_actions(machine_id: str) -> Response:
    actions = services().power.machine_actions(machine_id)
    return jsonify({"items": [a.to_json() for a in actions]})


@bp.get("/actions/<int:action_id>")
def show_action(action_id: int) -> Response:
    return jsonify(services().power.action(action_id).to_json())
