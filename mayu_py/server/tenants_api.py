"""Admin plane for level 2: /api/v1/tenants and /api/v1/hosts (bearer token)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from mayu_py.server.auth import (
    event_source,
    require_admin,
    require_admin_or_agent,
    require_host,
)
from mayu_py.server.context import services
from mayu_py.server.jsonbody import json_body

bp = Blueprint("tenants", __name__, url_prefix="/api/v1")
bp.before_request(require_admin_or_agent)

IGNITION_MIMETYPE = "application/vnd.coreos.ignition+json"


def _body() -> Any:
    """The request's JSON (None when empty); 400 for bad JSON, NaN/Infinity, deep nesting."""
    return json_body(services().settings.server.max_json_depth)


@bp.get("/tenants")
def list_tenants() -> Response:
    require_admin()
    return jsonify({"items": services().tenants.list()})


@bp.post("/tenants")
def create_tenant() -> tuple[Response, int]:
    require_admin()
    return jsonify(services().tenants.create(_body())), 201


@bp.get("/tenants/<name>")
def show_tenant(name: str) -> Response:
    require_admin()
    return jsonify(services().tenants.get(name))


@bp.patch("/tenants/<name>")
def patch_tenant(name: str) -> Response:
    require_admin()
    body = _body()
    spec = body.get("spec") if isinstance(body, dict) else None
    return jsonify(services().tenants.update_spec(name, spec))


@bp.delete("/tenants/<name>")
def delete_tenant(name: str) -> tuple[Response, int]:
    require_admin()
    return jsonify(services().tenants.delete(name)), 202


@bp.get("/tenants/<name>/kubeconfig")
def tenant_kubeconfig(name: str) -> Response:
    require_admin()
    return Response(services().tenants.admin_kubeconfig(name), mimetype="application/yaml")


@bp.get("/tenants/<tenant>/nodes/<node>/ignition")
def tenant_node_ignition(tenant: str, node: str) -> Response:
    require_host(services().tenants.host_of(tenant, node))
    body = services().tenants.node_ignition(tenant, node)
    return Response(body, mimetype=IGNITION_MIMETYPE, headers={"Cache-Control": "no-store"})


@bp.put("/tenants/<tenant>/nodes/<node>/status")
def tenant_node_status(tenant: str, node: str) -> Response:
    require_host(services().tenants.host_of(tenant, node))
    return jsonify(services().tenants.report_node(tenant, node, _body()))


@bp.post("/hosts")
def host_heartbeat() -> Response:
    """An agent's heartbeat: only from an approved host or a running, enrolled machine (the
    operator's admin token may heartbeat for any host)."""
    body = _body()
    name = body.get("name") if isinstance(body, dict) else None
    require_host(name)
    if not g.principal.admin:
        services().hosts.admit(str(name))
    return jsonify(services().tenants.heartbeat(body))


@bp.get("/hosts")
def list_hosts() -> Response:
    """Hosts that sent heartbeats, and every agent credential (approved, revoked)."""
    require_admin()
    svc = services()
    credentials = {c.host: c.to_json() for c in svc.hosts.list()}
    items = svc.tenants.list_hosts()
    for item in items:
        item["credential"] = credentials.pop(item["name"], None)
    items += [{"name": host, "credential": c} for host, c in credentials.items()]
    return jsonify({"items": items})


@bp.post("/hosts/<host>/approve")
def approve_host(host: str) -> tuple[Response, int]:
    """Approve an agent host that is not an enrolled machine; its token is shown once."""
    require_admin()
    token = services().hosts.approve(host, event_source())
    return jsonify({"host": host, "token": token}), 201


@bp.post("/hosts/<host>/rotate-token")
def rotate_host_token(host: str) -> Response:
    require_admin()
    return jsonify({"host": host, "token": services().hosts.rotate(host, event_source())})


@bp.post("/hosts/<host>/revoke")
def revoke_host(host: str) -> Response:
    """Revoke the host's agent token; its tenant nodes are placed on other hosts."""
    require_admin()
    return jsonify(services().hosts.revoke(host, event_source()).to_json())


@bp.get("/hosts/<host>/nodes")
def host_nodes(host: str) -> Response:
    """The host's desired nodes; with an ETag, so an agent's frequent check costs a 304."""
    require_host(host)
    response = jsonify(services().tenants.desired_for_host(host))
    response.add_etag()
    return response.make_conditional(request)
