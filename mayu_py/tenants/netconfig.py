"""A tenant node's static network configuration, written by Ignition.

On a VXLAN overlay there is no DHCP on the tenant network (libvirt only attaches VMs to the
overlay bridge), so a real OS image (Flatcar, Fedora CoreOS: systemd-networkd) gets its
address from a `.network` file Ignition writes before networkd starts: the node's address
assigned by the server (mayu_py.tenants.addresses), no gateway (a tenant network routes
nowhere; its ingress address is on-link) and the overlay's MTU. The lab image configures eth0
from the kernel's `ip=` argument instead (its /init runs before Ignition's files stage:
mayu_py.agent.libvirt_xml.static_ip), from the same stored address.
"""

from __future__ import annotations

import ipaddress

from mayu_py.model import FileSpec
from mayu_py.tenants.networking import OVERLAY_MTU
from mayu_py.tenants.nodes import TenantNode

NETWORK_FILE = "/etc/systemd/network/00-mayu-tenant.network"
NETWORK_MODE = 0o644


def network_unit(node: TenantNode, mtu: int = OVERLAY_MTU) -> str:
    """The systemd-networkd unit giving the node's link (matched by its MAC) its address."""
    prefix = ipaddress.IPv4Network(node.cidr).prefixlen
    return (
        "[Match]\n"
        f"MACAddress={node.mac}\n\n"
        "[Link]\n"
        f"MTUBytes={mtu}\n\n"
        "[Network]\n"
        f"Address={node.ip}/{prefix}\n"
        "DHCP=no\n"
        "LinkLocalAddressing=no\n"
        "IPv6AcceptRA=no\n"
    )


def network_file(node: TenantNode) -> FileSpec:
    return FileSpec(NETWORK_FILE, NETWORK_MODE, network_unit(node))
