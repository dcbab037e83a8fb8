"""A rolling Kubernetes version change of a 3-master, 2-worker tenant, end to end: `mayu serve`
+ `mayu agent` (with the kube drain hook) + real libvirt, TCG VMs of the lab image.

While the version goes 1.36 -> 1.37, a sampler reads libvirt's domains and the server's node
states every 0.2 s: never more than one node is down in either. The nodes are replaced masters
first, one by one, then workers. Each master's data disk (`<node>.data.qcow2`, its vdb) gets
a marker written from inside the guest before; after the rollout the same file is there and the
new VM reads the marker. The agent is killed -9 mid-rollout and restarted: it resumes and
leaves no orphan. No kube-apiserver runs in the lab image, so every drain says, in the
agent's log and the node's message, that the tenant API was unreachable within the timeout.
At the end the tenant is deleted and nothing of it is left, data disks included.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import libvirt
import pytest

from tests.conftest import RunningServer, start_server
from tests.e2e import tenant_helpers as th
from tests.support.tenants import tenant_doc

pytestmark = pytest.mark.e2e
T = TypeVar("T")

NAME = f"s18ro{uuid.uuid4().hex[:5]}"
CIDR, VNI = "10.218.18.0/24", 9818
MASTERS = [f"{NAME}-master-{i}" for i in range(3)]
WORKERS = [f"{NAME}-worker-{i}" for i in range(2)]
ORDER = MASTERS + WORKERS
DRAIN_TIMEOUT_S = 1.0


@dataclass
class Sampler:
    """Samples libvirt and the server until stopped: nodes down, and when each went and came."""

    server: RunningServer
    conn: libvirt.virConnect
    ids: dict[str, int]  # each node's domain id before the rollout
    max_down_libvirt: int = 0
    max_down_api: int = 0
    released: dict[str, float] = field(default_factory=dict)  # node -> the server let it go
    went: dict[str, float] = field(default_factory=dict)  # node -> when its old VM went
    back: dict[str, float] = field(default_factory=dict)  # node -> ready again, new VM
    samples: int = 0
    timeline: list[str] = field(default_factory=list)  # each change of what was down
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        """One look at libvirt and the server (a look can take seconds while libvirtd
        starts a domain, so the caller takes a last one after stopping the thread)."""
        now = time.monotonic()
        doms = th.domains(self.conn, NAME + "-")
        down = [n for n in ORDER if n not in doms or not doms[n].active]
        for node in ORDER:
            if node not in self.went and (node in down or doms[node].id != self.ids[node]):
                self.went[node] = now
        shown = self.server.api("GET", f"/api/v1/tenants/{NAME}").json()
        states = {n["name"]: n for n in shown["status"]["nodes"]}
        not_ready = [n for n in ORDER if states[n]["state"] != "ready"]
        replacing = (shown["status"].get("rollout") or {}).get("node")
        if replacing and replacing not in self.released:
            self.released[replacing] = now
        for node in ORDER:
            returned = node not in not_ready + down and doms[node].id != self.ids[node]
            if node in self.went and node not in self.back and returned and replacing != node:
                self.back[node] = now
        seen = {n.rsplit("-", 2)[1][0] + n[-1]: states[n]["state"] for n in not_ready}
        line = f"libvirt down {down}, api {seen}, rollout {replacing}"
        if not self.timeline or not self.timeline[-1].endswith(line):
            self.timeline.append(f"{now % 1000:.1f} {line}")
        self.max_down_libvirt = max(self.max_down_libvirt, len(down))
        self.max_down_api = max(self.max_down_api, len(not_ready))
        self.samples += 1


@dataclass
class Rig:
    server: RunningServer
    agent: th.AgentProcess
    conn: libvirt.virConnect
    work: Path

    def show(self) -> dict:
        resp = self.server.api("GET", f"/api/v1/tenants/{NAME}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait(self, what: str, check: Callable[[], T], timeout_s: float, every: float) -> T:
        """th.wait_for, telling the tenant's status and the agent's log when it times out."""
        try:
            return th.wait_for(what, check, timeout_s, every)
        except AssertionError:
            print(f"status: {self.show()['status']}\nagent log:\n{self.agent.log()[-6000:]}")
            raise

    def console(self, node: str, command: str) -> tuple[int, str]:
        return th.console_run(th.serial_pty(self.conn, node), command, 30.0)


@pytest.fixture
def rig() -> Iterator[Rig]:
    th.ensure_daemons()
    work = th.make_workdir("mayu-e2e-s18ro")
    server = agent = None
    conn = libvirt.open(th.URI)
    try:
        th.install_lab_image(work / "images")
        server = start_server(work / "data")
        agent = th.AgentProcess(
            server.url, server.token, work / "state", work / "images", work / "agent.log",
            extra=("--drain", "kube", "--drain-timeout", str(DRAIN_TIMEOUT_S)),
        ).start()  # fmt: skip
        yield Rig(server, agent, conn, work)
    finally:
        if agent is not None:
            agent.kill()
        th.cleanup_libvirt(conn, [NAME])
        conn.close()
        if server is not None:
            server.kill()
        th.remove_tree(work)


def _data_disk(rig: Rig, node: str) -> Path:
    return rig.agent.state_dir / "tenants" / NAME / f"{node}.data.qcow2"


def _host_read(path: Path, length: int) -> bytes:
    """The first bytes of a qcow2 image, read from the host while its VM may run (-U)."""
    out = subprocess.run(
        ["qemu-io", "-r", "-U", "-f", "qcow2", "-c", f"read -v 0 {length}", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    # "00000000:  41 41 ... 41  AAAA...": at most 16 bytes a line, then their text
    hexdump = re.findall(r"^[0-9a-f]{8}:((?:\s+[0-9a-f]{2}){1,16})", out, re.MULTILINE)
    return bytes(int(b, 16) for line in hexdump for b in line.split())[:length]


def test_rolling_version_change_of_three_masters_two_workers(rig: Rig) -> None:
    doc = tenant_doc(NAME, CIDR, VNI, workers=2, masters=3)
    doc["spec"]["kubernetesVersion"] = "1.36"
    created = time.monotonic()
    assert rig.server.api("POST", "/api/v1/tenants", json=doc).status_code == 201

    def all_ready(generation: int) -> bool:
        shown = rig.show()
        states = {n["name"]: n["state"] for n in shown["status"]["nodes"]}
        return (
            states == dict.fromkeys(ORDER, "ready")
            and shown["status"]["observedGeneration"] == generation
            and "rollout" not in shown["status"]
        )

    rig.wait("5 nodes ready", lambda: all_ready(1), 240.0, 0.5)
    create_to_ready = time.monotonic() - created

    markers = {node: f"S18RO-MARKER-{node}".encode() for node in MASTERS}
    inodes = {}
    for node, marker in markers.items():
        # fsync: the guest flushes the disk, so qemu writes the qcow2 metadata out too
        write = f"printf '{marker.decode()}' | dd of=/dev/vdb conv=fsync 2>/dev/null"
        rc, out = rig.console(node, f"[ -b /dev/vdb ] && {write}")
        assert rc == 0, out
        assert _host_read(_data_disk(rig, node), len(marker)) == marker
        inodes[node] = _data_disk(rig, node).stat().st_ino
    assert not _data_disk(rig, WORKERS[0]).exists()  # workers have none

    ids = {n: d.id for n, d in th.domains(rig.conn, NAME + "-").items()}
    sampler = Sampler(rig.server, rig.conn, ids)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    started = time.monotonic()
    patched = rig.server.api(
        "PATCH", f"/api/v1/tenants/{NAME}", json={"spec": {"kubernetesVersion": "1.37"}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"]["rollout"]["total"] == 5

    def rollout_shown() -> str | None:
        text = rig.server.mayuctl("tenants", "show", NAME).stdout
        return text if "nodes replaced;" in text else None

    shown = th.wait_for("mayuctl tenants show with the rollout", rollout_shown, 60.0, 0.2)
    assert "rollout to generation 2" in shown

    # kill -9 of the agent mid-rollout, once the second master's old VM is gone: the restarted
    # agent resumes (the server holds the others back meanwhile) and leaves no orphan file
    rig.wait("master-1 replaced", lambda: MASTERS[1] in sampler.went, 120.0, 0.05)
    rig.agent.kill(signal.SIGKILL)
    rig.agent.start()
    rig.wait("the rollout done", lambda: all_ready(2), 300.0, 0.5)
    rolled = time.monotonic() - started
    sampler.stop.set()
    thread.join(timeout=10)
    sampler.sample()  # what changed since the thread's last look

    print("\n".join(sampler.timeline))
    print(
        f"\ncreate-to-ready of 5 nodes {create_to_ready:.1f}s; rollout of 5 nodes {rolled:.1f}s"
        f" ({sampler.samples} samples); per node (old VM gone -> new ready): "
        + ", ".join(f"{n.split('-', 1)[1]} {sampler.back[n] - sampler.went[n]:.1f}s" for n in ORDER)
        + "; per node (released by the server -> new ready, drain included): "
        + ", ".join(
            f"{n.split('-', 1)[1]} {sampler.back[n] - sampler.released.get(n, 0):.1f}s"
            for n in ORDER
        )
    )
    assert sampler.samples > 50
    assert sampler.max_down_libvirt <= 1 and sampler.max_down_api <= 1, rig.agent.log()[-8000:]
    assert sorted(ORDER, key=lambda n: sampler.went[n]) == ORDER  # masters first, one by one
    for before, after in zip(ORDER, ORDER[1:], strict=False):
        assert sampler.back[before] <= sampler.went[after]  # the next waits for the last

    # the drain hook ran for each node, in order, and said why it could not drain
    drains = re.findall(
        rf"drain {NAME}/(\S+): drain skipped: tenant API unreachable", rig.agent.log()
    )
    assert drains == ORDER, rig.agent.log()[-3000:]

    # the masters' data disks survived: same files, markers read by the new VMs
    for node, marker in markers.items():
        assert _data_disk(rig, node).stat().st_ino == inodes[node]
        rc, out = rig.console(node, f"head -c {len(marker)} /dev/vdb")
        assert (rc, out.strip()) == (0, marker.decode())

    desired = rig.server.api("GET", "/api/v1/hosts/h1/nodes").json()
    expected = {f"{n['node']}.{n['spec_hash']}.{ext}" for n in desired for ext in ("qcow2", "ign")}
    expected |= {f"{n}.log" for n in ORDER} | {f"{n}.data.qcow2" for n in MASTERS}
    assert th.state_files(rig.agent.state_dir)[NAME] == expected

    # the whole tenant goes, data disks too
    assert rig.server.api("DELETE", f"/api/v1/tenants/{NAME}").status_code == 202

    def gone() -> bool:
        return (
            rig.server.api("GET", f"/api/v1/tenants/{NAME}").status_code == 404
            and not th.domains(rig.conn, NAME + "-")
            and NAME not in th.state_files(rig.agent.state_dir)
        )

    th.wait_for(f"{NAME} deleted everywhere", gone, 90.0, 0.5)
