"""What the Prometheus instrumentation costs the boot plane, measured in process (no network, no
scheduler noise from the load generator): N machines each run the whole boot conversation
(/ipxe with group approval, stub over HTTP, secret "over HTTPS", report installed) through
Flask's test client on the app `mayu serve` builds (`build_app`: the store reports its
transactions to the metrics, prometheus-client in multiprocess mode as under gunicorn).

Two interpreters, one on this tree and one on another checkout (e.g. the commit before the
instrumentation: `git archive BASE | tar -x -C /tmp/base`), run batches of machines in turn,
so the noise of a shared machine falls on both alike; prints CPU ms per machine for both, the
overhead, and what one scrape of /metrics and one poll of the open dashboard cost (its live
board, as static/dashboard.js fetches it every 1.5 s, rendered afresh since the storm changes
it), and what a scraper every second plus the open dashboard take from the storm.

    .venv/bin/python bench/metrics_overhead.py --compare /tmp/base [--batch 20] [--batches 40]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRAPE_EVERY_S = 1.0  # a Prometheus scraper polling every second
POLL_EVERY_S = 1.5  # POLL_MS of static/dashboard.js
APPROVE_ALL = [{"name": "everyone", "profile": "worker", "selector": {}}]


class _Loop:
    """The boot conversation on one app built as `mayu serve` builds it, with `tree`'s code."""

    def __init__(self, tree: Path) -> None:
        sys.path.insert(0, str(tree))
        from mayu_py.cli import serving
        from mayu_py.config import load_settings
        from tests.support.flask_app import ADMIN_TOKEN, Machine

        self.machine, self.token = Machine, ADMIN_TOKEN
        self.work = work = Path(tempfile.mkdtemp(prefix="mayu-overhead-"))
        try:
            from mayu_py.server import metrics
        except ImportError:  # the tree before the instrumentation
            metrics = None  # type: ignore[assignment]
        overrides = {
            ("data_dir",): str(work / "data"),
            ("groups",): APPROVE_ALL,
            ("server", "discovery", "per_source_per_minute"): 100_000,
            ("server", "discovery", "per_minute"): 1_000_000,
        }
        settings = load_settings(None, overrides, environ={})
        self.instrumented = metrics is not None
        if metrics is not None:
            metrics.use_multiprocess_dir(metrics.metrics_dir(settings.data_path), clean=True)
        app, _tls = serving.build_app(settings, ADMIN_TOKEN)
        self.app = app
        self.client = app.test_client()
        self.browser: Any = None  # a logged-in dashboard session, made at its first poll
        self.count = 0
        self.batch(1)  # warm: templates, PKI, connections

    def batch(self, machines: int) -> float:
        """CPU ms per machine for the next `machines` machines."""
        start = time.process_time()
        for _ in range(machines):
            i = self.count
            self.count += 1
            self.machine(self.client, f"52-54-fe-{i >> 16 & 255:02x}-{i >> 8 & 255:02x}-"
                         f"{i & 255:02x}").provision()  # fmt: skip
        return (time.process_time() - start) * 1000 / machines

    def scrape(self) -> float:
        """CPU ms of one GET /metrics."""
        start = time.process_time()
        response = self.client.get("/metrics", headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200
        return (time.process_time() - start) * 1000

    def poll(self) -> float:
        """CPU ms of one poll of the open dashboard's live board (no matching ETag)."""
        from tests.support.dashboard import TLS, add_user, login

        if self.browser is None:
            self.browser = self.app.test_client()
            login(self.browser, add_user(self.browser, "bench"))
        start = time.process_time()
        response = self.browser.get("/ui/live/board", environ_base=TLS)
        assert response.status_code == 200, response.status_code
        return (time.process_time() - start) * 1000


def _worker(tree: Path) -> None:
    """Answer `batch N` and `scrape` lines on stdin with one number each on stdout."""
    loop = _Loop(tree)
    print("instrumented" if loop.instrumented else "plain", flush=True)
    try:
        for line in sys.stdin:
            verb, _, arg = line.partition(" ")
            if verb == "batch":
                figure = loop.batch(int(arg))
            else:
                figure = loop.scrape() if verb == "scrape" else loop.poll()
            print(f"{figure:.4f}", flush=True)
    finally:
        shutil.rmtree(loop.work, ignore_errors=True)


class _Worker:
    def __init__(self, tree: Path) -> None:
        argv = [sys.executable, __file__, "--worker", str(tree)]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tree
        )
        assert self.proc.stdout is not None
        self.kind = self.proc.stdout.readline().strip()

    def ask(self, line: str) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20, help="machines per batch")
    parser.add_argument("--batches", type=int, default=40, help="batches per tree")
    parser.add_argument("--compare", type=Path, help="the other checkout (required)")
    parser.add_argument(
        "--cores", type=int, default=2, help="cores the storm keeps busy (this machine: 2)"
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker.resolve())
        return
    if args.compare is None:
        parser.error("--compare OTHER_TREE is required")
    ours, other = _Worker(REPO), _Worker(args.compare.resolve())
    figures: dict[str, list[float]] = {"this tree": [], "other tree": []}
    try:
        for _ in range(args.batches):
            figures["this tree"].append(ours.ask(f"batch {args.batch}"))
            figures["other tree"].append(other.ask(f"batch {args.batch}"))
        scrapes = [ours.ask("scrape") for _ in range(20)] if ours.kind == "instrumented" else []
        polls = [ours.ask("poll") for _ in range(20)] if ours.kind == "instrumented" else []
    finally:
        ours.close()
        other.close()
    print(
        f"{args.batches} alternating batches of {args.batch} machines per tree "
        f"(this tree: {ours.kind}, other: {other.kind}); CPU ms per machine:"
    )
    for name, values in figures.items():
        print(
            f"  {name:<10} median {statistics.median(values):.3f}  mean "
            f"{statistics.mean(values):.3f}  min {min(values):.3f}  max {max(values):.3f}"
        )
    ratios = [a / b for a, b in zip(figures["this tree"], figures["other tree"], strict=True)]
    print(
        f"  overhead: median of paired ratios {(statistics.median(ratios) - 1) * 100:+.1f}%, "
        f"ratio of medians {(statistics.median(figures['this tree']) / statistics.median(figures['other tree']) - 1) * 100:+.1f}%"
    )
    if scrapes:
        inventory = args.batch * args.batches + 1
        scrape, poll = statistics.median(scrapes), statistics.median(polls)
        print(f"  one /metrics scrape ({inventory} machines): {scrape:.2f} ms CPU")
        print(f"  one poll of the open dashboard's board: {poll:.2f} ms CPU")
        # CPU the watchers take each second, as a share of the cores the storm keeps busy
        watchers = scrape / SCRAPE_EVERY_S + poll / POLL_EVERY_S
        share = watchers / (1000 * args.cores)
        paired = statistics.median(ratios) - 1
        print(
            f"  scraper every {SCRAPE_EVERY_S:g} s + dashboard every {POLL_EVERY_S:g} s: "
            f"{watchers:.1f} ms CPU/s = {share * 100:.2f}% of {args.cores} cores; with the "
            f"instrumentation: machines/s {((1 - share) / (1 + paired) - 1) * 100:+.1f}%"
        )


if __name__ == "__main__":
    main()
