"""The boot plane measured from outside with wrk, against its own stack's ceiling.

Three servers run side by side on this machine: `mayu serve` (gunicorn sync workers, an asset
listener of its own), the empty Flask app under the same gunicorn settings answering every path
with the bytes `mayu serve` answered (bench/harness/empty_app.py: the ceiling for dynamic
endpoints), and nginx serving the same bytes (the load generator's own ceiling). Each round
runs every step against each server, the servers interleaved; the first round is a warm-up
and is not counted. Steps (200 connections, one request per connection as iPXE makes them):

- `ipxe-new`: new machines ask `/ipxe` (a catch-all group approves them: discovery, approval,
  a provisioning window and a boot token; one write transaction each), for a duration, from a
  list of fresh MACs longer than a run gets through;
- `ipxe-local`: installed machines ask `/ipxe` (a read: boot the local disk), for a duration,
  the same INSTALLED machines over and over (after the first pass, answers kept under the
  store's state version: mayu_py/server/boot_front.py);
- `ipxe-local-once`: the same read, each of ONCE installed machines asking once in a run (a
  rack rebooting: nothing kept to answer from);
- `boot.ipxe`: the generic script, for a duration;
- `ipxe-light`: `ipxe-new` at LIGHT connections (10), well below saturation: the latency of a
  script when the server is not queueing;
- `ipxe-under-downloads`, `ipxe-light-under-downloads`: the same two while D slow downloads
  (each read at RATE) of an asset hold connections on the asset listener (nginx: on itself);
  the downloads' total MB/s and their reader's CPU share are printed (they run on the same
  cores);
- `assets`: an asset, unthrottled, 8 connections, bytes/s (mayu's asset listener vs nginx);
- `https-secret`: the conversation's HTTPS step, machines fetching their secret config from
  the HTTPS listener with their boot token (one TLS handshake per request; spends the token),
  for HTTPS_DURATION: before each run, SECRETS machines are readied over plain HTTP (`/ipxe`,
  then the stub, which renders the config), each fetched once. The empty app answers the same
  bytes under the same gunicorn settings on a TLS listener of its own with mayu's certificate,
  nginx the same with that certificate. A run that uses up its machines says so (the rate
  of the rest would be 403s).

Prints, per step and server, the median and range over the counted rounds of requests/s (or
MB/s), of p99 and of the server's CPU per request (all its processes, user + system: a figure
the other load on the machine moves much less than requests/s), errors, and the ratio to the
empty app; then the peak PSS of each server.

    .venv/bin/python bench/wrk_boot.py [--rounds 4] [--warmup 1] [--machines 20000] [--duration 5]
                                      [--downloads 50] [--rate-mb 2] [--asset-mib 64]
                                      [--code DIR] [--before DIR] [--steps A,B]
                                      [--secrets 2000] [--https-duration 2]

--code DIR runs `mayu serve` from another checkout's source (PYTHONPATH=DIR, this venv's
packages); --before DIR runs one more `mayu serve` from DIR as the target `before`, in the same
rounds as this tree's (before and after measured seconds apart, on the same machine load);
--steps runs only the steps named.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness.memory import PssSampler  # noqa: E402
from bench.harness.wrk import WrkResult, run_wrk, write_inputs  # noqa: E402
from tests.conftest import RunningServer, free_port, start_server  # noqa: E402

STORM_CONFIG = {
    "groups": [{"name": "storm", "profile": "worker", "selector": {}}],
    "server": {"discovery": {"per_source_per_minute": 100_000, "per_minute": 1_000_000}},
}
INSTALLED = 1000
ONCE = 40_000
LOCAL, LOCAL_ONCE = 0xFFFF, 0xFFFD  # their MACs' prefixes
STEPS = (
    "ipxe-new",
    "ipxe-local",
    "ipxe-local-once",
    "boot.ipxe",
    "ipxe-light",
    "ipxe-under-downloads",
    "ipxe-light-under-downloads",
    "assets",
    "https-secret",
)
DOWNLOAD_STEPS = ("ipxe-under-downloads", "ipxe-light-under-downloads")
ASSET = "lab/disk.img"
REFERENCES = ("empty", "nginx")  # the servers that are not mayu
TOKEN = re.compile(r"token=([A-Za-z0-9_-]+)")


def _mac(prefix: int, n: int) -> str:
    return f"52-54-{prefix >> 8 & 0xFF:02x}-{prefix & 0xFF:02x}-{n >> 8 & 0xFF:02x}-{n & 0xFF:02x}"


def _seed_installed(database: Path) -> None:
    """INSTALLED (and ONCE) machines in state `installed`, written straight into the running
    server's store (its own schema, whatever its version)."""
    now = time.time()
    rows = [
        (_mac(prefix, n).replace("-", ":"), f"node-{prefix:x}-{n}", "installed", now)
        for prefix, count in ((LOCAL, INSTALLED), (LOCAL_ONCE, ONCE))
        for n in range(count)
    ]
    with sqlite3.connect(database, timeout=30) as conn:
        conn.executemany(
            "INSERT INTO machines (id, mac, hostname, labels, profile, state, created, updated) "
            "VALUES (?1, ?1, ?2, '{\"role\": \"worker\"}', 'worker', ?3, ?4, ?4)",
            rows,
        )


