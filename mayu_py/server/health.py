"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from mayu_py.server.context import services
from mayu_py.server.operations import Operation, Reply, operation
from mayu_py.server.schemas import Health, Readiness

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@operation(Operation("Liveness", ("health",), {200: Reply(Health)}, auth="none"))
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@operation(
    Operation(
        "Readiness: the store answers and the assets directory exists",
        ("health",),
        {200: Reply(Readiness), 503: Reply(Readiness, "Not ready")},
        auth="none",
    )
)
def readyz() -> tuple[Response, int]:
    svc = services()
    checks: dict[str, str] = {}
    try:
        svc.store.ping()
        checks["store"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["store"] = f"failed: {type(exc).__name__}"
    checks["assets"] = "ok" if svc.assets_root.is_dir() else "missing"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"ready": ready, "checks": checks}), 200 if ready else 503
