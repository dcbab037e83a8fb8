"""One place that maps errors to HTTP answers: RFC 9457 problem details
(`application/problem+json`), never a traceback in a body."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from mayu_py.errors import MayuError

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"


def problem(status: int, detail: str, context: Any = None) -> Response:
    """A problem+json response: type, title, status, detail, and our `context` member."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": phrase,
        "status": status,
        "detail": detail,
    }
    if context is not None:
        body["context"] = context
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    if status == 405 and isinstance(context, dict) and "allow" in context:
        response.headers["Allow"] = context["allow"]
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(MayuError)
    def _mayu_error(exc: MayuError) -> Response:
        if exc.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return problem(exc.status, exc.message, exc.detail)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = problem(exc.code or 500, exc.description or exc.name or "error")
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem(500, "internal server error", {"error": type(exc).__name__})
