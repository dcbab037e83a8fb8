"""`mayu lab up` and `mayu lab status`.

up: build the lab image into the asset root, create the namespace with its bridge, start
`mayu serve --dhcp full` inside it on 10.77.0.1:8080 (`--dhcp proxy`: first a second
namespace with the site's own DHCP server, a plain dnsmasq on a veth into the bridge, and
`mayu serve --dhcp proxy`, which only adds boot information), one tap and one qemu per machine, then
poll the admin API (from a thread inside the namespace) until every machine is `installed`
or the timeout passes. A VM that exits before its machine is installed (iPXE gave up, a
guest crash) is booted again, up to MAX_BOOTS times. Then level 2: the lab image becomes the
tenant base image `lab`, a `mayu agent` starts inside the namespace, the demo tenants are
created through the admin API, and up waits until every tenant is Ready. Ctrl-C or SIGTERM
tears everything down. Server, dnsmasq, agent and tenant VMs stay up after success, for
`status` and for more boots.
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
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live

from mayu_py.config import load_settings
from mayu_py.errors import ConfigError
from mayu_py.images.lab import LabImage, build_lab_image
from mayu_py.lab import display, netns, tenants, vm
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.state import DEFAULT_DATA_DIR, LabState, VmRecord, state_path
from mayu_py.lab.teardown import lab_down
from mayu_py.server.provisioning import assets_root

log = logging.getLogger(__name__)

MAX_BOOTS = 4
SERVE_START_TIMEOUT = 60.0
DONE_STATES = ("installed", "running")


@dataclass(frozen=True)
class UpOptions:
    machines: int = 3
    accel: str = "auto"
    timeout: float = 300.0
    data_dir: Path = DEFAULT_DATA_DIR
    config_file: Path | None = None
    poll_interval: float = 1.0
    tenants: int = 1
    firmware: str = "bios"  # or uefi: OVMF's own PXE client, TFTP ipxe.efi, then iPXE
    dhcp: str = "full"  # or proxy: the site's DHCP server assigns addresses, we add boot info


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def serve_config(opts: UpOptions, machines: list[topo.LabMachine]) -> dict[str, Any]:
    """The server's configuration: the user's file (if any) under the lab's network facts."""
    user: dict[str, Any] = {}
    if opts.config_file:
        loaded = yaml.safe_load(Path(opts.config_file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {opts.config_file}: top level must be a mapping")
        user = loaded
    dhcp: dict[str, Any] = {
        "mode": opts.dhcp,
        "interface": topo.BRIDGE,
        "server_ip": topo.SERVER_IP,
        "subnet": topo.SUBNET,
    }
    if opts.dhcp == "full":
        dhcp["range_start"] = topo.RANGE_START
        dhcp["range_end"] = topo.RANGE_END
        dhcp["reservations"] = {m.mac: m.ip for m in machines}
    elif isinstance(user.get("dhcp"), dict):
        # proxy: addresses are the site server's business; drop any the user file sets.
        user["dhcp"] = {
            k: v
            for k, v in user["dhcp"].items()
            if k not in ("range_start", "range_end", "reservations")
        }
    lab = {
        "data_dir": str(opts.data_dir),
        "server": {"listen": f"{topo.SERVER_IP}:{topo.PORT}"},
        "dhcp": dhcp,
    }
    return _deep_merge(user, lab)


def site_dnsmasq_conf(machines: list[topo.LabMachine], lease_file: Path) -> str:
    """The site's ordinary DHCP server for `--dhcp proxy`: addresses and the machines'
    reservations, no boot options at all (RECIPES.md 4: `no-ping` here too, else boot storms
    time out; router advertisements so iPXE does not wait ~13 s for IPv6)."""
    lines = [
        "# the lab site's own DHCP server (mayu lab up --dhcp proxy); generated, do not edit",
        "port=0",
        f"interface={topo.SITE_VETH}",
        "bind-interfaces",
        "except-interface=lo",
        "pid-file=",
        "dhcp-authoritative",
        "no-ping",
        "log-dhcp",
        f"dhcp-leasefile={lease_file}",
        f"dhcp-range={topo.RANGE_START},{topo.RANGE_END},255.255.255.0,1h",
        *(f"dhcp-host={m.mac},{m.ip}" for m in machines),
        "enable-ra",
        f"dhcp-range=::,constructor:{topo.SITE_VETH},ra-only",
        f"ra-param={topo.SITE_VETH},10,0",
    ]
    return "\n".join(lines) + "\n"


def _serve_argv(config_path: Path, data_dir: Path, dhcp: str = "full") -> list[str]:
    return [
        sys.executable, "-c", "from mayu_py.cli.mayu import main; main()",
        "serve", "--config", str(config_path), "--data-dir", str(data_dir),
        "--listen", f"{topo.SERVER_IP}:{topo.PORT}", "--dhcp", dhcp,
    ]  # fmt: skip


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
    if netns.exists() or netns.exists(topo.SITE_NAMESPACE) or LabState.load() is not None:
        raise ConfigError(f"a lab is already up (namespace {topo.NAMESPACE}): run `mayu lab down`")
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
        self.tenant_docs: list[dict[str, Any]] | None = None  # None: level 2 not started
        self.live: Live | None = None
        self.work = opts.data_dir / "lab"
        self.state: LabState | None = None
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.serve: subprocess.Popen[bytes] | None = None
        self.client: LabClient | None = None
        self.ns: netns.InNamespace | None = None
        self._last_lines: dict[str, int] = {}

    # -- start ------------------------------------------------------------------------------

    def prepare(self) -> tuple[Path, LabImage]:
        """Write the server config, build the image; returns (config, image)."""
        self.work.mkdir(parents=True, exist_ok=True)
        config_path = self.work / "serve.yaml"
        config_path.write_text(yaml.safe_dump(serve_config(self.opts, self.machines)))
        settings = load_settings(config_path)  # fails here, with one line, on a bad file
        image = build_lab_image(assets_root(settings) / "lab")
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
            created=time.time(),
            dhcp=self.opts.dhcp,
        )
        self.state.save()  # before anything exists: `down` works from here on
        netns.create_network()
        for m in self.machines:
            netns.add_tap(m.tap)
        if self.opts.dhcp == "proxy":
            netns.create_site()
        self.ns = netns.InNamespace(topo.NAMESPACE)
        self.client = LabClient(self.ns, topo.SERVER_URL, token)

    def start_site_dhcp(self) -> None:
        """`--dhcp proxy`: the site's plain dnsmasq in its namespace; detached (it outlives
        `up`, like the server) and tracked by pid in the state file for `down`."""
        assert self.state is not None
        conf = self.work / "site-dnsmasq.conf"
        leases = self.work / "site.leases"
        log_path = self.work / "site-dnsmasq.log"
        leases.unlink(missing_ok=True)
        conf.write_text(site_dnsmasq_conf(self.machines, leases))
        argv = ["ip", "netns", "exec", topo.SITE_NAMESPACE, "dnsmasq", "--keep-in-foreground",
                "--log-facility=-", f"--conf-file={conf}"]  # fmt: skip
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # ip netns exec execs: the pid is dnsmasq's
        self.state.site_dhcp_pid = proc.pid
        self.state.site_dhcp_log = str(log_path)
        self.state.save()
        deadline = time.monotonic() + 10.0
        while "started, version" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() >= deadline:
                raise ConfigError(f"the site's dnsmasq did not start: {_tail(log_path)}")
            time.sleep(0.1)
        self.console.print(
            f"site DHCP server (dnsmasq, pid {proc.pid}) at {topo.SITE_IP} in "
            f"{topo.SITE_NAMESPACE} (leases {leases}, log {log_path})"
        )

    def start_server(self, config_path: Path) -> None:
        assert self.state is not None and self.client is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAYU_")}
        env["MAYU_TOKEN"] = self.state.token
        log_path = Path(self.state.serve_log)
        with open(log_path, "ab") as out:
            self.serve = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    topo.NAMESPACE,
                    *_serve_argv(config_path, self.opts.data_dir, self.opts.dhcp),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.state.serve_pid = self.serve.pid
        self.state.save()
        deadline = time.monotonic() + SERVE_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise ConfigError(
                    f"mayu serve exited {self.serve.returncode}: {' | '.join(tail) or 'no output'}"
                )
            if self.client.healthy():
                self.console.print(
                    f"mayu serve up at {topo.SERVER_URL} in {topo.NAMESPACE} (log {log_path})"
                )
                return
            time.sleep(0.2)
        raise ConfigError(f"mayu serve did not answer /healthz within {SERVE_START_TIMEOUT:.0f} s")

    def _record(self, m: topo.LabMachine) -> VmRecord:
        assert self.state is not None
        for record in self.state.vms:
            if record.index == m.index:
                return record
        record = VmRecord(
            index=m.index,
            mac=m.mac,
            uuid=m.uuid,
            serial=m.serial,
            ip=m.ip,
            tap=m.tap,
            log=str(self.work / f"{m.name}.console.log"),
        )
        self.state.vms.append(record)
        return record

    def boot_vm(self, m: topo.LabMachine) -> None:
        assert self.state is not None
        record = self._record(m)
        console_log = Path(record.log)
        if record.boots and console_log.exists():
            console_log.replace(console_log.with_name(f"{console_log.name}.{record.boots}"))
        elif console_log.exists():
            console_log.unlink()
        argv = vm.qemu_argv(m, self.state.accel, console_log, self.opts.firmware)
        proc = vm.start_in_namespace(argv, topo.NAMESPACE, self.work / f"{m.name}.qemu.log")
        self.procs[m.index] = proc
        record.pid = proc.pid
        record.started = time.time()
        record.first_started = record.first_started or record.started
        record.boots += 1
        record.exited = record.exit_code = None
        self.state.save()

    # -- watch ------------------------------------------------------------------------------

    def _qemu_status(self) -> dict[int, str]:
        """Reap exited VMs; returns index -> `running` / `exited N`."""
        assert self.state is not None
        status = {}
        for record in self.state.vms:
            proc = self.procs.get(record.index)
            if proc is None:
                continue
            code = proc.poll()
            if code is not None and record.exited is None:
                record.exited, record.exit_code = time.time(), code
                self.state.save()
            status[record.index] = "running" if code is None else f"exited {code}"
        return status

    def _reboot_stragglers(self, machines: dict[str, dict[str, Any]]) -> None:
        assert self.state is not None
        for m in self.machines:
            record = self._record(m)
            state = machines.get(m.mac, {}).get("state")
            if record.exited is None or state in DONE_STATES:
                continue
            if record.boots >= MAX_BOOTS:
                continue
            self.console.print(
                f"{m.name}: qemu exited ({record.exit_code}) in state {state or 'unknown'}; "
                f"booting again (boot {record.boots + 1})"
            )
            self.boot_vm(m)

    def _show(self, machines: dict[str, dict[str, Any]], qemu: dict[int, str]) -> None:
        assert self.state is not None
        items = display.rows(self.state.vms, machines, qemu)
        names = [t.name for t in self.tenants]
        nodes = display.tenant_rows(self.tenant_docs, names) if self.tenant_docs is not None else []
        if self.live is not None:
            tenant_table = (
                display.tenant_table(f"level 2: {len(names)} tenant(s) on {topo.AGENT_HOST}", nodes)
                if self.tenant_docs is not None
                else None
            )
            machine_table = display.table(f"mayu lab: {len(items)} machine(s)", items)
            self.live.update(display.both(machine_table, tenant_table))
            return
        lines = [(r.mac, display.line(r)) for r in items]
        lines += [(f"{n.tenant}/{n.node}", display.tenant_line(n)) for n in nodes]
        for key, text in lines:
            if self._last_lines.get(key) != hash(text):
                self._last_lines[key] = hash(text)
                self.console.print(text, highlight=False, soft_wrap=True)

    def _tenants_ready(self) -> bool:
        phases = {
            t["metadata"]["name"]: t.get("status", {}).get("phase") for t in self.tenant_docs or []
        }
        return all(phases.get(t.name) == "Ready" for t in self.tenants)

    def watch(self, deadline: float) -> str:
        """Poll until the stage is done: every machine installed, and once level 2 started
        also every tenant Ready. Returns `done`, `timeout` or `agent exited`."""
        assert self.client is not None and self.state is not None
        if self.live is None and self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4)
            self.live.start()
        machines: dict[str, dict[str, Any]] = {}
        while True:
            qemu = self._qemu_status()  # first: a VM seen exited is judged on fresh states
            try:
                machines = self.client.machines()
                if self.tenant_docs is not None:
                    self.tenant_docs = self.client.tenants()
            except Exception as exc:  # noqa: BLE001 - the server may be restarting
                log.warning("admin API not answering: %s", exc)
            self._show(machines, qemu)
            installed = all(
                machines.get(m.mac, {}).get("state") in DONE_STATES for m in self.machines
            )
            if installed and (self.tenant_docs is None or self._tenants_ready()):
                return "done"
            if self.agent is not None and self.agent.poll() is not None:
                return "agent exited"
            if time.monotonic() >= deadline:
                return "timeout"
            self._reboot_stragglers(machines)
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
        self.tenant_docs = []
        self.console.print(
            f"mayu agent (host {topo.AGENT_HOST}, pid {self.agent.pid}, log {agent_log}); "
            f"created tenant(s) {', '.join(t.name for t in self.tenants)}"
        )

    def stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def close(self) -> None:
        self.stop_live()
        if self.ns is not None:
            self.ns.close()


