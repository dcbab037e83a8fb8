"""Full DHCP on two `mayu serve` replicas and a real 3-member etcd: one leader, handed over
when it dies, leases kept in the store (docs/ha.md).

Three hosts on one L2 segment, each a network namespace the test makes on a bridge (no
packet can leave the machine): the bridge's own namespace runs the etcd cluster on the
bridge address, replicas a and b run in namespaces of their own with their own addresses,
each with `--dhcp full` on its interface. Machines are namespaces with busybox udhcpc (and
the raw PXE probe of netns_helpers, which collects every server that answers).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mayu_py.lab.etcd import EtcdCluster
from mayu_py.lab.netns import InNamespace
from mayu_py.store.etcd_dhcp import EtcdDhcpLeases
from mayu_py.store.etcd_gateway import EtcdGateway
from mayu_py.store.etcd_keys import KeyLayout
from mayu_py.store.url import EtcdLocation, parse_store_url
from tests.conftest import RunningServer, start_server
from tests.peers.netns_helpers import NetLab, net_lab, ns_run, udhcpc
from tests.support.peers import require_peers
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

HANDOVER = 5  # dhcp.leader_ttl_seconds: the hand-over bound, short so the test is quick
HELPERS = Path(__file__).with_name("netns_helpers.py").resolve()
FIRST_MAC, SECOND_MAC, THIRD_MAC = "02:5d:00:00:00:01", "02:5d:00:00:00:02", "02:5d:00:00:00:03"


@pytest.fixture(autouse=True, scope="module")
def _peers() -> None:
    require_peers("dnsmasq", "busybox", "etcd", root=True)


@pytest.fixture
def tmp_path(open_tmp: Path) -> Path:
    """dnsmasq drops to nobody and must reach the TFTP root under it."""
    return open_tmp


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[NetLab, EtcdCluster]]:
    with net_lab() as lab:
        cluster = EtcdCluster(tmp_path / "etcd", host=lab.server_ip, namespace=lab.server_ns)
        cluster.start()
        try:
            yield lab, cluster
        finally:
            cluster.stop()


def _replica(
    lab: NetLab, tmp_path: Path, name: str, octet: int, store: str, namespace: str | None = None
) -> RunningServer:
    """Replica `name` at prefix.octet, in a new namespace on the bridge (or again in its own)."""
    address = f"{lab.prefix}.{octet}"
    if namespace is None:
        ns, ifname = lab.add_namespace(f"02:5d:00:00:01:{octet:02x}", address)
    else:
        ns, ifname = namespace, "mayu-eth0"  # the interface add_namespace made there
    dhcp = {
        "mode": "full",
        "interface": ifname,
        "server_ip": address,
        "range_start": f"{lab.prefix}.100",
        "range_end": f"{lab.prefix}.199",
        "leader_ttl_seconds": HANDOVER,
    }
    return start_server(
        tmp_path / name,
        config={"dhcp": dhcp},
        listen=f"{address}:8080",
        tls_listen=f"{address}:8443",
        workers=1,
        extra_args=("--store", store),
        namespace=ns,
    )


def _dnsmasq_running(server: RunningServer) -> bool:
    assert server.namespace is not None
    proc = subprocess.run(
        ["ip", "netns", "pids", server.namespace], capture_output=True, text=True, check=False
    )
    for pid in proc.stdout.split():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq":
                return True
        except OSError:
            continue
    return False


def _offers(ns: str, ifname: str, mac: str) -> set[str]:
    """The DHCP servers that answer a DISCOVER from `mac` within 2 s."""
    argv = [sys.executable, str(HELPERS), ifname, mac, "0", "--wait", "2", "--servers", "2"]
    proc = ns_run(ns, argv, timeout=30)
    return {json.loads(line)["server"] for line in proc.stdout.splitlines() if line.strip()}


def _metric(server: RunningServer, name: str) -> float:
    text = server.api("GET", "/metrics").text
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name))


def test_one_replica_leads_full_dhcp_and_another_takes_over_with_its_leases(
    site: tuple[NetLab, EtcdCluster], tmp_path: Path
) -> None:
    lab, cluster = site
    store = cluster.url(f"/mayu-s18dl-{uuid.uuid4().hex[:8]}/")
    replicas = [_replica(lab, tmp_path, "a", 2, store)]
    try:
        (tmp_path / "b").mkdir()
        shutil.copy(tmp_path / "a" / "replica.key", tmp_path / "b" / "replica.key")
        replicas.append(_replica(lab, tmp_path, "b", 3, store))
        leader = wait_for(
            "one replica running dnsmasq",
            lambda: [r for r in replicas if _dnsmasq_running(r)],
            3 * HANDOVER,
        )
        assert len(leader) == 1, "two replicas run full DHCP"
        [old] = leader
        [new] = [r for r in replicas if r is not old]
        old_ip, new_ip = (r.url.split("//")[1].split(":")[0] for r in (old, new))

        # Exactly one server answers on the segment: the leader.
        first_ns, first_if = lab.add_namespace(FIRST_MAC)
        assert _offers(first_ns, first_if, FIRST_MAC) == {old_ip}
        first = udhcpc(first_ns, first_if, tmp_path)
        assert first["serverid"] == old_ip
        assert _metric(old, "mayu_dhcp_leader ") == 1 and _metric(new, "mayu_dhcp_leader ") == 0

        # The lease reaches the store (copied from dnsmasq's lease script by the leader).
        location = parse_store_url(store)
        assert isinstance(location, EtcdLocation)
        leases = EtcdDhcpLeases(EtcdGateway(location), KeyLayout(location.prefix))
        with InNamespace(lab.server_ns) as etcd_side:
            wait_for(
                "the first machine's lease in the store",
                lambda: etcd_side.call(leases.address_of, FIRST_MAC) == first["ip"],
            )

        # kill -9 the leader's serve (its master, alone): its dnsmasq goes with it (fence).
        killed = time.monotonic()
        os.kill(old.process.pid, signal.SIGKILL)
        wait_for("the dead leader's dnsmasq gone", lambda: not _dnsmasq_running(old), 5)
        second_ns, second_if = lab.add_namespace(SECOND_MAC)
        wait_for("the new leader's dnsmasq", lambda: _dnsmasq_running(new), HANDOVER + 5, 0.05)
        started = time.monotonic() - killed
        # The machine asks for the first machine's address: the new leader knows it is taken.
        second = wait_for(
            "the new leader to answer",
            lambda: _lease_or_none(second_ns, second_if, tmp_path, "-r", first["ip"]),
            10,
            every=0.05,
        )
        answered = time.monotonic() - killed
        assert second["serverid"] == new_ip
        assert second["ip"] != first["ip"]
        print(f"kill -9 of the full-DHCP leader: new dnsmasq after {started:.2f} s, first offer")
        print(f"to a client after {answered:.2f} s (leader_ttl_seconds {HANDOVER})")
        assert started < HANDOVER
        assert answered < HANDOVER + 1.5  # + the client's own 1 s retry interval

        # The first machine keeps its address, now from the new leader.
        again = udhcpc(first_ns, first_if, tmp_path)
        assert (again["ip"], again["serverid"]) == (first["ip"], new_ip)
        third_ns, third_if = lab.add_namespace(THIRD_MAC)
        assert _offers(third_ns, third_if, THIRD_MAC) == {new_ip}
        assert _metric(new, "mayu_dhcp_leader ") == 1
        assert _metric(new, 'mayu_dhcp_leadership_changes_total{change="elected"}') == 1

        # The killed replica comes back and stands by; the leader stopped with SIGTERM hands
        # over at once, and the machines' leases (copied into the store) go along.
        with contextlib.suppress(ProcessLookupError):  # the killed master's workers
            os.killpg(old.process.pid, signal.SIGKILL)
        back = _replica(lab, tmp_path, "a", 2, store, namespace=old.namespace)
        replicas.append(back)
        assert not _dnsmasq_running(back)
        stopped = time.monotonic()
        new.kill()
        wait_for("the standby to lead", lambda: _dnsmasq_running(back), HANDOVER, 0.05)
        print(f"SIGTERM to the leader: new dnsmasq after {time.monotonic() - stopped:.2f} s")
        leases_file = (tmp_path / "a" / "dhcp" / "leases").read_text()
        assert f"{SECOND_MAC} {second['ip']} " in leases_file
        again = udhcpc(first_ns, first_if, tmp_path)
        assert (again["ip"], again["serverid"]) == (first["ip"], old_ip)
    finally:
        for server in replicas:
            server.kill()
            with contextlib.suppress(ProcessLookupError):  # what a killed master left behind
                os.killpg(server.process.pid, signal.SIGKILL)


def _lease_or_none(ns: str, ifname: str, workdir: Path, *extra: str) -> dict[str, str] | None:
    """One quick udhcpc attempt (a DISCOVER, 1 s for an offer): its lease, or None."""
    argv = ["busybox", "udhcpc", "-i", ifname, "-q", "-n", "-t", "1", "-T", "1"]
    script = workdir / "udhcpc-quick.sh"
    env_file = workdir / "udhcpc-quick.env"
    env_file.unlink(missing_ok=True)
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > {env_file}\nexit 0\n')
    script.chmod(0o755)
    proc = ns_run(ns, [*argv, "-s", str(script), *extra], timeout=30, check=False)
    if proc.returncode != 0 or not env_file.exists():
        return None
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
