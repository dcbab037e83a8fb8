"""libvirt XML for tenant networks, the guest nwfilter and tenant domains (ElementTree).

Every document passes `virt-xml-validate`. Domains carry our metadata element
(`mayu_py.virt.ownership.mark_domain`) so the agent recognises what it owns; anything without
it is never touched.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from mayu_py.agent.desired import DesiredNetwork
from mayu_py.tenants import TenantNode
from mayu_py.tenants.networking import API_PORT, OVERLAY_MTU
from mayu_py.virt.ownership import DomainMeta, mark_domain

FILTER_NAME = "mayu-tenant-node"  # a worker's (and the rules every guest has)
MASTER_FILTER = "mayu-tenant-master"  # a master's: its API port open to the ingress address
# earlier versions' filters, which domains they defined still name: undefined once none does
OBSOLETE_FILTERS = ("mayu-tenant",)
TB_CACHE_MIB = 32
FWCFG_NAMES = ("opt/org.flatcar-linux/config", "opt/com.coreos/config")


@dataclass(frozen=True)
class DomainFiles:
    kernel: Path
    initrd: Path
    cmdline: str
    overlay: Path
    ignition: Path
    log: Path
    data: Path | None = None  # a master's persistent data disk (vdb)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


def _text(root: ET.Element) -> str:
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def network_xml(net: DesiredNetwork) -> str:
    """On an overlay: the tenant's overlay bridge (`<forward mode='bridge'>`: libvirt only
    attaches VMs to it). Else an isolated network (no <forward>) with DHCP reservations only
    (no dynamic range); never the ingress address (the agent holds it on the bridge:
    `DesiredNetwork.held`), so the definition is the same whether the host runs an ingress."""
    root = ET.Element("network")
    _sub(root, "name", net.name)
    if net.host_address is None:
        _sub(root, "forward", mode="bridge")
        _sub(root, "bridge", name=net.bridge)
        return _text(root)
    _sub(root, "bridge", name=net.bridge, stp="on", delay="0")
    ip = _sub(root, "ip", address=net.host_address, netmask=net.netmask)
    dhcp = _sub(ip, "dhcp")
    for mac, address, name in net.hosts:
        _sub(dhcp, "host", mac=mac, name=name, ip=address)
    return _text(root)


def dhcp_host_xml(mac: str, ip: str, name: str) -> str:
    return ET.tostring(ET.Element("host", {"mac": mac, "name": name, "ip": ip}), "unicode")


def _rule(root: ET.Element, action: str, direction: str, priority: int, **match: str) -> None:
    rule = _sub(root, "rule", action=action, direction=direction, priority=str(priority))
    _sub(rule, "ip", **match)


def nwfilter_xml(api: bool = False) -> str:
    """A guest may talk to its own tenant subnet and send DHCP requests, nothing else; of the
    host it reaches only the gateway's DHCP server and (`api`: a master, else not at all) the
    tenant's ingress address, from its API port to the ingress's, and nothing else of the
    host reaches it. Parameters: OWN_NET/OWN_MASK, GATEWAY, INGRESS."""
    root = ET.Element("filter", name=MASTER_FILTER if api else FILTER_NAME, chain="ipv4")
    root.set("priority", "-650")
    port = str(API_PORT)
    if api:
        _rule(root, "accept", "in", 60, srcipaddr="$INGRESS", protocol="tcp", dstportstart=port)
        _rule(root, "accept", "out", 60, dstipaddr="$INGRESS", protocol="tcp", srcportstart=port)
    for way, peer in (("in", "srcipaddr"), ("out", "dstipaddr")):
        _rule(root, "drop", way, 70, **{peer: "$INGRESS"})
    _rule(root, "accept", "in", 80, srcipaddr="$GATEWAY", protocol="udp", srcportstart="67")
    _rule(root, "accept", "out", 80, dstipaddr="$GATEWAY", protocol="udp", dstportstart="67")
    for way, peer in (("in", "srcipaddr"), ("out", "dstipaddr")):
        _rule(root, "drop", way, 90, **{peer: "$GATEWAY"})
    _rule(root, "accept", "in", 100, srcipaddr="$OWN_NET", srcipmask="$OWN_MASK")
    _rule(root, "accept", "out", 100, dstipaddr="$OWN_NET", dstipmask="$OWN_MASK")
    _rule(root, "accept", "out", 110, dstipaddr="255.255.255.255", protocol="udp",
          srcportstart="68", dstportstart="67")  # fmt: skip
    for way in ("in", "out"):
        _rule(root, "drop", way, 200)
    return _text(root)


def nwfilters() -> list[str]:
    """Every filter a tenant's guests reference: workers', masters'."""
    return [nwfilter_xml(), nwfilter_xml(api=True)]


