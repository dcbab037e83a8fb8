"""A tenant's networking beyond its node addresses: the MTU of its nodes' link, the name and
addresses of its API ingress, and the options a node's Ignition is rendered with.

- Link MTU: tenant networks run over a VXLAN overlay between hosts, which costs
  VXLAN_OVERHEAD bytes of the hosts' UNDERLAY_MTU; the tenant's own flannel costs as much again
  inside (mayu_py.render.addons).
- Ingress: `<tenant>.api.<domain>` is routed by each host's HAProxy (SNI, TLS passed through)
  to the tenant's masters on API_PORT (mayu_py.agent.ingress).
"""

from __future__ import annotations

from dataclasses import dataclass

from mayu_py.render.addons import VXLAN_OVERHEAD

UNDERLAY_MTU = 1500
OVERLAY_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD  # a tenant node's link
API_PORT = 6443  # the masters' API server
DEFAULT_INGRESS_PORT = 6443  # where a host's HAProxy listens for `<tenant>.api.<domain>`


def ingress_name(tenant: str, domain: str) -> str:
    """The name clients use for the tenant's API server (the SNI HAProxy routes on)."""
    return f"{tenant}.api.{domain}"


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
