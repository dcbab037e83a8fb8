"""Mixed storm: every kind of boot-plane traffic at once, against each kind alone.

A datacenter never sends one kind of request: while a rack of new machines provisions, the
installed ones reboot and phone home, and others pull a disk image slowly. One `mayu serve`
(gunicorn sync workers, its asset listener, the HTTPS listener) gets, for `--duration` seconds:

- `new`: NEW concurrent clients, each running new machines' whole trusted conversation one
  after another (/ipxe, the stub, the secret config over HTTPS, /report installed);
- `reboot`: REBOOT concurrent clients, each rebooting installed machines (set up before the
  rounds through the same conversation): /ipxe answers the local-boot script (no token), then
  /report running over HTTPS with the machine's own report credential taken from its config;
- `downloads`: D downloads of a 64 MiB asset from the asset listener, each read at RATE.

Each round runs `new` alone, `reboot` alone, then all three together; the first round is a
warm-up. Prints, per traffic kind, the median and range over the counted rounds of its rate and
of its p99 per step, alone and mixed, and the mixed/alone ratio of the rates; their sum is the
share of its alone capacity that the server keeps when the kinds mix (1.00: mixing costs nothing,
the kinds only share the 2 cores).

    .venv/bin/python bench/mixed_storm.py [--rounds 3] [--warmup 1] [--duration 10] [--new 100]
                                         [--reboot 100] [--installed 500] [--downloads 50]
                                         [--rate-mb 2] [--asset-mib 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.boot_storm import (  # noqa: E402
    STORM_CONFIG,
    TOKEN_RE,
    Results,
    Target,
    _machine,
    _request,
    _timed,
    machine_mac,
)
from bench.wrk_boot import ASSET, SlowDownloads  # noqa: E402
from mayu_py.render.ignition import file_text  # noqa: E402
from tests.conftest import free_port, start_server  # noqa: E402

REPORT_CREDENTIAL = "/etc/mayu/report.token"
KINDS = ("new", "reboot")
INSTALLED_MACS = 0x7F000000  # far from the new machines' MACs


@dataclass
class Installed:
    """A machine that went through the conversation: its MAC and its report credential."""

    mac: str
    credential: str


@dataclass
class Round:
    """What one traffic kind did in one run: completed units per second and its steps."""

    units: int = 0
    wall_s: float = 0.0
    results: Results = field(default_factory=Results)

    @property
    def rate(self) -> float:
        return self.units / self.wall_s if self.wall_s else 0.0


async def _install(session: aiohttp.ClientSession, target: Target, index: int, results: Results) -> Installed | None:  # fmt: skip
    """A new machine's whole conversation (bench/boot_storm.py's); its report credential,
    taken from the secret config it was served, when it ends `installed`."""
    secret = await _machine(session, [target], index, results)
    credential = file_text(json.loads(secret), REPORT_CREDENTIAL) if secret else None
    if credential is None:
        return None
    return Installed(machine_mac(index), credential.strip())


async def _reboot(session: aiohttp.ClientSession, target: Target, machine: Installed, results: Results) -> bool:  # fmt: skip
    """An installed machine boots: the local-boot script, then `running` with its credential."""
    status, script = await _timed(
        results,
        "/ipxe local",
        _request(session, "GET", f"{target.http}/ipxe", params={"mac": machine.mac}),
    )
    if status != 200 or TOKEN_RE.search(script.decode()):
        results.fail("not local boot")
        return False
    status, _ = await _timed(
        results,
        "/report running",
        _request(
            session,
            "POST",
            f"{target.https}/report",
            params={"mac": machine.mac},
            json={"event": "running", "details": {}},
            headers={"Authorization": f"Bearer {machine.credential}"},
            ssl=target.tls,
        ),
    )
    return status == 200


Unit = Callable[[aiohttp.ClientSession, int], Awaitable[bool]]


async def _clients(target: Target, clients: int, duration: float, unit: Unit, out: Round) -> None:
    """`clients` loops running `unit` one after another until `duration` has passed."""
    connector = aiohttp.TCPConnector(limit=clients, force_close=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        deadline = start + duration

        async def loop(client: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                if await unit(session, client * 100_000 + n):
                    out.units += 1
                n += 1

        await asyncio.gather(*(loop(c) for c in range(clients)))
        out.wall_s = time.perf_counter() - start


class Storm:
    """The runs of one bench: fresh MACs for every new machine, installed machines in turn."""

    def __init__(self, target: Target, args: argparse.Namespace, installed: list[Installed]):
        self.target, self.args, self.installed = target, args, installed
        self.macs = 0  # new machines so far: every one gets a MAC never seen before

    def _new_unit(self, out: Round) -> Unit:
        async def unit(session: aiohttp.ClientSession, n: int) -> bool:
            self.macs += 1
            return await _install(session, self.target, self.macs, out.results) is not None

        return unit

    def _reboot_unit(self, out: Round) -> Unit:
        async def unit(session: aiohttp.ClientSession, n: int) -> bool:
            machine = self.installed[n % len(self.installed)]
            return await _reboot(session, self.target, machine, out.results)

        return unit

    def run(self, kinds: tuple[str, ...]) -> dict[str, Round]:
        rounds = {kind: Round() for kind in kinds}
        units = {"new": self._new_unit, "reboot": self._reboot_unit}
        clients = {"new": self.args.new, "reboot": self.args.reboot}

        async def together() -> None:
            await asyncio.gather(
                *(
                    _clients(self.target, clients[k], self.args.duration, units[k](r), r)
                    for k, r in rounds.items()
                )
            )

        asyncio.run(together())
        return rounds


async def _setup(target: Target, count: int) -> list[Installed]:
    """`count` installed machines, through the conversation (50 at a time)."""
    results = Results()
    limit = asyncio.Semaphore(50)
    connector = aiohttp.TCPConnector(limit=50, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int) -> Installed | None:
            async with limit:
                return await _install(session, target, INSTALLED_MACS + n, results)

        done = await asyncio.gather(*(one(n) for n in range(count)))
    installed = [m for m in done if m is not None]
    if len(installed) != count:
        raise SystemExit(f"setup: {len(installed)}/{count} machines installed: {results.errors}")
    return installed


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def _fmt(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):7.1f}{unit} [{min(values):.1f}-{max(values):.1f}]"


def _report(args: argparse.Namespace, runs: dict[tuple[str, str], list[Round]], downloaded: list[float]) -> None:  # fmt: skip
    print(
        f"\n== mixed storm: {args.rounds} counted rounds (+{args.warmup} warm-up) of "
        f"{args.duration:g} s; new {args.new} clients, reboot {args.reboot} clients over "
        f"{args.installed} installed machines, {args.downloads} downloads at {args.rate_mb:g} MB/s"
    )
    shares = []
    for kind in KINDS:
        rates = {mode: [r.rate for r in runs[(kind, mode)]] for mode in ("alone", "mixed")}
        unit = "machines/s" if kind == "new" else "reboots/s"
        ratio = statistics.median(rates["mixed"]) / statistics.median(rates["alone"])
        shares.append(ratio)
        errors = {mode: sum(sum(r.results.errors.values()) for r in runs[(kind, mode)]) for mode in rates}  # fmt: skip
        print(
            f"{kind:7} alone {_fmt(rates['alone'], '')} {unit}, mixed {_fmt(rates['mixed'], '')}"
            f" = {ratio:.2f}x alone; errors alone {errors['alone']}, mixed {errors['mixed']}"
        )
        steps = dict.fromkeys(s for r in runs[(kind, "alone")] for s in r.results.latencies)
        for step in steps:
            p99s = {
                mode: [_p99(r.results.latencies[step]) for r in runs[(kind, mode)]]
                for mode in rates
            }
            print(f"   {step:17} p99 alone {_fmt(p99s['alone'], ' ms')}, mixed {_fmt(p99s['mixed'], ' ms')}")  # fmt: skip
    print(f"downloads during the mixed runs: {_fmt(downloaded, ' MB/s')} in all")
    print(
        f"mixed capacity: {sum(shares):.2f} of the server's alone capacity (the sum of the "
        "kinds' mixed/alone ratios; 1.00 = mixing costs nothing)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds")
    parser.add_argument("--warmup", type=int, default=1, help="rounds before, not counted")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--new", type=int, default=100, help="clients of new machines")
    parser.add_argument("--reboot", type=int, default=100, help="clients of reboots")
    parser.add_argument("--installed", type=int, default=500)
    parser.add_argument("--downloads", type=int, default=50)
    parser.add_argument("--rate-mb", type=float, default=2.0)
    parser.add_argument("--asset-mib", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mayu-mixed-"))
    asset = work / "data" / "assets" / ASSET
    asset.parent.mkdir(parents=True)
    with open(asset, "wb") as out:
        out.truncate(args.asset_mib << 20)
    assets_listen = f"127.0.0.1:{free_port()}"
    server = start_server(
        work / "data",
        config=STORM_CONFIG,
        workers=args.workers,
        extra_args=("--assets-listen", assets_listen),
    )
    runs: dict[tuple[str, str], list[Round]] = {}
    downloaded: list[float] = []
    try:
        tls = ssl.create_default_context(cafile=str(server.ca_file))
        target = Target(server.url, server.tls_url, tls)
        storm = Storm(target, args, asyncio.run(_setup(target, args.installed)))
        for round_ in range(1 - args.warmup, args.rounds + 1):
            alone = {kind: storm.run((kind,))[kind] for kind in KINDS}
            slow = SlowDownloads(
                f"http://{assets_listen}/assets/{ASSET}", args.downloads, args.rate_mb * 1e6
            )
            slow.start()
            started = time.monotonic()
            mixed = storm.run(KINDS)
            slow.stop.set()
            slow.join(10)
            held_s = time.monotonic() - started
            if round_ <= 0:
                continue  # warm-up
            downloaded.append(slow.received / 1e6 / held_s)
            for kind in KINDS:
                runs.setdefault((kind, "alone"), []).append(alone[kind])
                runs.setdefault((kind, "mixed"), []).append(mixed[kind])
            print(
                f"round {round_}: "
                + ", ".join(
                    f"{k} alone {alone[k].rate:.0f}/s mixed {mixed[k].rate:.0f}/s" for k in KINDS
                ),
                flush=True,
            )
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
    _report(args, runs, downloaded)


if __name__ == "__main__":
    main()