def static_ip(node: TenantNode, net: DesiredNetwork, mtu: int = OVERLAY_MTU) -> str:
    """The kernel argument giving eth0 the node's address, in dracut's syntax
    (ip=<client>:<peer>:<gateway>:<netmask>:<hostname>:<interface>:none:<mtu>), which the
    tenant image's init reads: no gateway (nothing but the tenant's own subnet is reachable)."""
    return f"ip={node.ip}:::{net.netmask}:{node.name}:eth0:none:{mtu}"


def _metadata(
    parent: ET.Element, node: TenantNode, net: DesiredNetwork, files: DomainFiles, host: str
) -> None:
    mark_domain(
        parent,
        DomainMeta(
            node.tenant,
            node.name,
            node.role,
            node.spec_hash,
            node.generation,
            files_dir=str(files.overlay.parent),  # with its Ignition file and serial log
            host=host,
            network=net.name,
        ),
    )


def domain_xml(
    node: TenantNode, net: DesiredNetwork, files: DomainFiles, domain_type: str, host: str = ""
) -> str:
    """A tenant VM of host `host`: direct kernel boot, Ignition via fw_cfg, virtio disk on its
    overlay. On a VXLAN overlay its address is static (`static_ip`) and its link's MTU leaves
    room for the VXLAN header."""
    overlay = net.host_address is None
    root = ET.Element("domain", type=domain_type)
    _sub(root, "name", node.name)
    _sub(root, "uuid", node.uuid)
    _metadata(root, node, net, files, host)
    _sub(root, "memory", str(node.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(node.cpus))
    sysinfo = _sub(root, "sysinfo", type="fwcfg")
    for name in FWCFG_NAMES:
        _sub(sysinfo, "entry", name=name, file=str(files.ignition))
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "kernel", str(files.kernel))
    _sub(os_el, "initrd", str(files.initrd))
    _sub(os_el, "cmdline", f"{files.cmdline} {static_ip(node, net)}" if overlay else files.cmdline)
    features = _sub(root, "features")
    _sub(features, "acpi")
    if domain_type == "qemu":
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", str(TB_CACHE_MIB), unit="MiB")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2")
    _sub(disk, "source", file=str(files.overlay))
    _sub(disk, "target", dev="vda", bus="virtio")
    if files.data is not None:
        data = _sub(devices, "disk", type="file", device="disk")
        _sub(data, "driver", name="qemu", type="qcow2")
        _sub(data, "source", file=str(files.data))
        _sub(data, "target", dev="vdb", bus="virtio")
    iface = _sub(devices, "interface", type="network")
    _sub(iface, "mac", address=node.mac)
    _sub(iface, "source", network=net.name)
    _sub(iface, "model", type="virtio")
    if overlay:
        _sub(iface, "mtu", size=str(OVERLAY_MTU))
    fref = _sub(iface, "filterref", filter=MASTER_FILTER if node.role == "master" else FILTER_NAME)
    _sub(fref, "parameter", name="OWN_NET", value=net.address)
    _sub(fref, "parameter", name="OWN_MASK", value=str(net.prefixlen))
    _sub(fref, "parameter", name="GATEWAY", value=node.gateway)
    _sub(fref, "parameter", name="INGRESS", value=node.ingress)
    _sub(iface, "rom", enabled="no")
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=str(files.log), append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    _sub(devices, "memballoon", model="none")
    return _text(root)


def probe_xml(name: str, uuid: str, kernel: Path, initrd: Path, log: Path) -> str:
    """A transient KVM guest that only has to reach its first userspace process."""
    root = ET.Element("domain", type="kvm")
    _sub(root, "name", name)
    _sub(root, "uuid", uuid)
    mark_domain(root, DomainMeta(tenant="", node=name, role="probe", spec_hash="", generation=0))
    _sub(root, "memory", "256", unit="MiB")
    _sub(root, "vcpu", "1")
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "kernel", str(kernel))
    _sub(os_el, "initrd", str(initrd))
    _sub(os_el, "cmdline", "console=ttyS0 panic=-1")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "destroy")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(log))
    _sub(serial, "target", port="0")
    _sub(devices, "memballoon", model="none")
    return _text(root)
