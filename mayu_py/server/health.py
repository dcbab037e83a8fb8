"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from mayu_py.server.context import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
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
