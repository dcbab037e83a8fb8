"""What a host should run: desired nodes (as the server sends them) and their networks."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from mayu_py.errors import BadRequest
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


@dataclass(frozen=True)
class DesiredNode:
    """One VM this host should run, exactly as GET /api/v1/hosts/<host>/nodes lists it."""

    tenant: str
    node: str
    role: str
    generation: int
    spec_hash: str
    cpus: int
    memory_mib: int
    disk_gib: int
    image: str
    mac: str
    ip: str
    uuid: str
    cidr: str
    vni: int
    gateway: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DesiredNode:
        try:
            net = data["network"]
            return cls(
                tenant=str(data["tenant"]),
                node=str(data["node"]),
                role=str(data["role"]),
                generation=int(data["generation"]),
                spec_hash=str(data["spec_hash"]),
                cpus=int(data["cpus"]),
                memory_mib=int(data["memory_mib"]),
                disk_gib=int(data["disk_gib"]),
                image=str(data["image"]),
                mac=str(data["mac"]).lower(),
                ip=str(data["ip"]),
                uuid=str(data["uuid"]),
                cidr=str(net["cidr"]),
                vni=int(net["vni"]),
                gateway=str(net["gateway"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed desired node: {exc!r}", {"node": data}) from exc


def networks_for(nodes: list[DesiredNode]) -> list[DesiredNetwork]:
    """One network per tenant with a reservation for each of its nodes on this host."""
    grouped: dict[str, list[DesiredNode]] = {}
    for node in nodes:
        grouped.setdefault(node.tenant, []).append(node)
    result = []
    for tenant, members in sorted(grouped.items()):
        first = members[0]
        hosts = tuple(sorted((n.mac, n.ip, n.node) for n in members))
        result.append(DesiredNetwork(tenant, first.cidr, first.vni, first.gateway, hosts))
    return result
