"""Admin plane for level 2: /api/v1/tenants and /api/v1/hosts (bearer token)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from pydantic import BaseModel, ConfigDict, RootModel

from mayu_py.errors import NotFound
from mayu_py.model import HOSTNAME_PATTERN
from mayu_py.server.auth import (
    event_source,
    require_admin,
    require_admin_or_agent,
    require_host,
)
from mayu_py.server.context import services
from mayu_py.server.jsonbody import json_body
from mayu_py.server.operations import Operation, Reply, body_of, operation
from mayu_py.server.schemas import CredentialView, DesiredNode, HostList, HostSeen, HostToken
from mayu_py.tenants.resource import TenantCluster
from mayu_py.tenants.validation import DNS1123_LABEL_PATTERN
from mayu_py.tenants.wire import HostRegistrationBody, NodeReportBody, ip_address_or_none

bp = Blueprint("tenants", __name__, url_prefix="/api/v1")
bp.before_request(require_admin_or_agent)

IGNITION_MIMETYPE = "application/vnd.coreos.ignition+json"
YAML = "application/yaml"
TENANTS, HOSTS = ("tenants",), ("hosts",)
BY_NAME = {"name": DNS1123_LABEL_PATTERN}
BY_NODE = {"tenant": DNS1123_LABEL_PATTERN, "node": DNS1123_LABEL_PATTERN}
BY_HOST = {"host": HOSTNAME_PATTERN}
SHOW = {"ShowTenant": ("tenants.show_tenant", {"name": "$response.body#/metadata/name"})}


class TenantList(BaseModel):
    items: list[TenantCluster]


class TenantPatch(BaseModel):
    """Spec members to replace; the tenant is then validated as a whole (422)."""

    model_config = ConfigDict(extra="ignore")
    spec: dict[str, Any]


class DesiredNodes(RootModel[list[DesiredNode]]):
    """The nodes placed on a host."""


def _body() -> Any:
    """The request's JSON (None when empty); 400 for bad JSON, NaN/Infinity, deep nesting."""
    return json_body(services().settings.server.max_json_depth)


@bp.get("/tenants")
@operation(Operation("Tenant clusters with their status", TENANTS, {200: Reply(TenantList)}))
def list_tenants() -> Response:
    require_admin()
    return jsonify({"items": services().tenants.list()})


@bp.post("/tenants")
@operation(
    Operation(
        "Create a tenant cluster (a TenantCluster document)",
        TENANTS,
        {201: Reply(TenantCluster, "Created", links=SHOW)},
        body=TenantCluster,
        errors=(409,),
        invalid=422,
    )
)
def create_tenant() -> tuple[Response, int]:
    require_admin()
    return jsonify(services().tenants.create(_body())), 201


@bp.get("/tenants/<name>")
@operation(
    Operation(
        "A tenant cluster with its status",
        TENANTS,
        {200: Reply(TenantCluster)},
        errors=(404,),
        path_patterns=BY_NAME,
    )  # fmt: skip
)
def show_tenant(name: str) -> Response:
    require_admin()
    return jsonify(services().tenants.get(name))


@bp.patch("/tenants/<name>")
@operation(
    Operation(
        "Change a tenant's spec (scale, resize); a change bumps metadata.generation",
        TENANTS,
        {200: Reply(TenantCluster)},
        body=TenantPatch,
        errors=(404, 409, 422),
        path_patterns=BY_NAME,
    )
)
def patch_tenant(name: str) -> Response:
    require_admin()
    return jsonify(services().tenants.update_spec(name, body_of(TenantPatch).spec))


@bp.delete("/tenants/<name>")
@operation(
    Operation(
        "Delete a tenant cluster: agents remove its VMs, disks, network and secrets",
        TENANTS,
        {202: Reply(TenantCluster, "Deleting")},
        errors=(404,),
        path_patterns=BY_NAME,
    )
)
def delete_tenant(name: str) -> tuple[Response, int]:
    require_admin()
    return jsonify(services().tenants.delete(name)), 202


@bp.get("/tenants/<name>/kubeconfig")
@operation(
    Operation(
        "The admin kubeconfig of a tenant cluster (cluster-admin: the operator's only)",
        TENANTS,
        {200: Reply({"type": "string"}, "kubeconfig", media=YAML)},
        errors=(404,),
        path_patterns=BY_NAME,
    )
)
def tenant_kubeconfig(name: str) -> Response:
    require_admin()
    return Response(services().tenants.admin_kubeconfig(name), mimetype=YAML)


