"""Chaos, bounded: the issue's boot storm, 300 simulated machines over three `mayu serve`
replicas on a 3-member etcd cluster, with the faults in turn as the storm goes on: one replica
killed with SIGKILL, then one etcd member, then both started again (the replica's start runs
beside the rest of the storm); then one etcd member stopped with SIGSTOP (a partition, as its peers
and the replicas see it) until the storm has made progress without it, and resumed; then the
etcd leader moved to another member (etcdctl move-leader) during the writes. Machines move to
the replica that answers, as a load balancer would send them, while an operator approves twice
as many controller candidates as the cluster allows, through the replicas. Afterwards every
acknowledged registration, token consumption, report and controller approval is in the store,
no boot token was accepted twice (not during the storm, not when tried again afterwards),
exactly the configured controllers exist and no hostname is shared; the restarted replica
answers as a survivor does. One storm for every fault: each storm costs a cluster and
replicas to start (~10 s) besides its machines."""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from mayu_py.lab.etcd import EtcdCluster
from tests.conftest import RunningServer, start_server
from tests.support.replicas import start_replicas

pytestmark = pytest.mark.peer

MACHINES = 300
REPLICAS = 3
THREADS = 8
CONTROLLERS = 3
CANDIDATES = 2 * CONTROLLERS
STORM_DEADLINE_S = 120.0
_TOKEN = re.compile(r"token=([A-Za-z0-9_-]+)")
CONFIG = {
    # storm machines say serial=storm and are approved as workers by the first group;
    # controller candidates say no serial and wait for the operator's approval as controllers
    "groups": [
        {"name": "storm", "profile": "worker", "selector": {"serial": "storm"}},
        {
            "name": "control",
            "profile": "controller",
            "selector": {"role": "controller", "rack": "chaos"},
        },
    ],
    "cluster": {"controller_count": CONTROLLERS},
    "server": {"discovery": {"per_source_per_minute": 100_000, "per_minute": 1_000_000}},
    # a stopped member is given up on after 2 s (not etcd's 7 s): the storm moves on
    "store": {"unavailable_after_seconds": 10, "request_timeout_seconds": 2},
}


@dataclass
class Ledger:
    """What the machines and the operator were told: acknowledged steps, every secret
    handed out, every controller approval answered 200."""

    registered: set[str] = field(default_factory=set)
    consumed: dict[str, str] = field(default_factory=dict)  # mac -> token spent
    reported: set[str] = field(default_factory=set)
    interrupted: dict[str, str] = field(default_factory=dict)  # mac -> token lost in flight
    secrets_served: Counter[str] = field(default_factory=Counter)  # token -> 200s
    controllers: set[str] = field(default_factory=set)
    approvals: list[tuple[str, int, str]] = field(default_factory=list)  # mac, status, body
    lock: threading.Lock = field(default_factory=threading.Lock)


class Fleet:
    """The replicas a machine may reach; a dead one is skipped as a load balancer would."""

    def __init__(self, replicas: list[RunningServer]) -> None:
        self.replicas = replicas
        self.dead: set[int] = set()

    def call(self, turn: int, method: str, path: str, tls: bool = False, **kwargs):  # type: ignore[no-untyped-def]
        """One request, to replica `turn` % N or else the next ones; None if none answered
        (no connection, or 5xx: it may have been applied all the same)."""
        count = len(self.replicas)
        for i in ((turn + k) % count for k in range(count)):
            if i in self.dead:
                continue
            server = self.replicas[i]
            base = server.tls_url if tls else server.url
            try:
                response = requests.request(
                    method, base + path, timeout=30, verify=str(server.ca_file), **kwargs
                )
            except requests.ConnectionError:
                continue
            if response.status_code < 500:
                return response
        return None


