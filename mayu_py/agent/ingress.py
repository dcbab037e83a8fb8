"""The agent's ingress controller: this host's HAProxy routes `<tenant>.api.<domain>` to the
masters of each tenant among the host's desired nodes, reloaded when they change.

The routes come from the desired nodes, not from what runs: a master being created is
routed to at once, and HAProxy's health checks keep connections off it until its API port
answers. HAProxy connects from the tenant's ingress address (on the host side of the tenant's
network: mayu_py.agent.desired, mayu_py.virt.overlay), the one address of the host a tenant's
masters let in, to their API port only (their nwfilter: mayu_py.agent.libvirt_xml). A tenant
with no master on this host has no route, so its name is refused like any unknown one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from mayu_py.ingress import HaproxySupervisor, Route, render_config
from mayu_py.tenants import TenantNode
from mayu_py.tenants.networking import API_PORT, ingress_name

log = logging.getLogger(__name__)


def routes_for(nodes: Iterable[TenantNode], domain: str) -> list[Route]:
    """One route per tenant with a master among `nodes`, to all of those masters."""
    masters: dict[str, list[TenantNode]] = {}
    for node in nodes:
        if node.role == "master":
            masters.setdefault(node.tenant, []).append(node)
    return [
        Route(
            tenant=tenant,
            name=ingress_name(tenant, domain),
            source=members[0].ingress,
            servers=tuple(sorted((n.name, n.ip) for n in members)),
            port=API_PORT,
        )
        for tenant, members in sorted(masters.items())
    ]


class IngressController:
    """Keeps a HAProxy listening on `listen` (HOST:PORT) in step with the desired nodes."""

    def __init__(
        self, directory: Path, listen: str, domain: str, *, netns: str | None = None
    ) -> None:
        self.listen = listen
        self.domain = domain
        self.haproxy = HaproxySupervisor(directory, render_config(listen, []), netns=netns)

    def start(self) -> None:
        self.haproxy.start()

    def stop(self) -> None:
        self.haproxy.stop()

    def update(self, nodes: Iterable[TenantNode]) -> bool:
        """Route to the masters among `nodes`; True when HAProxy was reloaded for it.
        ConfigError when HAProxy rejects the configuration, ReloadError (temporary) when the
        reload did not finish: the next update tries again."""
        routes = routes_for(nodes, self.domain)
        changed = self.haproxy.apply(render_config(self.listen, routes))
        if changed:
            log.info("ingress routes changed: %s", ", ".join(r.name for r in routes) or "none")
        return changed
