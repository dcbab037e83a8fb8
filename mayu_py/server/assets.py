"""Serving kernels, initrds and images: one file under the assets root per request, with
Range, ETag, Last-Modified and HEAD (werkzeug's conditional send_file; gunicorn sends the
bytes with sendfile on plain HTTP). Used by the main listener's /assets and by the asset
listener (`assets.listen`, cli/asset_listener.py), an app of its own so that slow downloads
hold its threads, never the script plane's workers."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response, send_file

from mayu_py.errors import NotFound
from mayu_py.server.errors import register_error_handlers


def resolve_asset(root: Path, relative: str) -> Path:
    """The file under root named by relative; NotFound for traversal, symlink escape, dirs."""
    if "\x00" in relative:
        raise NotFound("no such asset", {"path": relative[:256].replace("\x00", "?")})
    real_root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(real_root, relative))
    if os.path.commonpath([real_root, candidate]) != real_root or not os.path.isfile(candidate):
        raise NotFound("no such asset", {"path": relative[:256]})
    return Path(candidate)


def send_asset(root: Path, relative: str) -> Response:
    path = resolve_asset(root, relative)
    return send_file(path, conditional=True, etag=True, last_modified=path.stat().st_mtime)


def asset_app(root: Path) -> Flask:
    """The asset listener's app: /assets/<path> (GET, HEAD) and /healthz, nothing else."""
    app = Flask(__name__)

    @app.route("/assets/<path:relative>", methods=["GET", "HEAD"])
    def asset(relative: str) -> Response:
        return send_asset(root, relative)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    register_error_handlers(app)
    return app
