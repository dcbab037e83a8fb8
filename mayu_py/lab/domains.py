"""`--vms libvirt`: the lab's machines as libvirt domains, their disks, and their removal.

Each machine is a persistent domain `mayu-lab-labN` (TCG unless the lab chose KVM; SeaBIOS
printing on the serial console, or OVMF with `--firmware uefi`; boot order network, then
disk) with a blank qcow2 disk the lab installer writes, one virtio NIC on the host's
address-less lab bridge (RECIPES.md 12) and the machine's fixed identity (MAC, SMBIOS uuid
and serial). Persistent and with a NIC and a disk, because the Redfish emulator needs both
for its Pxe/Hdd boot targets (RECIPES.md 15).

A domain is the lab's when it carries the lab's metadata element (`virt.ownership.LAB_NS`,
owner `mayu-lab`): `remove_lab_domains` deletes exactly those, through the same
`LibvirtHost` deletion the agent uses, whatever state the lab left (a SIGKILLed `up`, no
state file). Disks live in `<data dir>/lab/machines/` (0755: libvirt gives qemu the files,
never the directories, RECIPES.md 7) and go with them.

UEFI: q35 with OVMF and the machine's own variable store (`labN.OVMF_VARS.fd` beside its
disk, which libvirt copies from OVMF's template at the first start and deletes with the
domain). The NIC's iPXE ROM (qemu's efi-virtio.rom) is its network boot, and OVMF's own
PXE and HTTP boot clients are turned off (OvmfPkg/RUNTIME_CONFIG.md fw_cfg knobs): iPXE's
`exit` (the local-boot script) then returns to OVMF, which goes on to the disk's
EFI/BOOT/BOOTX64.EFI. With OVMF's PXE client loading `ipxe.efi` instead, that `exit` never
returns to the firmware (docs/lab.md, "UEFI machines").
"""

from __future__ import annotations

import logging
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from mayu_py.command import run
from mayu_py.errors import MayuError
from mayu_py.lab import topology as topo
from mayu_py.lab.vm import OVMF_CODE, OVMF_VARS, UEFI_VARS_SUFFIX
from mayu_py.virt.cleanup import remove_owned
from mayu_py.virt.host import LibvirtHost
from mayu_py.virt.ownership import LAB_NS, DomainMeta, Ownership, mark_domain

log = logging.getLogger(__name__)

LIBVIRT_URI = "qemu:///system"
MEMORY_MIB = 512  # the installer holds the disk image in RAM while it checks and writes it
DISK_SIZE = "256M"
# TCG's code cache (1 GiB virtual by default, RECIPES.md 7). 32 MiB kept flushing under the
# installer's Go (Ignition): one lab boot took 8.0-8.4 CPU-s with it, 7.2-7.3 with 128 MiB
# (64: 7.7-7.8, 256: no better), for up to ~100 MiB more RSS per machine.
TB_CACHE_MIB = 128
# OVMF's own network boot clients, off: the NIC's iPXE ROM boots the network (see above).
OVMF_NETWORK_BOOT_OFF = ("IPv4PXESupport", "IPv6PXESupport", "IPv4Support", "IPv6Support")
LAB_MACHINES = Ownership(
    name="a lab machine", tenant=lambda owner: owner == topo.LAB_DOMAIN_OWNER, ns=LAB_NS
)


def machines_dir(work: Path) -> Path:
    return work / "machines"


def disk_path(work: Path, m: topo.LabMachine) -> Path:
    return machines_dir(work) / f"{m.name}.qcow2"


def nvram_path(disk: Path) -> Path:
    """The machine's UEFI variable store, beside its disk (labN.OVMF_VARS.fd)."""
    return disk.with_suffix(UEFI_VARS_SUFFIX)


def console_path(work: Path, m: topo.LabMachine) -> Path:
    return work / f"{m.name}.console.log"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _firmware(root: ET.Element, os_el: ET.Element, firmware: str, nvram: Path) -> None:
    """SeaBIOS on the serial console, or OVMF with its own variables and network boot off."""
    if firmware == "uefi":
        _sub(os_el, "loader", str(OVMF_CODE), readonly="yes", type="pflash")
        _sub(os_el, "nvram", str(nvram), template=str(OVMF_VARS))
        fw_cfg = _sub(root, "sysinfo", type="fwcfg")
        for knob in OVMF_NETWORK_BOOT_OFF:
            _sub(fw_cfg, "entry", "no", name=f"opt/org.tianocore/{knob}")
    _sub(os_el, "boot", dev="network")
    _sub(os_el, "boot", dev="hd")
    if firmware != "uefi":
        # SeaBIOS and iPXE print on the serial console; a failed boot is retried after 1 s.
        _sub(os_el, "bios", useserial="yes", rebootTimeout="1000")


def domain_xml(
    m: topo.LabMachine, accel: str, disk: Path, console_log: Path, firmware: str = "bios"
) -> str:
    """The machine's domain: network boot first (iPXE ROM of the NIC), then its disk."""
    root = ET.Element("domain", type="kvm" if accel == "kvm" else "qemu")
    _sub(root, "name", m.domain)
    _sub(root, "uuid", m.uuid)  # also the SMBIOS uuid iPXE sends as ${uuid}
    _sub(root, "memory", str(MEMORY_MIB), unit="MiB")
    _sub(root, "vcpu", "1")
    sysinfo = _sub(root, "sysinfo", type="smbios")
    _sub(_sub(sysinfo, "system"), "entry", m.serial, name="serial")
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35" if firmware == "uefi" else "pc")
    _firmware(root, os_el, firmware, nvram_path(disk))
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


def define_machine(
    host: LibvirtHost, m: topo.LabMachine, accel: str, work: Path, firmware: str = "bios"
) -> None:
    """A fresh blank disk and the machine's domain, defined (not started: its BMC powers it
    on). An earlier run's domain of the same name is replaced."""
    directory = machines_dir(work)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    disk = disk_path(work, m)
    host.delete_domain(m.domain, LAB_MACHINES)
    disk.unlink(missing_ok=True)
    nvram_path(disk).unlink(missing_ok=True)  # fresh firmware settings, from the template
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), DISK_SIZE], timeout=60)
    console = console_path(work, m)
    console.unlink(missing_ok=True)
    host.define_domain(domain_xml(m, accel, disk, console, firmware))


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
