"""Boot plane: /boot.ipxe, /ipxe, /ignition, /assets/<path>, /report. Machines have no
credentials here; they are matched by hardware identity and, for secrets, a one-time token."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_file

from mayu_py.errors import BadRequest, NotFound
from mayu_py.model import MachineState
from mayu_py.server.context import services
from mayu_py.server.matching import match_group
from mayu_py.server.provisioning import boot_script, ipxe_script

log = logging.getLogger(__name__)

bp = Blueprint("boot", __name__)

IPXE_MIMETYPE = "text/plain; charset=utf-8"
IGNITION_MIMETYPE = "application/vnd.coreos.ignition+json"


def _base_url() -> str:
    return services().settings.server.public_url or request.host_url.rstrip("/")


def _asset_url() -> str:
    return services().settings.assets.base_url or f"{_base_url()}/assets"


@bp.get("/boot.ipxe")
def generic_boot_script() -> Response:
    return Response(boot_script(_base_url()), mimetype=IPXE_MIMETYPE)


@bp.get("/ipxe")
def machine_boot_script() -> Response:
    svc = services()
    decision = svc.machines.boot(
        request.args.get("mac", ""),
        request.args.get("uuid"),
        request.args.get("serial"),
        request.remote_addr,
    )
    machine = decision.machine
    if machine.state == MachineState.MAINTENANCE:
        script = "#!ipxe\necho mayu: machine in maintenance, booting from local disk\nexit\n"
        return Response(script, mimetype=IPXE_MIMETYPE)
    if decision.group is None:
        log.info("no group matches machine mac=%s labels=%s", machine.mac, machine.labels)
        raise NotFound("no group matches this machine", {"mac": machine.mac})
    profile = svc.settings.profiles[decision.group.profile]
    script = ipxe_script(profile, machine, decision.token, _base_url(), _asset_url())
    return Response(script, mimetype=IPXE_MIMETYPE)


@bp.get("/ignition")
def machine_ignition() -> Response:
    svc = services()
    mac = request.args.get("mac", "")
    token = request.args.get("token")
    machine = svc.machines.verify_ignition_token(mac, token, request.remote_addr)
    group = match_group(svc.settings.groups, machine.selector_view())
    if group is None:
        raise NotFound("no group matches this machine", {"mac": machine.mac})
    body = svc.provisioner.ignition(machine, group, _base_url(), token or "")
    svc.machines.consume_ignition_token(mac, token or "", request.remote_addr)
    return Response(body, mimetype=IGNITION_MIMETYPE, headers={"Cache-Control": "no-store"})


@bp.post("/report")
def phone_home() -> tuple[Response, int]:
    svc = services()
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise BadRequest('body must be JSON {"event": "...", "details": {...}}')
    details = payload.get("details") or {}
    if not isinstance(details, dict):
        raise BadRequest("details must be an object")
    machine = svc.machines.report(
        request.args.get("mac", ""),
        request.args.get("token"),
        payload["event"],
        details,
        request.remote_addr,
    )
    return jsonify({"id": machine.id, "state": str(machine.state)}), 200


def resolve_asset(root: Path, relative: str) -> Path:
    """The file under root named by relative; NotFound for traversal, symlink escape, dirs."""
    real_root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(real_root, relative))
    if os.path.commonpath([real_root, candidate]) != real_root or not os.path.isfile(candidate):
        raise NotFound("no such asset", {"path": relative[:256]})
    return Path(candidate)


@bp.route("/assets/<path:relative>", methods=["GET", "HEAD"])
def asset(relative: str) -> Response:
    path = resolve_asset(services().assets_root, relative)
    return send_file(path, conditional=True, etag=True, last_modified=path.stat().st_mtime)
