"""`mayu lab up/status/down`: qemu VMs (TCG) PXE-boot through real DHCP (dnsmasq), iPXE, HTTP
and real Ignition, and phone home; all inside the namespace mayu-lab the lab creates (with
`--dhcp proxy` also mayu-lab-site, the site's own DHCP server). Level 2:
the lab's `mayu agent` (inside the namespace, real libvirtd) brings tenant demo-1 to Ready.

The test talks to the lab server only from a thread inside that namespace (no route out).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.netns import InNamespace
from mayu_py.lab.state import LabState
from mayu_py.model import Event, Machine
from mayu_py.store import Tx, inventory_path, open_store
from tests.e2e import tenant_helpers as th
from tests.support.leaks import Snapshot, assert_no_leaks, snapshot
from tests.support.peers import require_peers
from tests.support.prometheus import assert_matches_store, parse, value

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
MACHINES = 3
TENANT = topo.LabTenant(1)


@pytest.fixture(autouse=True, scope="module")
def _peers() -> None:
    require_peers("qemu-system-x86_64", "dnsmasq", "libvirtd", root=True)


def _procs(name_part: str, arg: str = "") -> set[int]:
    """Live (non-zombie) processes whose command name contains name_part (and whose
    command line contains arg)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if name_part in comm and arg in cmdline and stat.rpartition(")")[2].split()[0] != "Z":
            found.add(int(entry.name))
    return found


def _mayu_names() -> list[str]:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = re.findall(r"^\d+: ([^:@]+)", links, re.M)
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [n for n in names if n.startswith("mayu-")] + [
        s.split()[0] for s in spaces.splitlines() if s.startswith("mayu-")
    ]


class Lab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.state_file = workdir / "state.json"
        self.env = {**os.environ, "MAYU_LAB_STATE": str(self.state_file)}

    def mayu(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "mayu"), "lab", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def up_args(self, machines: int, timeout: int = 200, tenants: int = 0) -> list[str]:
        return [
            "up", "--machines", str(machines), "--accel", "tcg", "--timeout", str(timeout),
            "--tenants", str(tenants),
            "--data-dir", str(self.data_dir), "--config", str(self.config(machines)),
        ]  # fmt: skip

    def config(self, machines: int) -> Path:
        """Pin the etcd members, so a config rendered again equals the one each VM fetched
        (else it depends on which machines had registered at that moment)."""
        members = [{"name": m.hostname, "address": m.ip} for m in topo.lab_machines(machines)[:3]]
        path = self.workdir / "extra.yaml"
        path.write_text(yaml.safe_dump({"cluster": {"etcd_members": members}}))
        return path

    def lab_records(self) -> list[str]:
        """MACs of lab machines in the data dir's inventory (read straight from the store)."""
        if not inventory_path(self.data_dir).exists():
            return []
        store = open_store(self.data_dir)
        try:
            return [m.mac for m in store.list_machines() if topo.is_lab_mac(m.mac)]
        finally:
            store.close()

    def state(self) -> LabState:
        state = LabState.load(self.state_file)
        assert state is not None, "no lab state file"
        return state

    def serve_log(self) -> str:
        path = self.data_dir / "lab" / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def consoles(self) -> str:
        logs = sorted((self.data_dir / "lab").glob("*.console.log*"))
        logs += sorted((self.data_dir / "agent" / "state" / "tenants").glob("*/*.log"))
        logs += [self.data_dir / "lab" / "agent.log"]
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs if p.exists()
        )


def _lab_tenant_objects() -> tuple[set[str], set[str]]:
    """libvirt domains and networks of the lab's demo tenants (any that exist)."""
    conn = libvirt.open(th.URI)
    try:
        doms = set(th.domains(conn, f"{topo.TENANT_PREFIX}-"))
        nets = th.networks(conn, f"mayu-tenant-{topo.TENANT_PREFIX}-")
        return doms, nets
    finally:
        conn.close()


def _snapshot(lab: Lab) -> Snapshot:
    """Everything of the host a lab can leave behind (its workdir marks its processes)."""
    conn = libvirt.open(th.URI)
    try:
        files = [lab.data_dir / "agent" / "state"]
        return snapshot(conn, files=files, markers=[str(lab.workdir)])
    finally:
        conn.close()