@bp.get("/hosts/<host>/tenants/<tenant>/drain-kubeconfig")
@operation(
    Operation(
        "The drain kubeconfig of a host's agent for a live tenant it carries nodes of: a "
        "client certificate of its own (CN mayu:drainer:<host>, group mayu:drainers) that the "
        "tenant's RBAC lets cordon nodes and evict pods, nothing more; valid for an hour and "
        "issued anew once 30 minutes or less are left (fetch it for each drain)",
        HOSTS,
        {200: Reply({"type": "string"}, "kubeconfig", media=YAML)},
        auth="agent-of-host",
        errors=(404,),
        path_patterns=BY_HOST | {"tenant": DNS1123_LABEL_PATTERN},
    )
)
def drain_kubeconfig(host: str, tenant: str) -> Response:
    require_host(host)
    body = services().tenants.drainer_kubeconfig(tenant, host)
    return Response(body, mimetype=YAML, headers={"Cache-Control": "no-store"})


@bp.get("/tenants/<tenant>/nodes/<node>/ignition")
@operation(
    Operation(
        "A tenant node's Ignition (the agent of its host)",
        TENANTS,
        {200: Reply({"type": "object"}, "Ignition config", media=IGNITION_MIMETYPE)},
        auth="agent-of-host",
        errors=(404,),
        path_patterns=BY_NODE,
    )
)
def tenant_node_ignition(tenant: str, node: str) -> Response:
    require_host(services().tenants.host_of(tenant, node))
    body = services().tenants.node_ignition(tenant, node)
    return Response(body, mimetype=IGNITION_MIMETYPE, headers={"Cache-Control": "no-store"})


@bp.put("/tenants/<tenant>/nodes/<node>/status")
@operation(
    Operation(
        "Report a tenant node's observed state (the agent of its host)",
        TENANTS,
        {200: Reply(TenantCluster)},
        auth="agent-of-host",
        body=NodeReportBody,
        errors=(404,),
        path_patterns=BY_NODE,
    )
)
def tenant_node_status(tenant: str, node: str) -> Response:
    require_host(services().tenants.host_of(tenant, node))
    return jsonify(services().tenants.report_node(tenant, node, _body()))


@bp.post("/hosts")
@operation(
    Operation(
        "An agent's heartbeat with its host's capacity",
        HOSTS,
        {200: Reply(HostSeen)},
        auth="agent-of-host",
        body=HostRegistrationBody,
    )
)
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
@operation(
    Operation("Hosts: capacity, liveness and agent credentials", HOSTS, {200: Reply(HostList)})
)
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
@operation(
    Operation(
        "Approve an agent host that is not an enrolled machine; its token is shown once",
        HOSTS,
        {201: Reply(HostToken, "Approved")},
        errors=(409,),
        path_patterns=BY_HOST,
    )
)
def approve_host(host: str) -> tuple[Response, int]:
    """Approve an agent host that is not an enrolled machine; its token is shown once."""
    require_admin()
    body = request.get_json(silent=True)
    given = body.get("underlay") if isinstance(body, dict) else None
    underlay = ip_address_or_none(given, "underlay") or ""
    token = services().hosts.approve(host, event_source(), underlay)
    return jsonify({"host": host, "token": token}), 201


@bp.post("/hosts/<host>/rotate-token")
@operation(
    Operation(
        "A new agent token for a host (the old one stops working)",
        HOSTS,
        {200: Reply(HostToken)},
        errors=(404,),
        path_patterns=BY_HOST,
    )  # fmt: skip
)
def rotate_host_token(host: str) -> Response:
    require_admin()
    return jsonify({"host": host, "token": services().hosts.rotate(host, event_source())})


@bp.post("/hosts/<host>/revoke")
@operation(
    Operation(
        "Revoke a host's agent token; its tenant nodes move to other hosts",
        HOSTS,
        {200: Reply(CredentialView)},
        errors=(404,),
        path_patterns=BY_HOST,
    )  # fmt: skip
)
def revoke_host(host: str) -> Response:
    """Revoke the host's agent token; its tenant nodes are placed on other hosts."""
    require_admin()
    return jsonify(services().hosts.revoke(host, event_source()).to_json())


@bp.get("/hosts/<host>/nodes")
@operation(
    Operation(
        "The nodes placed on a host (the agent of that host); with an ETag",
        HOSTS,
        {
            200: Reply(DesiredNodes, headers={"ETag": "send it back as If-None-Match"}),
            304: Reply(description="Unchanged since the ETag given in If-None-Match"),
        },
        auth="agent-of-host",
        errors=(404,),
        path_patterns=BY_HOST,
    )
)
def host_nodes(host: str) -> Response:
    """The host's desired nodes; with an ETag, so an agent's frequent check costs a 304."""
    if not re.fullmatch(HOSTNAME_PATTERN, host):
        raise NotFound("no such host: not a host name", {"host": host[:64]})
    require_host(host)
    response = jsonify(services().tenants.desired_for_host(host))
    response.add_etag()
    return response.make_conditional(request)
