"""HAProxy in master-worker mode as a supervised child, reloaded without dropping connections.

`haproxy -W -db -f CONFIG -p PIDFILE` stays in the foreground (the master); its workers carry
the connections. A reload writes the new configuration (checked first with `haproxy -c`),
then sends the master SIGUSR2: it starts new workers on the new configuration and the old ones
finish their connections (RECIPES section 17). The master logs "Loading success." after every
(re)load, which is how a reload is known to be done (and timed). A master left running by an
agent that was killed -9 is found through the pidfile and ended before a new one starts.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from pathlib import Path

from mayu_py.command import in_namespace, run
from mayu_py.errors import CommandError, ConfigError, MayuError
from mayu_py.files import atomic_write
from mayu_py.pids import running, stop
from mayu_py.supervisor import Supervisor

log = logging.getLogger(__name__)
haproxy_log = logging.getLogger("mayu_py.ingress.haproxy.output")

LOADED = "Loading success."
_ROUTINE = re.compile(r"Proxy \S+ stopped|Former worker \(\d+\) exited with code 0")
FAILED = "Loading failure"
CONFIG_NAME = "haproxy.cfg"
PID_NAME = "haproxy.pid"


class ReloadError(MayuError):
    """HAProxy did not take a new configuration (it keeps serving the previous one)."""

    temporary = True


class HaproxySupervisor(Supervisor):
    """Keep HAProxy running on `<directory>/haproxy.cfg`; `apply(text)` reloads it."""

    def __init__(
        self,
        directory: Path,
        initial_config: str,
        *,
        netns: str | None = None,
        haproxy: str = "haproxy",
        reload_timeout: float = 10.0,
        startup_timeout: float = 10.0,
    ) -> None:
        self.directory = Path(directory)
        self.config_file = self.directory / CONFIG_NAME
        self.pid_file = self.directory / PID_NAME
        self.haproxy = haproxy
        self.netns = netns
        self.reload_timeout = reload_timeout
        self.last_reload_s: float | None = None
        self._config = initial_config
        self._loads = 0
        self._failures = 0
        self._changed = threading.Condition()
        argv = [haproxy, "-W", "-db", "-f", str(self.config_file), "-p", str(self.pid_file)]
        super().__init__(
            "haproxy",
            in_namespace(netns, argv),
            ready_mark=LOADED,
            output_log=haproxy_log,
            on_line=self._on_line,
            startup_timeout=startup_timeout,
        )

    @property
    def config(self) -> str:
        return self._config

    def check(self) -> None:
        """Write the initial configuration (0600: it names tenants' addresses) after checking
        it, and end a master an earlier agent left behind."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._validate(self._config)
        atomic_write(self.config_file, self._config, 0o600)
        self._end_leftover()

    def apply(self, text: str) -> bool:
        """Make `text` the running configuration; False when it already is. ConfigError when
        HAProxy rejects it (nothing changes), ReloadError when the reload does not finish (the
        file is written: a restarted master loads it, and the next apply reloads again)."""
        if text == self._config:
            return False
        self._validate(text)
        atomic_write(self.config_file, text, 0o600)
        self.reload()
        self._config = text
        return True

    def reload(self) -> float:
        """SIGUSR2 to the master, then wait for its "Loading success."; the seconds it took."""
        with self._changed:
            loads, failures = self._loads, self._failures
        started = time.monotonic()
        if not self.send_signal(signal.SIGUSR2):
            raise ReloadError("haproxy is not running (restarting): the reload is pending")
        deadline = started + self.reload_timeout
        with self._changed:
            while self._loads == loads and self._failures == failures:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ReloadError(f"haproxy did not reload within {self.reload_timeout:.0f} s")
                self._changed.wait(left)
            if self._failures != failures:
                raise ReloadError("haproxy could not load its new configuration (see its log)")
        self.last_reload_s = time.monotonic() - started
        log.info("haproxy reloaded in %.0f ms", self.last_reload_s * 1000)
        return self.last_reload_s

    def level_of(self, line: str) -> int:
        """What every reload prints is routine: old proxies stopping, former workers leaving."""
        if _ROUTINE.search(line):
            return logging.INFO
        return super().level_of(line)

    def _on_line(self, line: str) -> None:
        if LOADED in line or FAILED in line:
            with self._changed:
                if LOADED in line:
                    self._loads += 1
                else:
                    self._failures += 1
                self._changed.notify_all()

    def _validate(self, text: str) -> None:
        candidate = self.directory / f".{CONFIG_NAME}.check"
        atomic_write(candidate, text, 0o600)
        try:
            run([self.haproxy, "-c", "-f", str(candidate)], timeout=30.0)
        except CommandError as exc:
            if exc.returncode == 127:
                raise ConfigError(f"{self.haproxy} not found: install haproxy") from None
            reason = self.last_line(exc.stderr)
            raise ConfigError(f"haproxy rejects its configuration: {reason}") from None
        finally:
            candidate.unlink(missing_ok=True)

    def _end_leftover(self) -> None:
        """Stop a master whose pidfile is ours and whose command line names our
        configuration: an agent killed -9 left it holding the listen address."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if running(pid, str(self.config_file)):
            log.warning("ending the haproxy master (pid %d) an earlier agent left running", pid)
            stop([pid], 5.0)
