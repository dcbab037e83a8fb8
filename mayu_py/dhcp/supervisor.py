"""Run dnsmasq as a supervised child (`mayu_py.supervisor`): its configuration checked with
`dnsmasq --test` first, its stderr forwarded to the logger `mayu_py.dhcp.dnsmasq`.

With `netns`, dnsmasq runs inside that network namespace (`ip netns exec NS dnsmasq ...`; ip
execs, so the pid is dnsmasq's). With `die_with_parent`, it runs under `fence.py` and ends
when this process dies, even by SIGKILL (the supervised pid is then the fence's).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from mayu_py.command import in_namespace, run
from mayu_py.errors import CommandError, ConfigError
from mayu_py.supervisor import Supervisor

dnsmasq_log = logging.getLogger("mayu_py.dhcp.dnsmasq")
FENCE = Path(__file__).with_name("fence.py")

_READY_MARK = "started, version"


class DnsmasqSupervisor(Supervisor):
    """Keep one dnsmasq running on `conf_file` until stop(); `on_restart` is called after each
    restart (the server counts them)."""

    noise = ("FAILED to start up",)

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
        die_with_parent: bool = False,
    ) -> None:
        self.conf_file = Path(conf_file)
        self.netns = netns
        self.dnsmasq = dnsmasq
        argv = [
            dnsmasq,
            "--keep-in-foreground",
            "--log-facility=-",
            f"--conf-file={self.conf_file}",
        ]
        argv = in_namespace(netns, argv)
        if die_with_parent:
            argv = [sys.executable, "-I", "-S", str(FENCE), str(os.getpid()), *argv]
        super().__init__(
            "dnsmasq",
            argv,
            ready_mark=_READY_MARK,
            output_log=dnsmasq_log,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            stable_after=stable_after,
            startup_timeout=startup_timeout,
            on_restart=on_restart,
        )

    def check(self) -> None:
        try:
            run([self.dnsmasq, "--test", f"--conf-file={self.conf_file}"], timeout=10.0)
        except CommandError as exc:
            if exc.returncode == 127:
                raise ConfigError(
                    f"{self.dnsmasq} not found: install dnsmasq (Debian: dnsmasq-base)"
                ) from None
            raise ConfigError(
                f"dnsmasq rejects {self.conf_file}: {self.last_line(exc.stderr)}"
            ) from None
