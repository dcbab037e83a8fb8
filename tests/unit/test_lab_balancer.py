"""The lab's HAProxy configuration is the shipped docs/examples/haproxy-replicas.cfg: for two
replicas, the same directives with the file's variables filled in."""

from __future__ import annotations

import re
from pathlib import Path

from mayu_py.lab.balancer import Backend, haproxy_config

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "examples" / "haproxy-replicas.cfg"


def _directives(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].rstrip() for line in text.splitlines())
    return [line for line in lines if line.strip()]


def test_two_replicas_render_the_shipped_configuration() -> None:
    values = {
        "MAYU_LB_ADDR": "10.77.0.1",
        "MAYU_LB_HTTP_PORT": "8080",
        "MAYU_LB_HTTPS_PORT": "8443",
        "MAYU_LB_SOURCE": "10.77.0.1",
        "MAYU_REPLICA_1_HTTP": "10.77.0.1:8081",
        "MAYU_REPLICA_1_HTTPS": "10.77.0.1:8444",
        "MAYU_REPLICA_2_HTTP": "10.77.0.1:8082",
        "MAYU_REPLICA_2_HTTPS": "10.77.0.1:8445",
    }
    shipped = [
        re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], line)
        for line in _directives(SHIPPED.read_text())
    ]
    backends = [
        Backend("10.77.0.1:8081", "10.77.0.1:8444"),
        Backend("10.77.0.1:8082", "10.77.0.1:8445"),
    ]
    rendered = haproxy_config("10.77.0.1", 8080, 8443, "10.77.0.1", backends)
    assert _directives(rendered) == shipped


def test_each_further_replica_adds_a_pair_of_server_lines() -> None:
    backends = [Backend(f"10.77.0.1:{8080 + i}", f"10.77.0.1:{8443 + i}") for i in (1, 2, 3)]
    rendered = haproxy_config("10.77.0.1", 8080, 8443, "10.77.0.1", backends)
    assert '  server r3 "10.77.0.1:8083"' in rendered.splitlines()
    assert '  server r3 "10.77.0.1:8446" track mayu_http/r3' in rendered.splitlines()
