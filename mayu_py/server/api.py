"""Admin plane, REST v1 under /api/v1 (bearer token): machines, events, profiles, groups."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel

from mayu_py.model import MAC_PATTERN, canonical_mac
from mayu_py.server.auth import event_source, require_admin_token
from mayu_py.server.context import services
from mayu_py.server.operations import Operation, Reply, body_of, operation, query_of
from mayu_py.server.power import public_bmc
from mayu_py.server.power_api import accepted
from mayu_py.server.schemas import (
    AlertList,
    Approval,
    EventList,
    GroupList,
    MachineDetail,
    MachineList,
    MachinePage,
    MachineUpdate,
    MachineView,
    ProfileList,
    Reinstalled,
    Removed,
)

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.before_request(require_admin_token)

MACHINES = ("machines",)
BY_MAC = {"machine_id": MAC_PATTERN}
FIRST_MACHINE = {"machine_id": "$response.body#/items/0/id"}
YAML = "application/yaml"


def machine_operation(
    summary: str, ok: Reply, *errors: int, body: type[BaseModel] | None = None
) -> Operation:
    """An operation on one machine (by MAC): 404 when there is none."""
    return Operation(
        summary, MACHINES, {200: ok}, body=body, errors=(404, *errors), path_patterns=BY_MAC
    )


@bp.get("/machines")
@operation(
    Operation(
        "List machines: by state, by label selector, a page at a time",
        MACHINES,
        {
            200: Reply(
                MachinePage,
                headers={"ETag": "send it back as If-None-Match"},
                links={
                    "ShowFirstMachine": ("api.show_machine", FIRST_MACHINE),
                    "FirstMachineEvents": ("api.machine_events", FIRST_MACHINE),
                },
            ),
            304: Reply(description="Unchanged since the ETag given in If-None-Match"),
        },
        query=MachineList,
    )
)
def list_machines() -> Response:
    """With an ETag: a watcher polling an unchanged inventory gets a 304."""
    query = query_of(MachineList)
    machines, token = services().machines.list(
        query.state, query.selector, query.limit, query.continue_
    )
    response = jsonify({"items": [m.to_json() for m in machines], "continue": token})
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/machines/<machine_id>")
@operation(machine_operation("A machine with its BMC and events", Reply(MachineDetail)))
def show_machine(machine_id: str) -> Response:
    svc = services()
    machine = svc.machines.get(machine_id)
    body = machine.to_json()
    bmc = svc.store.get_bmc(machine.id)
    body["bmc"] = public_bmc(bmc) if bmc else None
    body["events"] = [e.to_json() for e in svc.store.events(machine.id)]
    return jsonify(body)


@bp.get("/machines/<machine_id>/events")
@operation(machine_operation("A machine's events, oldest first", Reply(EventList)))
def machine_events(machine_id: str) -> Response:
    """A machine's events; also of a MAC that has a BMC but never booted yet."""
    svc = services()
    mac = canonical_mac(machine_id)
    if not svc.power.known(mac):
        svc.machines.get(mac)
    return jsonify({"items": [e.to_json() for e in svc.store.events(mac)]})


@bp.patch("/machines/<machine_id>")
@operation(
    machine_operation(
        "Set a machine's state, hostname or labels (null removes a label); all or nothing",
        Reply(MachineView),
        409,
        body=MachineUpdate,
    )
)
def patch_machine(machine_id: str) -> Response:
    changes = body_of(MachineUpdate).model_dump(mode="json", exclude_unset=True)
    machine = services().machines.update(machine_id, changes, event_source())
    return jsonify(machine.to_json())


@bp.delete("/machines/<machine_id>")
@operation(
    machine_operation(
        "Forget a machine and revoke its credentials, agent token and certificates",
        Reply(Removed),
    )
)
def delete_machine(machine_id: str) -> Response:
    machine, revoked = services().machines.delete(machine_id, event_source())
    return jsonify(machine.to_json() | {"revoked": asdict(revoked)})


@bp.post("/machines/<machine_id>/approve")
@operation(
    machine_operation(
        "Approve a discovered machine with its role: it provisions at its next boot",
        Reply(MachineView),
        409,
        body=Approval,
    )
)
def approve_machine(machine_id: str) -> Response:
    approval = body_of(Approval)
    machine = services().machines.approve(
        machine_id, approval.role, approval.labels, event_source()
    )
    return jsonify(machine.to_json())


@bp.post("/machines/<machine_id>/reinstall")
@operation(
    Operation(
        "Provision a machine again at its next network boot (through its BMC if it has one)",
        MACHINES,
        {
            202: Reply(
                Reinstalled,
                "Reinstall recorded",
                headers={"Location": "the queued BMC action, when there is one"},
            )
        },
        errors=(404, 409),
        path_patterns=BY_MAC,
    )
)
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
@operation(machine_operation("Mark an installed machine as running", Reply(MachineView), 409))
def boot_complete(machine_id: str) -> Response:
    machine = services().machines.boot_complete(machine_id, event_source())
    return jsonify(machine.to_json())


@bp.get("/events")
@operation(Operation("Events about no enrolled machine", ("events",), {200: Reply(AlertList)}))
def alerts() -> Response:
    """Events about no enrolled machine: unknown machines denied, refused requests."""
    return jsonify(
        {"items": [e.to_json() | {"machine_id": e.machine_id} for e in services().store.alerts()]}
    )


@bp.get("/profiles")
@operation(Operation("Install profiles (config)", ("config",), {200: Reply(ProfileList)}))
def list_profiles() -> Response:
    profiles = services().settings.profiles
    return jsonify({"items": [{"name": n} | p.model_dump() for n, p in profiles.items()]})


@bp.get("/groups")
@operation(Operation("Machine groups (config)", ("config",), {200: Reply(GroupList)}))
def list_groups() -> Response:
    return jsonify({"items": [g.model_dump() for g in services().settings.groups]})


@bp.get("/kubeconfig")
@operation(
    Operation(
        "The admin kubeconfig of the level-1 cluster",
        ("config",),
        {200: Reply({"type": "object"}, "kubeconfig (a YAML document)", media=YAML)},
    )
)
def admin_kubeconfig() -> Response:
    """The operator's admin kubeconfig for the level-1 cluster."""
    svc = services()
    text = svc.provisioner.pki.admin_kubeconfig(svc.provisioner.cluster_facts())
    return Response(text, mimetype=YAML)
