"""The networks a host should run for its desired nodes (`tenants.TenantNode`), one per tenant."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mayu_py.tenants import TenantNode
from mayu_py.virt.ownership import BRIDGE_PREFIX, NETWORK_PREFIX


@dataclass(frozen=True)
class DesiredNetwork:
    """A tenant's isolated network on this host with one DHCP reservation per node."""

    tenant: str
    cidr: str
    vni: int
    gateway: str
    hosts: tuple[tuple[str, str, str], ...] = ()  # (mac, ip, node name), sorted

    @property
    def name(self) -> str:
        return NETWORK_PREFIX + self.tenant

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.vni}"

    @property
    def netmask(self) -> str:
        return str(ipaddress.IPv4Network(self.cidr).netmask)

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.cidr).prefixlen

    @property
    def address(self) -> str:
        return str(ipaddress.IPv4Network(self.cidr).network_address)


def networks_for(nodes: list[TenantNode]) -> list[DesiredNetwork]:
    """One network per tenant with a reservation for each of its nodes on this host."""
    grouped: dict[str, list[TenantNode]] = {}
    for node in nodes:
        grouped.setdefault(node.tenant, []).append(node)
    result = []
    for tenant, members in sorted(grouped.items()):
        first = members[0]
        hosts = tuple(sorted((n.mac, n.ip, n.name) for n in members))
        result.append(DesiredNetwork(tenant, first.cidr, first.vni, first.gateway, hosts))
    return result
