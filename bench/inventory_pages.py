"""A large inventory listed page by page through the API of a running `mayu serve`.

The inventory is written straight through the store (SQLite, the server's own file): N
machines in every state, with labels, each with E events; the first few machines get more
events than the store keeps per machine (`server.events_per_machine`), so the bench also
shows retention bounding the store. Then `mayu serve` starts on it and `GET
/api/v1/machines?limit=L` walks the whole inventory page by page (following `continue`),
R rounds each of a plain walk and one with a label selector, timing every page from outside.

Prints, per walk and round, pages, the median, p99 and max time of a page and the whole
walk; the store's size and events; the retention check.

    .venv/bin/python bench/inventory_pages.py [--machines 100000] [--events 3] [--limit 500]
                                              [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mayu_py.model import Event, Machine, MachineState  # noqa: E402
from mayu_py.store.sqlite import SqliteStore  # noqa: E402
from tests.conftest import start_server  # noqa: E402

STATES = list(MachineState)
EVENTS_KEPT = 20  # server.events_per_machine of this bench (the store keeps this many)
OVERFLOWING = 10  # machines that get EVENTS_KEPT + 30 events: retention must drop the excess
PER_TRANSACTION = 2000
SELECTOR = "rack=r3"  # a seventh of the machines: pages read several batches


def _mac(n: int) -> str:
    return f"52:54:{n >> 24 & 0xFF:02x}:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"


def _fill(store: SqliteStore, machines: int, events: int) -> float:
    """Write the inventory; returns how long it took (s)."""
    started = time.monotonic()
    for first in range(0, machines, PER_TRANSACTION):

        def txn(tx, first: int = first) -> None:  # type: ignore[no-untyped-def]
            for n in range(first, min(first + PER_TRANSACTION, machines)):
                mac = _mac(n)
                tx.put_machine(
                    Machine(
                        id=mac,
                        mac=mac,
                        hostname=f"node-{n}",
                        labels={"role": "worker", "rack": f"r{n % 7}"},
                        profile="worker",
                        state=STATES[n % len(STATES)],
                        created=1e9 + n,
                        updated=1e9 + n,
                    )
                )
                count = EVENTS_KEPT + 30 if n < OVERFLOWING else events
                for e in range(count):
                    tx.add_event(Event(mac, 1e9 + n + e / 100, "transition", f"step {e}"))

        store.atomically(txn)
    return time.monotonic() - started


def _walk(url: str, token: str, limit: int, selector: str | None) -> tuple[list[float], int]:
    """Every page of the machine list; the time of each (s) and the machines seen."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    times: list[float] = []
    seen, after = 0, None
    while True:
        query = {"limit": str(limit)} | ({"selector": selector} if selector else {})
        query |= {"continue": after} if after else {}
        started = time.perf_counter()
        answer = session.get(f"{url}/api/v1/machines", params=query, timeout=60)
        times.append(time.perf_counter() - started)
        answer.raise_for_status()
        body = answer.json()
        seen += len(body["items"])
        after = body["continue"]
        if after is None:
            return times, seen


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=3, help="events per machine")
    parser.add_argument("--limit", type=int, default=500, help="machines per page")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mayu-pages-"))
    data = work / "data"
    data.mkdir()
    store = SqliteStore(data / "inventory.sqlite3", events_kept=EVENTS_KEPT)
    filled = _fill(store, args.machines, args.events)
    kept = {len(store.events(_mac(n))) for n in range(min(OVERFLOWING, args.machines))}
    (rows,) = store._connect().execute("SELECT COUNT(*) FROM events").fetchone()
    store.close()
    size = sum(f.stat().st_size for f in data.glob("inventory.sqlite3*")) / 2**20
    print(
        f"inventory: {args.machines} machines, {rows} events written in {filled:.1f} s, "
        f"store {size:.0f} MiB; retention: {EVENTS_KEPT + 30} events added to each of "
        f"{OVERFLOWING} machines, {sorted(kept)} kept (events_per_machine {EVENTS_KEPT})",
        flush=True,
    )
    config = {"server": {"events_per_machine": EVENTS_KEPT}}
    server = start_server(data, config=config, workers=2)
    try:
        _walk(server.url, server.token, args.limit, None)  # warm-up, not counted
        every: dict[str, list[float]] = {}
        for round_ in range(1, args.rounds + 1):
            for name, selector in (("all", None), (SELECTOR, SELECTOR)):
                started = time.perf_counter()
                times, seen = _walk(server.url, server.token, args.limit, selector)
                walk = time.perf_counter() - started
                every.setdefault(name, []).extend(times)
                print(
                    f"round {round_} {name:8} {len(times)} pages of {args.limit}, {seen} "
                    f"machines: page median {statistics.median(times) * 1e3:.1f} ms, p99 "
                    f"{_p99(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms; walk {walk:.1f} s",
                    flush=True,
                )
        for name, times in every.items():
            print(
                f"== {name:8} {len(times)} pages: median {statistics.median(times) * 1e3:.1f} ms, "
                f"p99 {_p99(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms"
            )
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
