"""The reference for dynamic endpoints: a Flask app that does nothing, under the same gunicorn
settings as `mayu serve` (mayu_py.cli.wsgi: sync workers, same options), answering every path
with fixed bytes read at start-up (by default the bytes `mayu serve` answered for that path).

    python -m bench.harness.empty_app LISTEN WORKERS BODIES_DIR [CERTFILE KEYFILE]

BODIES_DIR holds one file per first path segment (`ipxe`, `ignition`, `report`, `boot.ipxe`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from flask import Flask, Response

from mayu_py.cli.wsgi import GunicornServer, server_options


def empty_app(bodies: Path) -> Flask:
    answers = {p.name: p.read_bytes() for p in bodies.iterdir() if p.is_file()}
    app = Flask(__name__)

    @app.route("/<path:name>", methods=["GET", "POST"])
    def answer(name: str) -> Response:
        return Response(answers.get(name, b"ok\n"), mimetype="text/plain")

    return app


def main() -> None:
    listen, workers, bodies = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    tls = {}
    if len(sys.argv) > 5:
        tls = {"certfile": sys.argv[4], "keyfile": sys.argv[5]}
    options = server_options(listen, workers, "bench-empty", preload_app=True, **tls)
    GunicornServer(empty_app(bodies), options).run()


if __name__ == "__main__":
    main()
