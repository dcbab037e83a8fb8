"""The processes of a server started in process groups of its own, and the CPU they spent."""

from __future__ import annotations

import os
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
