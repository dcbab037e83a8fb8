"""The lab's processes: started inside a network namespace, recognised and stopped by pid.

Every program the lab runs in a namespace (server, site dnsmasq, VMs, agent) starts through
`spawn` (`mayu lab ctl`'s mayuctl through `mayu_py.command.in_namespace`, which `spawn` uses):
`ip netns exec` execs the program, so the pid the lab records is the program's own. Before
signalling a recorded pid, the lab checks that it is alive and still the program it started
(`running`), since pids are reused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from mayu_py.command import in_namespace

log = logging.getLogger(__name__)


def spawn(
    argv: list[str], namespace: str, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start argv inside `namespace`, output appended to log_path, in its own session (a
    terminal's Ctrl-C is the lab's to handle, and the program may outlive `mayu lab up`)."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            in_namespace(namespace, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            start_new_session=True,
        )


def child_env(token: str, **extra: str) -> dict[str, str]:
    """This process's environment without any MAYU_* setting, plus the lab's admin token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAYU_")}
    return {**env, "MAYU_TOKEN": token, **extra}


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces; empty when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def running(pid: int | None, marker: str) -> bool:
    """True when pid is alive and its command line still contains marker (not a reused pid)."""
    return bool(pid) and marker in cmdline(pid or 0) and alive(pid or 0)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


def stop(pids: list[int], grace: float) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL what is left and wait for it."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    left = _wait_gone(pids, grace)
    for pid in left:
        _signal(pid, signal.SIGKILL)
    stuck = _wait_gone(left, 10.0)
    if stuck:
        log.warning("processes still alive after SIGKILL: %s", stuck)


def log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log on one line, for an error message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return f"no log at {path}"
    return " | ".join(text) or "no output"