class SlowDownloads(threading.Thread):
    """`count` downloads of `url`, each read at `rate` bytes/s (one thread, a selector),
    started over when done; holds its connections until stopped."""

    def __init__(self, url: str, count: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.host, _, rest = url.removeprefix("http://").partition("/")
        self.path = "/" + rest
        self.count, self.rate = count, rate
        self.stop = threading.Event()
        self.received = 0
        self.cpu_s = 0.0  # this thread's CPU time: the load generator's share of the cores

    def _open(self, selector: selectors.BaseSelector) -> None:
        host, _, port = self.host.rpartition(":")
        conn = socket.create_connection((host, int(port)), timeout=10)
        conn.sendall(f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ, [0, time.monotonic()])

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            self._open(selector)
        chunk = max(int(self.rate / 10), 4096)  # 10 reads a second each: pacing, not spinning
        cpu_started = time.thread_time()
        while not self.stop.is_set():
            now = time.monotonic()
            for key, _ in selector.select(timeout=0.02):
                got, started = key.data
                if got > self.rate * (now - started):
                    continue  # ahead of its rate: let the server wait
                data = key.fileobj.recv(chunk)  # type: ignore[union-attr]
                key.data[0] += len(data)
                self.received += len(data)
                if not data:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
                    self._open(selector)
            time.sleep(0.02)
        self.cpu_s = time.thread_time() - cpu_started
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


@contextmanager
def _nginx(root: Path, port: int, tls_port: int, tls_dir: Path) -> Iterator[int]:
    """nginx serving every file of `root` at the same paths (as mayu answered them), and the
    secret config on `tls_port` with mayu's certificate; yields its process group."""
    conf = root.parent / "nginx.conf"
    conf.write_text(f"""
worker_processes 2;
daemon off;
pid {root.parent}/nginx.pid;
error_log {root.parent}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root.parent}/nginx-tmp;
  sendfile on;
  server {{
    listen 127.0.0.1:{port} reuseport;
    root {root};
    default_type text/plain;
    location = /ipxe {{ try_files /ipxe =404; }}
  }}
  server {{
    listen 127.0.0.1:{tls_port} ssl reuseport;
    ssl_certificate {tls_dir}/tls.crt;
    ssl_certificate_key {tls_dir}/tls.key;
    root {root};
    location = /ignition {{ default_type application/json; try_files /ignition =404; }}
  }}
}}
""")
    (root.parent / "nginx-tmp").mkdir(exist_ok=True)
    process = subprocess.Popen(["nginx", "-c", str(conf)], start_new_session=True)
    try:
        _wait_answering(f"http://127.0.0.1:{port}/boot.ipxe")
        yield process.pid
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def _empty_app(bodies: Path, port: int, workers: int, tls_dir: Path | None = None) -> Iterator[int]:
    """The empty Flask app under mayu's gunicorn settings (on TLS with the certificate of
    `tls_dir` when given); yields its process group."""
    argv = [sys.executable, "-m", "bench.harness.empty_app", f"127.0.0.1:{port}", str(workers)]
    argv.append(str(bodies))
    if tls_dir is not None:
        argv += [str(tls_dir / "tls.crt"), str(tls_dir / "tls.key")]
    process = subprocess.Popen(argv, cwd=REPO, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        scheme = "http" if tls_dir is None else "https"
        _wait_answering(f"{scheme}://127.0.0.1:{port}/boot.ipxe", tls_dir)
        yield process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def _wait_answering(url: str, tls_dir: Path | None = None) -> None:
    verify = str(tls_dir / "ca.crt") if tls_dir else True
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1, verify=verify).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} does not answer")


