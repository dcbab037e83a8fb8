"""Boot plane: /boot.ipxe, /ipxe, /ignition, /assets/<path>, /report. Machines have no
credentials until their window opens; the boot service decides, these handlers translate.

Scripts and configs carry `Cache-Control: no-store`. HEAD of /ipxe and /ignition is refused
(405): a HEAD must never mint a token or spend one.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, jsonify, request

from mayu_py.errors import BadRequest, MayuError
from mayu_py.server.assets import send_asset
from mayu_py.server.boot_service import BootKind, Identity
from mayu_py.server.context import services
from mayu_py.server.jsonbody import json_body
from mayu_py.server.scripts import boot_script, install_script, local_boot_script, wait_script
from mayu_py.server.urls import ServerUrls, server_urls

log = logging.getLogger(__name__)

bp = Blueprint("boot", __name__)

IPXE_MIMETYPE = "text/plain; charset=utf-8"
IGNITION_MIMETYPE = "application/vnd.coreos.ignition+json"
NO_STORE = {"Cache-Control": "no-store"}
TLS_ENVIRON_KEY = "mayu.tls"


class MethodNotAllowed(MayuError):
    status = 405


def _urls() -> ServerUrls:
    return server_urls(services().settings, request.host_url)


def _over_tls() -> bool:
    """True on the HTTPS listener (its WSGI wrapper marks every request)."""
    return bool(request.environ.get(TLS_ENVIRON_KEY))


@bp.before_request
def _no_side_effects_on_head() -> None:
    if request.method == "HEAD" and request.endpoint in (
        "boot.machine_boot_script",
        "boot.machine_ignition",
    ):
        raise MethodNotAllowed("HEAD is not served here: use GET", {"allow": "GET"})


@bp.get("/boot.ipxe")
def generic_boot_script() -> Response:
    return Response(boot_script(_urls().http), mimetype=IPXE_MIMETYPE, headers=NO_STORE)


@bp.get("/ipxe")
def machine_boot_script() -> Response:
    svc = services()
    identity = Identity.parse(
        request.args.get("mac", ""), request.args.get("uuid"), request.args.get("serial")
    )
    answer = svc.boot.answer(identity, request.remote_addr)
    if answer.kind == BootKind.INSTALL:
        assert answer.profile is not None and answer.token is not None
        urls = _urls()
        script = install_script(
            answer.profile, answer.machine, answer.token, urls.http, urls.assets
        )
    elif answer.kind == BootKind.LOCAL:
        script = local_boot_script(answer.machine, request.args.get("platform"))
    else:
        retry = svc.settings.server.discovery.retry_seconds
        script = wait_script(answer.reason, retry)
    return Response(script, mimetype=IPXE_MIMETYPE, headers=NO_STORE)


@bp.get("/ignition")
def machine_ignition() -> Response:
    """Over HTTP: the stub that merges the real config over HTTPS. Over HTTPS (or with the
    operator's explicit insecure option): the real config, spending the boot token."""
    svc = services()
    mac, token, source = request.args.get("mac", ""), request.args.get("token"), request.remote_addr
    if _over_tls() or svc.settings.server.insecure_secrets_over_http:
        body = svc.delivery.secret(mac, token, source, _urls())
    else:
        body = svc.delivery.stub(mac, token, source, _urls())
    return Response(body, mimetype=IGNITION_MIMETYPE, headers=NO_STORE)


@bp.post("/report")
def phone_home() -> tuple[Response, int]:
    svc = services()
    payload = json_body(svc.settings.server.max_json_depth)
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise BadRequest('body must be JSON {"event": "...", "details": {...}}')
    details = payload.get("details") or {}
    if not isinstance(details, dict):
        raise BadRequest("details must be an object")
    limit = svc.settings.server.report_details_max_bytes
    if len(json.dumps(details)) > limit:
        raise BadRequest("details too large", {"max_bytes": limit})
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    machine = svc.delivery.report(
        request.args.get("mac", ""),
        request.args.get("token"),
        credential.strip() if scheme.lower() == "bearer" else None,
        payload["event"],
        details,
        request.remote_addr,
    )
    return jsonify({"id": machine.id, "state": str(machine.state)}), 200


@bp.route("/assets/<path:relative>", methods=["GET", "HEAD"])
def asset(relative: str) -> Response:
    return send_asset(services().assets_root, relative)
