"""The API's own description: `/api/v1/openapi.json` and `/api/v1/docs`, open to anyone.

The description is not secret: it says what the shipped code accepts, nothing about the
inventory. The docs page is Swagger UI, served from the `swagger-ui-py` package's files on
this server (no CDN); a strict Content-Security-Policy keeps the page to those files.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, send_from_directory, url_for

from mayu_py.errors import NotFound
from mayu_py.server.openapi import describe
from mayu_py.server.operations import Operation, Reply, operation

bp = Blueprint("docs", __name__, url_prefix="/api/v1")

DOCS = ("docs",)
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mayu_py API</title>
<link rel="icon" href="{icon}">
<link rel="stylesheet" href="{css}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""
INIT = """window.ui = SwaggerUIBundle({{
  url: {spec},
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayRequestDuration: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
"""


def swagger_ui_dir() -> Path:
    """Where the swagger-ui-py package keeps Swagger UI's files (without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("the API docs need the swagger-ui-py package")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _description() -> dict:  # type: ignore[type-arg]
    """The app's OpenAPI description, built once per app."""
    cached = current_app.extensions.get("mayu-openapi")
    if cached is None:
        cached = current_app.extensions["mayu-openapi"] = describe(current_app)
    return cached


@bp.get("/openapi.json")
@operation(
    Operation("This OpenAPI 3.1 description", DOCS, {200: Reply({"type": "object"})}, auth="none")
)
def openapi_json() -> Response:
    return jsonify(_description())


@bp.get("/docs")
@operation(
    Operation(
        "The API docs (Swagger UI, served locally)",
        DOCS,
        {200: Reply({"type": "string"}, media="text/html")},
        auth="none",
    )
)
def docs_page() -> Response:
    page = PAGE.format(
        icon=url_for("docs.docs_asset", name="favicon-32x32.png"),
        css=url_for("docs.docs_asset", name="swagger-ui.css"),
        bundle=url_for("docs.docs_asset", name="swagger-ui-bundle.js"),
        init=url_for("docs.docs_init"),
    )
    return Response(page, mimetype="text/html", headers={"Content-Security-Policy": CSP})


@bp.get("/docs/init.js")
@operation(
    Operation(
        "The script that starts Swagger UI on this description",
        DOCS,
        {200: Reply({"type": "string"}, media="text/javascript")},
        auth="none",
    )
)
def docs_init() -> Response:
    script = INIT.format(spec=json.dumps(url_for("docs.openapi_json")))
    return Response(script, mimetype="text/javascript")


@bp.get("/docs/<name>")
@operation(
    Operation(
        "Swagger UI's own files, served from the swagger-ui-py package",
        DOCS,
        {200: Reply({"type": "string"}, media=("text/css", "text/javascript", "image/png"))},
        auth="none",
        errors=(404,),
        path_patterns={"name": "^(" + "|".join(re.escape(a) for a in ASSETS) + ")$"},
    )
)
def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound("no such docs file", {"name": name[:64]})
    return send_from_directory(swagger_ui_dir(), name, max_age=3600)