def _bodies(server: RunningServer, root: Path, asset: Path) -> None:
    """The bytes mayu answered, as files named by path (for nginx and the empty app)."""
    root.mkdir(parents=True)
    url = server.url
    (root / "boot.ipxe").write_bytes(requests.get(f"{url}/boot.ipxe", timeout=10).content)
    fresh = requests.get(f"{url}/ipxe", params={"mac": _mac(0xFFFE, 0)}, timeout=10)
    assert fresh.ok and "token=" in fresh.text, fresh.text
    (root / "ipxe").write_bytes(fresh.content)
    (secret,) = _ready_secrets(url, [_mac(0xFFFE, 1)])
    path = secret.partition("\t")[2]
    answer = requests.get(f"{server.tls_url}{path}", timeout=10, verify=str(server.ca_file))
    assert answer.ok, answer.text
    (root / "ignition").write_bytes(answer.content)
    (root / "assets" / asset.parent.name).mkdir(parents=True)
    os.link(asset, root / "assets" / asset.parent.name / asset.name)


def _fmt(values: list[float], unit: str = "", digits: int = 1) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:8.{digits}f}{unit} [{low:.{digits}f}-{high:.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="counted rounds")
    parser.add_argument("--warmup", type=int, default=1, help="rounds before, not counted")
    parser.add_argument("--machines", type=int, default=20000, help="MACs per new-machine run")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of timed steps")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--light", type=int, default=10, help="connections of the light steps")
    parser.add_argument("--downloads", type=int, default=50)
    parser.add_argument("--rate-mb", type=float, default=2.0)
    parser.add_argument("--asset-mib", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--steps", default=",".join(STEPS), help=f"comma-separated, of: {','.join(STEPS)}"
    )
    parser.add_argument("--secrets", type=int, default=2000, help="machines per https run")
    parser.add_argument("--https-duration", type=float, default=2.0)
    parser.add_argument("--code", type=Path, help="run mayu serve from this checkout")
    parser.add_argument(
        "--before", type=Path, help="also run mayu serve from this checkout, in the same rounds"
    )
    args = parser.parse_args()
    args.steps = set(args.steps.split(","))
    if unknown := args.steps - set(STEPS):
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    work = Path(tempfile.mkdtemp(prefix="mayu-wrk-"))
    work.chmod(0o755)  # nginx workers run as www-data
    asset = work / "assets" / ASSET
    asset.parent.mkdir(parents=True)
    with open(asset, "wb") as out:
        out.truncate(args.asset_mib << 20)
    codes = {"mayu": args.code} | ({"before": args.before} if args.before else {})
    servers: dict[str, RunningServer] = {}
    ports = {name: free_port() for name in ("empty", "nginx", "empty-tls", "nginx-tls")}
    try:
        asset_urls = {
            name: _start_mayu(args, work, name, code, servers) for name, code in codes.items()
        }
        _bodies(servers["mayu"], work / "bodies", asset)
        tls_dir = servers["mayu"].ca_file.parent
        with (
            _empty_app(work / "bodies", ports["empty"], args.workers) as empty_pgid,
            _empty_app(
                work / "bodies", ports["empty-tls"], args.workers, tls_dir
            ) as empty_tls_pgid,
            _nginx(work / "bodies", ports["nginx"], ports["nginx-tls"], tls_dir) as nginx_pgid,
        ):
            urls = {name: server.url for name, server in servers.items()} | {
                name: f"http://127.0.0.1:{ports[name]}" for name in ("empty", "nginx")
            }
            tls = {name: (s.tls_url, s.process.pid) for name, s in servers.items()} | {
                "empty": (f"https://127.0.0.1:{ports['empty-tls']}", empty_tls_pgid),
                "nginx": (f"https://127.0.0.1:{ports['nginx-tls']}", nginx_pgid),
            }
            asset_urls["nginx"] = f"{urls['nginx']}/assets/{ASSET}"
            pss = {name: PssSampler(server.process.pid) for name, server in servers.items()}
            pss["empty"] = PssSampler(empty_pgid)
            for sampler in pss.values():
                sampler.start()
            targets = (*REFERENCES, *servers)
            pgids = {name: server.process.pid for name, server in servers.items()}
            pgids |= {"empty": empty_pgid, "nginx": nginx_pgid}
            results, downloads = _rounds(args, work, urls, pgids, tls, asset_urls, targets)
            peaks = {name: sampler.finish() for name, sampler in pss.items()}
    finally:
        for server in servers.values():
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    _report(args, results, peaks, downloads, targets)


