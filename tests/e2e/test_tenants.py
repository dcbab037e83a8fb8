"""Tenant clusters end to end: `mayu serve` + `mayu agent` + real libvirt, TCG VMs of the lab
image that read their Ignition from fw_cfg and print `MAYU-READY ip=...` on their console.

One server and one agent for the module; the tests run in order and share the VMs:
1. two tenants (1 master + 1 worker each) get ready, read their own Ignition, reach each other
   inside a tenant and never across, carry certificates of their own tenant's CA only; one is
   scaled 1 -> 2 workers, the other deleted without a trace;
2. kill -9 of the agent while it creates a tenant (asserted: its plan was not done): the
   restarted agent converges with no duplicate or orphan; the agent's libvirt connection is
   cut (virt-admin), then libvirtd itself is killed -9 and restarted: nothing is recreated
   (UUIDs and qemu pids stay).
At the end nothing of the tenants is left (domains, networks, bridges, taps, nwfilter
bindings, state files, processes). Addresses 10.210.{1,2,3}.0/24 exist only on the bridges
the agent creates (RECIPES 8); guests ping each other, the test process sends nothing to them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest

from mayu_py.agent import plan as p
from mayu_py.agent.actual import observe
from mayu_py.agent.desired import networks_for
from mayu_py.agent.statedir import StateDir
from mayu_py.tenants import TenantNode
from mayu_py.virt.host import LibvirtHost
from tests.conftest import RunningServer, start_server
from tests.e2e import tenant_helpers as th
from tests.support.leaks import Snapshot, assert_no_leaks, snapshot
from tests.support.tenants import tenant_doc

pytestmark = pytest.mark.e2e

SUFFIX = uuid.uuid4().hex[:5]
TA, TB, TC = f"e2ea{SUFFIX}", f"e2eb{SUFFIX}", f"e2ec{SUFFIX}"
NETS = {TA: ("10.210.1.0/24", 9211), TB: ("10.210.2.0/24", 9212), TC: ("10.210.3.0/24", 9213)}
READY_TIMEOUT_S = 180.0


@dataclass
class Rig:
    server: RunningServer
    agent: th.AgentProcess
    conn: libvirt.virConnect
    work: Path
    created: list[str] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.agent.state_dir

    def create(self, name: str, workers: int = 1) -> None:
        cidr, vni = NETS[name]
        path = th.write_tenant(self.work / f"{name}.yaml", tenant_doc(name, cidr, vni, workers))
        self.created.append(name)
        out = self.server.mayuctl("tenants", "create", "-f", str(path))
        assert out.returncode == 0, out.stderr

    def nodes(self, name: str) -> dict[str, dict]:
        out = self.server.mayuctl("tenants", "show", name, "-o", "json")
        assert out.returncode == 0, out.stderr
        return th.tenant_nodes(out.stdout)

    def wait_ready(self, name: str, count: int) -> dict[str, dict]:
        def ready() -> dict[str, dict] | None:
            nodes = self.nodes(name)
            if len(nodes) == count and all(n["state"] == "ready" for n in nodes.values()):
                return nodes
            return None

        try:
            return th.wait_for(f"{name}: {count} nodes ready", ready, READY_TIMEOUT_S, 1.0)
        except AssertionError:
            print(self.agent.log()[-4000:])
            raise

    def wait_gone(self, name: str) -> None:
        def gone() -> bool:
            return (
                self.server.api("GET", f"/api/v1/tenants/{name}").status_code == 404
                and not th.domains(self.conn, name + "-")
                and f"mayu-tenant-{name}" not in th.networks(self.conn, "mayu-tenant-")
                and name not in th.state_files(self.state_dir)
            )

        th.wait_for(f"{name} deleted everywhere", gone, 90.0, 0.5)

    def console(self, node: str, command: str, timeout_s: float = 20.0) -> tuple[int, str]:
        return th.console_run(th.serial_pty(self.conn, node), command, timeout_s)

    def ignition(self, tenant: str, node: str) -> dict[str, bytes]:
        resp = self.server.api("GET", f"/api/v1/tenants/{tenant}/nodes/{node}/ignition")
        assert resp.status_code == 200, resp.text
        return th.ignition_files(resp.json())


def _snapshot(work: Path) -> Snapshot:
    # a fresh connection: a test may have restarted libvirtd under an older one
    conn = libvirt.open(th.URI)
    try:
        return snapshot(conn, files=[work / "state"], markers=[str(work)])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    th.ensure_daemons()
    work = th.make_workdir("mayu-e2e-tenants")
    before = _snapshot(work)
    server = None
    agent = None
    rig = None
    try:
        th.install_lab_image(work / "images")
        server = start_server(work / "data")
        agent = th.AgentProcess(
            server.url, server.token, work / "state", work / "images", work / "agent.log"
        ).start()
        rig = Rig(server, agent, libvirt.open(th.URI), work)
        yield rig
        # the tests delete every tenant they made: then nothing of them is left anywhere
        agent.kill()
        server.kill()
        assert_no_leaks(before, _snapshot(work))
    finally:
        if agent is not None:
            agent.kill(signal.SIGKILL)
        conn = libvirt.open(th.URI)
        th.cleanup_libvirt(conn, [TA, TB, TC])
        conn.close()
        if server is not None:
            server.kill()
        th.remove_tree(work)


def _leaves_verify(files: dict[str, bytes], ca_bundle: Path, work: Path) -> dict[str, bool]:
    """Each leaf certificate of a node's Ignition -> does it verify against ca_bundle?"""
    result = {}
    for path, data in files.items():
        if not path.endswith(".crt") or path.endswith("ca.crt"):
            continue
        leaf = work / "leaf.crt"
        leaf.write_bytes(data)
        out = subprocess.run(
            ["openssl", "verify", "-CAfile", str(ca_bundle), str(leaf)],
            capture_output=True,
            text=True,
        )
        result[path] = out.returncode == 0
    return result