def _provision(fleet: Fleet, ledger: Ledger, index: int, deadline: float) -> None:
    mac = f"52:54:00:0c:{index >> 8:02x}:{index & 255:02x}"
    turn = index
    while time.monotonic() < deadline:
        turn += 1
        boot = fleet.call(turn, "GET", "/ipxe", params={"mac": mac, "serial": "storm"})
        found = _TOKEN.search(boot.text) if boot is not None and boot.ok else None
        if found is None:
            continue
        token = found.group(1)
        with ledger.lock:
            ledger.registered.add(mac)
        stub = fleet.call(turn + 1, "GET", "/ignition", params={"mac": mac, "token": token})
        if stub is None or not stub.ok:
            continue  # the token may be spent already: boot again for a new one
        source = stub.json()["ignition"]["config"]["merge"][0]["source"]
        path = source[source.index("/", len("https://")) :]
        secret = fleet.call(turn + 2, "GET", path, tls=True)
        if secret is not None and secret.status_code == 403:
            # spent by our own request whose answer was lost with the killed replica: never
            # acknowledged, and never again (a real machine waits for its window to run out)
            with ledger.lock:
                ledger.interrupted[mac] = token
            return
        if secret is None or not secret.ok:
            continue
        with ledger.lock:
            ledger.consumed[mac] = token
            ledger.secrets_served[token] += 1
        # A report applied by a replica killed before it answered is answered again on the
        # retry (the server recognizes the repeat of its spent token), never refused.
        report = None
        while report is None and time.monotonic() < deadline:
            report = fleet.call(
                turn + 3, "POST", "/report", params={"mac": mac, "token": token},
                json={"event": "installed"},
            )  # fmt: skip
        if report is not None and report.ok:
            with ledger.lock:
                ledger.reported.add(mac)
            return


def _approve_controller(fleet: Fleet, ledger: Ledger, index: int, deadline: float) -> None:
    """A candidate boots (discovered), then the operator approves it as a controller through
    either replica until one answers: 200 (acknowledged) or 409 (the count is full)."""
    mac = f"52:54:00:0d:00:{index:02x}"
    auth = {"Authorization": f"Bearer {fleet.replicas[0].token}"}
    turn = index
    while time.monotonic() < deadline:
        turn += 1
        boot = fleet.call(turn, "GET", "/ipxe", params={"mac": mac})
        if boot is None or not boot.ok:
            continue
        approval = fleet.call(
            turn, "POST", f"/api/v1/machines/{mac}/approve", json={"role": "controller", "labels": {"rack": "chaos"}},
            headers=auth,
        )  # fmt: skip
        if approval is None:
            continue
        with ledger.lock:
            ledger.approvals.append((mac, approval.status_code, approval.text[:200]))
            if approval.status_code == 200:
                ledger.controllers.add(mac)
        return


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    started = EtcdCluster(tmp_path / "etcd").start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def store_url(cluster: EtcdCluster) -> str:
    return cluster.url(f"/mayu-chaos-{uuid.uuid4().hex[:8]}/")


@pytest.fixture
def replicas(tmp_path: Path, store_url: str) -> Iterator[list[RunningServer]]:
    started = start_replicas(tmp_path, REPLICAS, _config(store_url))
    try:
        yield started
    finally:
        for server in started:
            server.kill(signal.SIGKILL)


def _config(url: str) -> dict:
    return CONFIG | {"store": CONFIG["store"] | {"url": url}}


def _until_reported(ledger: Ledger, count: int, deadline: float) -> int:
    """Wait until `count` machines reported (or the deadline); how many have."""
    while len(ledger.reported) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(ledger.reported)


