"""`mayu lab up/status/down`: qemu VMs (TCG) PXE-boot through real DHCP (dnsmasq), iPXE, HTTP
and real Ignition, and phone home; all inside the namespace mayu-lab the lab creates (with
`--dhcp proxy` also mayu-lab-site, the site's own DHCP server). Level 2:
the lab's `mayu agent` (inside the namespace, real libvirtd) brings tenant demo-1 to Ready.

The test talks to the lab server only from a thread inside that namespace (no route out).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from mayu_py.api_client import AdminClient, ApiError
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.netns import InNamespace
from mayu_py.lab.state import LabState, VmRecord
from mayu_py.model import Event, Machine
from mayu_py.pids import running
from mayu_py.server.provisioning import REPORT_CREDENTIAL_FILE
from mayu_py.server.tokens import AGENT_TOKEN_FILE
from mayu_py.store import Tx, inventory_path, open_store
from tests.e2e import lab_machine as lm
from tests.e2e import tenant_helpers as th
from tests.support.dashboard import act, alert_of, chromium, column_of, log_in, screenshot, text_of
from tests.support.leaks import Snapshot, assert_no_leaks, snapshot
from tests.support.peers import require_peers
from tests.support.prometheus import assert_matches_store, parse, value
from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
MACHINES = 3
TENANT = topo.LabTenant(1)
DASHBOARD_ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"


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

    def up_args(
        self, machines: int, timeout: int = 200, tenants: int = 0, vms: str = "qemu"
    ) -> list[str]:
        """`up` with MACHINES machines of the VM driver VMS (named, whatever the default)."""
        return [
            "up", "--machines", str(machines), "--accel", "tcg", "--timeout", str(timeout),
            "--tenants", str(tenants), "--vms", vms,
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

    def console(self, m: topo.LabMachine) -> str:
        """The console log of the machine's current (or last) boot."""
        path = self.data_dir / "lab" / f"{m.name}.console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def restart(self, *names: str) -> list[VmRecord]:
        """`mayu lab restart NAMES` (none: every machine); the restarted VMs' records."""
        restarted = self.mayu("restart", *names, timeout=60)
        assert restarted.returncode == 0, restarted
        records = [r for r in self.state().vms if not names or f"lab{r.index}" in names]
        for r in records:
            assert f"lab{r.index}: VM started again (boot {r.boots}, pid {r.pid}," in (
                restarted.stdout
            ), restarted.stdout
        return records

    def restart_and_wait(self, *names: str, timeout: float) -> None:
        """Network-boot machines again and wait until their VMs ended by themselves (BIOS: a
        machine powers off after installing, or reboots when it finds no disk to boot)."""
        records = self.restart(*names)
        _wait(
            self,
            "every restarted VM ended",
            lambda: not any(running(r.pid, "qemu") for r in records),
            timeout,
        )

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


