"""Every bench under bench/ keeps working, run on a tiny size (the figures themselves are
theirs, in docs/benchmarks.md): each runs against its real peers (mayu serve, nginx, etcd,
HAProxy, libvirtd, qemu) and prints every figure it promises, with no error (the boot storm
over two replicas on etcd also shows each step is one write transaction there)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.peer

MACHINES = 12


def bench(script: str, *args: str, timeout: float = 120) -> str:
    """Run bench/SCRIPT with ARGS; it must succeed. Returns what it printed."""
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@pytest.mark.parametrize("flow", ["trusted", "plain"])
def test_a_small_storm_provisions_every_machine_on_mayu_and_nginx(flow: str) -> None:
    out = bench(
        "boot_storm.py",
        "--machines",
        str(MACHINES),
        "--concurrency",
        "4",
        "--flow",
        flow,
        timeout=300,
    )
    done = re.findall(rf"== (.+?): (\d+)/{MACHINES} provisioned .+ errors (\d+)", out)
    assert [(name.split()[0], int(n), int(e)) for name, n, e in done] == [
        ("mayu", MACHINES, 0),
        ("nginx", MACHINES, 0),
    ], out
    steps = set(re.findall(r"^   (/\S+(?: https)?|machine) +\d+ ", out, re.M))
    https = {"/ignition https"} if flow == "trusted" else set()
    assert steps == {"/ipxe", "/ignition", "/report", "machine"} | https, out


def test_a_small_storm_over_two_replicas_on_etcd_takes_one_write_per_step() -> None:
    out = bench(
        "boot_storm.py",
        "--machines",
        str(MACHINES),
        "--concurrency",
        "4",
        "--store",
        "etcd",
        "--replicas",
        "2",
        "--etcd-members",
        "1",
        "--workers",
        "1",
        timeout=300,
    )
    assert f"== mayu serve: {MACHINES}/{MACHINES} provisioned" in out, out
    assert re.search(r"== mayu serve: .* errors 0 ", out), out
    assert "store etcd (1 members), 2 replicas" in out, out
    costs = re.search(r"^etcd per step \(median of \d+ machines, one at a time\): (.+)$", out, re.M)
    assert costs, out
    steps = re.findall(r"(/\S+(?: https)?) (\d+) write txn / (\d+) round trips", costs.group(1))
    assert [(step, writes) for step, writes, _ in steps] == [
        ("/ipxe", "1"),
        ("/ignition", "1"),
        ("/ignition https", "1"),
        ("/report", "1"),
    ], costs.group(1)
    assert re.search(
        r"CPU per machine during the storm: [\d.]+ ms in the replicas, [1-9][\d.]* ms in etcd",
        out,
    ), out


@pytest.mark.parametrize("flow", ["trusted", "plain"])
def test_boot_cost_runs_every_machines_conversation(flow: str) -> None:
    out = bench("boot_cost.py", "--machines", str(MACHINES), "--flow", flow)
    assert re.fullmatch(
        rf"boot cost, flow {flow}: [\d.]+ ms CPU, [\d.]+ ms wall per machine \({MACHINES} machines\)\n",
        out,
    ), out


def test_the_wrk_bench_measures_every_step_on_every_server() -> None:
    out = bench(
        "wrk_boot.py",
        "--rounds",
        "1",
        "--warmup",
        "0",
        "--machines",
        "300",
        "--duration",
        "1",
        "--connections",
        "8",
        "--downloads",
        "2",
        "--asset-mib",
        "2",
        "--secrets",
        "1500",  # more than 1 s of HTTPS fetches on a fast machine (each spends one)
        "--https-duration",
        "1",
    )
    rows = re.findall(r"^(\S+) +(empty|nginx|mayu) +([\d.]+)[/ ].* errors (\d+)$", out, re.M)
    measured = {(step, target) for step, target, rate, errors in rows if float(rate) > 0}
    downloads = ("ipxe-under-downloads", "ipxe-light-under-downloads", "assets")
    assert measured == {
        (step, target)
        for step in (
            "ipxe-new",
            "ipxe-local",
            "ipxe-local-once",
            "boot.ipxe",
            "ipxe-light",
            "https-secret",
        )
        + downloads  # fmt: skip
        for target in ("empty", "nginx", "mayu")
        if target != "empty" or step not in downloads
    }, out
    assert re.search(r"^slow downloads from mayu: +[\d.]+ MB/s .+ cores$", out, re.M)
    assert {int(errors) for *_, errors in rows} == {0}, out
    assert re.search(r"^peak PSS: mayu [1-9]\d* MiB, empty [1-9]\d* MiB$", out, re.M)


def test_the_store_writers_bench_times_every_writer() -> None:
    out = bench("store_writers.py", "--transactions", "20", "--rounds", "1", timeout=60)
    assert re.fullmatch(
        r"round 1 this tree: 2 writers, [1-9]\d* tx/s, p50 [\d.]+ ms, p99 [\d.]+ ms, "
        r"max [\d.]+ ms\n",
        out,
    ), out


def test_the_ingress_reload_bench_keeps_its_held_session() -> None:
    out = bench("ingress_reload.py", "--tenants", "2", "--reloads", "2")
    assert re.fullmatch(
        r" +2 tenants, 2 reloads: update \d+ ms median, .+ reload alone \d+ ms median, .+ "
        r"held session survived: yes\n",
        out,
    ), out


def test_the_inventory_bench_walks_every_page() -> None:
    out = bench("inventory_pages.py", "--machines", "700", "--limit", "50", "--rounds", "1")
    assert re.search(r"^inventory: 700 machines, .+ \[20\] kept", out, re.M), out
    walks = re.findall(r"^round 1 (\S+) +(\d+) pages of 50, (\d+) machines", out, re.M)
    assert walks == [("all", "14", "700"), ("rack=r3", "2", "100")], out


def test_the_mixed_storm_runs_every_kind_alone_and_mixed_with_downloads() -> None:
    out = bench(
        "mixed_storm.py",
        "--rounds",
        "1",
        "--warmup",
        "0",
        "--duration",
        "1",
        "--new",
        "2",
        "--reboot",
        "2",
        "--installed",
        "4",
        "--downloads",
        "2",
        "--asset-mib",
        "2",
    )
    kinds = re.findall(
        r"^(new|reboot) +alone +([\d.]+) .+ mixed +([\d.]+) .+ errors alone (\d+), mixed (\d+)$",
        out,
        re.M,
    )
    assert [kind for kind, *_ in kinds] == ["new", "reboot"], out
    assert all(float(a) > 0 and float(m) > 0 and e == f == "0" for _, a, m, e, f in kinds)
    steps = re.findall(r"^   (/\S+(?: \w+)?) +p99 alone", out, re.M)
    assert steps == [
        "/ipxe", "/ignition", "/ignition https", "/report", "/ipxe local", "/report running"
    ], out  # fmt: skip
    assert re.search(r"^downloads during the mixed runs: +[1-9][\d.]* MB/s", out, re.M)


def test_the_store_bench_runs_the_conversation_on_sqlite_and_a_real_etcd() -> None:
    out = bench("store_boot.py", "--machines", "4", "--threads", "2", timeout=180)
    rows = re.findall(r"^(sqlite|etcd) +threads +(\d+): +([\d.]+) machines/s", out, re.M)
    assert {(store, threads) for store, threads, _ in rows} == {
        (store, threads) for store in ("sqlite", "etcd") for threads in ("1", "2")
    }, out
    assert all(float(rate) > 0 for *_, rate in rows), out
    assert re.search(r"^etcd/sqlite at 2 thread\(s\): [\d.]+$", out, re.M), out


def test_the_overlay_bench_sets_up_and_removes_a_tenant_on_two_hosts() -> None:
    out = bench("overlay_setup.py", "--tenants", "1")
    assert re.search(r"^\| 1 \| [\d.]+ ms \| [\d.]+ ms \| [\d.]+ ms \| [\d.]+ ms \|$", out, re.M), (
        out
    )


def test_the_metrics_overhead_bench_compares_two_trees() -> None:
    out = bench("metrics_overhead.py", "--compare", str(REPO), "--batch", "2", "--batches", "2")
    trees = re.findall(r"^  (this|other) tree +median ([\d.]+) ", out, re.M)
    assert [tree for tree, _ in trees] == ["this", "other"], out
    assert all(float(ms) > 0 for _, ms in trees), out
    assert re.search(r"^  overhead: median of paired ratios [+-][\d.]+%", out, re.M)


def test_the_tenant_lifecycle_bench_times_one_node_against_bare_qemu() -> None:
    out = bench("tenant_lifecycle.py", "--sizes", "1", "--reconcile-domains", "2", timeout=400)
    assert re.search(
        r"^\| 1 \| [\d.]+ s \| [\d.]+ s \| [+-][\d.]+ s \| [\d.]+ s \| [\d.]+ s \| \d+ MiB \|$",
        out,
        re.M,
    ), out
    assert out.count("unchanged reconcile, 2 domains") == 2, out


def test_the_lab_bench_boots_one_machine_and_its_floor() -> None:
    out = bench("lab_boot.py", "--machines", "1", timeout=400)
    assert re.search(
        r"^\| 1 \| [\d.]+ s \| [\d.]+ s \| [\d.]+ s \| [\d.]+ s \| \d+ \|$", out, re.M
    ), out


def test_every_bench_has_its_smoke_test_here() -> None:
    here = Path(__file__).read_text()
    missing = [b.name for b in sorted((REPO / "bench").glob("*.py")) if f'"{b.name}"' not in here]
    assert missing == [], f"benches without a smoke test in {Path(__file__).name}: {missing}"