def _storm(fleet: Fleet, ledger: Ledger, fault: Callable[[float], None]) -> int:
    """Run the storm (and the controller approvals); `fault(deadline)` once a quarter of the
    machines reported. How many had reported when the fault came."""
    started = time.monotonic()
    deadline = started + STORM_DEADLINE_S
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [
            pool.submit(_approve_controller, fleet, ledger, i, deadline) for i in range(CANDIDATES)
        ]
        futures += [pool.submit(_provision, fleet, ledger, i, deadline) for i in range(MACHINES)]
        at = _until_reported(ledger, MACHINES // 4, deadline)
        fault(deadline)
        for future in futures:
            future.result()
    took = time.monotonic() - started
    print(
        f"storm: {len(ledger.reported)} reported, {len(ledger.interrupted)} interrupted, "
        f"fault after {at}, {took:.1f} s ({MACHINES / took:.0f} machines/s)"
    )
    assert MACHINES // 4 <= at < MACHINES  # the fault came mid-storm
    return at


def _check(survivor: RunningServer, ledger: Ledger) -> dict[str, dict]:
    """The invariants, read back through `survivor`; the machines it lists."""
    # every machine got through in the end, but those whose secret fetch was in flight on a
    # killed replica (a machine spends its token once, acknowledged or not)
    assert len(ledger.interrupted) <= THREADS
    assert len(ledger.reported | ledger.interrupted.keys()) == MACHINES
    machines = {m["id"]: m for m in survivor.api("GET", "/api/v1/machines").json()["items"]}
    assert ledger.registered <= machines.keys()
    for mac in ledger.reported:
        assert machines[mac]["state"] == "installed", machines[mac]
    assert max(ledger.secrets_served.values()) == 1  # no token accepted twice
    for mac, token in (ledger.consumed | ledger.interrupted).items():  # nor now
        again = requests.get(
            f"{survivor.url}/ignition", params={"mac": mac, "token": token}, timeout=30
        )
        assert again.status_code == 403, (mac, again.status_code)
    controllers = {i for i, m in machines.items() if m["labels"].get("role") == "controller"}
    assert len(controllers) == CONTROLLERS, ledger.approvals
    assert ledger.controllers <= controllers
    hostnames = [m["hostname"] for m in machines.values() if m["hostname"]]
    assert len(hostnames) == len(set(hostnames)) >= MACHINES
    return machines


def test_a_storm_of_300_survives_killed_replica_and_member_a_partition_and_a_leader_change(
    tmp_path: Path, cluster: EtcdCluster, store_url: str, replicas: list[RunningServer]
) -> None:
    fleet, ledger = Fleet(replicas), Ledger()
    member = cluster.members[0]  # the one the replicas ask first
    at: dict[str, int] = {}
    leaders: list[str] = []
    restarted: list[Future[None]] = []

    def restart_replica() -> None:
        # the killed replica comes back on its data dir beside the storm (machines use it
        # again once it answers, if the storm still runs by then)
        replicas[0] = start_server(tmp_path / "r0", config=_config(store_url), workers=1)
        fleet.dead.discard(0)
        at["replica answering again"] = len(ledger.reported)

    def faults(deadline: float) -> None:
        replicas[0].kill(signal.SIGKILL)  # kill -9: master, workers, listener
        fleet.dead.add(0)
        at["etcd member killed"] = _until_reported(ledger, MACHINES * 3 // 8, deadline)
        cluster.kill_member(member)
        at["both restarted"] = _until_reported(ledger, MACHINES // 2, deadline)
        cluster.start_member(member)
        restarted.append(restarter.submit(restart_replica))
        cluster.wait_healthy()
        at["member partitioned"] = len(ledger.reported)
        cluster.pause_member(member)
        try:
            until = min(deadline, time.monotonic() + STORM_DEADLINE_S / 4)
            at["member resumed"] = _until_reported(ledger, at["member partitioned"] + 30, until)
        finally:
            cluster.resume_member(member)
        cluster.wait_healthy()
        at["leader moved"] = len(ledger.reported)
        leaders.append(cluster.leader()[0].name)
        leaders.append(cluster.move_leader().name)

    with ThreadPoolExecutor(1) as restarter:
        _storm(fleet, ledger, faults)
    restarted[0].result()
    print(f"reported when: {at}")
    # each fault came while machines were still booting, in order
    order = ["etcd member killed", "both restarted", "member partitioned", "leader moved"]
    assert [at[name] for name in order] == sorted(at[name] for name in order)
    assert at["leader moved"] < MACHINES, at
    assert at["member resumed"] >= at["member partitioned"] + 30  # on without the member
    assert leaders[0] != leaders[1] == cluster.leader()[0].name
    survivor = replicas[1]
    machines = _check(survivor, ledger)
    # the restarted replica answers as a survivor does
    for path in ("/api/v1/machines", f"/api/v1/machines/{sorted(machines)[0]}"):
        assert replicas[0].api("GET", path).json() == survivor.api("GET", path).json()