def _wait(lab: Lab, what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, (
            f"not {what} within {timeout:.0f} s\n{lab.serve_log()[-2000:]}\n{lab.consoles()}"
        )
        time.sleep(0.5)


def _local_boot_line(m: topo.LabMachine) -> str:
    """What the server's local-boot script prints (echo) on the machine's console."""
    return f"mayu: {m.hostname} is installed: booting its disk"


def _assert_booted_local(console: str, m: topo.LabMachine) -> None:
    """BIOS without a disk: the script's sanboot fails, `exit` hands back to SeaBIOS, which
    finds no boot device and reboots (qemu -no-reboot: the VM ends). No kernel was loaded."""
    assert _local_boot_line(m) in console, console[-2000:]
    assert "Booting from SAN device 0x80" in console and "No bootable device" in console
    assert "lab/vmlinuz" not in console and "ignition" not in console, console[-2000:]


def test_lab_provisions_three_machines_then_boots_them_local_and_reinstalls_one(lab: Lab) -> None:
    """Issue 8 in the lab: each machine is discovered, approved by its config group, gets one
    boot token, its secret config over HTTPS (real Ignition in the VM, CA pinned, SHA-512
    checked) and reports installed; at every later network boot it gets the local-boot script
    and never a token; `mayu lab ctl reinstall` makes exactly that machine provision again.
    Level 2 too: tenant demo-1 Ready on the lab's agent."""
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
    assert f"HTTPS {topo.SERVER_TLS_URL}" in status.stdout, status.stdout
    # mayuctl against the lab server, through `mayu lab ctl` (inside the namespace)
    listed = lab.mayu("ctl", "list", "-o", "json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert sorted(m["state"] for m in json.loads(listed.stdout)) == ["installed"] * MACHINES

    state = lab.state()
    assert state.accel == "tcg" and len(state.vms) == MACHINES
    # Every VM powered itself off after reporting (the lab reboots a VM whose iPXE gave up,
    # so a loaded machine may need a second boot; it must still end cleanly).
    assert all(vm.exit_code == 0 for vm in state.vms), state.vms
    machines = topo.lab_machines(MACHINES)
    target, others = machines[0], machines[1:]
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
        installed: dict[str, list[dict[str, Any]]] = {}
        for m in machines:
            record = client.machine(m.mac)
            assert record["state"] == "installed"
            assert record["ip"] == m.ip  # the DHCP reservation, recorded as the machine's IP
            assert record["uuid"] == m.uuid and record["serial"] == m.serial
            events = record["events"]
            role = record["labels"]["role"]
            assert lm.history(events) == lm.first_provisioning(m, role), events
            assert all(e["time"] >= state.created for e in events), (state.created, events)
            details = events[-1]["details"]
            assert details["ip"] == m.ip and details["hostname"] == m.hostname
            # Real Ignition in the VM: the stub over plain HTTP, then the secret config from
            # the HTTPS listener, verified by the hash the server named for the bytes it served.
            stub_over_http, merged = lm.ignition_fetches(lab.console(m), m)
            assert stub_over_http and merged == lm.served_sha512(events), lab.console(m)
            installed[m.mac] = events
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

        # The next network boot of every machine: the local-boot script, no token, no event.
        lab.restart_and_wait(timeout=180)
        for m in machines:
            _assert_booted_local(lab.console(m), m)
            assert client.machine(m.mac)["events"] == installed[m.mac]
            bios, uefi = lm.boot_script(ns, m, "pcbios"), lm.boot_script(ns, m, "efi")
            assert "sanboot --no-describe --drive 0x80" in bios and "token=" not in bios, bios
            assert uefi.splitlines()[-1] == "exit" and "token=" not in uefi, uefi
            assert client.machine(m.mac)["events"] == installed[m.mac]  # asking wrote nothing

        # An operator's reinstall of one machine: exactly that one provisions again.
        reinstall = lab.mayu("ctl", "reinstall", target.mac, timeout=60)
        assert reinstall.returncode == 0 and ": configured;" in reinstall.stdout, reinstall
        lab.restart_and_wait(timeout=240)
        events = client.machine(target.mac)["events"]
        assert events[: len(installed[target.mac])] == installed[target.mac]
        again = events[len(installed[target.mac]) :]
        assert lm.history(again) == [lm.REINSTALL, *lm.PROVISIONED], again
        assert lm.tokens_issued(events) == 2
        stub_over_http, merged = lm.ignition_fetches(lab.console(target), target)
        assert stub_over_http and merged == lm.served_sha512(again), lab.console(target)
        installed[target.mac] = events
        for m in others:
            _assert_booted_local(lab.console(m), m)
            assert client.machine(m.mac)["events"] == installed[m.mac]
            assert lm.tokens_issued(installed[m.mac]) == 1

        # What real Ignition wrote in each VM against the config the server serves: the test
        # provisions each machine once more from its address (VM off), over HTTPS with the
        # stub's pinned CA, checking that the server's certificate names 10.77.0.1.
        for m in machines:
            stub, config = lm.provision_as(ns, client, m)
            assert set(stub) == {"ignition"}, stub  # nothing but the merge over plain HTTP
            _assert_ignition_wrote(config, lm.reported_files(installed[m.mac]))

    # `down` (the fixture) must clean up through libvirt alone: kill agent and server first.
    state = lab.state()
    assert state.agent_pid and state.serve_pid
    for pid in (state.agent_pid, state.serve_pid):
        os.kill(pid, signal.SIGKILL)


FRESH_EACH_PROVISIONING = {REPORT_CREDENTIAL_FILE, AGENT_TOKEN_FILE}


def _assert_ignition_wrote(config: dict[str, Any], reported: dict[str, dict[str, Any]]) -> None:
    """Every file of the config is among the reported ones with its mode, size and SHA-256;
    the report credential and the agent token are fresh for every provisioning, so only their
    mode and size match."""
    files = config["storage"]["files"]
    assert files, "the config writes no files"
    assert {f["path"] for f in files} <= set(reported), sorted(reported)
    compared = 0
    for f in files:
        content = lm.decode_data_url(f.get("contents", {}).get("source", ""))
        got = reported[f["path"]]
        assert content is not None, f["path"]
        assert (int(got["mode"], 8), got["size"]) == (f["mode"], len(content)), f["path"]
        if f["path"] in FRESH_EACH_PROVISIONING:
            continue
        assert got["sha256"] == hashlib.sha256(content).hexdigest(), f["path"]
        compared += 1
    assert compared == len(files) - len(FRESH_EACH_PROVISIONING), (compared, len(files))


def _dnsmasq_in_lab() -> set[int]:
    out = subprocess.run(["ip", "netns", "pids", topo.NAMESPACE], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()} & _procs("dnsmasq")


def _watch_board(
    driver: WebDriver, machines: list[topo.LabMachine], column: str, timeout_s: float
) -> None:
    """Wait until the open board shows every machine in `column`, with no page reload."""
    driver.execute_script("window.sameDocument = true;")
    for m in machines:
        wait_for(
            f"{m.name} {column} on the board",
            lambda m=m: column_of(driver, m.mac) == column,
            timeout_s=timeout_s,
        )
    assert driver.execute_script("return window.sameDocument === true;"), "page reloaded"


def _operate_the_board(url: str, token: str, machines: list[topo.LabMachine]) -> list[str]:
    """Run on the lab namespace's thread (the server's address is reachable only there, and
    chromedriver, started from this thread, lives there too): a person logs in, watches the
    lab's machines arrive `discovered` on the board without a reload, approves each on its
    page (the first as controller), watches them install, then reinstalls the last one.
    Returns what went wrong."""
    admin = AdminClient(url, token, timeout=20, trust_env=False)
    olga = admin.call("POST", "/api/v1/users", json={"name": "olga"}).json()["token"]
    base = topo.SERVER_TLS_URL
    with chromium("1280,860") as driver:
        log_in(driver, base, olga)
        wait_for("the board", lambda: text_of(driver, "who") == "olga")
        _watch_board(driver, machines, "discovered", 180)
        screenshot(driver, DASHBOARD_ARTIFACTS / "lab-01-discovered.png")
        for m, role in zip(machines, ["controller"] + ["worker"] * len(machines), strict=False):
            driver.get(f"{base}/ui/machines/{m.mac}")
            wait_for(f"{m.name}'s page", lambda: text_of(driver, "machine-state") == "discovered")

            def approve(role: str = role) -> None:
                Select(driver.find_element(By.ID, "approve-role")).select_by_value(role)
                driver.find_element(By.ID, "approve").click()

            act(driver, f"approving {m.name}", approve)
            wait_for(f"{m.name} approved", lambda: text_of(driver, "machine-state") != "discovered")
        driver.get(f"{base}/ui/")
        wait_for("the board again", lambda: text_of(driver, "who") == "olga")
        _watch_board(driver, machines, "installed", 300)
        screenshot(driver, DASHBOARD_ARTIFACTS / "lab-02-installed.png")
        # Reinstall the last one from its page (the page asks first).
        last = machines[-1]
        driver.get(f"{base}/ui/machines/{last.mac}")
        wait_for(f"{last.name}'s page", lambda: text_of(driver, "machine-state") == "installed")
        act(driver, "reinstalling", lambda: driver.find_element(By.ID, "reinstall").click())
        wait_for("the confirmation", lambda: alert_of(driver)).accept()
        wait_for("the reinstall", lambda: text_of(driver, "machine-state") == "configured")
        screenshot(driver, DASHBOARD_ARTIFACTS / "lab-03-reinstall.png")
    problems = []
    for m in machines:
        events = admin.call("GET", f"/api/v1/machines/{m.mac}").json()["events"]
        approvals = [e for e in events if e["cause"].startswith("approved by operator")]
        if [(e["source"].split("@")[0], e["from"], e["to"]) for e in approvals] != [
            ("user:olga", "discovered", "configured")
        ]:
            problems.append(f"{m.name}: approvals by olga {approvals}")
    return problems


def test_an_operator_approves_the_booting_lab_in_chromium_and_watches_it_install(
    lab: Lab,
) -> None:
    """Issue 13 in the lab: with `--approve manual` the lab's config approves nothing; its real
    VMs PXE-boot and wait, discovered, while a person on the dashboard (headless Chromium)
    sees them arrive live, approves each, and sees them install live; `up` then ends. The
    reinstall she then makes in the browser provisions that machine again at its next boot."""
    DASHBOARD_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    machines = topo.lab_machines(MACHINES)
    up = subprocess.Popen(
        [str(BIN / "mayu"), "lab", *lab.up_args(MACHINES, timeout=400), "--approve", "manual"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=lab.env,
    )
    try:
        _wait(lab, "the lab server up", lambda: _server_answers(lab), 120)
        state = lab.state()
        with InNamespace(state.namespace) as ns:
            problems = ns.call(_operate_the_board, state.url, state.token, machines, timeout=600)
        assert problems == [], problems
        out, _ = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.communicate(timeout=120)
    assert up.returncode == 0, f"{out}\n{lab.serve_log()[-3000:]}\n{lab.consoles()}"
    assert f"all {MACHINES} machine(s) installed" in out, out
    # The reinstall made in the browser: at its next network boot that machine provisions
    # again, with exactly one new token, and the reinstall names olga.
    last = machines[-1]
    lab.restart_and_wait(last.name, timeout=240)
    with InNamespace(state.namespace) as ns:
        record = LabClient(ns, state.url, state.token).machine(last.mac)
    events = record["events"]
    reinstalls = [e for e in events if "reinstall" in e["cause"]]
    assert record["state"] == "installed", events
    assert [(e["source"] or "").split("@")[0] for e in reinstalls] == ["user:olga"], events
    assert lm.tokens_issued(events) == 2, events
    assert lm.history(events[events.index(reinstalls[0]) :]) == [lm.REINSTALL, *lm.PROVISIONED]


def _server_answers(lab: Lab) -> bool:
    """The lab's state names its server, and the server answers /healthz in the namespace."""
    state = LabState.load(lab.state_file)
    if state is None or not state.url or state.namespace not in _mayu_names():
        return False
    with InNamespace(state.namespace) as ns:
        try:
            return LabClient(ns, state.url, state.token).call("GET", "/healthz").ok
        except ApiError:
            return False


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


def _interruptible() -> None:
    """A terminal's Ctrl-C reaches `up` even when the test runs from a background job (which
    starts its children with SIGINT ignored, and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_up_tears_everything_down(lab: Lab) -> None:
    up = subprocess.Popen(
        [str(BIN / "mayu"), "lab", *lab.up_args(1)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=lab.env,
        preexec_fn=_interruptible,
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
    hands out the addresses, our dnsmasq in proxy mode only the boot information. Installed
    machines boot local at their next network boot."""
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
    # The next network boot (addresses from the site server): local boot, no token.
    installed = {m.mac: _assert_provisioned_during(state, m) for m in machines}
    lab.restart_and_wait(timeout=180)
    for m in machines:
        _assert_booted_local(lab.console(m), m)
        assert _events(state, m) == installed[m.mac]
    site_pid = state.site_dhcp_pid
    down = lab.mayu("down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert f"deleted network namespace {topo.SITE_NAMESPACE}" in down.stdout, down.stdout
    assert site_pid not in _procs("dnsmasq")
    assert not [n for n in _mayu_names() if n.startswith(topo.SITE_NAMESPACE)]
    # (the fixture's down then finds nothing and checks no dnsmasq under the workdir is left)


def _record(state: LabState, m: topo.LabMachine) -> dict[str, Any]:
    with InNamespace(state.namespace) as ns:
        return LabClient(ns, state.url, state.token).machine(m.mac)


def _events(state: LabState, m: topo.LabMachine) -> list[dict[str, Any]]:
    return _record(state, m)["events"]


def _assert_provisioned_during(state: LabState, m: topo.LabMachine) -> list[dict[str, Any]]:
    """From the machine's events, all in this run: a fresh record (discovered at its first
    boot request), approved by its config group, one boot token, the secret config over
    HTTPS, installed (its report). Returns the events."""
    record = _record(state, m)
    events = record["events"]
    assert lm.history(events) == lm.first_provisioning(m, record["labels"]["role"]), events
    assert all(e["time"] >= state.created for e in events), (state.created, events)
    return events


def _wait_uefi_local_boot(lab: Lab, m: topo.LabMachine) -> None:
    """UEFI: the local-boot script's `exit` ends iPXE ("No more network devices" after the
    script's line) and hands back to the firmware. Without a disk, this iPXE build under OVMF
    then hangs (see docs/lab.md): the VM stays up until `down`."""

    def handed_back() -> bool:
        _, line, after = lab.console(m).partition(_local_boot_line(m))
        return bool(line) and "No more network devices" in after

    _wait(lab, "the UEFI local-boot script run", handed_back, 180)
    console = lab.console(m)
    assert "Booting from SAN" not in console and "ignition" not in console, console[-2000:]


def _assert_uefi_through_proxy_dhcp(
    lab: Lab, state: LabState, machines: list[topo.LabMachine]
) -> None:
    """OVMF's own PXE client (the non-iPXE path) got `ipxe.efi` by TFTP with the boot
    information from our proxyDHCP, and its address from the site's DHCP server; then iPXE
    DHCPed again and went on over HTTP to an installed machine, whose real Ignition fetched
    the stub over HTTP and the secret config the server named."""
    work = lab.data_dir / "lab"
    serve_log, site_log = lab.serve_log(), (work / "site-dnsmasq.log").read_text()
    conf = (lab.data_dir / "dhcp" / "dnsmasq.conf").read_text()
    assert "dhcp-range=10.77.0.0,proxy,255.255.255.0" in conf
    for m in machines:
        events = _assert_provisioned_during(state, m)
        console = lab.console(m)
        assert "NBP filename is ipxe.efi" in console, console[-2000:]  # EDK2 PXE, arch 7
        assert "iPXE" in console and "/boot.ipxe" in console, console[-2000:]
        stub_over_http, merged = lm.ignition_fetches(console, m)
        assert stub_over_http and merged == lm.served_sha512(events), console
        assert f"PXE({topo.BRIDGE}) {m.mac} proxy" in serve_log, serve_log[-3000:]
        tftp = rf"sent \S+/ipxe\.efi to {re.escape(m.ip)}\b"
        assert re.search(tftp, serve_log), serve_log[-3000:]
        assert f"DHCPACK({topo.SITE_VETH}) {m.ip} {m.mac}" in site_log, site_log[-3000:]
    site_leases = (work / "site.leases").read_text()
    assert all(f"{m.mac} {m.ip}" in site_leases for m in machines), site_leases


def test_up_after_down_boots_every_machine_again_uefi_through_proxy_dhcp(lab: Lab) -> None:
    """Issue 11: `up`, `down --data-dir`, `up` again with other options (UEFI + proxyDHCP):
    the second run starts from fresh records and each machine boots and installs in it, and
    at its next network boot one gets the UEFI local-boot script (`exit` to the firmware) and
    no token. On the way: `up` while a lab is up, and `down` naming another data dir, are
    refused."""
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
    _assert_uefi_through_proxy_dhcp(lab, state, machines)
    status = lab.mayu("status", timeout=60)
    assert status.stdout.count("state=installed boots=") == 2, status.stdout
    assert "kept across runs" in status.stdout, status.stdout

    m = machines[0]
    events = _events(state, m)
    lab.restart(m.name)
    _wait_uefi_local_boot(lab, m)
    assert _events(state, m) == events


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