def _start_mayu(
    args: argparse.Namespace,
    work: Path,
    name: str,
    code: Path | None,
    servers: dict[str, RunningServer],
) -> str:
    """`mayu serve` (from `code`, a checkout, when given) on a data dir of its own with the
    installed machines and the asset; returns the asset's URL (on the asset listener when
    the checkout has one, else on its main listener)."""
    data = work / name
    (data / "assets" / ASSET).parent.mkdir(parents=True)
    os.link(work / "assets" / ASSET, data / "assets" / ASSET)
    split = code is None or "--assets-listen" in (code / "mayu_py/cli/serve.py").read_text()
    assets_listen = f"127.0.0.1:{free_port()}"
    extra = ("--assets-listen", assets_listen) if split else ()
    if code is not None:
        os.environ["PYTHONPATH"] = str(code.resolve())
    try:
        servers[name] = start_server(
            data, config=STORM_CONFIG, workers=args.workers, extra_args=extra
        )
    finally:
        os.environ.pop("PYTHONPATH", None)
    _seed_installed(data / "inventory.sqlite3")
    base = f"http://{assets_listen}" if split else servers[name].url
    return f"{base}/assets/{ASSET}"


Results = dict[tuple[str, str], list[WrkResult]]
# Per target, per counted round: the slow downloads' MB/s (all together) and the CPU share
# (cores) their reading thread took.
Downloads = dict[str, list[tuple[float, float]]]


def _rounds(
    args: argparse.Namespace,
    work: Path,
    urls: dict[str, str],
    pgids: dict[str, int],
    tls: dict[str, tuple[str, int]],
    asset_urls: dict[str, str],
    targets: tuple[str, ...],
) -> tuple[Results, Downloads]:
    results: Results = {}
    downloads: Downloads = {}
    prefix = 0x100
    for round_ in range(1 - args.warmup, args.rounds + 1):
        for target in targets:
            runs: dict[str, WrkResult] = {}
            wanted = args.steps
            timed = partial(_timed, args, work, pgid=pgids[target])
            new = partial(_new_machines, args, work, urls[target], pgid=pgids[target])
            prefix += 1
            if "ipxe-new" in wanted:
                runs["ipxe-new"] = new(prefix)
            if "ipxe-local" in wanted:
                local = [f"GET\t/ipxe?mac={_mac(LOCAL, n)}" for n in range(INSTALLED)]
                runs["ipxe-local"] = timed(urls[target], local)
            if "ipxe-local-once" in wanted:
                once = [f"GET\t/ipxe?mac={_mac(LOCAL_ONCE, n)}" for n in range(ONCE)]
                runs["ipxe-local-once"] = timed(urls[target], once)
            if "boot.ipxe" in wanted:
                runs["boot.ipxe"] = timed(urls[target], ["GET\t/boot.ipxe"])
            prefix += 1
            if "ipxe-light" in wanted:
                runs["ipxe-light"] = new(prefix, args.light)
            if target in asset_urls and wanted & set(DOWNLOAD_STEPS):
                slow = SlowDownloads(asset_urls[target], args.downloads, args.rate_mb * 1e6)
                slow.start()
                began = time.monotonic()
                prefix += 1
                if "ipxe-under-downloads" in wanted:
                    runs["ipxe-under-downloads"] = new(prefix)
                prefix += 1
                if "ipxe-light-under-downloads" in wanted:
                    runs["ipxe-light-under-downloads"] = new(prefix, args.light)
                slow.stop.set()
                slow.join(10)
                elapsed = time.monotonic() - began
                if round_ > 0:
                    downloads.setdefault(target, []).append(
                        (slow.received / elapsed / 1e6, slow.cpu_s / elapsed)
                    )
            if target in asset_urls and "assets" in wanted:
                path = asset_urls[target].partition("/assets/")[2]
                base = asset_urls[target].partition("/assets/")[0]
                runs["assets"] = timed(base, [f"GET\t/assets/{path}"], connections=8)
            if "https-secret" in wanted:
                prefix += 1
                mayu = None if target in REFERENCES else urls[target]
                runs["https-secret"] = _secrets(args, work, mayu, tls[target], prefix)
            if round_ <= 0:
                continue  # warm-up
            for step, result in runs.items():
                results.setdefault((step, target), []).append(result)
            print(f"round {round_} {target}: " + ", ".join(
                f"{s} {r.rate:.0f}/s p99 {r.p99_ms:.0f} ms err {r.errors}"
                for s, r in runs.items()
            ), flush=True)  # fmt: skip
    return results, downloads


def _new_machines(
    args: argparse.Namespace,
    work: Path,
    url: str,
    prefix: int,
    connections: int | None = None,
    *,
    pgid: int,
) -> WrkResult:
    """New machines for `duration` seconds: a list of fresh MACs, long enough that a run
    rarely comes back to one (a MAC asked again mints a token again: a write too)."""
    lines = [f"GET\t/ipxe?mac={_mac(prefix, n)}" for n in range(args.machines)]
    return _timed(args, work, url, lines, connections, pgid=pgid)


