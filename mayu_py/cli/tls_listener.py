"""The HTTPS listener of `mayu serve`: the same app as the plain listener, in a gunicorn of
its own, because gunicorn applies one certificate to every socket it binds and the boot plane
must stay plain HTTP (iPXE and the first Ignition fetch cannot verify our CA). A second
gunicorn keeps both listeners production servers with no extra daemon; a TLS front such as
nginx remains possible (point it at the plain listener and set server.tls.public_url).

The child is run like every child of `mayu serve` (cli/children.py: a fresh interpreter with
the settings on stdin, dying with its parent, restarted with backoff); it reads the admin
token from its environment. It inherits the parent's metrics directory
(PROMETHEUS_MULTIPROC_DIR), so /metrics on either listener reports both.
"""

from __future__ import annotations

import http.client
import os
import ssl
from collections.abc import Callable
from typing import Any

from mayu_py.cli.children import (
    SupervisedChild,
    answers_healthz,
    child_arguments,
    connect_address,
)
from mayu_py.cli.logging_setup import configure_logging
from mayu_py.cli.proxy_tls import ProxyTlsWorker
from mayu_py.cli.serving import build_app
from mayu_py.cli.wsgi import GunicornServer, die_with_parent, server_options
from mayu_py.config import Settings
from mayu_py.server.boot import TLS_ENVIRON_KEY


def _mark_tls(wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
    def marked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ[TLS_ENVIRON_KEY] = True
        return wsgi_app(environ, start_response)

    return marked


def _child(settings: Settings, token: str, workers: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    configure_logging(False)
    app, tls = build_app(settings, token)
    app.wsgi_app = _mark_tls(app.wsgi_app)  # type: ignore[method-assign]
    balancers = settings.server.proxy_protocol_from
    options = server_options(
        settings.server.tls_listen,
        workers,
        "mayu-serve-tls",
        certfile=str(tls.cert_file),
        keyfile=str(tls.key_file),
        # PROXY lines come before TLS here: the worker reads them, gunicorn's parser never.
        proxy_protocol=False,
        proxy_allow_ips=",".join(balancers),
    )
    if balancers:
        options["worker_class"] = ProxyTlsWorker
    GunicornServer(app, options).run()


class TlsListener:
    """Runs and watches the HTTPS gunicorn child."""

    def __init__(self, settings: Settings, token: str, workers: int, ca_pem: str) -> None:
        self.settings = settings
        self.ca_pem = ca_pem
        self.child = SupervisedChild(
            "HTTPS listener", __name__, settings, [str(workers)], {"MAYU_TOKEN": token}
        )

    def start(self) -> None:
        """Start the child; ConfigError (one line) unless it listens in time."""
        listen = self.settings.server.tls_listen
        address = connect_address(listen)
        self.child.start(listen, lambda: self._answers(address))

    def _answers(self, address: tuple[str, int]) -> bool:
        """Our listener answers /healthz with a certificate from our CA (a foreign process
        on the port does not)."""
        context = ssl.create_default_context(cadata=self.ca_pem)
        context.check_hostname = False  # an operator's certificate may not name 127.0.0.1
        return answers_healthz(http.client.HTTPSConnection(*address, timeout=2, context=context))

    def stop(self) -> None:
        self.child.stop()


def main() -> None:
    """The child's entry: `python -m mayu_py.cli.tls_listener PARENT_PID WORKERS`."""
    settings, parent_pid, args = child_arguments()
    _child(settings, os.environ["MAYU_TOKEN"], int(args[0]), parent_pid)


if __name__ == "__main__":
    main()
