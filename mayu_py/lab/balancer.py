"""The lab's TCP balancer in front of its `mayu serve` replicas (`mayu lab up --store etcd`):
HAProxy with the configuration docs/examples/haproxy-replicas.cfg ships (docs/ha.md), rendered
for N replicas: round robin, TLS passed through, the PROXY protocol (v1) to every replica so
each sees the machine's address (boot tokens are bound to it), a replica in while its
/readyz answers. tests/unit/test_lab_balancer.py checks that two replicas render the shipped
file's directives with its variables filled in."""

from __future__ import annotations

from dataclasses import dataclass

HAPROXY = "haproxy"


@dataclass(frozen=True)
class Backend:
    """One replica's two listeners, HOST:PORT each."""

    http: str
    https: str


def haproxy_config(
    address: str, http_port: int, https_port: int, source: str, backends: list[Backend]
) -> str:
    """The balancer's configuration: machines reach it at `address`, it connects to the
    replicas from `source` (their `server.proxy_protocol_from`)."""
    names = [f"r{i}" for i in range(1, len(backends) + 1)]
    lines = [
        "# mayu lab: HAProxy in front of the replicas (docs/ha.md); generated, do not edit",
        "global",
        "  maxconn 4000",
        "defaults",
        "  mode tcp",
        "  timeout connect 2s",
        "  timeout client 60s",
        "  timeout server 60s",
        "  retries 2",
        "  option redispatch",
        "frontend mayu_http",
        f'  bind "{address}:{http_port}"',
        "  default_backend mayu_http",
        "frontend mayu_https",
        f'  bind "{address}:{https_port}"',
        "  default_backend mayu_https",
        "backend mayu_http",
        "  balance roundrobin",
        f'  source "{source}"',
        "  option httpchk GET /readyz",
        "  http-check expect status 200",
        "  default-server send-proxy check inter 2s fall 2 rise 2",
        *(f'  server {n} "{b.http}"' for n, b in zip(names, backends, strict=True)),
        "backend mayu_https",
        "  balance roundrobin",
        f'  source "{source}"',
        "  default-server send-proxy",
        *(
            f'  server {n} "{b.https}" track mayu_http/{n}'
            for n, b in zip(names, backends, strict=True)
        ),
    ]
    return "\n".join(lines) + "\n"


def haproxy_argv(config_path: str) -> list[str]:
    """HAProxy in the foreground (the lab records its pid), on `config_path`."""
    return [HAPROXY, "-db", "-f", config_path]
