"""A tenant's networking beyond its node addresses: the MTU of its nodes' link, the name and
addresses of its API ingress, and the options a node's Ignition is rendered with.

- Link MTU: tenant networks run over a VXLAN overlay between hosts, which costs
  VXLAN_OVERHEAD bytes of the hosts' UNDERLAY_MTU; the tenant's own flannel costs as much again
  inside (mayu_py.render.addons).
- Ingress: `<tenant>.api.<domain>` is routed by each host's HAProxy (SNI, TLS passed through)
  to the tenant's masters on API_PORT, from an ingress address of the host on the tenant's
  network: the addresses between the gateway and the first node (INGRESS_OFFSET up to
  FIRST_NODE_OFFSET - 1), one per host slot.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mayu_py.render.addons import VXLAN_OVERHEAD
from mayu_py.tenants.nodes import FIRST_NODE_OFFSET, GATEWAY_OFFSET

UNDERLAY_MTU = 1500
OVERLAY_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD  # a tenant node's link
API_PORT = 6443  # the masters' API server
INGRESS_OFFSET = GATEWAY_OFFSET + 1
INGRESS_SLOTS = FIRST_NODE_OFFSET - INGRESS_OFFSET
DEFAULT_INGRESS_PORT = 6443  # where a host's HAProxy listens for `<tenant>.api.<domain>`


def ingress_name(tenant: str, domain: str) -> str:
    """The name clients use for the tenant's API server (the SNI HAProxy routes on)."""
    return f"{tenant}.api.{domain}"


def ingress_address(cidr: str, slot: int = 0) -> str:
    """A host's ingress address on a tenant network; each host needs its own `slot` once the
    network spans hosts."""
    if not 0 <= slot < INGRESS_SLOTS:
        raise ValueError(f"ingress slot {slot} is not in 0..{INGRESS_SLOTS - 1}")
    return str(ipaddress.IPv4Network(cidr)[INGRESS_OFFSET + slot])


@dataclass(frozen=True)
class TenantOptions:
    """Site-wide settings a tenant's Ignition and kubeconfig depend on."""

    ingress_domain: str | None = None  # None: no ingress; clients use the first master
    ingress_port: int = DEFAULT_INGRESS_PORT
    cni_manifest: str | None = None  # an operator's manifests instead of mayu's flannel

    def ingress_url(self, tenant: str) -> str | None:
        if self.ingress_domain is None:
            return None
        name = ingress_name(tenant, self.ingress_domain)
        return f"https://{name}:{self.ingress_port}"
