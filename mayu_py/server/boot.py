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
from mayu_py.server.operations import Operation, Reply, body_of, operation
from mayu_py.server.schemas import IpxeQuery, MachineCredentials, Report, ReportAnswer
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


BOOT = ("boot",)
IPXE = Reply({"type": "string"}, "iPXE script", media=IPXE_MIMETYPE)
IGNITION = Reply({"type": "object"}, "Ignition config (spec 3.3.0)", media=IGNITION_MIMETYPE)


@bp.get("/boot.ipxe")
@operation(Operation("The generic iPXE script: chains to /ipxe with the machine's identity",
                     BOOT, {200: IPXE}, auth="none"))  # fmt: skip
def generic_boot_script() -> Response:
    return Response(boot_script(_urls().http), mimetype=IPXE_MIMETYPE, headers=NO_STORE)


@bp.get("/ipxe")
@operation(
    Operation(
        "The machine's iPXE script: wait, install, or boot its local disk",
        BOOT,
        {200: IPXE},
        auth="none",
        query=IpxeQuery,
        errors=(404, 429),
    )
)
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
    response = Response(script, mimetype=IPXE_MIMETYPE, headers=NO_STORE)
    if answer.kept_at is not None:
        svc.boot_reads.keep(answer.kept_at, request.environ, response)
    return response


@bp.get("/ignition")
@operation(
    Operation(
        "The machine's Ignition: a secret-free stub over HTTP, the real config over HTTPS",
        BOOT,
        {200: IGNITION},
        auth="none",
        query=MachineCredentials,
        errors=(403, 404, 409),
    )
)
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
@operation(
    Operation(
        "A machine phones home (its report credential, or its boot token in the query)",
        BOOT,
        {200: Reply(ReportAnswer)},
        auth="report",
        query=MachineCredentials,
        body=Report,
        errors=(403, 409),
    )
)
def phone_home() -> tuple[Response, int]:
    svc = services()
    payload = body_of(Report)
    details = payload.details or {}
    limit = svc.settings.server.report_details_max_bytes
    if len(json.dumps(details)) > limit:
        raise BadRequest("details too large", {"max_bytes": limit})
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    machine = svc.delivery.report(
        request.args.get("mac", ""),
        request.args.get("token"),
        credential.strip() if scheme.lower() == "bearer" else None,
        payload.event,
        details,
        request.remote_addr,
    )
    return jsonify({"id": machine.id, "state": str(machine.state)}), 200


@bp.route("/assets/<path:relative>", methods=["GET", "HEAD"])
@operation(
    Operation(
        "Kernels, initrds and images, with Range, ETag and Last-Modified",
        BOOT,
        {
            200: Reply(
                {"type": "string", "contentMediaType": "application/octet-stream"},
                media="application/octet-stream",
            ),  # fmt: skip
            206: Reply(
                {"type": "string"}, "Part of the file (Range)", media="application/octet-stream"
            ),  # fmt: skip
            304: Reply(description="Not modified"),
        },
        auth="none",
        errors=(404, 416),
        head=True,
    )
)
def asset(relative: str) -> Response:
    return send_asset(services().assets_root, relative)
