"""The HAProxy configuration of a host's tenant API ingress (RECIPES section 17).

One TCP frontend on the listen address: the TLS ClientHello is inspected (never terminated),
anything that is not TLS is rejected, and a server name `<tenant>.api.<domain>` selects that
tenant's backend; an unknown name matches no rule and the connection is closed. Each backend
connects from the host's ingress address on the tenant's network to the tenant's masters'
API port, with TCP health checks; a master that refuses is retried on another (redispatch).
Long timeouts because Kubernetes watches are long-lived; an old worker left by a reload ends
its last connections within `hard-stop-after`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FRONTEND = "tenant-api"
BACKEND_PREFIX = "tenant-"
HARD_STOP_AFTER = "1h"


@dataclass(frozen=True)
class Route:
    """Connections for `name` go to `servers` ((name, address) pairs), from `source`."""

    tenant: str
    name: str
    source: str
    servers: tuple[tuple[str, str], ...]
    port: int = 6443


def render_config(listen: str, routes: Iterable[Route]) -> str:
    """The whole configuration: the same routes always give the same text (sorted)."""
    ordered = sorted(routes, key=lambda r: r.tenant)
    lines = [
        "# mayu agent: tenant API ingress (SNI routing, TLS passed through); rendered.",
        "global",
        "  master-worker",
        "  log stderr format raw local0 notice",
        f"  hard-stop-after {HARD_STOP_AFTER}",
        "defaults",
        "  mode tcp",
        "  log global",
        "  option redispatch",
        "  retries 2",
        "  timeout connect 2s",
        "  timeout client 1h",
        "  timeout server 1h",
        "  timeout check 2s",
        "  default-server inter 2s fall 2 rise 1",
        f"frontend {FRONTEND}",
        f"  bind {listen}",
        "  tcp-request inspect-delay 5s",
        "  tcp-request content reject unless { req_ssl_hello_type 1 }",
    ]
    lines += [
        f"  use_backend {BACKEND_PREFIX}{r.tenant} if {{ req_ssl_sni -i {r.name} }}"
        for r in ordered
    ]
    for route in ordered:
        lines.append(f"backend {BACKEND_PREFIX}{route.tenant}")
        lines += [
            f"  server {name} {address}:{route.port} check source {route.source}"
            for name, address in sorted(route.servers)
        ]
    return "\n".join(lines) + "\n"
