"""The benches keep working (the figures themselves are theirs): a small storm of both
flows against a real `mayu serve` and nginx provisions every machine with no error, and the
in-process cost runs every machine's whole conversation; the ingress reload bench reloads
HAProxy with a session held across."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.peer

MACHINES = 12


@pytest.mark.parametrize("flow", ["trusted", "plain"])
def test_a_small_storm_provisions_every_machine_on_mayu_and_nginx(flow: str) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "boot_storm.py"), "--machines", str(MACHINES),
         "--concurrency", "4", "--flow", flow],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    done = re.findall(rf"== (.+?): (\d+)/{MACHINES} provisioned .+ errors (\d+)", run.stdout)
    assert [(name.split()[0], int(n), int(e)) for name, n, e in done] == [
        ("mayu", MACHINES, 0),
        ("nginx", MACHINES, 0),
    ], run.stdout
    steps = set(re.findall(r"^   (/\S+(?: https)?|machine) +\d+ ", run.stdout, re.M))
    https = {"/ignition https"} if flow == "trusted" else set()
    assert steps == {"/ipxe", "/ignition", "/report", "machine"} | https, run.stdout


@pytest.mark.parametrize("flow", ["trusted", "plain"])
def test_boot_cost_runs_every_machines_conversation(flow: str) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "boot_cost.py"), "--machines", str(MACHINES),
         "--flow", flow],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.fullmatch(
        rf"boot cost, flow {flow}: [\d.]+ ms CPU, [\d.]+ ms wall per machine \({MACHINES} machines\)\n",
        run.stdout,
    ), run.stdout


def test_the_wrk_bench_measures_every_step_on_every_server() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "wrk_boot.py"), "--rounds", "1", "--warmup", "0", "--machines",
         "300", "--duration", "1", "--connections", "8", "--downloads", "2", "--asset-mib", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    rows = re.findall(r"^(\S+) +(empty|nginx|mayu) +([\d.]+)[/ ].* errors (\d+)$", run.stdout, re.M)
    measured = {(step, target) for step, target, rate, errors in rows if float(rate) > 0}
    downloads = ("ipxe-under-downloads", "ipxe-light-under-downloads", "assets")
    assert measured == {
        (step, target)
        for step in ("ipxe-new", "ipxe-local", "boot.ipxe", "ipxe-light", *downloads)
        for target in ("empty", "nginx", "mayu")
        if target != "empty" or step not in downloads
    }, run.stdout
    assert re.search(r"^slow downloads from mayu: +[\d.]+ MB/s .+ cores$", run.stdout, re.M)
    assert {int(errors) for *_, errors in rows} == {0}, run.stdout
    assert re.search(r"^peak PSS: mayu [1-9]\d* MiB, empty [1-9]\d* MiB$", run.stdout, re.M)


def test_the_store_writers_bench_times_every_writer() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "store_writers.py"), "--transactions", "20",
         "--rounds", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.fullmatch(
        r"round 1 this tree: 2 writers, [1-9]\d* tx/s, p50 [\d.]+ ms, p99 [\d.]+ ms, "
        r"max [\d.]+ ms\n",
        run.stdout,
    ), run.stdout


def test_the_ingress_reload_bench_keeps_its_held_session() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ingress_reload.py"), "--tenants", "2",
         "--reloads", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.fullmatch(
        r" +2 tenants, 2 reloads: update \d+ ms median, .+ reload alone \d+ ms median, .+ "
        r"held session survived: yes\n",
        run.stdout,
    ), run.stdout


def test_the_inventory_bench_walks_every_page() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "inventory_pages.py"), "--machines", "700",
         "--limit", "50", "--rounds", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^inventory: 700 machines, .+ \[20\] kept", run.stdout, re.M), run.stdout
    walks = re.findall(r"^round 1 (\S+) +(\d+) pages of 50, (\d+) machines", run.stdout, re.M)
    assert walks == [("all", "14", "700"), ("rack=r3", "2", "100")], run.stdout
