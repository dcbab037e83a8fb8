"""Bearer-token authentication of the admin plane."""

from __future__ import annotations

import hmac

from flask import request

from mayu_py.errors import Unauthorized
from mayu_py.server.context import services


def require_admin_token() -> None:
    """Refuse (401) a request without the admin bearer token."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    expected = services().admin_token
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip(), expected):
        raise Unauthorized("missing or wrong bearer token", {"header": "Authorization"})
