"""One place that maps errors to JSON HTTP answers; never a traceback in a body."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from mayu_py.errors import MayuError

log = logging.getLogger(__name__)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(MayuError)
    def _mayu_error(exc: MayuError):  # type: ignore[no-untyped-def]
        if exc.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return jsonify(exc.to_json()), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        body = {"error": (exc.name or "error").lower(), "detail": exc.description}
        return jsonify(body), exc.code or 500

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error")
        return jsonify({"error": "internal server error", "detail": type(exc).__name__}), 500