def lab_up(opts: UpOptions, console: Console | None = None) -> int:
    """Bring the lab up and boot every machine; the exit code for the CLI."""
    console = console or Console()
    _check_host(with_tenants=opts.tenants > 0)
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
        assert lab.state is not None
        lab.state.phase = "booting"
        lab.state.save()
        deadline = time.monotonic() + opts.timeout
        for m in lab.machines:
            lab.boot_vm(m)
        outcome = lab.watch(deadline)
        if outcome == "done":
            console.print(f"all {len(lab.machines)} machine(s) installed")
            if lab.tenants:
                lab.state.phase = "tenants"
                lab.state.save()
                lab.start_tenants(image)
                outcome = lab.watch(deadline)
        lab.stop_live()
        lab.state.phase = "ready" if outcome == "done" else outcome.replace(" ", "-")
        lab.state.save()
        if outcome == "done":
            if lab.tenants:
                console.print(f"all {len(lab.tenants)} tenant(s) Ready")
            console.print(
                "`mayu lab status` shows the lab, `mayu lab ctl list` (or `mayu lab ctl "
                "tenants show demo-1`) runs mayuctl against it, `mayu lab down` ends it"
            )
            return 0
        if outcome == "agent exited":
            console.print(
                f"mayu agent exited ({lab.agent.returncode if lab.agent else '?'}): "
                f"{_tail(Path(lab.state.agent_log))}. The lab stays up for inspection; "
                "`mayu lab down` ends it."
            )
            return 1
        what = "every machine is installed" if lab.tenant_docs is None else "every tenant is Ready"
        logs = f"consoles {lab.work}/*.console.log, server log {lab.state.serve_log}"
        if lab.tenant_docs is not None:
            logs += f", agent log {lab.state.agent_log}"
        console.print(
            f"timeout after {opts.timeout:.0f} s: not {what}. Logs: {logs}. "
            "The lab stays up for inspection; `mayu lab down` ends it."
        )
        return 1
    except (KeyboardInterrupt, _Terminated):
        console.print("interrupted: tearing the lab down")
        lab.close()
        for line in lab_down():
            console.print(f"  {line}")
        return 130
    except BaseException:
        # A failed start leaves nothing half-made behind.
        lab.close()
        lab_down()
        raise
    finally:
        lab.close()
        signal.signal(signal.SIGTERM, previous)


