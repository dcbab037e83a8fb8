"""SQLite store writers side by side: what one boot-sized write transaction costs when W
processes (gunicorn workers) write at once.

Each writer process opens the store and runs T transactions, each as big as a discovery
(`put_machine` of a new machine and one event), timing every `atomically` call from outside;
prints the median, p99 and max latency and the total transactions/s. With `--code DIR` the
writers run another checkout's store (PYTHONPATH=DIR), e.g. the commit before the writer
lock, in rounds alternating with this tree's.

    .venv/bin/python bench/store_writers.py [--writers 2] [--transactions 2000] [--rounds 3]
                                            [--code DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _writer(path: str, index: int, count: int, start_at: float) -> None:
    """One writer process: prints its latencies (s) and its first and last moment as JSON."""
    from mayu_py.model import Event, Machine
    from mayu_py.store.sqlite import SqliteStore

    store = SqliteStore(Path(path))
    latencies = []
    while time.time() < start_at:
        time.sleep(0.001)
    for n in range(count):
        mac = f"52:54:{index:02x}:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"
        now = time.time()

        def txn(tx, mac=mac, now=now):  # type: ignore[no-untyped-def]
            tx.add_event(Event(mac, now, "discovered", "bench", "127.0.0.1"))
            tx.put_machine(Machine(id=mac, mac=mac, created=now, updated=now))

        started = time.perf_counter()
        store.atomically(txn)
        latencies.append(time.perf_counter() - started)
    print(json.dumps({"latencies": latencies, "span": [start_at, time.time()]}))


def _round(code: Path | None, writers: int, count: int) -> tuple[list[float], float]:
    env = dict(os.environ, PYTHONPATH=str(code) if code else str(REPO))
    with tempfile.TemporaryDirectory(prefix="mayu-writers-") as work:
        path = str(Path(work) / "inv.sqlite3")
        subprocess.run(  # create the schema before the clock starts
            [sys.executable, __file__, "--child", path, "99", "1", "0"], env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        start_at = time.time() + 3.0  # every writer imported and opened by then
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", path, str(i), str(count), str(start_at)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for i in range(writers)
        ]
        reports = [json.loads(child.communicate()[0]) for child in children]
    latencies = [x for report in reports for x in report["latencies"]]
    wall = max(r["span"][1] for r in reports) - start_at
    return latencies, len(latencies) / wall


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--transactions", type=int, default=2000, help="per writer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, help="also run this checkout's store")
    args = parser.parse_args()
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if args.code:
        trees.append((f"{args.code}", args.code.resolve()))
    for round_ in range(1, args.rounds + 1):
        for name, code in trees:
            latencies, rate = _round(code, args.writers, args.transactions)
            cuts = statistics.quantiles(latencies, n=100)
            print(
                f"round {round_} {name}: {args.writers} writers, {rate:.0f} tx/s, "
                f"p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms, "
                f"max {max(latencies) * 1000:.1f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
