"""Running wrk (the load generator) with the step script of bench/lua and reading its figures."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parents[1] / "lua"


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: completed requests, errors, latency percentiles (ms)."""

    requests: int
    seconds: float
    errors: int
    non_2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    bytes: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.seconds if self.seconds else 0.0


def write_inputs(directory: Path, lines: list[str], threads: int) -> None:
    """Split request lines ("METHOD\\tPATH[\\tBODY]") round-robin over wrk's threads."""
    directory.mkdir(parents=True, exist_ok=True)
    for thread in range(threads):
        (directory / f"in.{thread}").write_text("".join(f"{x}\n" for x in lines[thread::threads]))


def read_outputs(directory: Path, threads: int) -> list[tuple[str, str]]:
    """The (MAC, token) pairs the threads' responses named."""
    pairs = []
    for thread in range(threads):
        path = directory / f"out.{thread}"
        if path.exists():
            pairs += [tuple(line.split()) for line in path.read_text().splitlines() if line]
    return pairs  # type: ignore[return-value]


def run_wrk(
    url: str,
    directory: Path,
    *,
    mode: str = "once",
    connections: int = 200,
    threads: int = 2,
    duration_s: float = 10.0,
    timeout_s: float = 10.0,
) -> WrkResult:
    """wrk against `url` (scheme://host:port) with the request lines in `directory`: for
    `duration_s` ("cycle"), or until every line was sent once and answered ("once"; then
    `duration_s` is only a cap, and the rate counts the answers up to the last line sent)."""
    for stale in directory.glob("[rdo][aru][tia]*.*"):
        stale.unlink()
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:.0f}s",
        f"--timeout={timeout_s:.0f}s",
        "-s",
        str(LUA / "steps.lua"),
        url,
        "--",
        str(directory),
        mode,
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if mode == "once":
        _wait_until_sent(process, directory, threads, duration_s + 5)
    stdout, stderr = process.communicate(timeout=duration_s + 120)
    line = next((x for x in stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures: {stdout} {stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    socket_errors = sum(data[k] for k in ("connect", "read", "write", "timeout"))
    seconds = data["duration_us"] / 1e6
    requests = data["requests"]
    rates = [directory / f"rate.{t}" for t in range(threads)]
    if mode == "once" and all(r.exists() for r in rates):
        spans = [[float(x) for x in r.read_text().split()] for r in rates]
        seconds = max(s[1] for s in spans) - min(s[0] for s in spans)
        requests = int(sum(s[2] for s in spans))
    return WrkResult(
        requests=requests,
        seconds=seconds,
        errors=socket_errors + data["status"],
        non_2xx=data["status"],
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
        bytes=data["bytes"],
    )


def _wait_until_sent(
    process: subprocess.Popen[str], directory: Path, threads: int, cap_s: float
) -> None:
    """Until every thread sent its lines and had them answered (at most 10 s more), then
    SIGINT: wrk prints its figures and exits."""
    deadline = time.monotonic() + cap_s
    sent = [directory / f"rate.{t}" for t in range(threads)]
    drained = [directory / f"drained.{t}" for t in range(threads)]
    while process.poll() is None and time.monotonic() < deadline:
        if all(p.exists() for p in sent):
            deadline = min(deadline, time.monotonic() + 10)
            if all(p.exists() for p in drained):
                break
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
