"""Boot storm: N machines run the whole boot conversation concurrently against `mayu serve`.

Each simulated machine does GET /ipxe (registers; a config group approves every machine, so it
gets its one-time token), GET /ignition over HTTP with that token (the stub: renders its real
config and issues its certificates once), GET the stub's HTTPS source (the secret config,
verified with the server CA; spends the token), POST /report installed. The same responses,
pre-rendered, are then served by nginx (HTTP and HTTPS) as the ceiling. Prints machines/s,
p50/p99 per endpoint, errors, peak RSS of the server (master + workers) and the ratio to nginx.
With --scrape S, a Prometheus-like client GETs /metrics every S seconds during the storm, from
the HTTPS listener (as docs/monitoring.md advises; `--scrape-plain`: from the plain one).

    .venv/bin/python bench/boot_storm.py [--machines 1000] [--concurrency 200] [--workers 2]
        [--threads 1] [--scrape 1 [--scrape-plain]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import free_port, start_server  # noqa: E402

TOKEN_RE = re.compile(r"token=([A-Za-z0-9_-]+)")
# Every machine is approved as a worker at its first boot request; all come from 127.0.0.1, so
# discovery's rate limits are lifted.
APPROVE_ALL = {
    "groups": [{"name": "everyone", "profile": "worker", "selector": {}}],
    "server": {"discovery": {"per_source_per_minute": 100_000, "per_minute": 1_000_000}},
}


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    provisioned: int = 0
    wall_s: float = 0.0

    def record(self, endpoint: str, seconds: float) -> None:
        self.latencies.setdefault(endpoint, []).append(seconds)

    def fail(self, endpoint: str) -> None:
        self.errors[endpoint] = self.errors.get(endpoint, 0) + 1


async def _timed(results: Results, endpoint: str, call) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    try:
        async with call() as response:
            body = await response.text()
            status = response.status
    except (TimeoutError, aiohttp.ClientError):
        results.fail(endpoint)
        return 0, ""
    results.record(endpoint, time.perf_counter() - start)
    if status >= 400:
        results.fail(endpoint)
    return status, body


def _secret_url(stub: str) -> str:
    return json.loads(stub)["ignition"]["config"]["merge"][0]["source"]


async def _machine(
    session: aiohttp.ClientSession,
    base: str,
    index: int,
    results: Results,
    fixed_token: str | None,
    ca: ssl.SSLContext,
) -> None:
    mac = f"52-54-{index >> 24 & 255:02x}-{index >> 16 & 255:02x}-{index >> 8 & 255:02x}-{index & 255:02x}"
    status, script = await _timed(
        results, "/ipxe", lambda: session.get(f"{base}/ipxe", params={"mac": mac})
    )
    if status != 200:
        return
    match = TOKEN_RE.search(script)
    token = fixed_token or (match.group(1) if match else "")
    query = {"mac": mac, "token": token}
    status, stub = await _timed(
        results, "/ignition", lambda: session.get(f"{base}/ignition", params=query)
    )
    if status != 200:
        return
    status, _ = await _timed(results, "secret", lambda: session.get(_secret_url(stub), ssl=ca))
    if status != 200:
        return
    status, _ = await _timed(
        results,
        "/report",
        lambda: session.post(
            f"{base}/report", params=query, json={"event": "installed", "details": {}}
        ),
    )
    if status == 200:
        results.provisioned += 1


async def _storm(
    base: str, machines: int, concurrency: int, ca: ssl.SSLContext, fixed_token: str | None = None
) -> Results:
    results = Results()
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def bounded(i: int) -> None:
            async with limit:
                await _machine(session, base, i, results, fixed_token, ca)

        start = time.perf_counter()
        await asyncio.gather(*(bounded(i) for i in range(machines)))
        results.wall_s = time.perf_counter() - start
    return results


class Scraper(threading.Thread):
    """GETs /metrics every `interval` seconds, like Prometheus; keeps the latencies."""

    def __init__(self, url: str, token: str, interval: float, ca: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.interval, self.ca = url, token, interval, ca
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import requests

        headers = {"Authorization": f"Bearer {self.token}"}
        while not self.stop.wait(self.interval):
            start = time.perf_counter()
            try:
                ok = requests.get(
                    f"{self.url}/metrics", headers=headers, timeout=10, verify=str(self.ca)
                ).ok
            except requests.RequestException:
                ok = False
            self.latencies.append(time.perf_counter() - start)
            self.failures += not ok


class RssSampler(threading.Thread):
    """Samples the summed RSS of a process group every 50 ms; keeps the peak."""

    def __init__(self, pgid: int) -> None:
        super().__init__(daemon=True)
        self.pgid = pgid
        self.peak_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            total = 0
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    if int(stat[2]) != self.pgid:
                        continue
                    for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                except (OSError, IndexError, ValueError):
                    continue
            self.peak_kib = max(self.peak_kib, total)


def _nginx(root: Path, port: int, tls_port: int, pki: Path) -> subprocess.Popen[bytes]:
    conf = root / "nginx.conf"
    conf.write_text(f"""
