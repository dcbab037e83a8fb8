"""`mayu lab up|status|restart|down|ctl`: PXE-boot qemu VMs from a real server inside a
network namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from mayu_py.command import in_namespace
from mayu_py.lab.restart import lab_restart
from mayu_py.lab.runner import UpOptions, lab_up
from mayu_py.lab.state import DEFAULT_DATA_DIR, LabState
from mayu_py.lab.status import lab_status
from mayu_py.lab.teardown import lab_down
from mayu_py.lab.topology import BMC_PROTOCOLS, MAX_TENANTS, VM_DRIVERS

DATA_DIR = click.Path(file_okay=False, path_type=Path)


@click.group("lab")
def lab() -> None:
    """A lab rack: VMs boot through real DHCP, iPXE, HTTP and Ignition (namespace mayu-lab)."""


@lab.command("up")
@click.option("--machines", default=3, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="auto boots the lab kernel under KVM once and falls back to TCG if it fails.",
)
@click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    help="Seconds until every machine is installed and every tenant Ready.",
)
@click.option(
    "--data-dir",
    type=DATA_DIR,
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="The lab server's state directory (kept across runs; see `mayu lab status`).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Extra server settings (YAML); the lab's network settings win.",
)
@click.option(
    "--tenants",
    default=1,
    show_default=True,
    type=click.IntRange(0, MAX_TENANTS),
    help="Demo tenant clusters (demo-N, 1 master + 1 worker) on the lab's agent; 0: none.",
)
@click.option(
    "--firmware",
    type=click.Choice(["bios", "uefi"]),
    default="bios",
    show_default=True,
    help="uefi: OVMF (slower under TCG); --vms qemu: its PXE loads ipxe.efi over TFTP, "
    "--vms libvirt: the NIC's iPXE ROM boots the network.",
)
@click.option(
    "--dhcp",
    type=click.Choice(["full", "proxy"]),
    default="full",
    show_default=True,
    help="proxy: a site DHCP server (namespace mayu-lab-site) assigns addresses and "
    "`mayu serve --dhcp proxy` adds only boot information.",
)
@click.option(
    "--vms",
    type=click.Choice(list(VM_DRIVERS)),
    default="libvirt",
    show_default=True,
    help="libvirt: the machines are libvirt domains, each with a BMC that powers it on; they "
    "install to their disks and boot from them. qemu: qemu processes that install in RAM.",
)
@click.option(
    "--bmc",
    type=click.Choice(list(BMC_PROTOCOLS)),
    default="redfish",
    show_default=True,
    help="--vms libvirt: each machine's BMC, Redfish (sushy-emulator) or IPMI (vbmc).",
)
@click.option(
    "--approve",
    type=click.Choice(["config", "manual"]),
    default="config",
    show_default=True,
    help="manual: the lab's config approves no machine; approve each one while `up` waits, "
    "with `mayu lab ctl approve ID --role R` or in the dashboard (/ui).",
)
def up(
    machines: int,
    accel: str,
    timeout: float,
    data_dir: Path,
    config_file: Path | None,
    tenants: int,
    firmware: str,
    dhcp: str,
    vms: str,
    bmc: str,
    approve: str,
) -> None:
    """Start the lab, boot MACHINES VMs until every one is installed, then run a `mayu agent`
    and TENANTS tenant clusters until every tenant is Ready (or the timeout)."""
    opts = UpOptions(
        machines=machines,
        tenants=tenants,
        firmware=firmware,
        dhcp=dhcp,
        accel=accel,
        timeout=timeout,
        data_dir=data_dir.resolve(),
        config_file=config_file,
        vms=vms,
        bmc=bmc,
        approve_by_config=approve == "config",
    )
    code = lab_up(opts)
    if code:
        sys.exit(code)


@lab.command("status")
def status() -> None:
    """Show the lab's machines, the agent and the tenants' nodes with their states."""
    code = lab_status()
    if code:
        sys.exit(code)


@lab.command("down")
@click.option(
    "--data-dir",
    type=DATA_DIR,
    help="The lab's data dir, as given to `up` (default: the running lab's, else "
    f"{DEFAULT_DATA_DIR}).",
)
def down(data_dir: Path | None) -> None:
    """Stop every VM, the agent, the server and dnsmasq, remove the tenants' libvirt domains
    and networks, delete the namespace, and forget the lab's machines in its data dir (their
    inventory records and UEFI variables, the agent's state); idempotent."""
    done = lab_down(data_dir=data_dir.resolve() if data_dir else None)
    for line in done or ["nothing to tear down"]:
        click.echo(line)


@lab.command("restart")
@click.argument("machines", nargs=-1)
def restart(machines: tuple[str, ...]) -> None:
    """Network-boot lab machines again (e.g. `lab1 lab3`; none named: every machine): each
    VM is killed if it runs and started afresh. An installed machine gets its local-boot
    script from the server; one that `mayu lab ctl reinstall` reopened provisions again."""
    for line in lab_restart(machines):
        click.echo(line)


@lab.command("ctl", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ctl(args: tuple[str, ...]) -> None:
    """Run `mayuctl ARGS` against the lab server, inside the lab's namespace
    (e.g. `mayu lab ctl list`, `mayu lab ctl tenants show demo-1`)."""
    state = LabState.load()
    if state is None:
        raise click.UsageError("no lab is up (mayu lab up)")
    mayuctl = Path(sys.executable).with_name("mayuctl")
    env = {**os.environ, "MAYU_URL": state.url, "MAYU_TOKEN": state.token}
    argv = in_namespace(state.namespace, [str(mayuctl), *args])
    sys.exit(subprocess.run(argv, env=env, check=False).returncode)
