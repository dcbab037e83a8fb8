"""`mayu lab up --vms libvirt` (issue 10, item 4 and the BIOS lifecycle): a lab machine is a
libvirt domain (TCG, qcow2 disk, network then disk) on the host's address-less lab bridge,
veth'd into the lab namespace; its Redfish BMC (sushy-emulator, libvirt driver) is in the
server's inventory and powers it on. It PXE-boots, installs to its disk, reboots, boots from
the disk with its own report credential (no second token) and reports `running`; powered off
and on through the BMC it boots from its disk again; `mayu lab ctl reinstall` through Redfish
rewrites the disk with exactly one new token; with `--bmc ipmi` (vbmc) the same power-on,
install, disk boot and reinstall through IPMI; with `--firmware uefi` (OVMF) the install, the
disk boot after the local-boot script's `exit`, a reinstall through Redfish and, off and on
through Redfish after it, the disk boot again. `mayu lab down` finds and removes the domain,
disk, emulator, bridge and veth without the state file, and nothing else.
Run under `flock /tmp/mayu-vm.lock`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import libvirt
import pytest

from mayu_py.images.disk import DISK_NAME, SHA256_SUFFIX, read_sha256_file
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.bmc_emulators import SUSHY_EMULATOR
from mayu_py.lab.netns import InNamespace
from mayu_py.lab.state import LabState
from mayu_py.virt.ownership import NS
from tests.e2e import tenant_helpers as th
from tests.e2e import test_lab as lab_suite
from tests.e2e.lab_machine import history, tokens_issued
from tests.e2e.test_lab import Lab, _mayu_names, _wait
from tests.support.peers import require_peers

pytestmark = pytest.mark.e2e

M = topo.LabMachine(1)
FOREIGN = f"{topo.DOMAIN_PREFIX}labvirt-foreign"  # our prefix, not our mark: must survive
# The lab suite's fixture: a fresh lab dir; afterwards `down` twice, no leak (domains,
# interfaces, namespaces, processes), no machine record, no state file left.
lab = lab_suite.lab


@pytest.fixture(autouse=True, scope="module")
def _peers() -> None:
    require_peers(
        "qemu-system-x86_64", "dnsmasq", "libvirtd", "mtype", root=True,
        files=(Path(SUSHY_EMULATOR),),
    )  # fmt: skip


def _reports(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["cause"].startswith(f"report {kind} ")]


def _ctl(lab: Lab, *args: str, timeout: float = 120) -> str:
    result = lab.mayu("ctl", *args, timeout=timeout)
    assert result.returncode == 0, (result.stdout, result.stderr, lab.consoles())
    return result.stdout


def _domain_state(name: str) -> int:
    conn = libvirt.open(th.URI)
    try:
        return conn.lookupByName(name).state()[0]
    finally:
        conn.close()


def _disk_marker(disk: Path, work: Path) -> str:
    """The install's marker file on the (running) machine's disk, read with mtools."""
    raw = work / "inspect.raw"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", disk, raw], check=True)
    try:
        out = subprocess.run(
            ["mtype", "-i", raw, "::/mayu/install-id"], capture_output=True, text=True, check=True
        )
    finally:
        raw.unlink()
    return out.stdout.strip()


def _host_side_has_no_lab_address() -> None:
    addresses = subprocess.run(
        ["ip", "-o", "addr", "show", "dev", topo.ROOT_BRIDGE], capture_output=True, text=True
    )
    assert addresses.returncode == 0 and addresses.stdout.strip() == "", addresses.stdout
    route = subprocess.run(["ip", "route", "get", topo.SERVER_IP], capture_output=True, text=True)
    assert topo.ROOT_BRIDGE not in route.stdout and topo.ROOT_VETH not in route.stdout


def _define_foreign() -> None:
    """A domain with the lab's name prefix and the agent's mark, not the lab's."""
    xml = (
        f"<domain type='qemu'><name>{FOREIGN}</name><memory unit='MiB'>32</memory>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<metadata><m:instance xmlns:m='{NS}' tenant='acme' node='n' role='worker' "
        "spec_hash='' generation='0'/></metadata></domain>"
    )
    conn = libvirt.open(th.URI)
    try:
        conn.defineXML(xml)
    finally:
        conn.close()


