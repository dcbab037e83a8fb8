"""The processes of a server started in process groups of its own, and the CPU they spent."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 on), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_pids(*pgids: int) -> list[int]:
    """The live processes of these process groups."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(entry)) is not None and int(stat[2]) in pgids:
            pids.append(int(entry))
    return pids


def group_cpu_s(*pgids: int) -> float:
    """User + system CPU seconds of the live processes of these process groups."""
    total = 0
    for pid in group_pids(*pgids):
        if (stat := _stat(pid)) is not None:
            total += int(stat[11]) + int(stat[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_idle(
    *pgids: int, share: float = 0.1, window_s: float = 0.25, timeout_s: float = 15
) -> None:
    """Until these process groups use under `share` of a core over `window_s` (a server done
    with the requests a load generator left queued when it stopped), or `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = group_cpu_s(*pgids)
        time.sleep(window_s)
        if group_cpu_s(*pgids) - before < share * window_s:
            return
