"""Boot storm: N machines run the whole boot conversation concurrently against `mayu serve`.

The server approves every machine through one catch-all config group (`selector: {}`,
profile `worker`); its discovery bounds are raised for the storm, since every simulated machine
asks from 127.0.0.1 (the defaults accept 20 new machines per source and minute). Each machine:

- flow `trusted` (the default server): GET /ipxe (discovered, approved by the group, a
  provisioning window and a one-time boot token), GET /ignition over HTTP (the stub; the secret
  config is rendered once and stored), GET the stub's merge source over HTTPS (a new TLS
  connection per request as Ignition makes it, server CA pinned, the body's SHA-512 checked
  against the stub; spends the token), POST /report installed (with the boot token);
- flow `plain` (the server's `insecure_secrets_over_http` option): GET /ipxe, GET /ignition
  (the secret config over plain HTTP), POST /report: the conversation as it was before the
  trust work, with every new check except the HTTPS step.

The same bytes, pre-rendered, are then served by nginx (the HTTPS step over TLS with the server's
own certificate) as the ceiling. Prints machines/s, p50/p99 per step and per machine (its whole
conversation), errors, peak RSS of the server (master, workers, HTTPS listener) and the ratio.

    .venv/bin/python bench/boot_storm.py [--machines 1000] [--concurrency 200] [--flow trusted|plain]
                                         [--workers 2] [--threads 1] [--scrape S [--scrape-plain]]
                                         [--store sqlite|etcd [--replicas N] [--etcd-members 3]]

With --store etcd, a real etcd cluster (tests/support/etcd.py: --etcd-members on 127.0.0.1)
holds the inventory and N `mayu serve` replicas share it; every step of a machine goes to the
next replica, as a TCP balancer sends each new connection. Then a few machines, one at a time,
measure what each step costs etcd (round trips and write transactions, from the members'
own /metrics), and the CPU spent in the replicas and in etcd during the storm is printed per
machine, with the load average before and after (the machine is shared).

With --scrape S, a Prometheus-like client GETs /metrics every S seconds during the storm (from
the HTTPS listener, as docs/monitoring.md advises; `--scrape-plain`: from the plain one).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness.processes import group_cpu_s, group_pids  # noqa: E402
from tests.conftest import RunningServer, free_port  # noqa: E402
from tests.support.etcd import EtcdCluster  # noqa: E402
from tests.support.replicas import start_replicas  # noqa: E402

TOKEN_RE = re.compile(r"token=([A-Za-z0-9_-]+)")
MACHINE = "machine"  # the latency of a machine's whole conversation
HTTPS_STEP = "/ignition https"
PROBE_MACHINES = 5  # machines run one at a time to count what each step costs etcd
STORM_CONFIG = {
    "groups": [{"name": "storm", "profile": "worker", "selector": {}}],
    "server": {"discovery": {"per_source_per_minute": 100_000, "per_minute": 1_000_000}},
}


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    provisioned: int = 0
    wall_s: float = 0.0
    on_record: Callable[[str], None] | None = None  # told each step as it is answered

    def record(self, step: str, seconds: float) -> None:
        self.latencies.setdefault(step, []).append(seconds)
        if self.on_record is not None:
            self.on_record(step)

    def fail(self, step: str) -> None:
        self.errors[step] = self.errors.get(step, 0) + 1


@dataclass(frozen=True)
class Target:
    """Where the storm goes: the plain base URL and, for the trusted flow, the HTTPS base
    (the stub's merge source is fetched from there) with the client's TLS context."""

    http: str
    https: str | None = None
    tls: ssl.SSLContext | None = None


Call = Callable[[], Awaitable[tuple[int, bytes]]]


async def _timed(results: Results, step: str, call: Call) -> tuple[int, bytes]:
    start = time.perf_counter()
    try:
        status, body = await call()
    except (TimeoutError, aiohttp.ClientError, ssl.SSLError):
        results.fail(step)
        return 0, b""
    results.record(step, time.perf_counter() - start)
    if status >= 400:
        results.fail(step)
    return status, body


def _request(session: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> Call:
    async def call() -> tuple[int, bytes]:
        async with session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
            return response.status, await response.read()

    return call


async def _secret_over_https(
    session: aiohttp.ClientSession, target: Target, stub: bytes, results: Results
) -> bytes | None:
    """Fetch the stub's merge source from target.https and check its SHA-512; its body."""
    assert target.https is not None
    (merge,) = json.loads(stub)["ignition"]["config"]["merge"]
    source = urlsplit(merge["source"])
    url = f"{target.https}{source.path}?{source.query}"
    status, body = await _timed(results, HTTPS_STEP, _request(session, "GET", url, ssl=target.tls))
    if status != 200:
        return None
    if merge["verification"]["hash"] != f"sha512-{hashlib.sha512(body).hexdigest()}":
        results.fail("sha512")
        return None
    return body


def machine_mac(index: int) -> str:
    """The MAC simulated machine `index` asks with (as iPXE writes it: hyphens)."""
    return "52-54-" + "-".join(f"{index >> shift & 255:02x}" for shift in (24, 16, 8, 0))


async def _machine(
    session: aiohttp.ClientSession, targets: list[Target], index: int, results: Results
) -> bytes | None:
    """One machine's conversation; its k-th request goes to targets[(index + k) % n].
    The secret config it was served when it ended `installed`, else None."""
    mac = machine_mac(index)
    turns = (targets[(index + k) % len(targets)] for k in range(4))
    target = next(turns)
    start = time.perf_counter()
    status, script = await _timed(
        results, "/ipxe", _request(session, "GET", f"{target.http}/ipxe", params={"mac": mac})
    )
    if status != 200:
        return None
    match = TOKEN_RE.search(script.decode())
    if match is None:
        results.fail("no token")
        return None
    query = {"mac": mac, "token": match.group(1)}
    target = next(turns)
    status, config = await _timed(
        results, "/ignition", _request(session, "GET", f"{target.http}/ignition", params=query)
    )
    if status != 200:
        return None
    target = next(turns)
    if target.https is not None:  # trusted: config is the stub, the secret comes over HTTPS
        secret = await _secret_over_https(session, target, config, results)
        if secret is None:
            return None
        config = secret
    target = next(turns)
    report = {"event": "installed", "details": {}}
    status, _ = await _timed(
        results,
        "/report",
        _request(session, "POST", f"{target.http}/report", params=query, json=report),
    )
    if status != 200:
        return None
    results.provisioned += 1
    results.record(MACHINE, time.perf_counter() - start)
    return config


async def _storm(
    targets: list[Target],
    machines: int,
    concurrency: int,
    results: Results | None = None,
    first: int = 0,
) -> Results:
    results = results or Results()
    limit = asyncio.Semaphore(concurrency)
    # One connection per request, like iPXE and Ignition (and a TLS handshake per HTTPS step).
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def bounded(i: int) -> None:
            async with limit:
                await _machine(session, targets, i, results)

        start = time.perf_counter()
        await asyncio.gather(*(bounded(i) for i in range(first, first + machines)))
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
    """Samples the summed RSS of some process groups every 50 ms; keeps the peak."""

    def __init__(self, pgids: set[int]) -> None:
        super().__init__(daemon=True)
        self.pgids = pgids
        self.peak_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            total = 0
            for pid in group_pids(*self.pgids):
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                except (OSError, IndexError, ValueError):
                    continue
            self.peak_kib = max(self.peak_kib, total)


@dataclass(frozen=True)
class Captured:
    """One machine's conversation as the server answered it (for nginx to replay)."""

    script: str
    ignition: bytes  # the stub (trusted) or the secret config (plain)
    secret: bytes | None  # trusted: the secret config the stub names


def _capture(server: RunningServer, trusted: bool) -> Captured:
    mac = "52-54-ff-ff-ff-01"
    script = requests.get(f"{server.url}/ipxe", params={"mac": mac}, timeout=10).text
    match = TOKEN_RE.search(script)
    assert match, script
    query = {"mac": mac, "token": match.group(1)}
    ignition = requests.get(f"{server.url}/ignition", params=query, timeout=30).content
    secret = None
    if trusted:
        (merge,) = json.loads(ignition)["ignition"]["config"]["merge"]
        secret = requests.get(merge["source"], verify=str(server.ca_file), timeout=30).content
    return Captured(script, ignition, secret)


def _wait_listening(port: int) -> None:
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nginx does not listen on {port}")


def _nginx(root: Path, port: int, tls_port: int | None, tls_dir: Path) -> subprocess.Popen[bytes]:
    tls_server = ""
    if tls_port is not None:
        tls_server = f"""
  server {{
    listen 127.0.0.1:{tls_port} ssl reuseport;
    ssl_certificate {tls_dir}/tls.crt;
    ssl_certificate_key {tls_dir}/tls.key;
    location = /ignition {{ default_type application/json; alias {root}/secret.json; }}
  }}"""
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
  }}{tls_server}
}}
""")
    (root / "tmp").mkdir(exist_ok=True)
    root.chmod(0o755)  # nginx workers run as www-data
    process = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.PIPE)
    for listening in (port, tls_port):
        if listening is not None:
            _wait_listening(listening)
    return process


def _summary(name: str, results: Results, machines: int) -> float:
    rate = results.provisioned / results.wall_s if results.wall_s else 0.0
    print(
        f"\n== {name}: {results.provisioned}/{machines} provisioned in {results.wall_s:.2f} s "
        f"= {rate:.0f} machines/s; errors {sum(results.errors.values())} {results.errors or ''}"
    )
    print(f"   {'step':<16} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for step, values in results.latencies.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(
            f"   {step:<16} {len(values):>6} {statistics.median(values) * 1000:>8.1f} "
            f"{p99 * 1000:>8.1f} {ordered[-1] * 1000:>8.1f}"
        )
    return rate


class StepCosts:
    """What etcd did between one answered step and the next (run machines one at a time):
    round trips and write transactions per step, from the members' own counters."""

    def __init__(self, cluster: EtcdCluster) -> None:
        self.cluster = cluster
        self.last = cluster.counters()
        self.costs: dict[str, list[tuple[int, int]]] = {}

    def __call__(self, step: str) -> None:
        now = self.cluster.counters()
        cost = (now["requests"] - self.last["requests"], now["writes"] - self.last["writes"])
        self.costs.setdefault(step, []).append(cost)
        self.last = now

    def summary(self) -> str:
        parts = []
        for step, costs in self.costs.items():
            if step != MACHINE:
                trips = statistics.median(c[0] for c in costs)
                writes = statistics.median(c[1] for c in costs)
                parts.append(f"{step} {writes:g} write txn / {trips:g} round trips")
        return "; ".join(parts)


