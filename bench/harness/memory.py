"""Memory of a server as the machine pays for it: PSS (proportional set size: shared pages
counted once across the processes sharing them) summed over a process group or tree."""

from __future__ import annotations

import threading
from pathlib import Path

from bench.harness.processes import group_pids


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def group_pss_kib(pgid: int) -> int:
    return sum(_pss_kib(pid) for pid in group_pids(pgid))


class PssSampler(threading.Thread):
    """Samples the PSS of a process group every `interval` seconds; keeps the peak."""

    def __init__(self, pgid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pgid, self.interval = pgid, interval
        self.peak_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.peak_kib = max(self.peak_kib, group_pss_kib(self.pgid))

    def finish(self) -> int:
        """Stop sampling; the peak in MiB."""
        self.stop.set()
        self.join()
        return self.peak_kib // 1024