worker_processes 2;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/tmp;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location = /ipxe {{ default_type text/plain; alias {root}/ipxe.txt; }}
    location = /ignition {{ default_type application/json; alias {root}/ignition.json; }}
    location = /report {{ default_type application/json; return 200 '{{"state":"installed"}}'; }}
  }}
  server {{
    listen 127.0.0.1:{tls_port} ssl reuseport;
    ssl_certificate {pki}/tls.crt;
    ssl_certificate_key {pki}/tls.key;
    location = /ignition {{ default_type application/json; alias {root}/secret.json; }}
  }}
}}
""")
    (root / "tmp").mkdir(exist_ok=True)
    root.chmod(0o755)  # nginx workers run as www-data
    process = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.PIPE)
    import socket

    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    return process


def _summary(name: str, results: Results, machines: int) -> dict[str, float]:
    rate = results.provisioned / results.wall_s if results.wall_s else 0.0
    print(
        f"\n== {name}: {results.provisioned}/{machines} provisioned in {results.wall_s:.2f} s "
        f"= {rate:.0f} machines/s; errors {sum(results.errors.values())} {results.errors or ''}"
    )
    print(f"   {'endpoint':<10} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for endpoint, values in results.latencies.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(
            f"   {endpoint:<10} {len(values):>6} {statistics.median(values) * 1000:>8.1f} "
            f"{p99 * 1000:>8.1f} {ordered[-1] * 1000:>8.1f}"
        )
    return {"rate": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help=">1: gthread workers")
    parser.add_argument("--scrape", type=float, help="GET /metrics every SCRAPE seconds")
    parser.add_argument("--scrape-plain", action="store_true", help="scrape the HTTP listener")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mayu-bench-"))
    server = start_server(
        work / "data",
        config=APPROVE_ALL,
        workers=args.workers,
        extra_args=("--threads", str(args.threads)),
    )
    ca = ssl.create_default_context(cafile=str(server.ca_file))
    sampler = RssSampler(server.process.pid)
    sampler.start()
    scraper = None
    if args.scrape:
        at = server.url if args.scrape_plain else server.tls_url
        scraper = Scraper(at, server.token, args.scrape, server.ca_file)
    if scraper:
        scraper.start()
    try:
        mayu = asyncio.run(_storm(server.url, args.machines, args.concurrency, ca))
    finally:
        sampler.stop.set()
        sampler.join()
        if scraper:
            scraper.stop.set()
            scraper.join()
    # The same bytes for nginx: one machine's script and config, captured from the server.
    import requests

    script = requests.get(
        f"{server.url}/ipxe", params={"mac": "52-54-ff-ff-ff-01"}, timeout=10
    ).text
    token = TOKEN_RE.search(script).group(1)  # type: ignore[union-attr]
    stub = requests.get(
        f"{server.url}/ignition", params={"mac": "52-54-ff-ff-ff-01", "token": token}, timeout=30
    ).text
    ignition = requests.get(_secret_url(stub), verify=str(server.ca_file), timeout=30).content
    server.kill(signal.SIGTERM)
    port, tls_port = free_port(), free_port()
    secret_at = _secret_url(stub)
    nginx_stub = stub.replace(secret_at, f"https://127.0.0.1:{tls_port}/ignition")
    (work / "ipxe.txt").write_text(script)
    (work / "ignition.json").write_text(nginx_stub)
    (work / "secret.json").write_bytes(ignition)
    nginx = _nginx(work, port, tls_port, work / "data" / "pki" / "server")
    try:
        ceiling = asyncio.run(
            _storm(f"http://127.0.0.1:{port}", args.machines, args.concurrency, ca, token)
        )
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(timeout=10)

    print(
        f"boot storm: {args.machines} machines, {args.concurrency} concurrent clients, "
        f"gunicorn {'gthread' if args.threads > 1 else 'sync'} x{args.workers} workers "
        f"x{args.threads} threads, {os.cpu_count()} cores; ignition "
        f"{len(ignition)} bytes"
    )
    ours = _summary("mayu serve", mayu, args.machines)
    ref = _summary("nginx (same bytes, pre-rendered)", ceiling, args.machines)
    print(f"\npeak RSS of mayu serve (master + workers): {sampler.peak_kib / 1024:.0f} MiB")
    if scraper and scraper.latencies:
        print(
            f"/metrics scraped ({scraper.url}) {len(scraper.latencies)} times during the storm, "
            f"{scraper.failures} failed, median {statistics.median(scraper.latencies) * 1000:.0f}"
            f" ms, max {max(scraper.latencies) * 1000:.0f} ms"
        )
    if ref["rate"]:
        print(f"ratio mayu/nginx (machines/s): {ours['rate'] / ref['rate']:.3f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
