"""`mayu lab up` and `mayu lab status`.

up: build the lab image into the asset root, create the namespace with its bridge, start
`mayu serve --dhcp full` inside it on 10.77.0.1:8080, one tap and one qemu per machine, then
poll the admin API (from a thread inside the namespace) until every machine is `installed`
or the timeout passes. A VM that exits before its machine is installed (iPXE gave up, a
guest crash) is booted again, up to MAX_BOOTS times. Ctrl-C or SIGTERM tears everything down.
The server and dnsmasq stay up after success, for `status` and for more boots.
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
from mayu_py.images.lab import build_lab_image
from mayu_py.lab import display, netns, vm
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.state import LabState, VmRecord, state_path
from mayu_py.lab.teardown import lab_down
from mayu_py.server.provisioning import assets_root

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("/var/lib/mayu-lab")
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
    lab = {
        "data_dir": str(opts.data_dir),
        "server": {"listen": f"{topo.SERVER_IP}:{topo.PORT}"},
        "dhcp": {
            "mode": "full",
            "interface": topo.BRIDGE,
            "server_ip": topo.SERVER_IP,
            "subnet": topo.SUBNET,
            "range_start": topo.RANGE_START,
            "range_end": topo.RANGE_END,
            "reservations": {m.mac: m.ip for m in machines},
        },
    }
    return _deep_merge(user, lab)


def _serve_argv(config_path: Path, data_dir: Path) -> list[str]:
    return [
        sys.executable, "-c", "from mayu_py.cli.mayu import main; main()",
        "serve", "--config", str(config_path), "--data-dir", str(data_dir),
        "--listen", f"{topo.SERVER_IP}:{topo.PORT}", "--dhcp", "full",
    ]  # fmt: skip


def _check_host() -> None:
    if os.geteuid() != 0:
        raise ConfigError("mayu lab needs root (network namespaces, taps, dnsmasq)")
    for tool, package in (
        ("ip", "iproute2"),
        (vm.QEMU, "qemu-system-x86"),
        ("dnsmasq", "dnsmasq-base"),
    ):
        if shutil.which(tool) is None:
            raise ConfigError(f"{tool} not found: install {package}")
    if netns.exists() or LabState.load() is not None:
        raise ConfigError(f"a lab is already up (namespace {topo.NAMESPACE}): run `mayu lab down`")


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
        self.work = opts.data_dir / "lab"
        self.state: LabState | None = None
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.serve: subprocess.Popen[bytes] | None = None
        self.client: LabClient | None = None
        self.ns: netns.InNamespace | None = None
        self._last_lines: dict[str, int] = {}

    # -- start ------------------------------------------------------------------------------

    def prepare(self) -> tuple[Path, Path, Path]:
        """Write the server config, build the image; returns (config, kernel, initrd)."""
        self.work.mkdir(parents=True, exist_ok=True)
        config_path = self.work / "serve.yaml"
        config_path.write_text(yaml.safe_dump(serve_config(self.opts, self.machines)))
        settings = load_settings(config_path)  # fails here, with one line, on a bad file
        image = build_lab_image(assets_root(settings) / "lab")
        self.console.print(f"lab image {image.version} in {image.kernel.parent}")
        return config_path, image.kernel, image.initrd

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
        )
        self.state.save()  # before anything exists: `down` works from here on
        netns.create_network()
        for m in self.machines:
            netns.add_tap(m.tap)
        self.ns = netns.InNamespace(topo.NAMESPACE)
        self.client = LabClient(self.ns, topo.SERVER_URL, token)

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
                    *_serve_argv(config_path, self.opts.data_dir),
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
        argv = vm.qemu_argv(m, self.state.accel, console_log)
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

    def _show(
        self, live: Live | None, machines: dict[str, dict[str, Any]], qemu: dict[int, str]
    ) -> None:
        assert self.state is not None
        items = display.rows(self.state.vms, machines, qemu)
        if live is not None:
            live.update(display.table(f"mayu lab: {len(items)} machine(s)", items))
            return
        for r in items:
            text = display.line(r)
            key = hash((r.qemu, r.state, r.ip, r.boots))
            if self._last_lines.get(r.mac) != key:
                self._last_lines[r.mac] = key
                self.console.print(text, highlight=False)

    def watch(self) -> bool:
        """Poll until every machine is installed (True) or the timeout passes (False)."""
        assert self.client is not None and self.state is not None
        deadline = time.monotonic() + self.opts.timeout
        live = (
            Live(console=self.console, refresh_per_second=4) if self.console.is_terminal else None
        )
        machines: dict[str, dict[str, Any]] = {}
        if live is not None:
            live.start()
        try:
            while True:
                qemu = self._qemu_status()  # first: a VM seen exited is judged on fresh states
                try:
                    machines = self.client.machines()
                except Exception as exc:  # noqa: BLE001 - the server may be restarting
                    log.warning("admin API not answering: %s", exc)
                self._show(live, machines, qemu)
                if all(machines.get(m.mac, {}).get("state") in DONE_STATES for m in self.machines):
                    return True
                if time.monotonic() >= deadline:
                    return False
                self._reboot_stragglers(machines)
                time.sleep(self.opts.poll_interval)
        finally:
            if live is not None:
                live.stop()

    def close(self) -> None:
        if self.ns is not None:
            self.ns.close()


def lab_up(opts: UpOptions, console: Console | None = None) -> int:
    """Bring the lab up and boot every machine; the exit code for the CLI."""
    console = console or Console()
    _check_host()
    lab = Lab(opts, console)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        config_path, kernel, initrd = lab.prepare()
        accel = vm.choose_accel(opts.accel, kernel, initrd)
        console.print(f"accelerator: {accel}")
        lab.start_network(accel)
        lab.start_server(config_path)
        assert lab.state is not None
        lab.state.phase = "booting"
        lab.state.save()
        for m in lab.machines:
            lab.boot_vm(m)
        ok = lab.watch()
        lab.state.phase = "ready" if ok else "timeout"
        lab.state.save()
        if ok:
            console.print(
                f"all {len(lab.machines)} machine(s) installed; `mayu lab down` ends the lab"
            )
            return 0
        console.print(
            f"timeout after {opts.timeout:.0f} s: not every machine is installed. Consoles: "
            f"{lab.work}/*.console.log, server log {lab.state.serve_log}. "
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
    with netns.InNamespace(state.namespace) as ns:
        try:
            machines = LabClient(ns, state.url, state.token).machines()
        except Exception as exc:  # noqa: BLE001
            console.print(f"server at {state.url} not answering: {exc}")
    qemu = {
        vm_rec.index: ("running" if vm_rec.pid and _is_qemu(vm_rec.pid) else "exited")
        for vm_rec in state.vms
    }
    items = display.rows(state.vms, machines, qemu)
    console.print(
        f"lab phase {state.phase}, server {state.url} (pid {state.serve_pid}), accel {state.accel}"
    )
    if console.is_terminal:
        console.print(display.table("mayu lab", items))
    else:
        for r in items:
            console.print(display.line(r), highlight=False)
    return 0


def _is_qemu(pid: int) -> bool:
    try:
        return "qemu" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return False
