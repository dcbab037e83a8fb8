"""The tenant overlays a host should run, from its desired nodes: one per tenant with a node
here, its peers being the other hosts that carry the tenant's nodes (as the server publishes
them in each node). A peer counts only with both a heartbeat underlay (where tunnels go) and
an enrolled address (whence its VXLAN is accepted): without the first it cannot be reached,
without the second it is not trusted, so it gets neither FDB entries nor firewall rules.
"""

from __future__ import annotations

import ipaddress

from mayu_py.tenants import TenantNode
from mayu_py.virt.overlay import TenantOverlay, Vtep


def overlays_for(nodes: list[TenantNode], ingress: bool = False) -> list[TenantOverlay]:
    """One overlay per tenant of `nodes` (a tenant's nodes all carry the same peers); with
    `ingress` (the host runs one), the tenant's ingress address on the host's side of it."""
    first: dict[str, TenantNode] = {}
    for node in nodes:
        first.setdefault(node.tenant, node)
    return [
        TenantOverlay(
            node.vni,
            tuple(
                Vtep(p.underlay, p.enrolled, p.macs)
                for p in node.peers
                if p.underlay and p.enrolled
            ),
            f"{node.ingress}/{ipaddress.IPv4Network(node.cidr).prefixlen}" if ingress else None,
        )
        for _, node in sorted(first.items())
    ]
