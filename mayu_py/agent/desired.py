"""The networks a host should run for its desired nodes (`tenants.TenantNode`), one per tenant.

Without an overlay, a tenant's network is isolated on this host: libvirt runs its bridge with
the tenant's gateway address on it and DHCP reservations for its nodes; with an ingress on the
host, the agent holds the tenant's ingress address on that bridge too (`held`), outside the
network's definition, which so does not depend on it. With the host's VXLAN
overlay (`overlay_tag`: the host's tag, `ownership.host_tag`), the network only attaches VMs to
the tenant's overlay bridge (`<forward mode='bridge'>`): no address of the host, no DHCP; each
node's address, assigned by the server, is set in the guest at boot (`libvirt_xml.static_ip`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mayu_py.tenants import TenantNode
from mayu_py.virt.bridge_address import HeldAddress
from mayu_py.virt.ownership import BRIDGE_PREFIX, network_name, overlay_bridge


@dataclass(frozen=True)
class DesiredNetwork:
    """A tenant's network on this host: isolated with one DHCP reservation per node, or (with
    `overlay_tag`) attached to the host's overlay bridge of the tenant."""

    tenant: str
    cidr: str
    vni: int
    gateway: str
    hosts: tuple[tuple[str, str, str], ...] = ()  # (mac, ip, node name), sorted
    overlay_tag: str = ""
    ingress: str | None = None  # isolated, with an ingress on the host: its address there

    @property
    def name(self) -> str:
        return network_name(self.tenant, self.overlay_tag)

    @property
    def bridge(self) -> str:
        if self.overlay_tag:
            return overlay_bridge(self.overlay_tag, self.vni)
        return f"{BRIDGE_PREFIX}{self.vni}"

    @property
    def host_address(self) -> str | None:
        """This host's address on the network (libvirt's DHCP server); None on an overlay."""
        return None if self.overlay_tag else self.gateway

    @property
    def netmask(self) -> str:
        return str(ipaddress.IPv4Network(self.cidr).netmask)

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.cidr).prefixlen

    @property
    def address(self) -> str:
        return str(ipaddress.IPv4Network(self.cidr).network_address)

    @property
    def held(self) -> HeldAddress:
        """The ingress address the host holds on the isolated network's bridge (None: it runs
        no ingress), next to libvirt's gateway, and any other address gone: e.g. the ingress
        address an earlier version defined in the network (a second `<ip>`), while this host
        runs no ingress."""
        ingress = f"{self.ingress}/{self.prefixlen}" if self.ingress else None
        return HeldAddress(self.bridge, ingress, (f"{self.gateway}/{self.prefixlen}",))


def network_of(node: TenantNode, overlay_tag: str = "") -> DesiredNetwork:
    """The network `node` attaches to (without the other nodes' reservations)."""
    return DesiredNetwork(node.tenant, node.cidr, node.vni, node.gateway, (), overlay_tag)


def networks_for(
    nodes: list[TenantNode], overlay_tag: str = "", ingress: bool = False
) -> list[DesiredNetwork]:
    """One network per tenant; isolated ones with a reservation for each of its nodes here
    and (`ingress`: the host runs one) the tenant's ingress address."""
    grouped: dict[str, list[TenantNode]] = {}
    for node in nodes:
        grouped.setdefault(node.tenant, []).append(node)
    result = []
    for tenant, members in sorted(grouped.items()):
        first = members[0]
        hosts = () if overlay_tag else tuple(sorted((n.mac, n.ip, n.name) for n in members))
        address = first.ingress if ingress and not overlay_tag else None
        result.append(
            DesiredNetwork(
                tenant, first.cidr, first.vni, first.gateway, hosts, overlay_tag, address
            )
        )
    return result
