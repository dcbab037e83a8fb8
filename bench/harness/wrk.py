"""Running wrk (the load generator) with the request-list script of bench/lua and reading its
figures (and, when told the server's process groups, the CPU the server spent meanwhile)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.harness.processes import group_cpu_s, wait_idle

LUA = Path(__file__).resolve().parents[1] / "lua"


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: completed requests, errors, latency percentiles (ms), bytes read, and the
    CPU seconds the server's processes spent during the run (0 when not measured)."""

    requests: int
    seconds: float
    errors: int
    non_2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    bytes: int
    server_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_ms(self) -> float:
        """The server's CPU per completed request, ms."""
        return 1000 * self.server_cpu_s / self.requests if self.requests else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.seconds if self.seconds else 0.0


def write_inputs(directory: Path, lines: list[str], threads: int) -> None:
    """Split request lines ("METHOD\\tPATH[\\tBODY]") round-robin over wrk's threads."""
    directory.mkdir(parents=True, exist_ok=True)
    for thread in range(threads):
        (directory / f"in.{thread}").write_text("".join(f"{x}\n" for x in lines[thread::threads]))


def run_wrk(
    url: str,
    directory: Path,
    *,
    connections: int = 200,
    threads: int = 2,
    duration_s: float = 10.0,
    timeout_s: float = 10.0,
    server_pgids: tuple[int, ...] = (),
) -> WrkResult:
    """wrk against `url` (scheme://host:port) for `duration_s`, each thread cycling through
    its request lines in `directory` (write_inputs); the CPU of the processes of
    `server_pgids` is counted over the run, and they are let finish what wrk left queued
    before this returns."""
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:.0f}s",
        f"--timeout={timeout_s:.0f}s",
        "-s",
        str(LUA / "requests.lua"),
        url,
        "--",
        str(directory),
    ]
    cpu_before = group_cpu_s(*server_pgids)
    run = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    server_cpu_s = group_cpu_s(*server_pgids) - cpu_before
    if server_pgids:
        wait_idle(*server_pgids)  # the requests wrk left queued are not the next run's work
    line = next((x for x in run.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures: {run.stdout} {run.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=sum(data[k] for k in ("connect", "read", "write", "timeout", "status")),
        non_2xx=data["status"],
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
        bytes=data["bytes"],
        server_cpu_s=server_cpu_s,
    )
