"""Run dnsmasq as a supervised child: log forwarding, restart with capped backoff, clean stop.

dnsmasq runs in the foreground and logs to stderr; each line goes to the logger
`mayu_py.dhcp.dnsmasq`. A child that dies is restarted after a delay that doubles up to a cap
(and starts over once a child has stayed up for a while). With `netns`, dnsmasq runs inside
that network namespace (`ip netns exec NS dnsmasq ...`; ip execs, so the pid is dnsmasq's).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mayu_py.command import in_namespace, run
from mayu_py.errors import CommandError, ConfigError

log = logging.getLogger(__name__)
dnsmasq_log = logging.getLogger("mayu_py.dhcp.dnsmasq")

_READY_MARK = "started, version"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if "FAILED to start up" not in ln]
    return (useful or lines or ["no output"])[-1]


class _Child:
    """One dnsmasq process and the thread pumping its stderr into the log."""

    def __init__(self, argv: list[str]) -> None:
        self.started_at = time.monotonic()
        self.ready = threading.Event()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.reader = threading.Thread(
            target=self._pump, name=f"dnsmasq-log-{self.proc.pid}", daemon=True
        )
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.rstrip()
            if not line:
                continue
            self.lines = (self.lines + [line])[-20:]
            if _READY_MARK in line:
                self.ready.set()
            level = logging.WARNING if "warning" in line.lower() else logging.INFO
            dnsmasq_log.log(level, "%s", line, extra={"dnsmasq_pid": self.proc.pid})
        self.proc.stderr.close()


class DnsmasqSupervisor:
    """Keep one dnsmasq running on `conf_file` until stop(); `on_restart` is called after each
    restart (the server counts them)."""

    def __init__(
        self,
        conf_file: Path,
        *,
        netns: str | None = None,
        dnsmasq: str = "dnsmasq",
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 30.0,
        startup_timeout: float = 5.0,
        on_restart: Callable[[], object] | None = None,
    ) -> None:
        self.conf_file = Path(conf_file)
        self.netns = netns
        self.dnsmasq = dnsmasq
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._child: _Child | None = None
        self._monitor: threading.Thread | None = None
        self._restarts = 0
        self._on_restart = on_restart

    @property
    def argv(self) -> list[str]:
        return in_namespace(
            self.netns,
            [
                self.dnsmasq,
                "--keep-in-foreground",
                "--log-facility=-",
                f"--conf-file={self.conf_file}",
            ],
        )

    @property
    def pid(self) -> int | None:
        """The pid of the running dnsmasq, or None between restarts and after stop()."""
        child = self._child
        if child is None or child.proc.poll() is not None:
            return None
        return child.proc.pid

    @property
    def restarts(self) -> int:
        return self._restarts

    def start(self) -> None:
        """Check the configuration, start dnsmasq and wait until it is serving.

        Raises ConfigError (one line, dnsmasq's own message) when dnsmasq rejects the file or
        exits at once (unknown interface, address in use, missing netns...).
        """
        if self._monitor is not None:
            raise RuntimeError("DnsmasqSupervisor.start() called twice")
        try:
            run([self.dnsmasq, "--test", f"--conf-file={self.conf_file}"], timeout=10.0)
        except CommandError as exc:
            if exc.returncode == 127:
                raise ConfigError(
                    f"{self.dnsmasq} not found: install dnsmasq (Debian: dnsmasq-base)"
                ) from None
            raise ConfigError(
                f"dnsmasq rejects {self.conf_file}: {_last_line(exc.stderr)}"
            ) from None
        self._stopping.clear()
        child = self._spawn()
        self._await_ready(child)
        self._monitor = threading.Thread(
            target=self._supervise, name="dnsmasq-supervisor", daemon=True
        )
        self._monitor.start()
        log.info("dnsmasq running (pid %s, conf %s)", child.proc.pid, self.conf_file)

    def _spawn(self) -> _Child:
        try:
            child = _Child(self.argv)
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
                last = _last_line("\n".join(child.lines))
                raise ConfigError(f"dnsmasq exited at start (code {code}): {last}")
            child.ready.wait(0.05)
        if not child.ready.is_set():
            log.warning(
                "dnsmasq (pid %s) has not logged start-up after %.1f s",
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
            last = _last_line("\n".join(child.lines[-1:]))
            log.warning(
                "dnsmasq (pid %s) exited with code %s (%s); restarting in %.1f s",
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
                    log.error("dnsmasq restart failed: %s; retrying in %.1f s", exc, delay)
                    continue
                self._restarts += 1
                log.info("dnsmasq restarted (pid %s, restart %d)", new.proc.pid, self._restarts)
                if self._on_restart is not None:
                    self._on_restart()
                break

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate dnsmasq (SIGTERM, then SIGKILL) and join the threads; idempotent."""
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

    def __enter__(self) -> DnsmasqSupervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
