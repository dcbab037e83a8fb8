"""Bearer-token authentication: the shared admin token (automation), a user's own token
(people; server.users), or one host agent's token.

An agent token (inside an enrolled machine's config, or from an operator's `hosts approve`)
only reaches the level-2 endpoints of its own host: its heartbeat, its desired nodes, and the
Ignition and status of nodes placed on it. Tokens are checked against their stored hash, so a
revoked or rotated token stops working at once.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask import g, request

from mayu_py.errors import Forbidden, Unauthorized
from mayu_py.server.context import services
from mayu_py.server.users import audit_source


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the operator (`admin`; a person when `user` is set), or the
    agent of `host`."""

    admin: bool
    host: str | None = None
    user: str | None = None


def _presented_token() -> str:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    # Tokens are ASCII; anything else is no token (and hmac cannot compare it).
    if scheme.lower() != "bearer" or not presented.strip() or not presented.isascii():
        raise Unauthorized("missing or wrong bearer token", {"header": "Authorization"})
    return presented.strip()


def _operator(token: str) -> Principal | None:
    """The operator's principal for the shared admin token or a user's token, else None."""
    svc = services()
    if hmac.compare_digest(token, svc.admin_token):
        return Principal(admin=True)
    user = svc.users.authenticate(token)
    return Principal(admin=True, user=user.name) if user is not None else None


def require_admin_token() -> None:
    """Refuse (401) a request without the admin token or a user's token."""
    principal = _operator(_presented_token())
    if principal is None:
        raise Unauthorized("missing or wrong bearer token", {"header": "Authorization"})
    g.principal = principal


def event_source() -> str | None:
    """The `source` of the events this request causes: its address, and the user it acts for
    (`user:NAME@ADDRESS`) when a person's token or dashboard session authenticated it."""
    principal: Principal | None = g.get("principal")
    return audit_source(principal.user if principal else None, request.remote_addr)


def require_metrics_token() -> None:
    """Refuse (401) a scrape without the admin token or `server.metrics_token`."""
    presented = _presented_token().encode()
    svc = services()
    accepted = (svc.admin_token, svc.settings.server.metrics_token)
    if not any(t and hmac.compare_digest(presented, t.encode()) for t in accepted):
        raise Unauthorized("missing or wrong bearer token", {"header": "Authorization"})


def require_admin_or_agent() -> None:
    """Accept the admin token, a user's token or any valid agent token; endpoints narrow
    agents further."""
    token = _presented_token()
    operator = _operator(token)
    if operator is not None:
        g.principal = operator
        return
    host = services().hosts.authenticate(token)
    if host is None:
        raise Unauthorized("missing or wrong bearer token", {"header": "Authorization"})
    g.principal = Principal(admin=False, host=host)


def require_admin() -> None:
    """Inside an admin-or-agent blueprint: this endpoint is for the operator only."""
    if not g.principal.admin:
        raise Forbidden("agent tokens cannot do this", {"host": g.principal.host})


def require_host(host: str | None) -> None:
    """The caller is the admin or the agent of `host`."""
    principal: Principal = g.principal
    if not principal.admin and principal.host != host:
        raise Forbidden("agent token of another host", {"host": principal.host})