def _undefine_foreign() -> bool:
    conn = libvirt.open(th.URI)
    try:
        conn.lookupByName(FOREIGN).undefine()
        return True
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def _up(lab: Lab, bmc: str, firmware: str = "bios") -> tuple[LabState, Path]:
    """`mayu lab up --vms libvirt --bmc BMC --firmware FIRMWARE` with one machine; (state,
    the machine's disk)."""
    started = time.monotonic()
    options = ("--bmc", bmc, "--firmware", firmware)
    up = lab.mayu(*lab.up_args(1, timeout=300, vms="libvirt"), *options, timeout=420)
    print(f"\nmayu lab up --vms libvirt {' '.join(options)}: {time.monotonic() - started:.1f} s")
    assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{lab.serve_log()[-3000:]}"
    assert "all 1 machine(s) running from disk" in up.stdout
    _host_side_has_no_lab_address()
    state = lab.state()
    assert state.vm_driver == "libvirt" and state.bmc_protocol == bmc and state.bmc_pid
    assert state.firmware == firmware
    return state, lab.data_dir / "lab" / "machines" / f"{M.name}.qcow2"


def _installed_and_running_from_disk(lab: Lab, client: LabClient, disk: Path) -> str:
    """Powered on through the BMC -> PXE -> install -> reboot -> disk -> running, one token;
    the install id (also the marker on the disk)."""
    events = client.events(M.mac)
    kinds = [k for k, _, _ in history(events)]
    assert kinds[:3] == ["bmc-set", "power-requested", "power-acknowledged"], kinds
    assert tokens_issued(events) == 1
    (installed,) = _reports(events, "installed")
    (running,) = _reports(events, "running")
    assert installed["cause"] == "report installed (boot token)"
    assert running["cause"] == "report running (report credential)"
    assert (installed["to"], running["to"]) == ("installed", "running")
    assert installed["details"]["install"]["disk"] == "/dev/vda"
    served = lab.data_dir / "assets" / "lab" / f"{DISK_NAME}{SHA256_SUFFIX}"
    assert installed["details"]["install"]["image_sha256"] == read_sha256_file(served)
    assert running["details"]["boot"] == "disk"
    install_id = installed["details"]["install"]["install_id"]
    assert running["details"]["install_id"] == install_id
    on = next(e for e in events if e["kind"] == "power-acknowledged")
    print(f"BMC power-on acknowledged -> running: {running['time'] - on['time']:.1f} s")
    console = lab.console(M)
    assert console.count("mayu: installing") == 1, console[-3000:]
    assert console.count("MAYU: mode install") == 1 and console.count("MAYU: mode disk") == 1
    assert "Ignition finished successfully" in console.split("MAYU: mode disk")[1]
    assert _disk_marker(disk, lab.workdir) == install_id
    return install_id


def _off_and_on_boots_the_disk_again(lab: Lab, client: LabClient, install_id: str) -> None:
    """Off and on through the BMC: the machine boots from its disk (the install `install_id`)
    again: after the power events, its `running` report from the disk and nothing else (no
    token, no boot request that changed anything)."""
    assert "power-off acknowledged, machine off" in _ctl(lab, "power", "off", M.mac)
    assert _domain_state(M.domain) == libvirt.VIR_DOMAIN_SHUTOFF
    seen = len(client.events(M.mac))
    tokens = tokens_issued(client.events(M.mac))
    started = time.monotonic()
    assert "power-on acknowledged, machine on" in _ctl(lab, "power", "on", M.mac)
    _wait(
        lab,
        "a running report after the BMC's power on",
        lambda: len(_reports(client.events(M.mac)[seen:], "running")) == 1,
        180,
    )
    print(f"BMC power on -> running from disk: {time.monotonic() - started:.1f} s")
    events = client.events(M.mac)
    new = events[seen:]
    assert [e["kind"] for e in new[:2]] == ["power-requested", "power-acknowledged"], new
    (again,) = new[2:]
    assert again["cause"] == "report running (report credential)", again
    assert again["details"]["boot"] == "disk" and again["details"]["install_id"] == install_id
    assert tokens_issued(events) == tokens


def _reinstall_rewrites_the_disk(lab: Lab, client: LabClient, disk: Path, before: str) -> str:
    """`reinstall --wait` through the BMC: PXE, one new token, a new install on the disk (its
    install id)."""
    seen = len(client.events(M.mac))
    started = time.monotonic()
    _ctl(lab, "reinstall", M.mac, "--wait", "--timeout", "300", timeout=360)
    print(f"reinstall --wait: {time.monotonic() - started:.1f} s")
    new = client.events(M.mac)[seen:]
    assert tokens_issued(new) == 1, history(new)
    (reinstalled,) = _reports(new, "installed")
    install_id = reinstalled["details"]["install"]["install_id"]
    assert install_id != before
    assert _reports(new, "running")[-1]["details"]["install_id"] == install_id
    assert _disk_marker(disk, lab.workdir) == install_id  # the first install's marker: gone
    return install_id


