"""Admin plane, REST v1 under /api/v1 (bearer token): machines, events, profiles, groups."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from mayu_py.errors import BadRequest
from mayu_py.model import canonical_mac
from mayu_py.server.auth import event_source, require_admin_token
from mayu_py.server.context import services
from mayu_py.server.jsonbody import json_body
from mayu_py.server.power import public_bmc
from mayu_py.server.power_api import accepted

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.before_request(require_admin_token)


def _body_object() -> dict[str, Any]:
    body = json_body(services().settings.server.max_json_depth)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


@bp.get("/machines")
def list_machines() -> Response:
    machines = services().machines.list(request.args.get("state"))
    return jsonify({"items": [m.to_json() for m in machines]})


@bp.get("/machines/<machine_id>")
def show_machine(machine_id: str) -> Response:
    svc = services()
    machine = svc.machines.get(machine_id)
    body = machine.to_json()
    bmc = svc.store.get_bmc(machine.id)
    body["bmc"] = public_bmc(bmc) if bmc else None
    body["events"] = [e.to_json() for e in svc.store.events(machine.id)]
    return jsonify(body)


@bp.get("/machines/<machine_id>/events")
def machine_events(machine_id: str) -> Response:
    """A machine's events; also of a MAC that has a BMC but never booted yet."""
    svc = services()
    mac = canonical_mac(machine_id)
    if not svc.power.known(mac):
        svc.machines.get(mac)
    return jsonify({"items": [e.to_json() for e in svc.store.events(mac)]})


@bp.patch("/machines/<machine_id>")
def patch_machine(machine_id: str) -> Response:
    machine = services().machines.update(machine_id, _body_object(), event_source())
    return jsonify(machine.to_json())


@bp.delete("/machines/<machine_id>")
def delete_machine(machine_id: str) -> Response:
    machine = services().machines.delete(machine_id, event_source())
    return jsonify(machine.to_json())


@bp.post("/machines/<machine_id>/approve")
def approve_machine(machine_id: str) -> Response:
    body = _body_object()
    role, labels = body.get("role"), body.get("labels") or {}
    if not isinstance(role, str):
        raise BadRequest('body must be {"role": "worker"|"controller", "labels": {...}}')
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise BadRequest("labels must be an object of strings")
    machine = services().machines.approve(machine_id, role, labels, event_source())
    return jsonify(machine.to_json())


@bp.post("/machines/<machine_id>/reinstall")
def reinstall_machine(machine_id: str) -> tuple[Response, int]:
    """202: the machine provisions again at its next network boot. With a BMC the answer
    carries the queued action (next boot PXE, power cycle) and its Location."""
    machine, action = services().machines.reinstall(machine_id, event_source())
    if action is None:
        next_step = "power-cycle the machine: it provisions again at its next network boot"
        return jsonify(machine.to_json() | {"next": next_step, "action": None}), 202
    next_step = "the BMC sets the next boot to PXE and power-cycles the machine"
    return accepted(action, machine.to_json() | {"next": next_step})


@bp.post("/machines/<machine_id>/boot-complete")
def boot_complete(machine_id: str) -> Response:
    machine = services().machines.boot_complete(machine_id, event_source())
    return jsonify(machine.to_json())


@bp.get("/events")
def alerts() -> Response:
    """Events about no enrolled machine: unknown machines denied, refused requests."""
    return jsonify(
        {"items": [e.to_json() | {"machine_id": e.machine_id} for e in services().store.alerts()]}
    )


@bp.get("/profiles")
def list_profiles() -> Response:
    profiles = services().settings.profiles
    return jsonify({"items": [{"name": n} | p.model_dump() for n, p in profiles.items()]})


@bp.get("/groups")
def list_groups() -> Response:
    return jsonify({"items": [g.model_dump() for g in services().settings.groups]})


@bp.get("/kubeconfig")
def admin_kubeconfig() -> Response:
    """The operator's admin kubeconfig for the level-1 cluster."""
    svc = services()
    text = svc.provisioner.pki.admin_kubeconfig(svc.provisioner.cluster_facts())
    return Response(text, mimetype="application/yaml")
