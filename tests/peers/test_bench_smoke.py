"""Every bench under bench/ keeps working, run on a tiny size (the figures themselves are
theirs, in docs/benchmarks.md): each runs against its real peers (mayu serve, nginx, etcd,
HAProxy, libvirtd, qemu) and prints every figure it promises, with no error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
    assert measured == {
        (step, target)
        for step in ("ipxe-new", "ipxe-local", "boot.ipxe", "ipxe-under-downloads", "assets")
        for target in ("empty", "nginx", "mayu")
        if target != "empty" or step not in ("ipxe-under-downloads", "assets")
    }, run.stdout
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


def test_the_mixed_storm_runs_every_kind_alone_and_mixed_with_downloads() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "mixed_storm.py"), "--rounds", "1", "--warmup", "0",
         "--duration", "1", "--new", "2", "--reboot", "2", "--installed", "4", "--downloads", "2",
         "--asset-mib", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    kinds = re.findall(
        r"^(new|reboot) +alone +([\d.]+) .+ mixed +([\d.]+) .+ errors alone (\d+), mixed (\d+)$",
        run.stdout,
        re.M,
    )
    assert [kind for kind, *_ in kinds] == ["new", "reboot"], run.stdout
    assert all(float(a) > 0 and float(m) > 0 and e == f == "0" for _, a, m, e, f in kinds)
    steps = re.findall(r"^   (/\S+(?: \w+)?) +p99 alone", run.stdout, re.M)
    assert steps == [
        "/ipxe", "/ignition", "/ignition https", "/report", "/ipxe local", "/report running"
    ], run.stdout  # fmt: skip
    assert re.search(r"^downloads during the mixed runs: +[1-9][\d.]* MB/s", run.stdout, re.M)


def test_the_store_bench_runs_the_conversation_on_sqlite_and_a_real_etcd() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "store_boot.py"), "--machines", "4",
         "--threads", "2"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    rows = re.findall(r"^(sqlite|etcd) +threads +(\d+): +([\d.]+) machines/s", run.stdout, re.M)
    assert {(store, threads) for store, threads, _ in rows} == {
        (store, threads) for store in ("sqlite", "etcd") for threads in ("1", "2")
    }, run.stdout
    assert all(float(rate) > 0 for *_, rate in rows), run.stdout
    assert re.search(r"^etcd/sqlite at 2 thread\(s\): [\d.]+$", run.stdout, re.M), run.stdout


def test_the_overlay_bench_sets_up_and_removes_a_tenant_on_two_hosts() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "overlay_setup.py"), "--tenants", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(
        r"^\| 1 \| [\d.]+ ms \| [\d.]+ ms \| [\d.]+ ms \| [\d.]+ ms \|$", run.stdout, re.M
    ), run.stdout


def test_the_metrics_overhead_bench_compares_two_trees() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "metrics_overhead.py"), "--compare", str(REPO),
         "--batch", "2", "--batches", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    trees = re.findall(r"^  (this|other) tree +median ([\d.]+) ", run.stdout, re.M)
    assert [tree for tree, _ in trees] == ["this", "other"], run.stdout
    assert all(float(ms) > 0 for _, ms in trees), run.stdout
    assert re.search(r"^  overhead: median of paired ratios [+-][\d.]+%", run.stdout, re.M)


def test_the_tenant_lifecycle_bench_times_one_node_against_bare_qemu() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "tenant_lifecycle.py"), "--sizes", "1",
         "--reconcile-domains", "2"],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(
        r"^\| 1 \| [\d.]+ s \| [\d.]+ s \| [+-][\d.]+ s \| [\d.]+ s \| [\d.]+ s \| \d+ MiB \|$",
        run.stdout,
        re.M,
    ), run.stdout
    assert run.stdout.count("unchanged reconcile, 2 domains") == 2, run.stdout


def test_the_lab_bench_boots_one_machine_and_its_floor() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "lab_boot.py"), "--machines", "1"],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(
        r"^\| 1 \| [\d.]+ s \| [\d.]+ s \| [\d.]+ s \| [\d.]+ s \| \d+ \|$", run.stdout, re.M
    ), run.stdout


def test_every_bench_has_its_smoke_test_here() -> None:
    here = Path(__file__).read_text()
    missing = [b.name for b in sorted((REPO / "bench").glob("*.py")) if f'"{b.name}"' not in here]
    assert missing == [], f"benches without a smoke test in {Path(__file__).name}: {missing}"
