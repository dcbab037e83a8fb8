"""Boot conversation in-process against each store backend: SQLite vs a real 3-member etcd.

Each simulated machine does the whole conversation through the Flask test client (no HTTP,
no gunicorn: only the server's logic and its store): GET /ipxe (discovered), operator
approval (POST /api/v1/machines/MAC/approve), GET /ipxe (window + token), GET /ignition over
HTTP (stub; renders and stores the secret config), GET /ignition over "HTTPS" (the secret;
spends the token), POST /report installed. Prints machines/s with 1 and with N threads, and
per machine: store transactions, etcd requests, CPU of this process and of the etcd members
(all on the same 2 cores).

    .venv/bin/python bench/store_boot.py [--machines 200] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mayu_py.lab.etcd import EtcdCluster  # noqa: E402
from tests.support.flask_app import Machine, approve, make_app, services_of  # noqa: E402


@dataclass
class Run:
    backend: str
    threads: int
    machines: int
    wall_s: float
    cpu_s: float
    transactions: int
    requests: int
    etcd_cpu_s: float

    def line(self) -> str:
        per = max(1, self.machines)
        return (
            f"{self.backend:<7} threads {self.threads:>2}: {self.machines / self.wall_s:6.1f} "
            f"machines/s; per machine {1000 * self.wall_s / per:5.1f} ms wall, CPU "
            f"{1000 * self.cpu_s / per:4.1f} ms here + {1000 * self.etcd_cpu_s / per:4.1f} ms "
            f"in etcd, {self.transactions / per:.1f} transactions, "
            f"{self.requests / per:.1f} etcd requests"
        )


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


class CountingStore:
    """The app's store, counting `atomically` calls (commits or read-only runs)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.transactions = 0
        self._lock = threading.Lock()

    def atomically(self, fn: Any) -> Any:
        with self._lock:
            self.transactions += 1
        return self.inner.atomically(fn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _conversation(client: Any, index: int) -> None:
    mac = f"52-54-{index >> 24 & 255:02x}-{index >> 16 & 255:02x}-{index >> 8 & 255:02x}-{index & 255:02x}"
    machine = Machine(client, mac)
    status, body = machine.ipxe()
    assert status == 200, body
    assert approve(client, mac).status_code == 200
    machine.provision()  # /ipxe with token, stub, secret, report installed


def _run(
    work: Path,
    backend: str,
    overrides: dict,
    machines: int,
    threads: int,
    base: int,
    etcd: list[int],
) -> Run:
    app = make_app(work / f"{backend}-{threads}", overrides)
    services = services_of(app.test_client())
    counting = CountingStore(services.store)
    for service in (services.boot, services.delivery, services.machines):
        service.store = counting
    gateway = getattr(services.store, "gateway", None)
    _conversation(app.test_client(), base + 10_000_000)  # warm-up: templates, CA
    counting.transactions = 0
    calls_before = gateway.calls if gateway else 0
    next_index = iter(range(machines))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        client = app.test_client()
        while not failures:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            try:
                _conversation(client, base + index)
            except BaseException as exc:  # stops every worker; raised below
                failures.append(exc)

    members = etcd if backend == "etcd" else []
    etcd_cpu, cpu, start = _cpu_seconds(members), time.process_time(), time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if failures:
        raise failures[0]
    etcd_cpu = _cpu_seconds(members) - etcd_cpu
    calls = (gateway.calls - calls_before) if gateway else 0
    return Run(backend, threads, machines, wall, cpu, counting.transactions, calls, etcd_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mayu-bench-store-"))
    cluster = EtcdCluster(work / "etcd").start()
    runs: list[Run] = []
    try:
        unlimited = {
            ("server", "discovery"): {"per_source_per_minute": 100_000, "per_minute": 1_000_000}
        }
        backends = {"sqlite": unlimited, "etcd": {**unlimited, ("store", "url"): cluster.url()}}
        for base, threads in ((0, 1), (1 << 20, args.threads)):
            for backend, overrides in backends.items():
                pids = [m.process.pid for m in cluster.members if m.process]
                runs.append(_run(work, backend, overrides, args.machines, threads, base, pids))
                print(runs[-1].line(), flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    by = {(r.backend, r.threads): r.machines / r.wall_s for r in runs}
    for threads in (1, args.threads):
        print(
            f"etcd/sqlite at {threads} thread(s): {by['etcd', threads] / by['sqlite', threads]:.2f}"
        )


if __name__ == "__main__":
    main()
