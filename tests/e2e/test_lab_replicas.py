"""`mayu lab up --store etcd --replicas 2`: a 3-member etcd, two `mayu serve` replicas on it and
HAProxy (PROXY protocol) in front of them inside the lab namespace. Exactly one replica, the
elected DHCP leader, runs dnsmasq; the machines boot through the balancer, so both replicas
answer steps of their conversations, and end installed. `down` removes it all, also with the
state file gone (as after a SIGKILLed `up`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mayu_py.lab import replicas
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.netns import InNamespace
from mayu_py.pids import running
from tests.e2e import test_lab as base
from tests.e2e.test_lab import Lab
from tests.support.prometheus import parse, value

pytestmark = pytest.mark.e2e

MACHINES = 2
lab = base.lab  # the lab fixture: a fresh work dir, `down` twice and no leak afterwards
_peers = base._peers


def _boot_requests(metrics: str) -> dict[str, float]:
    """A replica's answered boot-plane requests (blueprint `boot`), by endpoint."""
    counts: dict[str, float] = {}
    for (name, labels), count in parse(metrics).items():
        endpoint = dict(labels).get("endpoint", "")
        if name == "mayu_http_requests_total" and endpoint.startswith("boot."):
            counts[endpoint] = counts.get(endpoint, 0.0) + count
    return counts


def test_lab_on_etcd_boots_its_machines_through_both_replicas(lab: Lab) -> None:
    started = time.monotonic()
    up = lab.mayu(
        *lab.up_args(MACHINES, timeout=150), "--store", "etcd", "--replicas", "2", timeout=240
    )
    print(f"\nmayu lab up --store etcd --replicas 2: {time.monotonic() - started:.1f} s")
    assert up.returncode == 0, f"{up.stdout}\n{lab.serve_log()[-3000:]}\n{lab.consoles()}"
    assert f"all {MACHINES} machine(s) installed" in up.stdout, up.stdout
    state = lab.state()
    assert state.store == "etcd" and state.url == topo.SERVER_URL
    assert len(state.etcd_pids) == 3 and len(state.replica_pids) == 2
    assert all(running(pid, "etcd") for pid in state.etcd_pids)
    assert all(running(pid, "serve") for pid in state.replica_pids)
    assert running(state.balancer_pid, "haproxy")
    # one DHCP leader: its dnsmasq alone answered; the other replica stands by
    logs = [Path(path).read_text(errors="replace") for path in state.replica_logs]
    assert sum(replicas.LEADER_LOG in log for log in logs) == 1, logs
    with InNamespace(state.namespace) as ns:
        metrics = [
            LabClient(ns, url, state.token).get_text("/metrics") for url in state.replica_urls
        ]
    assert sorted(value(parse(text), "mayu_dhcp_leader") for text in metrics) == [0.0, 1.0]
    served = [_boot_requests(text) for text in metrics]
    print(f"boot requests answered by replica r1: {served[0]}, r2: {served[1]}")
    assert all(sum(counts.values()) > 0 for counts in served), served
    for m in topo.lab_machines(MACHINES):
        base._assert_provisioned_during(state, m)  # one token each, installed, bound to its address
    status = lab.mayu("status", timeout=60)
    assert status.returncode == 0, status
    assert status.stdout.count("state=installed") == MACHINES, status.stdout
    assert "store etcd: 3/3 member(s) running" in status.stdout, status.stdout
    assert "replica r1 running" in status.stdout and "replica r2 running" in status.stdout
    assert f"balancer HAProxy running (pid {state.balancer_pid}" in status.stdout
    # `down` without the state file (as after `up` was SIGKILLed): every process of the
    # namespace, the etcd data and the second replica's data dir go
    lab.state_file.unlink()
    down = lab.mayu("down", "--data-dir", str(lab.data_dir), timeout=120)
    assert down.returncode == 0, down
    work = lab.data_dir / "lab"
    assert f"removed {work / 'etcd'}" in down.stdout, down.stdout
    assert f"removed {work / 'replica-2'}" in down.stdout, down.stdout
    for pid in [*state.etcd_pids, *state.replica_pids, state.balancer_pid]:
        assert not running(pid, "")
    # (the fixture's down then finds nothing and checks that no process or link is left)
