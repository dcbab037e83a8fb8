"""Admin plane, users (bearer token): /api/v1/users.

Listing needs any operator token; adding and removing users need the shared admin token (a
leaked personal token cannot mint others); a user may rotate their own token. A new token is
in the answer once and never again.
"""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from mayu_py.errors import BadRequest, Forbidden
from mayu_py.server.auth import event_source, require_admin_token
from mayu_py.server.context import services
from mayu_py.server.jsonbody import json_body

bp = Blueprint("users", __name__, url_prefix="/api/v1")
bp.before_request(require_admin_token)


def _require_shared_token(action: str) -> None:
    if g.principal.user is not None:
        raise Forbidden(
            f"{action} users takes the shared admin token, not a user's token",
            {"user": g.principal.user},
        )


@bp.get("/users")
def list_users() -> Response:
    return jsonify({"items": [u.to_json() for u in services().users.list()]})


@bp.post("/users")
def add_user() -> tuple[Response, int]:
    _require_shared_token("adding")
    body = json_body(services().settings.server.max_json_depth)
    if not isinstance(body, dict) or set(body) != {"name"}:
        raise BadRequest('body must be {"name": NAME}')
    name = body["name"]
    token = services().users.add(name, event_source())
    return jsonify({"name": name, "token": token}), 201


@bp.post("/users/<name>/rotate-token")
def rotate_user_token(name: str) -> Response:
    if g.principal.user != name:
        _require_shared_token("rotating the tokens of other")
    return jsonify({"name": name, "token": services().users.rotate(name, event_source())})


@bp.delete("/users/<name>")
def remove_user(name: str) -> Response:
    _require_shared_token("removing")
    return jsonify(services().users.remove(name, event_source()).to_json())