@dataclass
class MayuRun:
    results: Results
    captured: Captured
    rss_kib: int
    cpu_replicas_s: float
    cpu_etcd_s: float
    cpu_client_s: float
    step_costs: str
    scraper: Scraper | None


def _run_mayu(args: argparse.Namespace, work: Path, cluster: EtcdCluster | None) -> MayuRun:
    """The storm against the replicas (and, on etcd, the per-step costs), then the capture."""
    trusted = args.flow == "trusted"
    config = json.loads(json.dumps(STORM_CONFIG))
    config["server"]["insecure_secrets_over_http"] = not trusted
    if cluster is not None:
        config["store"] = {"url": cluster.url("/mayu-storm/")}
    threads = ("--threads", str(args.threads))
    servers = start_replicas(work, args.replicas, config, workers=args.workers, extra_args=threads)
    client_tls = ssl.create_default_context(cafile=str(servers[0].ca_file))
    targets = [Target(s.url, s.tls_url if trusted else None, client_tls) for s in servers]
    replica_groups = {s.process.pid for s in servers}
    etcd_groups = {m.process.pid for m in cluster.members if m.process} if cluster else set()
    sampler = RssSampler(replica_groups)
    sampler.start()
    scraper = None
    if args.scrape:
        at = servers[0].url if args.scrape_plain else servers[0].tls_url
        scraper = Scraper(at, servers[0].token, args.scrape, servers[0].ca_file)
        scraper.start()
    try:
        cpu_before = group_cpu_s(*replica_groups), group_cpu_s(*etcd_groups), time.process_time()
        results = asyncio.run(_storm(targets, args.machines, args.concurrency))
        cpu_replicas, cpu_etcd = group_cpu_s(*replica_groups), group_cpu_s(*etcd_groups)
        cpu_client = time.process_time()
        step_costs = ""
        if cluster is not None:
            costs = StepCosts(cluster)
            probe = Results(on_record=costs)
            asyncio.run(_storm(targets, PROBE_MACHINES, 1, probe, first=args.machines))
            step_costs = costs.summary()
        captured = _capture(servers[0], trusted)
    finally:
        sampler.stop.set()
        sampler.join()
        if scraper:
            scraper.stop.set()
            scraper.join()
        for server in servers:
            server.kill(signal.SIGTERM)
    return MayuRun(
        results,
        captured,
        sampler.peak_kib,
        cpu_replicas - cpu_before[0],
        cpu_etcd - cpu_before[1],
        cpu_client - cpu_before[2],
        step_costs,
        scraper,
    )