def lab_status(console: Console | None = None) -> int:
    """Print the lab's machines and states; 1 when no lab is up."""
    console = console or Console()
    state = LabState.load()
    if state is None or not netns.exists(state.namespace):
        console.print(f"no lab is up (no state file {state_path()} or namespace {topo.NAMESPACE})")
        return 1
    machines: dict[str, dict[str, Any]] = {}
    tenant_docs: list[dict[str, Any]] = []
    with netns.InNamespace(state.namespace) as ns:
        try:
            client = LabClient(ns, state.url, state.token)
            machines = client.machines()
            if state.tenants:
                tenant_docs = client.tenants()
        except Exception as exc:  # noqa: BLE001
            console.print(f"server at {state.url} not answering: {exc}")
    qemu = {
        vm_rec.index: ("running" if vm_rec.pid and _is_qemu(vm_rec.pid) else "exited")
        for vm_rec in state.vms
    }
    items = display.rows(state.vms, machines, qemu)
    console.print(
        f"lab phase {state.phase}, server {state.url} (pid {state.serve_pid}), accel {state.accel}"
        f", dhcp {state.dhcp}"
    )
    if state.dhcp == "proxy":
        alive = "running" if "dnsmasq" in _cmdline(state.site_dhcp_pid or 0) else "not running"
        console.print(
            f"site DHCP server {alive} (pid {state.site_dhcp_pid}, {topo.SITE_IP} in "
            f"{topo.SITE_NAMESPACE}, log {state.site_dhcp_log})",
            soft_wrap=True,
        )
    nodes = display.tenant_rows(tenant_docs, state.tenants)
    if state.agent_pid:
        alive = "running" if "agent" in _cmdline(state.agent_pid) else "not running"
        console.print(
            f"mayu agent {alive} (pid {state.agent_pid}, host {topo.AGENT_HOST}, "
            f"log {state.agent_log})",
            soft_wrap=True,
        )
    if console.is_terminal:
        console.print(display.table("mayu lab", items))
        if state.tenants:
            console.print(display.tenant_table("tenants", nodes))
    else:
        for r in items:
            console.print(display.line(r), highlight=False, soft_wrap=True)
        for n in nodes:
            console.print(display.tenant_line(n), highlight=False, soft_wrap=True)
    return 0


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return f"no log at {path}"
    return " | ".join(text) or "no output"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def _is_qemu(pid: int) -> bool:
    return "qemu" in _cmdline(pid)
