"""`--vms libvirt`: the lab's machines as libvirt domains, their disks, and their removal.

Each machine is a persistent domain `mayu-lab-labN` (TCG unless the lab chose KVM; SeaBIOS
printing on the serial console; boot order network, then disk) with a blank qcow2 disk the
lab installer writes, one virtio NIC on the host's address-less lab bridge (RECIPES.md 12)
and the machine's fixed identity (MAC, SMBIOS uuid and serial). Persistent and with a NIC and
a disk, because the Redfish emulator needs both for its Pxe/Hdd boot targets (RECIPES.md 15).

A domain is the lab's when it carries the lab's metadata element (`virt.ownership.LAB_NS`,
owner `mayu-lab`): `remove_lab_domains` deletes exactly those, through the same
`LibvirtHost` deletion the agent uses, whatever state the lab left (a SIGKILLed `up`, no
state file). Disks live in `<data dir>/lab/machines/` (0755: libvirt gives qemu the files,
never the directories, RECIPES.md 7) and go with them.
"""

from __future__ import annotations

import logging
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from mayu_py.command import run
from mayu_py.errors import MayuError
from mayu_py.lab import topology as topo
from mayu_py.virt.cleanup import remove_owned
from mayu_py.virt.host import LibvirtHost
from mayu_py.virt.ownership import LAB_NS, DomainMeta, Ownership, mark_domain

log = logging.getLogger(__name__)

LIBVIRT_URI = "qemu:///system"
MEMORY_MIB = 512  # the installer holds the disk image in RAM while it checks and writes it
DISK_SIZE = "256M"
TB_CACHE_MIB = 32  # TCG's code cache: 1 GiB virtual by default (RECIPES.md 7)
LAB_MACHINES = Ownership(
    name="a lab machine", tenant=lambda owner: owner == topo.LAB_DOMAIN_OWNER, ns=LAB_NS
)


def machines_dir(work: Path) -> Path:
    return work / "machines"


def disk_path(work: Path, m: topo.LabMachine) -> Path:
    return machines_dir(work) / f"{m.name}.qcow2"


def console_path(work: Path, m: topo.LabMachine) -> Path:
    return work / f"{m.name}.console.log"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def domain_xml(m: topo.LabMachine, accel: str, disk: Path, console_log: Path) -> str:
    """The machine's domain: network boot first (iPXE ROM of the NIC), then its disk."""
    root = ET.Element("domain", type="kvm" if accel == "kvm" else "qemu")
    _sub(root, "name", m.domain)
    _sub(root, "uuid", m.uuid)  # also the SMBIOS uuid iPXE sends as ${uuid}
    _sub(root, "memory", str(MEMORY_MIB), unit="MiB")
    _sub(root, "vcpu", "1")
    sysinfo = _sub(root, "sysinfo", type="smbios")
    _sub(_sub(sysinfo, "system"), "entry", m.serial, name="serial")
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "boot", dev="network")
    _sub(os_el, "boot", dev="hd")
    # SeaBIOS and iPXE print on the serial console; a failed boot is retried after 1 s.
    _sub(os_el, "bios", useserial="yes", rebootTimeout="1000")
    _sub(os_el, "smbios", mode="sysinfo")
    features = _sub(root, "features")
    _sub(features, "acpi")
    if accel != "kvm":
        _sub(_sub(features, "tcg"), "tb-cache", str(TB_CACHE_MIB), unit="MiB")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")  # the installer reboots into the disk
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    disk_el = _sub(devices, "disk", type="file", device="disk")
    _sub(disk_el, "driver", name="qemu", type="qcow2")
    _sub(disk_el, "source", file=str(disk))
    _sub(disk_el, "target", dev="vda", bus="virtio")
    nic = _sub(devices, "interface", type="bridge")
    _sub(nic, "mac", address=m.mac)
    _sub(nic, "source", bridge=topo.ROOT_BRIDGE)
    # Debian's iPXE ROM carries the modern virtio id only (RECIPES.md 1: disable-legacy=on).
    _sub(nic, "model", type="virtio-non-transitional")
    # A file, written by virtlogd, which always reads: an unread pty can stall the guest's
    # UART (a userspace write to the console blocked one of 8 machines at boot).
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(console_log), append="on")
    _sub(devices, "memballoon", model="none")
    meta = DomainMeta(
        tenant=topo.LAB_DOMAIN_OWNER,
        node=m.name,
        role="machine",
        spec_hash="",
        generation=0,
        files_dir=str(disk.parent),
    )
    mark_domain(root, meta, LAB_NS)
    return ET.tostring(root, encoding="unicode")


def define_machine(host: LibvirtHost, m: topo.LabMachine, accel: str, work: Path) -> None:
    """A fresh blank disk and the machine's domain, defined (not started: its BMC powers it
    on). An earlier run's domain of the same name is replaced."""
    directory = machines_dir(work)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    disk = disk_path(work, m)
    host.delete_domain(m.domain, LAB_MACHINES)
    disk.unlink(missing_ok=True)
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), DISK_SIZE], timeout=60)
    console = console_path(work, m)
    console.unlink(missing_ok=True)
    host.define_domain(domain_xml(m, accel, disk, console))


def domain_states(host: LibvirtHost) -> dict[str, str]:
    """The lab's domains' states (running, shutoff, ...) by domain name."""
    return {d.name: d.state for d in host.list_domains(LAB_NS) if LAB_MACHINES.owns_domain(d.meta)}


def remove_lab_domains(work: Path | None, uri: str = LIBVIRT_URI) -> list[str]:
    """Destroy and undefine every lab machine's domain, then delete the disks under `work`;
    a line per removal. libvirtd not running: no domains checked (a warning)."""
    done: list[str] = []
    host = LibvirtHost(uri, attempts=1)
    try:
        done += remove_owned(host, LAB_MACHINES, "lab machine ")
    except MayuError as exc:
        log.warning("libvirt %s not reachable (%s): lab machines not checked", uri, exc.message)
    finally:
        host.close()
    if work is not None and machines_dir(work).exists():
        disks = sorted(machines_dir(work).glob("*.qcow2"))
        shutil.rmtree(machines_dir(work), ignore_errors=True)
        if disks:
            done.append(f"removed {len(disks)} lab machine disk(s) in {machines_dir(work)}")
    return done
