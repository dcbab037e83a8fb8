"""The HTTPS listener of `mayu serve`: the same app as the plain listener, in a gunicorn of
its own, because gunicorn applies one certificate to every socket it binds and the boot plane
must stay plain HTTP (iPXE and the first Ignition fetch cannot verify our CA). A second
gunicorn keeps both listeners production servers with no extra daemon; a TLS front such as
nginx remains possible (point it at the plain listener and set server.tls.public_url).

The child is a fresh interpreter (`python -m mayu_py.cli.tls_listener`: safe beside the
parent's threads) that reads the parent's settings on stdin and the admin token from its
environment, dies with its parent (PR_SET_PDEATHSIG), and is restarted with backoff if it
exits on its own. It inherits the parent's metrics directory (PROMETHEUS_MULTIPROC_DIR), so
/metrics on either listener reports both.
"""

from __future__ import annotations

import http.client
import logging
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from mayu_py.cli.logging_setup import configure_logging
from mayu_py.cli.serving import build_app
from mayu_py.cli.wsgi import GunicornServer, die_with_parent, server_options
from mayu_py.config import Settings
from mayu_py.errors import ConfigError
from mayu_py.server.boot import TLS_ENVIRON_KEY

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0


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
    options = server_options(
        settings.server.tls_listen,
        workers,
        "mayu-serve-tls",
        certfile=str(tls.cert_file),
        keyfile=str(tls.key_file),
    )
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
        env = {**os.environ, "MAYU_TOKEN": self.token}
        argv = [sys.executable, "-m", __name__, str(self.workers), str(os.getpid())]
        self._process = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env)
        assert self._process.stdin is not None
        self._process.stdin.write(self.settings.model_dump_json().encode())
        self._process.stdin.close()

    def start(self) -> None:
        """Start the child; ConfigError (one line) unless it listens within START_TIMEOUT."""
        self._spawn()
        address = _connect_address(self.settings.server.tls_listen)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise ConfigError(
                    f"the HTTPS listener on {self.settings.server.tls_listen} exited "
                    f"({self._process.returncode}); see the messages above"
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
            try:
                self._process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                continue
            if self._stopping.is_set():
                return
            log.error(
                "HTTPS listener exited (%s); restarting in %.0f s", self._process.returncode, delay
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, 30.0)
            self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def main() -> None:
    """The child's entry: `python -m mayu_py.cli.tls_listener WORKERS PARENT_PID`."""
    workers, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    settings = Settings.model_validate_json(sys.stdin.buffer.read())
    _child(settings, os.environ["MAYU_TOKEN"], workers, parent_pid)


if __name__ == "__main__":
    main()