def _ca_bundle(files: dict[str, bytes], dest: Path) -> Path:
    dest.write_bytes(b"".join(data for path, data in files.items() if path.endswith("ca.crt")))
    return dest


def test_two_tenants_ready_isolated_scaled_deleted(rig: Rig) -> None:
    started = time.monotonic()
    rig.create(TA)
    rig.create(TB)
    nodes = {TA: rig.wait_ready(TA, 2), TB: rig.wait_ready(TB, 2)}
    print(f"\n4 nodes ready {time.monotonic() - started:.1f}s after create")
    status = json.loads(rig.server.mayuctl("tenants", "show", TA, "-o", "json").stdout)["status"]
    assert status["phase"] == "Ready"
    # the real agent said why at each step: the conditions end ready, booting left behind
    tenant = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert tenant == {
        "Ready": ("True", "AllNodesReady"),
        "Progressing": ("False", "Settled"),
        "Degraded": ("False", "NoFailures"),
    }
    for node in status["nodes"]:
        ready = next(c for c in node["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "Ready")

    # every VM got its reserved address and ran its own Ignition, read from fw_cfg
    for tenant, members in nodes.items():
        base = NETS[tenant][0].rsplit(".", 1)[0]
        assert {n["ip"] for n in members.values()} == {f"{base}.10", f"{base}.11"}
        assert {n["host"] for n in members.values()} == {"h1"}
        for name in members:
            rc, out = rig.console(name, "cat /sysroot/etc/hostname")
            assert (rc, out.strip()) == (0, name)
            rc, out = rig.console(name, "cat /sysroot/etc/mayu/node.json")
            assert rc == 0 and json.loads(out)["name"] == name

    # reachability: inside a tenant yes, across tenants no (both ways), even with a route
    def ping(src: str, ip: str) -> bool:
        rc, _ = rig.console(src, f"ping -c1 -W2 {ip} >/dev/null 2>&1")
        return rc == 0

    a_m, a_w = f"{TA}-master-0", f"{TA}-worker-0"
    b_m, b_w = f"{TB}-master-0", f"{TB}-worker-0"
    ip = {n: info["ip"] for members in nodes.values() for n, info in members.items()}
    for node, tenant in ((a_m, TA), (b_m, TB)):
        gateway = NETS[tenant][0].rsplit(".", 1)[0] + ".1"
        assert rig.console(node, f"ip route add default via {gateway}")[0] == 0
    assert ping(a_m, ip[a_w]) and ping(a_w, ip[a_m])
    assert ping(b_m, ip[b_w]) and ping(b_w, ip[b_m])
    assert not ping(a_m, ip[b_m]) and not ping(a_m, ip[b_w])
    assert not ping(b_m, ip[a_m]) and not ping(b_m, ip[a_w])
    assert not ping(a_m, "10.210.2.1") and not ping(b_m, "10.210.1.1")  # the other gateway

    # certificates chain to their own tenant's CA, never to the other's
    files = {(t, n): rig.ignition(t, n) for t in (TA, TB) for n in nodes[t]}
    cas = {t: _ca_bundle(files[(t, f"{t}-master-0")], rig.work / f"{t}-ca.pem") for t in (TA, TB)}
    assert cas[TA].read_bytes() != cas[TB].read_bytes()
    for (tenant, node), node_files in files.items():
        other = TB if tenant == TA else TA
        own = _leaves_verify(node_files, cas[tenant], rig.work)
        assert own and all(own.values()), (node, own)
        assert not any(_leaves_verify(node_files, cas[other], rig.work).values()), node
        if node.endswith("master-0"):
            assert "/etc/kubernetes/pki/apiserver.crt" in own

    # scale A's workers 1 -> 2: a third VM gets ready, the first two are left alone
    before = th.domains(rig.conn, TA + "-")
    out = rig.server.mayuctl("tenants", "scale", TA, "--workers", "2")
    assert out.returncode == 0, out.stderr
    scaled = rig.wait_ready(TA, 3)
    assert scaled[f"{TA}-worker-1"]["ip"] == "10.210.1.12"
    after = th.domains(rig.conn, TA + "-")
    assert set(after) == set(before) | {f"{TA}-worker-1"}
    assert all(after[n] == before[n] for n in before)  # same UUID, id and qemu pid
    assert ping(f"{TA}-worker-1", ip[a_m])

    def observed() -> bool:
        doc = rig.server.api("GET", f"/api/v1/tenants/{TA}").json()
        return doc["status"]["observedGeneration"] == doc["metadata"]["generation"] == 2

    th.wait_for("observedGeneration 2 after the scale", observed, 30.0, every=0.5)

    # delete B: domains, overlays, Ignition files, serial logs and network all go
    assert rig.server.mayuctl("tenants", "delete", TB).returncode == 0
    started = time.monotonic()
    rig.wait_gone(TB)
    print(f"tenant of 2 nodes deleted in {time.monotonic() - started:.1f}s")
    assert rig.server.mayuctl("tenants", "show", TB).returncode != 0
    assert set(th.domains(rig.conn, TA + "-")) == set(after)  # A untouched


def _expected_files(rig: Rig, tenant: str) -> set[str]:
    """What the agent keeps per node: <node>.<hash>.qcow2, <node>.<hash>.ign, <node>.log, and
    a master's data disk <node>.data.qcow2."""
    nodes = rig.server.api("GET", "/api/v1/hosts/h1/nodes").json()
    names = set()
    for n in nodes:
        if n["tenant"] == tenant:
            names |= {f"{n['node']}.{n['spec_hash']}.qcow2", f"{n['node']}.{n['spec_hash']}.ign"}
            names.add(f"{n['node']}.log")
            if n["role"] == "master":
                names.add(f"{n['node']}.data.qcow2")
    return names


def _agent_clients(agent_pid: int) -> list[str]:
    """virt-admin ids of the libvirtd clients opened by the agent process."""
    listing = subprocess.run(
        ["virt-admin", "srv-clients-list", "libvirtd"], capture_output=True, text=True, timeout=10
    ).stdout
    ids = []
    for line in listing.splitlines()[2:]:
        parts = line.split()
        if not parts or not parts[0].isdigit():
            continue
        info = subprocess.run(
            ["virt-admin", "client-info", "libvirtd", parts[0]],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        for row in info.splitlines():
            key, _, value = row.partition(":")
            if key.strip() == "unix_process_id" and value.strip() == str(agent_pid):
                ids.append(parts[0])
    return ids


def _heartbeat(rig: Rig) -> float:
    hosts = rig.server.api("GET", "/api/v1/hosts").json()
    items = hosts["items"] if isinstance(hosts, dict) else hosts
    return next(float(h["last_seen"]) for h in items if h["name"] == "h1")


def test_agent_kill9_while_creating_and_libvirt_reconnect(rig: Rig) -> None:
    survivors = th.domains(rig.conn, TA + "-")
    assert len(survivors) == 3, "needs the first test's tenant"

    # kill -9 the agent right after the first domain of a new tenant is defined
    rig.create(TC)
    seen = th.wait_for(
        f"a domain of {TC}", lambda: th.domains(rig.conn, TC + "-"), 60.0, every=0.01
    )
    os.kill(rig.agent.pid, signal.SIGKILL)
    rig.agent.process.wait(timeout=10)  # type: ignore[union-attr]
    left = [a.describe() for a in _plan_left(rig) if a.tenant == TC]
    print(f"\nkilled the agent with {sorted(seen)} defined; its plan had left: {left}")
    assert left, f"the kill landed after the agent had finished {TC}: not mid-plan"

    rig.agent.start()
    rig.wait_ready(TC, 2)
    tc = th.domains(rig.conn, TC + "-")
    assert set(tc) == {f"{TC}-master-0", f"{TC}-worker-0"}
    assert all(d.active and d.pid for d in tc.values())
    assert th.state_files(rig.state_dir)[TC] == _expected_files(rig, TC)  # no orphan, no .tmp
    assert th.networks(rig.conn, "mayu-tenant-") == {f"mayu-tenant-{TA}", f"mayu-tenant-{TC}"}
    assert th.domains(rig.conn, TA + "-") == survivors  # the running tenant was not touched

    # the agent's libvirt connection dies, first cut off by the daemon, then with libvirtd
    # itself killed -9 and started again: it reconnects, and nothing is recreated
    for how in ("client-disconnect", "kill -9 libvirtd"):
        before = {**th.domains(rig.conn, TA + "-"), **th.domains(rig.conn, TC + "-")}
        log_before = len(rig.agent.log())
        applies = rig.agent.log().count(" apply ")
        cut = time.time()
        if how == "kill -9 libvirtd":
            pid = int(
                subprocess.run(
                    ["pgrep", "-x", "libvirtd"], capture_output=True, text=True
                ).stdout.split()[0]
            )
            os.kill(pid, signal.SIGKILL)
            gone = Path(f"/proc/{pid}")
            th.wait_for("the killed libvirtd gone", lambda gone=gone: not gone.exists(), 10)
            subprocess.run(["libvirtd", "-d"], check=True, timeout=30)
            rig.conn = th.wait_for("libvirtd back", lambda: _reopen(), 30.0, 0.5)
        else:
            clients = th.wait_for(
                "the agent's libvirt client", lambda: _agent_clients(rig.agent.pid), 20.0, 0.5
            )
            for client in clients:
                subprocess.run(
                    ["virt-admin", "client-disconnect", "libvirtd", client],
                    check=True,
                    timeout=10,
                )
        th.wait_for(
            f"two agent heartbeats after {how}",
            lambda cut=cut: _heartbeat(rig) > cut + 2.5,
            60.0,
            every=0.5,
        )
        rig.wait_ready(TC, 2)
        rig.wait_ready(TA, 3)
        after = {**th.domains(rig.conn, TA + "-"), **th.domains(rig.conn, TC + "-")}
        assert after == before, how  # same names, UUIDs, ids and qemu pids
        assert rig.agent.log().count(" apply ") == applies, rig.agent.log()[-3000:]
        assert "reconnecting" in rig.agent.log()[log_before:], rig.agent.log()[log_before:]
        assert rig.agent.alive()

    # both tenants go; nothing of them is left
    for name in (TA, TC):
        assert rig.server.mayuctl("tenants", "delete", name).returncode == 0
    for name in (TA, TC):
        rig.wait_gone(name)
    assert th.state_files(rig.state_dir) == {}


def _plan_left(rig: Rig) -> list[p.Action]:
    """What the agent's plan still holds for its desired nodes, against libvirt and its
    state dir as they are now."""
    desired = [
        TenantNode.from_json(n) for n in rig.server.api("GET", "/api/v1/hosts/h1/nodes").json()
    ]
    host = LibvirtHost(th.URI)
    try:
        return p.plan(desired, networks_for(desired), observe(host, StateDir(rig.state_dir)))
    finally:
        host.close()


def _reopen() -> libvirt.virConnect | None:
    try:
        return libvirt.open(th.URI)
    except libvirt.libvirtError:
        return None