def _ready_secrets(url: str, macs: list[str]) -> list[str]:
    """Ready new machines' secret configs over plain HTTP as Ignition would find them (their
    `/ipxe` mints a boot token, their stub renders the config); the request lines that fetch
    them over HTTPS."""

    def ready(mac: str) -> str:
        script = requests.get(f"{url}/ipxe", params={"mac": mac}, timeout=30)
        found = TOKEN.search(script.text)
        assert script.ok and found, script.text
        query = f"mac={mac}&token={found[1]}"
        stub = requests.get(f"{url}/ignition?{query}", timeout=30)
        assert stub.ok, stub.text
        return f"GET\t/ignition?{query}"

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(ready, macs))


def _secrets(
    args: argparse.Namespace, work: Path, url: str | None, tls: tuple[str, int], prefix: int
) -> WrkResult:
    """The HTTPS step for `https_duration`: on mayu (`url`: its plain listener) each request
    spends a token readied here; the empty app and nginx (None) answer the same bytes to any
    request."""
    macs = [_mac(prefix, n) for n in range(args.secrets)]
    if url is None:
        lines = [f"GET\t/ignition?mac={mac}&token=t" for mac in macs]
    else:
        lines = _ready_secrets(url, macs)
    tls_url, pgid = tls
    result = _timed(args, work, tls_url, lines, pgid=pgid, duration=args.https_duration)
    if url is not None and result.requests > len(lines):
        print(f"https-secret on {tls_url}: more requests than machines readied: use --secrets")
    return result


def _timed(
    args: argparse.Namespace,
    work: Path,
    url: str,
    lines: list[str],
    connections: int | None = None,
    *,
    pgid: int,
    duration: float | None = None,
) -> WrkResult:
    """wrk on `lines` for `duration` (default: --duration), counting the CPU of the server's
    process group."""
    directory = work / "wrk" / "timed"
    write_inputs(directory, lines * 2 if len(lines) < 2 else lines, 2)
    return run_wrk(url, directory, connections=connections or args.connections,
                   duration_s=duration or args.duration, server_pgids=(pgid,))  # fmt: skip


def _report(
    args: argparse.Namespace,
    results: Results,
    peaks: dict[str, int],
    downloads: Downloads,
    targets: tuple[str, ...],
) -> None:
    print(
        f"\n== wrk boot plane: {args.rounds} counted rounds (+{args.warmup} warm-up), "
        f"{args.connections} connections, {args.machines} new machines per run, "
        f"{args.duration:.0f} s timed steps, {args.downloads} slow downloads at "
        f"{args.rate_mb:g} MB/s, asset {args.asset_mib} MiB"
    )
    steps = dict.fromkeys(step for step, _ in results)
    for step in steps:
        empty = results.get((step, "empty"))
        for target in targets:
            runs = results.get((step, target))
            if not runs:
                continue
            if step == "assets":
                rate = _fmt([r.bytes_per_s / 1e6 for r in runs], " MB/s")
            else:
                rate = _fmt([r.rate for r in runs], "/s")
            ratio = ""
            if empty and target != "empty":
                # Each round's own ratio (the servers ran seconds apart), then their median.
                shares = [r.rate / e.rate for r, e in zip(runs, empty, strict=True) if e.rate]
                ratio = f" = {_fmt(shares, 'x', 2).strip()} empty per round"
            before = results.get((step, "before"))
            if before and target == "mayu":
                gains = [r.rate / b.rate for r, b in zip(runs, before, strict=True) if b.rate]
                ratio += f", {_fmt(gains, 'x', 2).strip()} before"
            errors = sum(r.errors for r in runs)
            p99 = _fmt([r.p99_ms for r in runs], " ms")
            cpu = _fmt([r.server_cpu_ms for r in runs], " ms", 2).strip()
            print(f"{step:21} {target:5} {rate}{ratio}  p99 {p99}  cpu/req {cpu}  errors {errors}")
    for target, figures in downloads.items():
        rates = _fmt([r for r, _ in figures], " MB/s")
        cpus = _fmt([c for _, c in figures], "", 2)
        print(f"slow downloads from {target}: {rates} in all, their reader's CPU {cpus} cores")
    print("peak PSS: " + ", ".join(f"{name} {mib} MiB" for name, mib in peaks.items()))


if __name__ == "__main__":
    main()