def _run_nginx(args: argparse.Namespace, work: Path, captured: Captured) -> Results:
    """The same bytes, pre-rendered, served by nginx (the HTTPS step with the server's cert)."""
    trusted = args.flow == "trusted"
    (work / "ipxe.txt").write_text(captured.script)
    (work / "ignition.json").write_bytes(captured.ignition)
    if captured.secret is not None:
        (work / "secret.json").write_bytes(captured.secret)
    port, tls_port = free_port(), free_port() if trusted else None
    tls_dir = work / "r0" / "pki" / "server"
    nginx = _nginx(work, port, tls_port, tls_dir)
    try:
        https = f"https://127.0.0.1:{tls_port}" if trusted else None
        client_tls = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
        target = Target(f"http://127.0.0.1:{port}", https, client_tls)
        return asyncio.run(_storm([target], args.machines, args.concurrency))
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--flow", choices=("trusted", "plain"), default="trusted")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per replica")
    parser.add_argument("--threads", type=int, default=1, help=">1: gthread workers")
    parser.add_argument("--scrape", type=float, help="GET /metrics every SCRAPE seconds")
    parser.add_argument("--scrape-plain", action="store_true", help="scrape the HTTP listener")
    parser.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite")
    parser.add_argument("--replicas", type=int, default=1, help="mayu serve replicas (etcd)")
    parser.add_argument("--etcd-members", type=int, default=3, help="etcd cluster size")
    args = parser.parse_args()
    if args.store == "sqlite" and args.replicas != 1:
        parser.error("--replicas N>1 needs --store etcd (an SQLite file has one server)")

    work = Path(tempfile.mkdtemp(prefix="mayu-bench-"))
    load_before = os.getloadavg()
    cluster = None
    if args.store == "etcd":
        cluster = EtcdCluster(work / "etcd", size=args.etcd_members).start()
    try:
        mayu = _run_mayu(args, work, cluster)
    finally:
        if cluster is not None:
            cluster.stop()
    load_after = os.getloadavg()
    ceiling = _run_nginx(args, work, mayu.captured)

    captured = mayu.captured
    secret = captured.secret if captured.secret is not None else captured.ignition
    store = (
        f"etcd ({args.etcd_members} members)" if args.store == "etcd" else "sqlite"
    ) + f", {args.replicas} replica{'s' if args.replicas > 1 else ''}"
    print(
        f"boot storm: flow {args.flow}, {args.machines} machines, {args.concurrency} concurrent "
        f"clients, store {store}, gunicorn {'gthread' if args.threads > 1 else 'sync'} "
        f"x{args.workers} workers x{args.threads} threads, {os.cpu_count()} cores; secret "
        f"config {len(secret)} bytes"
        + (f", stub {len(captured.ignition)} bytes" if captured.secret is not None else "")
    )
    print(
        "load average before "
        + "/".join(f"{v:.2f}" for v in load_before)
        + ", after the storm "
        + "/".join(f"{v:.2f}" for v in load_after)
    )
    ours = _summary("mayu serve", mayu.results, args.machines)
    ref = _summary("nginx (same bytes, pre-rendered)", ceiling, args.machines)
    print(
        f"\npeak RSS of mayu serve (masters, workers, HTTPS listeners): "
        f"{mayu.rss_kib / 1024:.0f} MiB"
    )
    per = max(1, mayu.results.provisioned)
    print(
        f"CPU per machine during the storm: {1000 * mayu.cpu_replicas_s / per:.1f} ms in the "
        f"replicas, {1000 * mayu.cpu_etcd_s / per:.1f} ms in etcd, "
        f"{1000 * mayu.cpu_client_s / per:.1f} ms in this client (with its samplers)"
    )
    if mayu.step_costs:
        print(f"etcd per step (median of {PROBE_MACHINES} machines, one at a time): "
              f"{mayu.step_costs}")  # fmt: skip
    if ref:
        print(f"ratio mayu/nginx (machines/s): {ours / ref:.3f}")
    scraper = mayu.scraper
    if scraper and scraper.latencies:
        print(
            f"/metrics scraped ({scraper.url}) {len(scraper.latencies)} times during the storm, "
            f"{scraper.failures} failed, median {statistics.median(scraper.latencies) * 1000:.0f}"
            f" ms, max {max(scraper.latencies) * 1000:.0f} ms"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