@pytest.fixture
def lab() -> Iterator[Lab]:
    # Other tests on this machine may own mayu- namespaces, qemu or dnsmasq: only what did
    # not exist before counts.
    th.ensure_daemons()
    assert topo.NAMESPACE not in _mayu_names(), "a lab is already up"
    assert _lab_tenant_objects() == (set(), set()), "a lab tenant is left in libvirt"
    workdir = Path(tempfile.mkdtemp(prefix="mayu-lab-e2e-"))
    workdir.chmod(0o755)  # dnsmasq drops to nobody and reads the TFTP root under it
    lab = Lab(workdir)
    before = _snapshot(lab)
    try:
        yield lab
    finally:
        down = lab.mayu("down", "--data-dir", str(lab.data_dir), timeout=120)
        again = lab.mayu("down", "--data-dir", str(lab.data_dir), timeout=120)
        records_left = lab.lab_records()
        after = _snapshot(lab)
        shutil.rmtree(workdir, ignore_errors=True)
        assert down.returncode == 0, down.stderr
        assert again.returncode == 0 and "nothing to tear down" in again.stdout, again
        # domains, networks, bridges, taps, veths, namespaces, nwfilter bindings, the
        # agent's overlays and files, VMs, dnsmasq, the lab's server and agent
        assert_no_leaks(before, after)
        assert not (lab.data_dir / "agent" / "state").exists(), "the agent state dir is left"
        assert not lab.state_file.exists()
        assert records_left == [], "down left lab machine records in the inventory"


def _decode_data_url(source: str) -> bytes | None:
    if not source.startswith("data:"):
        return None
    meta, _, payload = source[5:].partition(",")
    if meta.endswith(";base64"):
        return base64.b64decode(payload)
    return urllib.parse.unquote_to_bytes(payload)


def _get_from(source_ip: str, path: str) -> str:
    """GET path from the lab server with source address source_ip (runs inside the netns)."""
    host, port = topo.SERVER_IP, topo.PORT
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source_ip, 0))
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, (path, response.status, body)
        return body
    finally:
        conn.close()


def _rendered_config(ns: InNamespace, m: topo.LabMachine) -> tuple[dict[str, Any], str]:
    """The machine's Ignition config rendered again as its boot fetched it, and the fresh
    boot token in it. The requests come from the machine's own (now unused) address: the
    server records the source address as the machine's IP, which the config contains."""
    bridge_addr = ["ip", "-n", topo.NAMESPACE, "addr", "{}", f"{m.ip}/32", "dev", topo.BRIDGE]
    subprocess.run([a.format("add") for a in bridge_addr], check=True)
    try:
        query = f"mac={m.mac.replace(':', '-')}&uuid={m.uuid}&serial={m.serial}"
        script = ns.call(_get_from, m.ip, f"/ipxe?{query}")
        url = re.search(r"ignition\.config\.url=(\S+)", script)
        assert url, script
        path = url.group(1).removeprefix(topo.SERVER_URL)
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["token"][0]
        return json.loads(ns.call(_get_from, m.ip, path)), token
    finally:
        subprocess.run([a.format("del") for a in bridge_addr], check=True)


