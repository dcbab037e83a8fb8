"""Admin plane, users (bearer token): /api/v1/users.

Listing needs any operator token; adding and removing users need the shared admin token (a
leaked personal token cannot mint others); a user may rotate their own token. A new token is
in the answer once and never again.
"""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from mayu_py.errors import Forbidden
from mayu_py.model import USER_NAME_PATTERN
from mayu_py.server.auth import event_source, require_admin_token
from mayu_py.server.context import services
from mayu_py.server.operations import Operation, Reply, body_of, operation
from mayu_py.server.schemas import NewUser, UserList, UserToken, UserView

bp = Blueprint("users", __name__, url_prefix="/api/v1")
bp.before_request(require_admin_token)

USERS = ("users",)
BY_NAME = {"name": USER_NAME_PATTERN}


def _require_shared_token(action: str) -> None:
    if g.principal.user is not None:
        raise Forbidden(
            f"{action} users takes the shared admin token, not a user's token",
            {"user": g.principal.user},
        )


@bp.get("/users")
@operation(Operation("Operators with their own tokens", USERS, {200: Reply(UserList)}))
def list_users() -> Response:
    return jsonify({"items": [u.to_json() for u in services().users.list()]})


@bp.post("/users")
@operation(
    Operation(
        "Add an operator (shared admin token only); their token is shown once",
        USERS,
        {201: Reply(UserToken, "Added")},
        body=NewUser,
        errors=(403, 409),
    )
)
def add_user() -> tuple[Response, int]:
    _require_shared_token("adding")
    name = body_of(NewUser).name
    token = services().users.add(name, event_source())
    return jsonify({"name": name, "token": token}), 201


@bp.post("/users/<name>/rotate-token")
@operation(
    Operation(
        "A new token for an operator (their own, or anyone's with the shared admin token)",
        USERS,
        {200: Reply(UserToken)},
        errors=(403, 404),
        path_patterns=BY_NAME,
    )
)
def rotate_user_token(name: str) -> Response:
    if g.principal.user != name:
        _require_shared_token("rotating the tokens of other")
    return jsonify({"name": name, "token": services().users.rotate(name, event_source())})


@bp.delete("/users/<name>")
@operation(
    Operation(
        "Remove an operator: their token and sessions stop at once (shared admin token only)",
        USERS,
        {200: Reply(UserView)},
        errors=(403, 404),
        path_patterns=BY_NAME,
    )
)
def remove_user(name: str) -> Response:
    _require_shared_token("removing")
    return jsonify(services().users.remove(name, event_source()).to_json())
