"""Two real libvirt domains with emulated BMCs (sushy-emulator, vbmcd), for peer tests.

`bmc_lab(prefix, bridge)` defines two persistent TCG domains `<prefix>-1/2` (32 MiB, a
16 MiB qcow2 disk, a virtio NIC without option ROM with a fixed MAC on an isolated libvirt
network whose bridge has no address): SeaBIOS finds nothing to boot and idles, no packet
leaves. Domain 1 gets a Redfish BMC, domain 2 an IPMI one, both started by
mayu_py.lab.bmc_emulators on 127.0.0.1. Everything is removed afterwards, also what an
earlier killed run of the same prefix left. Run under `flock /tmp/mayu-vm.lock`.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import libvirt

from mayu_py.bmc.base import Bmc
from mayu_py.bmc.client import connect
from mayu_py.bmc.coordinates import BmcCoordinates, BmcProtocol
from mayu_py.command import run
from mayu_py.lab.bmc_emulators import IpmiEmulators, RedfishEmulator
from tests.conftest import free_port
from tests.e2e.tenant_helpers import URI, ensure_daemons, make_workdir

USER = "mayu-admin"
PASSWORD = "pw-" + secrets.token_hex(6)
PROTOCOLS = [BmcProtocol.REDFISH, BmcProtocol.IPMI]

NETWORK_XML = """<network><name>{name}</name><bridge name='{bridge}' stp='off'/></network>"""
DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/><boot dev='hd'/></os>
  <features><acpi/><tcg><tb-cache unit='MiB'>8</tb-cache></tcg></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
    <interface type='network'><mac address='{mac}'/><source network='{network}'/>
      <model type='virtio'/><rom enabled='no'/></interface>
    <memballoon model='none'/>
  </devices>
</domain>"""


@dataclass
class BmcLab:
    conn: libvirt.virConnect
    work: Path
    domains: dict[BmcProtocol, libvirt.virDomain]
    macs: dict[BmcProtocol, str]
    coords: dict[BmcProtocol, BmcCoordinates]
    redfish: RedfishEmulator
    ipmi: IpmiEmulators

    def bmc(self, protocol: BmcProtocol) -> Bmc:
        return connect(self.coords[protocol])

    def emulator(self, protocol: BmcProtocol) -> RedfishEmulator | IpmiEmulators:
        return self.redfish if protocol is BmcProtocol.REDFISH else self.ipmi


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _remove_leftovers(conn: libvirt.virConnect, prefix: str) -> None:
    """The prefix's domains and network, also those of an earlier run that was killed."""
    for dom in conn.listAllDomains():
        if dom.name().startswith(prefix):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for net in conn.listAllNetworks():
        if net.name() == f"{prefix}-net":
            if net.isActive():
                net.destroy()
            net.undefine()


def _define(
    conn: libvirt.virConnect, work: Path, prefix: str, index: int, mac: str
) -> libvirt.virDomain:
    disk = work / f"{prefix}-{index}.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"])
    xml = DOMAIN_XML.format(name=f"{prefix}-{index}", disk=disk, network=f"{prefix}-net", mac=mac)
    return conn.defineXML(xml)


@contextmanager
def bmc_lab(prefix: str, bridge: str, mac_byte: int) -> Iterator[BmcLab]:
    """The two domains (MACs 52:54:00:<mac_byte>:00:01 and :02) with their BMCs."""
    ensure_daemons()
    conn = libvirt.open(URI)
    work = make_workdir(prefix)
    emulators: list[RedfishEmulator | IpmiEmulators] = []
    macs = {p: f"52:54:00:{mac_byte:02x}:00:{i + 1:02x}" for i, p in enumerate(PROTOCOLS)}
    try:
        _remove_leftovers(conn, prefix)
        conn.networkDefineXML(NETWORK_XML.format(name=f"{prefix}-net", bridge=bridge)).create()
        redfish_dom = _define(conn, work, prefix, 1, macs[BmcProtocol.REDFISH])
        ipmi_dom = _define(conn, work, prefix, 2, macs[BmcProtocol.IPMI])
        redfish = RedfishEmulator(
            work / "redfish", listen_ip="127.0.0.1", port=free_port(), username=USER,
            password=PASSWORD, allowed=[redfish_dom.UUIDString()],
        )  # fmt: skip
        emulators.append(redfish)
        redfish.start()
        ipmi = IpmiEmulators(work / "ipmi", control_port=free_port())
        emulators.append(ipmi)
        ipmi_coords = ipmi.add_domain(
            ipmi_dom.name(), address="127.0.0.1", port=free_udp_port(), username=USER,
            password=PASSWORD,
        )  # fmt: skip
        ipmi.start()
        yield BmcLab(
            conn, work,
            {BmcProtocol.REDFISH: redfish_dom, BmcProtocol.IPMI: ipmi_dom},
            macs,
            {BmcProtocol.REDFISH: redfish.coordinates(redfish_dom.UUIDString()),
             BmcProtocol.IPMI: ipmi_coords},
            redfish, ipmi,
        )  # fmt: skip
    finally:
        for emulator in emulators:
            emulator.stop()
        _remove_leftovers(conn, prefix)
        conn.close()
        shutil.rmtree(work, ignore_errors=True)


def first_boot_device(xml: str) -> str:
    """'network' or 'hd': the first entry of <os><boot dev>, else the lowest <boot order>."""
    tree = ET.fromstring(xml)
    boots = tree.findall("os/boot")
    if boots:
        return boots[0].get("dev", "")
    ordered = [
        (int(dev.find("boot").get("order", "0")), "network" if dev.tag == "interface" else "hd")
        for dev in tree.find("devices")
        if dev.find("boot") is not None
    ]
    return min(ordered)[1] if ordered else ""


def persistent_boot(dom: libvirt.virDomain) -> str:
    return first_boot_device(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def live_boot(dom: libvirt.virDomain) -> str:
    return first_boot_device(dom.XMLDesc(0))


def running_id(dom: libvirt.virDomain) -> int:
    """The domain's current id (a virDomain keeps the id it was looked up with)."""
    return dom.connect().lookupByUUID(dom.UUID()).ID()


def power_off_directly(dom: libvirt.virDomain) -> None:
    if dom.isActive():
        dom.destroy()


def timed(label: str, call: Callable[[], object]) -> object:
    start = time.monotonic()
    result = call()
    print(f"BMC-TIMING {label}: {time.monotonic() - start:.3f} s")
    return result