def test_lab_boots_three_machines_and_a_tenant_and_down_removes_everything(lab: Lab) -> None:
    started = time.monotonic()
    up = lab.mayu(*lab.up_args(MACHINES, timeout=300, tenants=1), timeout=420)
    print(f"\nmayu lab up ({MACHINES} machines, 1 tenant): {time.monotonic() - started:.1f} s")
    assert up.returncode == 0, (
        f"{up.stdout}\n{up.stderr}\n{lab.serve_log()[-3000:]}\n{lab.consoles()}"
    )
    assert f"all {MACHINES} machine(s) installed" in up.stdout
    assert "all 1 tenant(s) Ready" in up.stdout

    status = lab.mayu("status", timeout=60)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("state=installed") == MACHINES, status.stdout
    assert status.stdout.count(f"tenant {TENANT.name} phase=Ready") == 2, status.stdout
    assert "mayu agent running" in status.stdout, status.stdout
    # mayuctl against the lab server, through `mayu lab ctl` (inside the namespace)
    listed = lab.mayu("ctl", "list", "-o", "json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert sorted(m["state"] for m in json.loads(listed.stdout)) == ["installed"] * MACHINES

    state = lab.state()
    assert state.accel == "tcg" and len(state.vms) == MACHINES
    machines = topo.lab_machines(MACHINES)
    with InNamespace(state.namespace) as ns:
        client = LabClient(ns, state.url, state.token)
        # /metrics after the lab run: the counters match the events in the store.
        samples = parse(client.get_text("/metrics"))
        events = client.call("GET", "/api/v1/events").json()["items"]
        for m in machines:
            events += client.machine(m.mac)["events"]
        assert_matches_store(samples, events)
        assert value(samples, "mayu_boot_tokens_consumed_total") >= MACHINES
        assert value(samples, "mayu_machines", state="installed") == MACHINES
        for m in machines:
            record = client.machine(m.mac)
            assert record["state"] == "installed"
            assert record["ip"] == m.ip  # the DHCP reservation, recorded as the machine's IP
            assert record["uuid"] == m.uuid and record["serial"] == m.serial
            events = record["events"]
            kinds = [e["kind"] for e in events]
            assert kinds[0] == "registered", kinds
            path = [events[0]["to"]] + [e["to"] for e in events if e["kind"] == "transition"]
            assert path == ["discovered", "configured", "installing", "installed"], events
            installed = [e for e in events if e["to"] == "installed"][-1]
            details = installed["details"]
            assert details["ip"] == m.ip and details["hostname"] == m.hostname
            reported = {f["path"]: f for f in details["files"]}

            config, token = _rendered_config(ns, m)
            files = config["storage"]["files"]
            assert files, "the rendered config writes no files"
            assert {f["path"] for f in files} <= set(reported), sorted(reported)
            with_token = []  # a re-render carries a new one-time token: not comparable
            for f in files:
                content = _decode_data_url(f.get("contents", {}).get("source", ""))
                assert content is not None, f"{f['path']} is not inline"
                if token.encode() in content:
                    with_token.append(f["path"])
                    continue
                got = reported[f["path"]]
                assert got["sha256"] == hashlib.sha256(content).hexdigest(), f["path"]
                assert got["size"] == len(content), f["path"]
                assert int(got["mode"], 8) == f["mode"], f["path"]
            assert with_token == ["/etc/mayu/report-url"], with_token
        # Level 2: both nodes of demo-1 ready on the lab's agent, with their reserved IPs.
        (tenant,) = [t for t in client.tenants() if t["metadata"]["name"] == TENANT.name]
        assert tenant["status"]["phase"] == "Ready", tenant
        nodes = {n["name"]: n for n in tenant["status"]["nodes"]}
        base = TENANT.cidr.rsplit(".", 1)[0]
        assert set(nodes) == {f"{TENANT.name}-master-0", f"{TENANT.name}-worker-0"}, nodes
        assert {n["ip"] for n in nodes.values()} == {f"{base}.10", f"{base}.11"}, nodes
        assert {n["host"] for n in nodes.values()} == {topo.AGENT_HOST}, nodes
    doms, nets = _lab_tenant_objects()
    assert doms == set(nodes) and nets == {f"mayu-tenant-{TENANT.name}"}, (doms, nets)
    # Every VM powered itself off after reporting (the lab reboots a VM whose iPXE gave up,
    # so a loaded machine may need a second boot; it must still end cleanly).
    assert all(vm.exit_code == 0 for vm in lab.state().vms), lab.state().vms

    # `down` (the fixture) must clean up through libvirt alone: kill agent and server first.
    state = lab.state()
    assert state.agent_pid and state.serve_pid
    for pid in (state.agent_pid, state.serve_pid):
        os.kill(pid, signal.SIGKILL)


def _dnsmasq_in_lab() -> set[int]:
    out = subprocess.run(["ip", "netns", "pids", topo.NAMESPACE], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()} & _procs("dnsmasq")


def test_dnsmasq_killed_during_the_boot_is_restarted_and_machines_finish(lab: Lab) -> None:
    up = subprocess.Popen(
        [str(BIN / "mayu"), "lab", *lab.up_args(2)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=lab.env,
    )
    try:
        leases = lab.data_dir / "dhcp" / "leases"
        deadline = time.monotonic() + 120
        # Wait until the first VM has its lease: iPXE is past DHCP, Linux will DHCP again.
        while not (leases.exists() and leases.read_text().strip()):
            assert up.poll() is None, up.communicate()[0]
            assert time.monotonic() < deadline, "no DHCP lease within 120 s"
            time.sleep(0.2)
        victims = _dnsmasq_in_lab()
        assert len(victims) == 1, victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert up.poll() is None, "the machines were done before dnsmasq was killed"
        while not (_dnsmasq_in_lab() - victims):
            assert time.monotonic() - killed_at < 15, "dnsmasq was not restarted"
            time.sleep(0.1)
        out, _ = up.communicate(timeout=240)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)
    assert up.returncode == 0, f"{out}\n{lab.serve_log()[-3000:]}\n{lab.consoles()}"
    assert "all 2 machine(s) installed" in out
    assert re.search(r"dnsmasq restarted \(pid \d+, restart 1\)", lab.serve_log())
    with InNamespace(topo.NAMESPACE) as ns:
        metrics = LabClient(ns, lab.state().url, lab.state().token).get_text("/metrics")
    assert value(parse(metrics), "mayu_dnsmasq_restarts_total") == 1


def test_ctrl_c_during_up_tears_everything_down(lab: Lab) -> None:
    up = subprocess.Popen(
        [str(BIN / "mayu"), "lab", *lab.up_args(1)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=lab.env,
    )
    try:
        deadline = time.monotonic() + 60
        # Interrupt once the server and the VM are up (the VM is mid-boot).
        while not ((state := LabState.load(lab.state_file)) and state.vms and state.vms[0].pid):
            assert up.poll() is None, up.communicate()[0]
            assert time.monotonic() < deadline, "the lab did not start a VM within 60 s"
            time.sleep(0.1)
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert up.returncode == 130, out
    assert "interrupted: tearing the lab down" in out
    assert topo.NAMESPACE not in _mayu_names()
    assert not lab.state_file.exists()
    assert not _procs("qemu-system", "mayu-lab")


def test_proxy_dhcp_beside_a_site_dhcp_server_boots_machines(lab: Lab) -> None:
    """`--dhcp proxy`: the site's plain dnsmasq (namespace mayu-lab-site, veth on the bridge)
    hands out the addresses, our dnsmasq in proxy mode only the boot information."""
    started = time.monotonic()
    up = lab.mayu(*lab.up_args(2), "--dhcp", "proxy", timeout=300)
    print(f"\nmayu lab up --dhcp proxy (2 machines): {time.monotonic() - started:.1f} s")
    assert up.returncode == 0, f"{up.stdout}\n{lab.serve_log()[-3000:]}\n{lab.consoles()}"
    assert "all 2 machine(s) installed" in up.stdout
    state = lab.state()
    assert state.dhcp == "proxy" and state.site_dhcp_pid
    assert topo.SITE_NAMESPACE in _mayu_names()
    work = lab.data_dir / "lab"
    conf = (lab.data_dir / "dhcp" / "dnsmasq.conf").read_text()
    assert "dhcp-range=10.77.0.0,proxy,255.255.255.0" in conf and "pxe-service=" in conf
    site_conf = (work / "site-dnsmasq.conf").read_text()
    assert "no-ping" in site_conf and "dhcp-boot" not in site_conf and "pxe" not in site_conf
    # Boot information came from our proxy (serve log), addresses from the site server.
    serve_log, site_log = lab.serve_log(), (work / "site-dnsmasq.log").read_text()
    machines = topo.lab_machines(2)
    for m in machines:
        assert f"PXE({topo.BRIDGE}) {m.mac} proxy" in serve_log, serve_log[-3000:]
        assert f"PXE({topo.BRIDGE}) {m.ip} {m.mac} {topo.SERVER_URL}/boot.ipxe" in serve_log
        assert f"DHCPACK({topo.SITE_VETH}) {m.ip} {m.mac}" in site_log, site_log[-3000:]
    site_leases = (work / "site.leases").read_text()
    assert all(f"{m.mac} {m.ip}" in site_leases for m in machines), site_leases
    ours = lab.data_dir / "dhcp" / "leases"
    assert not (ours.exists() and ours.read_text().strip()), ours.read_text()
    status = lab.mayu("status", timeout=60)
    assert status.stdout.count("state=installed") == 2, status.stdout
    assert "site DHCP server running" in status.stdout, status.stdout
    site_pid = state.site_dhcp_pid
    down = lab.mayu("down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert f"deleted network namespace {topo.SITE_NAMESPACE}" in down.stdout, down.stdout
    assert site_pid not in _procs("dnsmasq")
    assert not [n for n in _mayu_names() if n.startswith(topo.SITE_NAMESPACE)]
    # (the fixture's down then finds nothing and checks no dnsmasq under the workdir is left)


def test_uefi_machine_boots_through_edk2_pxe_tftp_and_ipxe_efi(lab: Lab) -> None:
    """The non-iPXE path: OVMF's own PXE client gets `ipxe.efi` over TFTP by client arch,
    which DHCPs again as iPXE and goes on over HTTP to an installed machine."""
    up = lab.mayu(*lab.up_args(1, timeout=240), "--firmware", "uefi", timeout=300)
    assert up.returncode == 0, f"{up.stdout}\n{lab.serve_log()[-3000:]}\n{lab.consoles()}"
    assert "all 1 machine(s) installed" in up.stdout
    console = (lab.data_dir / "lab" / "lab1.console.log").read_text(errors="replace")
    assert "NBP filename is ipxe.efi" in console  # EDK2 PXE, answered by client arch 7
    assert "iPXE" in console and "/boot.ipxe" in console
    # the transfer itself, in dnsmasq's log (its start-up line names TFTP whatever happens)
    (machine,) = topo.lab_machines(1)
    sent = rf"dnsmasq-tftp\[\d+\]: sent \S+/ipxe\.efi to {re.escape(machine.ip)}\b"
    assert re.search(sent, lab.serve_log()), lab.serve_log()[-3000:]


def _events(state: LabState, m: topo.LabMachine) -> list[dict[str, Any]]:
    with InNamespace(state.namespace) as ns:
        return LabClient(ns, state.url, state.token).machine(m.mac)["events"]


def _assert_booted_and_installed_during(state: LabState, m: topo.LabMachine) -> None:
    """From the machine's events, all in this run: a fresh record (its first boot request),
    booted into the installer (its Ignition config served), installed (its report)."""
    events = _events(state, m)
    assert events[0]["kind"] == "registered", events  # a new record, not an earlier run's
    assert all(e["time"] >= state.created for e in events), (state.created, events)
    path = [(e["cause"], e["to"]) for e in events if e["kind"] == "transition"]
    assert path == [
        (f"matched group {m.name}", "configured"),
        ("ignition config served", "installing"),
        ("report installed", "installed"),
    ], events


def _assert_uefi_through_proxy_dhcp(lab: Lab, machines: list[topo.LabMachine]) -> None:
    """OVMF's own PXE client got `ipxe.efi` by TFTP with the boot information from our
    proxyDHCP, and its address from the site's DHCP server; then iPXE went on over HTTP."""
    work = lab.data_dir / "lab"
    serve_log, site_log = lab.serve_log(), (work / "site-dnsmasq.log").read_text()
    conf = (lab.data_dir / "dhcp" / "dnsmasq.conf").read_text()
    assert "dhcp-range=10.77.0.0,proxy,255.255.255.0" in conf
    for m in machines:
        console = (work / f"{m.name}.console.log").read_text(errors="replace")
        assert "NBP filename is ipxe.efi" in console, console[-2000:]  # EDK2 PXE, arch 7
        assert "iPXE" in console and "/boot.ipxe" in console, console[-2000:]
        assert f"PXE({topo.BRIDGE}) {m.mac} proxy" in serve_log, serve_log[-3000:]
        tftp = rf"sent \S+/ipxe\.efi to {re.escape(m.ip)}\b"
        assert re.search(tftp, serve_log), serve_log[-3000:]
        assert f"DHCPACK({topo.SITE_VETH}) {m.ip} {m.mac}" in site_log, site_log[-3000:]
    site_leases = (work / "site.leases").read_text()
    assert all(f"{m.mac} {m.ip}" in site_leases for m in machines), site_leases


def test_up_after_down_boots_every_machine_again_uefi_through_proxy_dhcp(lab: Lab) -> None:
    """Issue 11: `up`, `down --data-dir`, `up` again with other options (UEFI + proxyDHCP):
    the second run starts from fresh records and each machine boots and installs in it.
    On the way: `up` while a lab is up, and `down` naming another data dir, are refused."""
    machines = topo.lab_machines(2)
    first = lab.mayu(*lab.up_args(2), timeout=300)
    assert first.returncode == 0, f"{first.stdout}\n{lab.serve_log()[-3000:]}\n{lab.consoles()}"
    first_state = lab.state()
    state_bytes = lab.state_file.read_bytes()

    # Another `up` while this one is up: exit 2, one line naming the lab, nothing touched.
    other = lab.workdir / "other-data"
    again = lab.mayu("up", "--machines", "1", "--tenants", "0", "--data-dir", str(other))
    assert again.returncode == 2, again
    assert again.stdout == "" and again.stderr.count("\n") == 1, again
    assert "a lab is already up" in again.stderr and str(lab.data_dir) in again.stderr
    assert f"mayu lab down --data-dir {lab.data_dir}" in again.stderr, again.stderr
    assert lab.state_file.read_bytes() == state_bytes and not other.exists()
    assert Path(f"/proc/{first_state.serve_pid}").exists()  # the server still runs
    assert sorted(lab.lab_records()) == [m.mac for m in machines]

    # `down` naming another data dir: refused the same way, nothing touched.
    wrong = lab.mayu("down", "--data-dir", str(other))
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong
    assert f"uses data dir {lab.data_dir}, not {other}" in wrong.stderr, wrong.stderr
    assert lab.state_file.read_bytes() == state_bytes and topo.NAMESPACE in _mayu_names()

    down = lab.mayu("down", "--data-dir", str(lab.data_dir), timeout=120)
    assert down.returncode == 0, down.stderr
    assert f"forgot 2 lab machine(s) in {inventory_path(lab.data_dir)}" in down.stdout, down
    assert lab.lab_records() == []
    kept = lab.data_dir / "pki"
    assert kept.is_dir(), "down must keep the server's PKI"

    started = time.monotonic()
    second = lab.mayu(*lab.up_args(2, timeout=300), "--firmware", "uefi", "--dhcp", "proxy",
                      timeout=400)  # fmt: skip
    print(
        f"\nmayu lab up --firmware uefi --dhcp proxy (2 machines): {time.monotonic() - started:.1f} s"
    )
    assert second.returncode == 0, f"{second.stdout}\n{lab.serve_log()[-3000:]}\n{lab.consoles()}"
    assert "all 2 machine(s) installed" in second.stdout
    state = lab.state()
    assert state.created > first_state.created and state.dhcp == "proxy"
    for m in machines:
        _assert_booted_and_installed_during(state, m)
    _assert_uefi_through_proxy_dhcp(lab, machines)
    status = lab.mayu("status", timeout=60)
    assert status.stdout.count("state=installed boots=") == 2, status.stdout
    assert "kept across runs" in status.stdout, status.stdout


def test_down_with_a_data_dir_and_no_state_file_forgets_that_labs_machines(lab: Lab) -> None:
    """After a crash of `up` (no state file), `down --data-dir` names where the lab's
    inventory is; other machines' records stay."""
    other = "52:54:00:12:34:56"
    macs = [m.mac for m in topo.lab_machines(3)]
    store = open_store(lab.data_dir)

    def fill(tx: Tx) -> None:
        for mac in [*macs, other]:
            tx.put_machine(Machine(id=mac, mac=mac))
            tx.add_event(Event(mac, 1.0, "registered", "test"))

    store.atomically(fill)
    store.close()
    assert not lab.state_file.exists()
    down = lab.mayu("down", "--data-dir", str(lab.data_dir), timeout=120)
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == f"forgot 3 lab machine(s) in {inventory_path(lab.data_dir)}"
    assert lab.lab_records() == []
    store = open_store(lab.data_dir)
    try:
        assert [m.id for m in store.list_machines()] == [other]
    finally:
        store.close()
