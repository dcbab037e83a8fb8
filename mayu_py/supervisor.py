"""Run a long-lived program as a supervised child: log forwarding, restart with capped backoff,
clean stop.

The program runs in the foreground and logs to stderr; each line goes to `output_log` (at
`level_of(line)`: WARNING when it says "warning" or "alert", else INFO) and to `on_line`. It
counts as started once a line contains `ready_mark`. A child that dies is restarted after a
delay that doubles up to a cap (and starts over once a child has stayed up for `stable_after`
seconds). Subclasses check their configuration in `check()` before the first start (dnsmasq,
haproxy).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

from mayu_py.errors import ConfigError

log = logging.getLogger(__name__)


class _Child:
    """One process and the thread pumping its stderr into the log."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.started_at = time.monotonic()
        self.ready = threading.Event()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            supervisor.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.reader = threading.Thread(
            target=self._pump, name=f"{supervisor.name}-log-{self.proc.pid}", daemon=True
        )
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        sup = self.supervisor
        for raw in self.proc.stderr:
            line = raw.rstrip()
            if not line:
                continue
            self.lines = (self.lines + [line])[-20:]
            level = sup.level_of(line)
            sup.output_log.log(level, "%s", line, extra={f"{sup.name}_pid": self.proc.pid})
            if sup.ready_mark in line:
                self.ready.set()
            if sup.on_line is not None:
                sup.on_line(line)
        self.proc.stderr.close()


class Supervisor:
    """Keep one program (`argv`) running until stop(); `on_restart` is called after each
    restart (the server counts them)."""

    noise: tuple[str, ...] = ()  # output lines that never explain a failure

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ready_mark: str,
        output_log: logging.Logger,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 30.0,
        startup_timeout: float = 5.0,
        on_restart: Callable[[], object] | None = None,
        on_line: Callable[[str], object] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready_mark = ready_mark
        self.output_log = output_log
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.startup_timeout = startup_timeout
        self.on_line = on_line
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._child: _Child | None = None
        self._monitor: threading.Thread | None = None
        self._restarts = 0
        self._on_restart = on_restart

    @property
    def pid(self) -> int | None:
        """The pid of the running child, or None between restarts and after stop()."""
        child = self._child
        if child is None or child.proc.poll() is not None:
            return None
        return child.proc.pid

    @property
    def restarts(self) -> int:
        return self._restarts

    def last_line(self, text: str) -> str:
        """The last line of `text` that may explain a failure."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        useful = [ln for ln in lines if not any(n in ln for n in self.noise)]
        return (useful or lines or ["no output"])[-1]

    def level_of(self, line: str) -> int:
        """The log level of one output line: WARNING when it says so (or alerts), else INFO."""
        lower = line.lower()
        return logging.WARNING if "warning" in lower or "alert" in lower else logging.INFO

    def check(self) -> None:
        """Refuse a configuration the program rejects (ConfigError); nothing by default."""

    def start(self) -> None:
        """Check the configuration, start the program and wait until it has started.

        Raises ConfigError (one line, the program's own message) when the configuration is
        rejected or the program exits at once.
        """
        if self._monitor is not None:
            raise RuntimeError(f"{type(self).__name__}.start() called twice")
        self.check()
        self._stopping.clear()
        child = self._spawn()
        self._await_ready(child)
        self._monitor = threading.Thread(
            target=self._supervise, name=f"{self.name}-supervisor", daemon=True
        )
        self._monitor.start()
        log.info("%s running (pid %s)", self.name, child.proc.pid)

    def send_signal(self, sig: signal.Signals) -> bool:
        """Signal the running child; False when none is running."""
        child = self._child
        if child is None or child.proc.poll() is not None:
            return False
        child.proc.send_signal(sig)
        return True

    def _spawn(self) -> _Child:
        try:
            child = _Child(self)
        except OSError as exc:
            raise ConfigError(f"cannot run {self.argv[0]}: {exc.strerror}") from None
        with self._lock:
            self._child = child
        return child

    def _await_ready(self, child: _Child) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and not child.ready.is_set():
            if child.proc.poll() is not None:
                child.reader.join(timeout=2.0)
                code = child.proc.returncode
                with self._lock:
                    self._child = None
                last = self.last_line("\n".join(child.lines))
                raise ConfigError(f"{self.name} exited at start (code {code}): {last}")
            child.ready.wait(0.05)
        if not child.ready.is_set():
            log.warning(
                "%s (pid %s) has not logged start-up after %.1f s",
                self.name,
                child.proc.pid,
                self.startup_timeout,
            )

    def _supervise(self) -> None:
        delay = self.backoff_initial
        while not self._stopping.is_set():
            child = self._child
            if child is None:
                return
            code = child.proc.wait()
            child.reader.join(timeout=2.0)
            if self._stopping.is_set():
                return
            if time.monotonic() - child.started_at >= self.stable_after:
                delay = self.backoff_initial
            last = self.last_line("\n".join(child.lines[-1:]))
            log.warning(
                "%s (pid %s) exited with code %s (%s); restarting in %.1f s",
                self.name,
                child.proc.pid,
                code,
                last,
                delay,
            )
            with self._lock:
                self._child = None
            while not self._stopping.wait(delay):
                delay = min(delay * 2, self.backoff_max)
                try:
                    new = self._spawn()
                except ConfigError as exc:
                    log.error("%s restart failed: %s; retrying in %.1f s", self.name, exc, delay)
                    continue
                self._restarts += 1
                log.info(
                    "%s restarted (pid %s, restart %d)", self.name, new.proc.pid, self._restarts
                )
                if self._on_restart is not None:
                    self._on_restart()
                break

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the program (SIGTERM, then SIGKILL) and join the threads; idempotent."""
        self._stopping.set()
        self._terminate(self._child, timeout)
        if self._monitor is not None:
            self._monitor.join(timeout)
            self._monitor = None
        # A restart racing with stop() may have spawned one more child: end it too.
        self._terminate(self._child, timeout)
        with self._lock:
            self._child = None

    @staticmethod
    def _terminate(child: _Child | None, timeout: float) -> None:
        if child is None:
            return
        if child.proc.poll() is None:
            child.proc.terminate()
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        child.reader.join(timeout)

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
