"""The HTTPS listener of `mayu serve`: the same app as the plain listener, in a gunicorn of
its own, because gunicorn applies one certificate to every socket it binds and the boot plane
must stay plain HTTP (iPXE and the first Ignition fetch cannot verify our CA). A second
gunicorn keeps both listeners production servers with no extra daemon; a TLS front such as
nginx remains possible (point it at the plain listener and set server.tls.public_url).

The child is started with multiprocessing's `spawn` (a fresh interpreter: safe beside the
parent's threads), dies with its parent (PR_SET_PDEATHSIG), and is restarted with backoff if
it exits on its own.
"""

from __future__ import annotations

import ctypes
import http.client
import logging
import multiprocessing
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from mayu_py.cli.serving import build_app
from mayu_py.cli.wsgi import GunicornServer
from mayu_py.config import Settings
from mayu_py.errors import ConfigError
from mayu_py.server.boot import TLS_ENVIRON_KEY

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1


def _mark_tls(wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
    def marked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ[TLS_ENVIRON_KEY] = True
        return wsgi_app(environ, start_response)

    return marked


def _die_with_parent(parent_pid: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(0)


def _child(settings: Settings, token: str, workers: int, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    from mayu_py.cli.logging_setup import configure_logging

    configure_logging(False)
    app, tls = build_app(settings, token)
    app.wsgi_app = _mark_tls(app.wsgi_app)  # type: ignore[method-assign]
    options = {
        "bind": settings.server.tls_listen,
        "workers": workers,
        "worker_class": "sync",
        "certfile": str(tls.cert_file),
        "keyfile": str(tls.key_file),
        "forwarded_allow_ips": "",
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "timeout": 60,
        "graceful_timeout": 5,
        "proc_name": "mayu-serve-tls",
    }
    GunicornServer(app, options).run()


def _connect_address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


class TlsListener:
    """Runs and watches the HTTPS gunicorn child."""

    def __init__(self, settings: Settings, token: str, workers: int, ca_pem: str) -> None:
        self.settings = settings
        self.ca_pem = ca_pem
        self.token = token
        self.workers = workers
        self._process: Any = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=_child,
            args=(self.settings, self.token, self.workers, os.getpid()),
            name="mayu-serve-tls",
        )
        self._process.start()

    def start(self) -> None:
        """Start the child; ConfigError (one line) unless it listens within START_TIMEOUT."""
        self._spawn()
        address = _connect_address(self.settings.server.tls_listen)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not self._process.is_alive():
                raise ConfigError(
                    f"the HTTPS listener on {self.settings.server.tls_listen} exited "
                    f"({self._process.exitcode}); is the port taken? (server.tls.listen)"
                )
            try:
                if self._answers(address):
                    break
            except OSError:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise ConfigError(
                        f"the HTTPS listener did not listen on {self.settings.server.tls_listen}"
                    ) from None
                time.sleep(0.1)
        self._watcher = threading.Thread(target=self._watch, name="tls-watch", daemon=True)
        self._watcher.start()

    def _answers(self, address: tuple[str, int]) -> bool:
        """Our listener answers /healthz with a certificate from our CA (a foreign process
        on the port does not)."""
        context = ssl.create_default_context(cadata=self.ca_pem)
        context.check_hostname = False  # an operator's certificate may not name 127.0.0.1
        connection = http.client.HTTPSConnection(*address, timeout=2, context=context)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        finally:
            connection.close()

    def _watch(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            self._process.join(timeout=1.0)
            if self._stopping.is_set() or self._process.is_alive():
                continue
            log.error(
                "HTTPS listener exited (%s); restarting in %.0f s", self._process.exitcode, delay
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, 30.0)
            self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is None or not process.is_alive():
            return
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)
