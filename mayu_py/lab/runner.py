"""`mayu lab up`: the steps of one run, in order.

Build the lab image into the asset root, create the namespace with its bridge, start `mayu
serve --dhcp full` inside it on 10.77.0.1:8080 and (HTTPS, secrets) 10.77.0.1:8443, so the
server's certificate names 10.77.0.1 (`--dhcp proxy`: first a second namespace with
the site's own DHCP server, a plain dnsmasq on a veth into the bridge, and `mayu serve --dhcp
proxy`, which only adds boot information), one tap and one qemu per machine, then watch
(`watch`) until every machine installed during this run, or the timeout. Then level 2: the lab
image becomes the tenant base image `lab`, a `mayu agent` starts inside the namespace, the demo
tenants are created through the admin API, and up waits until every tenant is Ready. Ctrl-C
or SIGTERM tears everything down. Server, dnsmasq, agent and tenant VMs stay up after
success, for `status` and for more boots.

`--vms libvirt`: the machines are libvirt domains on the host's address-less lab bridge,
joined to the namespace's by a veth pair, each with a Redfish BMC (lab.libvirt_fleet); the
lab's profiles install to disk, `up` powers the machines on through their BMCs and waits
until each one is `running` from its disk.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console

from mayu_py.config import load_settings
from mayu_py.errors import ConfigError
from mayu_py.files import atomic_write
from mayu_py.images.lab import LabImage, build_lab_image
from mayu_py.lab import display, netns, tenants, vm
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.bmc_emulators import SUSHY_EMULATOR, VBMCD
from mayu_py.lab.fleet import Fleet
from mayu_py.lab.inventory import forget_lab_machines
from mayu_py.lab.libvirt_fleet import LibvirtFleet
from mayu_py.lab.processes import child_env, log_tail, spawn
from mayu_py.lab.site import serve_config, site_dnsmasq_conf
from mayu_py.lab.state import DEFAULT_DATA_DIR, LabState, Phase, state_path, work_dir
from mayu_py.lab.teardown import lab_down
from mayu_py.lab.watch import (
    EMPTY,
    Outcome,
    Snapshot,
    Watcher,
    done_states,
    judge,
    to_reboot,
)

log = logging.getLogger(__name__)

SERVE_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class UpOptions:
    machines: int = 3
    accel: str = "auto"
    timeout: float = 300.0
    data_dir: Path = DEFAULT_DATA_DIR
    config_file: Path | None = None
    poll_interval: float = 1.0
    tenants: int = 1
    firmware: str = "bios"  # or uefi: OVMF (qemu: its PXE, TFTP ipxe.efi; libvirt: NIC ROM)
    dhcp: str = "full"  # or proxy: the site's DHCP server assigns addresses, we add boot info
    vms: str = "libvirt"  # domains with a BMC each, installed to disk; or qemu: in RAM
    bmc: str = "redfish"  # libvirt: or ipmi (vbmc)
    approve_by_config: bool = True  # False: an operator approves each machine while up waits

    @property
    def libvirt(self) -> bool:
        return self.vms == "libvirt"


def _serve_argv(config_path: Path, data_dir: Path, dhcp: str) -> list[str]:
    return [
        sys.executable, "-c", "from mayu_py.cli.mayu import main; main()",
        "serve", "--config", str(config_path), "--data-dir", str(data_dir),
        "--listen", f"{topo.SERVER_IP}:{topo.PORT}",
        "--tls-listen", f"{topo.SERVER_IP}:{topo.TLS_PORT}", "--dhcp", dhcp,
    ]  # fmt: skip


def _refuse_if_up() -> None:
    """One lab at a time (the namespaces are fixed): name the one that is up."""
    state = LabState.load()
    if state is not None:
        raise ConfigError(
            f"a lab is already up (data dir {state.data_dir}, server {state.url}, phase "
            f"{state.phase}, `mayu lab up` pid {state.up_pid}, state file {state_path()}): "
            f"run `mayu lab down --data-dir {state.data_dir}` first"
        )
    if Path(f"/sys/class/net/{topo.ROOT_BRIDGE}").exists():
        raise ConfigError(
            f"a lab is already up (host bridge {topo.ROOT_BRIDGE} exists, no state file "
            f"{state_path()}): run `mayu lab down` first"
        )
    for namespace in (topo.NAMESPACE, topo.SITE_NAMESPACE):
        if netns.exists(namespace):
            raise ConfigError(
                f"a lab is already up (namespace {namespace} exists, no state file "
                f"{state_path()}): run `mayu lab down` first"
            )


def _check_libvirt_vms(opts: UpOptions) -> None:
    if opts.bmc == "redfish" and shutil.which(SUSHY_EMULATOR) is None:
        raise ConfigError("sushy-emulator not found: pip install sushy-tools")
    if opts.bmc == "ipmi" and shutil.which(VBMCD) is None:
        raise ConfigError("vbmcd not found: pip install virtualbmc")
    tenants.check_libvirt()


def _check_host(with_tenants: bool = False) -> None:
    if os.geteuid() != 0:
        raise ConfigError("mayu lab needs root (network namespaces, taps, dnsmasq)")
    for tool, package in (
        ("ip", "iproute2"),
        (vm.QEMU, "qemu-system-x86"),
        ("dnsmasq", "dnsmasq-base"),
    ):
        if shutil.which(tool) is None:
            raise ConfigError(f"{tool} not found: install {package}")
    _refuse_if_up()
    if with_tenants:
        tenants.check_libvirt()


class _Terminated(Exception):
    pass


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


class Lab:
    """One `mayu lab up` run."""

    def __init__(self, opts: UpOptions, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.machines = topo.lab_machines(opts.machines)
        self.tenants = topo.lab_tenants(opts.tenants)
        self.agent: subprocess.Popen[bytes] | None = None
        self.watch_tenants = False  # level 2 started
        self.work = work_dir(opts.data_dir)
        self.state: LabState | None = None
        self.fleet: Fleet | None = None
        self.serve: subprocess.Popen[bytes] | None = None
        self.client: LabClient | None = None
        self.ns: netns.InNamespace | None = None
        self.progress = display.Progress(
            console, f"level 2: {len(self.tenants)} tenant(s) on {topo.AGENT_HOST}"
        )

    # -- start ------------------------------------------------------------------------------

    def prepare(self) -> tuple[Path, LabImage]:
        """Write the server config, forget earlier runs' machines, build the image; returns
        (config, image)."""
        self.work.mkdir(parents=True, exist_ok=True)
        config_path = self.work / "serve.yaml"
        config = serve_config(
            self.machines,
            self.opts.dhcp,
            self.opts.data_dir,
            self.opts.config_file,
            disk_install=self.opts.libvirt,
            approve_by_config=self.opts.approve_by_config,
        )
        atomic_write(config_path, yaml.safe_dump(config), 0o600)
        settings = load_settings(config_path)  # fails here, with one line, on a bad file
        forgotten = forget_lab_machines(self.opts.data_dir)
        if forgotten:
            self.console.print(f"forgot {forgotten} lab machine record(s) of an earlier run")
        image = build_lab_image(settings.assets_root / "lab")
        self.console.print(f"lab image {image.version} in {image.kernel.parent}")
        return config_path, image

    def start_network(self, accel: str) -> None:
        token = secrets.token_urlsafe(32)
        self.state = LabState(
            namespace=topo.NAMESPACE,
            data_dir=str(self.opts.data_dir),
            url=topo.SERVER_URL,
            token=token,
            accel=accel,
            up_pid=os.getpid(),
            serve_log=str(self.work / "serve.log"),
            created=time.time(),  # the run's start: only later events count (`watch`)
            dhcp=self.opts.dhcp,
            firmware=self.opts.firmware,
            vm_driver=self.opts.vms,
            bmc_protocol=self.opts.bmc,
        )
        self.state.save()  # before anything exists: `down` works from here on
        netns.create_network()
        if self.opts.libvirt:
            netns.link_host_bridge()
        else:
            for m in self.machines:
                netns.add_tap(m.tap)
        if self.opts.dhcp == "proxy":
            netns.create_site()
        self.ns = netns.InNamespace(topo.NAMESPACE)
        self.client = LabClient(self.ns, topo.SERVER_URL, token)
        self.fleet = (
            LibvirtFleet(self.state, self.work, self.client)
            if self.opts.libvirt
            else Fleet(self.state, self.work)
        )

    def start_site_dhcp(self) -> None:
        """`--dhcp proxy`: the site's plain dnsmasq in its namespace; detached (it outlives
        `up`, like the server) and tracked by pid in the state file for `down`."""
        assert self.state is not None
        conf = self.work / "site-dnsmasq.conf"
        leases = self.work / "site.leases"
        log_path = self.work / "site-dnsmasq.log"
        leases.unlink(missing_ok=True)
        atomic_write(conf, site_dnsmasq_conf(self.machines, leases), 0o644)
        argv = ["dnsmasq", "--keep-in-foreground", "--log-facility=-", f"--conf-file={conf}"]
        proc = spawn(argv, topo.SITE_NAMESPACE, log_path)
        self.state.site_dhcp_pid = proc.pid
        self.state.site_dhcp_log = str(log_path)
        self.state.save()
        deadline = time.monotonic() + 10.0
        while "started, version" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() >= deadline:
                raise ConfigError(f"the site's dnsmasq did not start: {log_tail(log_path)}")
            time.sleep(0.1)
        self.console.print(
            f"site DHCP server (dnsmasq, pid {proc.pid}) at {topo.SITE_IP} in "
            f"{topo.SITE_NAMESPACE} (leases {leases}, log {log_path})"
        )

    def start_server(self, config_path: Path) -> None:
        assert self.state is not None and self.client is not None
        log_path = Path(self.state.serve_log)
        argv = _serve_argv(config_path, self.opts.data_dir, self.opts.dhcp)
        self.serve = spawn(argv, topo.NAMESPACE, log_path, child_env(self.state.token))
        self.state.serve_pid = self.serve.pid
        self.state.save()
        deadline = time.monotonic() + SERVE_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                raise ConfigError(
                    f"mayu serve exited {self.serve.returncode}: {log_tail(log_path)}"
                )
            if self.client.healthy():
                self.console.print(
                    f"mayu serve up at {topo.SERVER_URL} in {topo.NAMESPACE} (log {log_path})"
                )
                return
            time.sleep(0.2)
        raise ConfigError(f"mayu serve did not answer /healthz within {SERVE_START_TIMEOUT:.0f} s")

    def boot_machines(self) -> None:
        assert self.fleet is not None
        if isinstance(self.fleet, LibvirtFleet):
            self.fleet.start(self.machines)
            self.console.print(
                f"{len(self.machines)} libvirt domain(s) on {topo.ROOT_BRIDGE}, "
                f"{self.opts.bmc} BMCs on {topo.BMC_IP} in {topo.NAMESPACE} (pid "
                f"{self.fleet.state.bmc_pid}); powering on through the BMCs"
            )
        for m in self.machines:
            self.fleet.boot(m)

    # -- watch ------------------------------------------------------------------------------

    def _reboot(self, snapshot: Snapshot) -> None:
        assert self.fleet is not None
        by_index = {m.index: m for m in self.machines}
        for record in to_reboot(self.fleet.state.vms, snapshot.installed):
            state = snapshot.machines.get(record.mac, {}).get("state")
            self.console.print(
                f"lab{record.index}: qemu exited ({record.exit_code}) in state "
                f"{state or 'unknown'}; booting again (boot {record.boots + 1})"
            )
            self.fleet.boot(by_index[record.index])

    def watch(self, deadline: float) -> Outcome:
        """Poll until the stage ends: every machine installed during this run, and once
        level 2 started also every tenant Ready; or the agent exited; or the deadline."""
        assert self.client is not None and self.state is not None and self.fleet is not None
        done = done_states(self.opts.vms)
        watcher = Watcher(self.client, since=self.state.created, done_states=done)
        names = [t.name for t in self.tenants]
        snapshot = EMPTY
        while True:
            qemu = self.fleet.reap()  # first: a VM seen exited is judged on fresh states
            try:
                snapshot = watcher.poll(self.watch_tenants)
            except Exception as exc:  # noqa: BLE001 - the server may be restarting
                log.warning("admin API not answering: %s", exc)
            self.progress.show(self.state.vms, snapshot, qemu, names)
            outcome = judge(
                snapshot,
                self.machines,
                names if self.watch_tenants else None,
                agent_exited=self.agent is not None and self.agent.poll() is not None,
                timed_out=time.monotonic() >= deadline,
            )
            if outcome is not None:
                return outcome
            self._reboot(snapshot)
            time.sleep(self.opts.poll_interval)

    def start_tenants(self, image: LabImage) -> None:
        """Level 2: base image, agent inside the namespace, the demo tenants."""
        assert self.client is not None and self.state is not None
        base = tenants.install_image(self.opts.data_dir, image)
        self.console.print(f"tenant base image {base.name} {base.version} in {base.kernel.parent}")
        # Before the agent starts, so it never builds VMs for a previous up's records.
        for name in tenants.forget_stale_tenants(self.client):
            self.console.print(f"forgot tenant {name} of a previous lab")
        agent_log = self.work / "agent.log"
        self.agent = tenants.start_agent(
            self.opts.data_dir, self.state.token, self.state.accel, agent_log
        )
        self.state.agent_pid = self.agent.pid
        self.state.agent_log = str(agent_log)
        self.state.tenants = [t.name for t in self.tenants]
        self.state.save()
        tenants.create_tenants(self.client, self.tenants)
        self.watch_tenants = True
        self.console.print(
            f"mayu agent (host {topo.AGENT_HOST}, pid {self.agent.pid}, log {agent_log}); "
            f"created tenant(s) {', '.join(t.name for t in self.tenants)}"
        )

    def set_phase(self, phase: Phase) -> None:
        assert self.state is not None
        self.state.phase = phase
        self.state.save()

    def close(self) -> None:
        self.progress.stop()
        if isinstance(self.fleet, LibvirtFleet):
            self.fleet.close()
        if self.ns is not None:
            self.ns.close()


def _report(lab: Lab, outcome: Outcome) -> int:
    """Say how `up` ended; the exit code."""
    assert lab.state is not None
    console, opts = lab.console, lab.opts
    if outcome is Outcome.DONE:
        if lab.tenants:
            console.print(f"all {len(lab.tenants)} tenant(s) Ready")
        console.print(
            "`mayu lab status` shows the lab, `mayu lab ctl list` (or `mayu lab ctl "
            "tenants show demo-1`) runs mayuctl against it, `mayu lab down` ends it"
        )
        return 0
    if outcome is Outcome.AGENT_EXITED:
        console.print(
            f"mayu agent exited ({lab.agent.returncode if lab.agent else '?'}): "
            f"{log_tail(Path(lab.state.agent_log))}. The lab stays up for inspection; "
            "`mayu lab down` ends it."
        )
        return 1
    what = "every tenant is Ready" if lab.watch_tenants else "every machine installed"
    if not lab.watch_tenants and opts.libvirt:
        what = "every machine running from its disk"
    logs = f"consoles {lab.work}/*.console.log, server log {lab.state.serve_log}"
    if lab.watch_tenants:
        logs += f", agent log {lab.state.agent_log}"
    console.print(
        f"timeout after {opts.timeout:.0f} s: not {what}. Logs: {logs}. "
        "The lab stays up for inspection; `mayu lab down` ends it."
    )
    return 1


def lab_up(opts: UpOptions, console: Console | None = None) -> int:
    """Bring the lab up and boot every machine; the exit code for the CLI."""
    console = console or Console()
    _check_host(with_tenants=opts.tenants > 0)
    if opts.libvirt:
        _check_libvirt_vms(opts)
    lab = Lab(opts, console)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        config_path, image = lab.prepare()
        accel = vm.choose_accel(opts.accel, image.kernel, image.initrd)
        console.print(f"accelerator: {accel}")
        lab.start_network(accel)
        if opts.dhcp == "proxy":
            lab.start_site_dhcp()
        lab.start_server(config_path)
        lab.set_phase(Phase.BOOTING)
        deadline = time.monotonic() + opts.timeout
        lab.boot_machines()
        outcome = lab.watch(deadline)
        if outcome is Outcome.DONE:
            done = "running from disk" if opts.libvirt else "installed"
            console.print(f"all {len(lab.machines)} machine(s) {done}")
            if lab.tenants:
                lab.set_phase(Phase.TENANTS)
                lab.start_tenants(image)
                outcome = lab.watch(deadline)
        lab.progress.stop()
        lab.set_phase(outcome.phase)
        return _report(lab, outcome)
    except (KeyboardInterrupt, _Terminated):
        console.print("interrupted: tearing the lab down")
        lab.close()
        for line in lab_down(data_dir=opts.data_dir):
            console.print(f"  {line}")
        return 130
    except BaseException:
        # A failed start leaves nothing half-made behind.
        lab.close()
        lab_down(data_dir=opts.data_dir)
        raise
    finally:
        lab.close()
        signal.signal(signal.SIGTERM, previous)
