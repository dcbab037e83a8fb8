"""The child processes of `mayu serve` (HTTPS listener, BMC runner): how they are run.

Each is a fresh interpreter (`python -m MODULE PARENT_PID ARGS...`: safe beside the parent's
threads, nothing inherited from gunicorn's master but the environment), reads the parent's
settings on stdin, dies with its parent (PR_SET_PDEATHSIG, see wsgi.die_with_parent), and
is restarted with backoff (1 s doubling to 30 s) when it exits on its own.
"""

from __future__ import annotations

import http.client
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from mayu_py.config import Settings
from mayu_py.errors import ConfigError

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
START_TIMEOUT = 30.0


def connect_address(listen: str) -> tuple[str, int]:
    """Where to reach a child listening on `listen` (a wildcard address: its loopback)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def answers_healthz(connection: http.client.HTTPConnection) -> bool:
    """Whether a child answers GET /healthz with 200 on `connection` (closed afterwards)."""
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    finally:
        connection.close()


def child_arguments() -> tuple[Settings, int, list[str]]:
    """In the child: the settings from stdin, the parent's pid and the remaining arguments."""
    settings = Settings.model_validate_json(sys.stdin.buffer.read())
    return settings, int(sys.argv[1]), sys.argv[2:]


class SupervisedChild:
    """One child process of `mayu serve`, watched and restarted."""

    def __init__(
        self,
        name: str,
        module: str,
        settings: Settings,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.settings = settings
        self.args = list(args)
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def spawn(self) -> None:
        argv = [sys.executable, "-m", self.module, str(os.getpid()), *self.args]
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, env={**os.environ, **self.env})
        assert process.stdin is not None
        process.stdin.write(self.settings.model_dump_json().encode())
        process.stdin.close()
        self.process = process

    def start(self, listen: str, answers: Callable[[], bool]) -> None:
        """Spawn the child and wait until `answers()` (a request to the listener it runs on
        `listen`) is true, then watch it; ConfigError (one line) if it exits or does not
        listen within START_TIMEOUT."""
        self.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self.exit_code()
            if code is not None:
                raise ConfigError(
                    f"the {self.name} on {listen} exited ({code}); see the messages above"
                )
            try:
                if answers():
                    break
            except OSError:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise ConfigError(f"the {self.name} did not listen on {listen}") from None
                time.sleep(0.1)
        self.watch()

    def exit_code(self) -> int | None:
        """The child's exit code once it exited, else None."""
        return None if self.process is None else self.process.poll()

    def watch(self) -> None:
        """From now on, restart the child whenever it exits on its own."""
        self._watcher = threading.Thread(target=self._watch, name=f"{self.name}-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            assert self.process is not None
            try:
                self.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                continue
            if self._stopping.is_set():
                return
            log.error(
                "%s exited (%s); restarting in %.0f s", self.name, self.process.returncode, delay
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, MAX_BACKOFF)
            self.spawn()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; no restart afterwards."""
        self._stopping.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
