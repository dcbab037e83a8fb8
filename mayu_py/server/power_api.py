"""Admin plane, BMC power (bearer token): a machine's BMC, power and boot device actions.

`PUT/GET/DELETE /api/v1/machines/ID/bmc`; `POST /api/v1/machines/ID/power {"action": ...}`
and `POST /api/v1/machines/ID/bootdev {"device": ...}` answer 202 with the queued action
(and its URL in `Location`), which `GET /api/v1/actions/N` follows to `done` or `failed`.
Checks that need no BMC call are answered at once: 404, 409 (no BMC), 400, 422.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import ValidationError

from mayu_py.bmc.records import BmcAction
from mayu_py.errors import BadRequest, Unprocessable
from mayu_py.model import MAC_PATTERN
from mayu_py.server.auth import event_source, require_admin_token
from mayu_py.server.context import services
from mayu_py.server.jsonbody import json_body
from mayu_py.server.operations import Operation, Reply, body_of, field_path, operation
from mayu_py.server.schemas import (
    ActionList,
    ActionView,
    BmcSettings,
    BmcView,
    BootDeviceRequest,
    PowerRequest,
    Queued,
)

bp = Blueprint("power", __name__, url_prefix="/api/v1")
bp.before_request(require_admin_token)

TAGS = ("bmc",)
BY_MAC = {"machine_id": MAC_PATTERN}
LOCATION = {"Location": "where to follow the action: /api/v1/actions/{id}"}
FOLLOW = {"FollowAction": ("power.show_action", {"action_id": "$response.body#/action/id"})}


def accepted(action: BmcAction, extra: dict[str, Any] | None = None) -> tuple[Response, int]:
    """202 with the queued action; `Location` is where to follow it."""
    response = jsonify((extra or {}) | {"action": action.to_json()})
    response.headers["Location"] = f"/api/v1/actions/{action.id}"
    return response, 202


def _bmc_settings() -> dict[str, Any]:
    """The body of PUT .../bmc: 400 unless a JSON object, 422 naming the first bad field."""
    body = json_body(services().settings.server.max_json_depth)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    try:
        settings = BmcSettings.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = "bmc." + field_path(tuple(error["loc"])) if error["loc"] else "bmc"
        raise Unprocessable(f"{where}: {error['msg']}", {"field": where}) from None
    return settings.model_dump(exclude_unset=True)


@bp.put("/machines/<machine_id>/bmc")
@operation(
    Operation(
        "Set (or replace) a machine's BMC; also of a machine that never booted",
        TAGS,
        {200: Reply(BmcView)},
        body=BmcSettings,
        invalid=422,
        path_patterns=BY_MAC,
    )
)
def set_bmc(machine_id: str) -> Response:
    return jsonify(services().power.set_bmc(machine_id, _bmc_settings(), event_source()))


@bp.get("/machines/<machine_id>/bmc")
@operation(
    Operation(
        "A machine's BMC (never its password)",
        TAGS,
        {200: Reply(BmcView)},
        errors=(404,),
        path_patterns=BY_MAC,
    )  # fmt: skip
)
def show_bmc(machine_id: str) -> Response:
    return jsonify(services().power.get_bmc(machine_id))


@bp.delete("/machines/<machine_id>/bmc")
@operation(
    Operation(
        "Forget a machine's BMC",
        TAGS,
        {204: Reply(description="BMC removed")},
        errors=(404,),
        path_patterns=BY_MAC,
    )  # fmt: skip
)
def delete_bmc(machine_id: str) -> tuple[str, int]:
    services().power.delete_bmc(machine_id, event_source())
    return "", 204


@bp.post("/machines/<machine_id>/power")
@operation(
    Operation(
        "Queue a power action: on, off, cycle or status",
        TAGS,
        {202: Reply(Queued, "Queued", headers=LOCATION, links=FOLLOW)},
        body=PowerRequest,
        errors=(404, 409),
        path_patterns=BY_MAC,
    )
)
def power(machine_id: str) -> tuple[Response, int]:
    action = body_of(PowerRequest).action
    return accepted(services().power.power(machine_id, action, event_source()))


@bp.post("/machines/<machine_id>/bootdev")
@operation(
    Operation(
        "Queue a boot device change: pxe or disk (kept for every later boot)",
        TAGS,
        {202: Reply(Queued, "Queued", headers=LOCATION, links=FOLLOW)},
        body=BootDeviceRequest,
        errors=(404, 409),
        path_patterns=BY_MAC,
    )
)
def boot_device(machine_id: str) -> tuple[Response, int]:
    device = body_of(BootDeviceRequest).device
    return accepted(services().power.boot_device(machine_id, device, event_source()))


@bp.get("/machines/<machine_id>/actions")
@operation(
    Operation("A machine's BMC actions", TAGS, {200: Reply(ActionList)}, path_patterns=BY_MAC)
)
def machine_actions(machine_id: str) -> Response:
    actions = services().power.machine_actions(machine_id)
    return jsonify({"items": [a.to_json() for a in actions]})


@bp.get("/actions/<int:action_id>")
@operation(Operation("A BMC action as it is now", TAGS, {200: Reply(ActionView)}, errors=(404,)))
def show_action(action_id: int) -> Response:
    return jsonify(services().power.action(action_id).to_json())
