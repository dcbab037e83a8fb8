"""Processes known by pid: is it alive (not a zombie), is it still the program it was (pids
are reused), and stopping it: SIGTERM, a grace period, then SIGKILL. The lab stops what it
started in a namespace this way, the agent a HAProxy an earlier agent left running."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)


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
