"""Admin plane, REST v1 under /api/v1 (bearer token): machines, events, profiles, groups."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from mayu_py.errors import BadRequest
from mayu_py.model import MachineState
from mayu_py.server.auth import require_admin_token
from mayu_py.server.context import services

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.before_request(require_admin_token)


@bp.get("/machines")
def list_machines() -> Response:
    state = request.args.get("state")
    machines = services().store.list_machines()
    if state:
        machines = [m for m in machines if m.state == state]
    return jsonify({"items": [m.to_json() for m in machines]})


@bp.get("/machines/<machine_id>")
def show_machine(machine_id: str) -> Response:
    svc = services()
    machine = svc.machines.get(machine_id)
    body = machine.to_json()
    body["events"] = [e.to_json() for e in svc.store.events(machine.id)]
    return jsonify(body)


@bp.patch("/machines/<machine_id>")
def patch_machine(machine_id: str) -> Response:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not payload:
        raise BadRequest("body must be a JSON object of KEY: VALUE")
    svc = services()
    machine = None
    for key, value in payload.items():
        if not isinstance(value, str):
            raise BadRequest("values must be strings", {"key": key})
        machine = svc.machines.set_attribute(machine_id, key, value, request.remote_addr)
    return jsonify(machine.to_json() if machine else {})


@bp.post("/machines/<machine_id>/boot-complete")
def boot_complete(machine_id: str) -> Response:
    machine = services().machines.transition(
        machine_id, MachineState.RUNNING, "boot-complete", request.remote_addr
    )
    return jsonify(machine.to_json())


@bp.get("/events")
def unknown_machine_events() -> Response:
    """Events of machines without a record, e.g. unknown machines denied by policy."""
    return jsonify(
        {
            "items": [
                e.to_json() | {"machine_id": e.machine_id}
                for e in services().store.unknown_events()
            ]
        }
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
