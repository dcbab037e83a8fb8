"""Chaos, bounded: a storm of simulated machines over two `mayu serve` replicas on a 3-member
etcd cluster; mid-storm one replica and one etcd member are killed with SIGKILL. Machines
move to the replica that answers, as a load balancer would send them. Afterwards every
acknowledged registration, token consumption and report is in the store, and no boot
token was accepted twice (not during the storm, not when tried again afterwards); the
killed replica, started again, answers as the survivor does."""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import RunningServer, start_server
from tests.support.etcd import EtcdCluster

pytestmark = pytest.mark.peer

MACHINES = 40
THREADS = 8
STORM_DEADLINE_S = 45.0
_TOKEN = re.compile(r"token=([A-Za-z0-9_-]+)")
CONFIG = {
    "groups": [{"name": "storm", "profile": "worker", "selector": {}}],
    "server": {"discovery": {"per_source_per_minute": 100_000, "per_minute": 1_000_000}},
    "store": {"unavailable_after_seconds": 10},
}


@dataclass
class Ledger:
    """What the machines were told: acknowledged steps and every secret handed out."""

    registered: set[str] = field(default_factory=set)
    consumed: dict[str, str] = field(default_factory=dict)  # mac -> token spent
    reported: set[str] = field(default_factory=set)
    interrupted: dict[str, str] = field(default_factory=dict)  # mac -> token lost in flight
    secrets_served: Counter[str] = field(default_factory=Counter)  # token -> 200s
    lock: threading.Lock = field(default_factory=threading.Lock)


class Fleet:
    """The replicas a machine may reach; a dead one is skipped as a load balancer would."""

    def __init__(self, replicas: list[RunningServer]) -> None:
        self.replicas = replicas
        self.dead: set[int] = set()

    def call(self, turn: int, method: str, path: str, tls: bool = False, **kwargs):  # type: ignore[no-untyped-def]
        """One request, to replica `turn` % 2 or else the other; None if none answered."""
        for i in (turn % 2, (turn + 1) % 2):
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
        boot = fleet.call(turn, "GET", "/ipxe", params={"mac": mac})
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


def test_a_storm_survives_a_killed_replica_and_etcd_member(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd").start()
    replicas: list[RunningServer] = []
    try:
        url = cluster.url(f"/mayu-chaos-{uuid.uuid4().hex[:8]}/")
        config = CONFIG | {"store": CONFIG["store"] | {"url": url}}
        replicas.append(start_server(tmp_path / "a", config=config, workers=1))
        (tmp_path / "b").mkdir()
        shutil.copy(tmp_path / "a" / "replica.key", tmp_path / "b" / "replica.key")
        replicas.append(start_server(tmp_path / "b", config=config, workers=1))
        fleet, ledger = Fleet(replicas), Ledger()
        deadline = time.monotonic() + STORM_DEADLINE_S
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(_provision, fleet, ledger, i, deadline) for i in range(MACHINES)]
            while len(ledger.reported) < MACHINES // 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            replicas[0].kill(signal.SIGKILL)  # kill -9 mid-storm: master, workers, listener
            fleet.dead.add(0)
            cluster.kill_member(cluster.members[0])
            killed_at = len(ledger.reported)
            for future in futures:
                future.result()
        took = time.monotonic() - deadline + STORM_DEADLINE_S
        print(
            f"storm: {len(ledger.reported)} reported, {len(ledger.interrupted)} interrupted, "
            f"kills after {killed_at}, {took:.1f} s"
        )
        assert MACHINES // 4 <= killed_at < MACHINES  # the kills came mid-storm
        # every machine got through in the end, but those whose secret fetch was in flight
        # on the killed replica (a machine spends its token once, acknowledged or not)
        assert len(ledger.interrupted) <= THREADS
        assert len(ledger.reported) + len(ledger.interrupted) == MACHINES

        cluster.start_member(cluster.members[0])
        cluster.wait_healthy()
        survivor = replicas[1]
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
        # the killed replica comes back on its data dir and answers as the survivor does
        replicas[0] = start_server(tmp_path / "a", config=config, workers=1)
        for path in ("/api/v1/machines", f"/api/v1/machines/{sorted(machines)[0]}"):
            assert replicas[0].api("GET", path).json() == survivor.api("GET", path).json()
    finally:
        for server in replicas:
            server.kill(signal.SIGKILL)
        cluster.stop()