def test_a_libvirt_machine_installs_runs_from_disk_and_obeys_its_bmc(lab: Lab) -> None:
    state, disk = _up(lab, "redfish")
    with InNamespace(topo.NAMESPACE) as ns:
        client = LabClient(ns, state.url, state.token)
        bmc = client.request("GET", f"/api/v1/machines/{M.mac}/bmc")
        assert bmc["protocol"] == "redfish" and bmc["system_id"] == M.uuid
        assert "password" not in bmc
        first_id = _installed_and_running_from_disk(lab, client, disk)
        _off_and_on_boots_the_disk_again(lab, client, first_id)
        _reinstall_rewrites_the_disk(lab, client, disk, first_id)

    # down without the state file (as after a SIGKILLed `up`): by ownership and by name.
    _define_foreign()
    try:
        lab.state_file.unlink()
        down = lab.mayu("down", "--data-dir", str(lab.data_dir), timeout=120)
        assert down.returncode == 0, down.stderr
        for line in (
            f"removed lab machine VM {M.domain}",
            "removed 1 lab machine disk(s)",
            f"deleted veth pair {topo.ROOT_VETH}",
            f"deleted host bridge {topo.ROOT_BRIDGE}",
        ):
            assert line in down.stdout, down.stdout
        assert not disk.exists()
        assert not any(n.startswith("mayu-lab") for n in _mayu_names())
    finally:
        assert _undefine_foreign(), "down removed a domain that is not the lab's"


def test_an_ipmi_machine_installs_and_reinstalls_through_vbmc(lab: Lab) -> None:
    """Powered on, installed and reinstalled through IPMI: the reinstall's disk-again step
    power-cycles (vbmc's PXE override leaves the NIC as the only boot device)."""
    state, disk = _up(lab, "ipmi")
    with InNamespace(topo.NAMESPACE) as ns:
        client = LabClient(ns, state.url, state.token)
        bmc = client.request("GET", f"/api/v1/machines/{M.mac}/bmc")
        assert bmc["protocol"] == "ipmi" and bmc["ipmi_cipher_suite"] == 3
        assert "password" not in bmc
        first_id = _installed_and_running_from_disk(lab, client, disk)
        seen = len(client.events(M.mac))
        _reinstall_rewrites_the_disk(lab, client, disk, first_id)
        disk_boot = [e for e in client.events(M.mac)[seen:] if e["kind"] == "power-acknowledged"]
        assert [e["details"]["action"] for e in disk_boot] == ["reinstall", "disk-boot"]


def test_a_uefi_libvirt_machine_boots_its_disk_after_ipxe_exits(lab: Lab) -> None:
    """OVMF: the NIC's iPXE installs, the reboot gets the local-boot script (`exit`) and
    OVMF goes on to the disk's GRUB. `reinstall` through Redfish rewrites the disk (PXE set,
    power cycle, install, then disk set again while it reboots through iPXE's `exit`); off
    and on through Redfish afterwards (the emulator's persistent disk-only boot order, the
    machine's UEFI variables as the installs left them) it boots the new install from its
    disk. The machine's own UEFI variables go with `down`."""
    state, disk = _up(lab, "redfish", "uefi")
    nvram = disk.with_name(f"{M.name}.OVMF_VARS.fd")
    assert nvram.exists()
    with InNamespace(topo.NAMESPACE) as ns:
        client = LabClient(ns, state.url, state.token)
        first_id = _installed_and_running_from_disk(lab, client, disk)
        console = lab.console(M)
        local_boot = console.index(": booting its disk")  # the local-boot script, then `exit`
        assert "GRUB" in console[local_boot:], console[local_boot:]
        second_id = _reinstall_rewrites_the_disk(lab, client, disk, first_id)
        booted = len(lab.console(M))
        _off_and_on_boots_the_disk_again(lab, client, second_id)
    # Straight to the disk's GRUB: the Redfish disk override is the only boot device now.
    after_power_on = lab.console(M)[booted:]
    assert "GRUB" in after_power_on and "MAYU: mode disk" in after_power_on, after_power_on
    assert "iPXE" not in after_power_on, after_power_on
    down = lab.mayu("down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert not nvram.exists() and not disk.exists()
