"""Ingress to tenant API servers: each host's HAProxy routes TLS by SNI, never terminating it.

`haproxy_config` renders the configuration from typed routes (pure); `haproxy` runs HAProxy in
master-worker mode as a supervised child and reloads it without dropping connections. The
agent (mayu_py.agent.ingress) decides the routes from the tenant nodes on its host.
"""

from __future__ import annotations

from mayu_py.ingress.haproxy import HaproxySupervisor
from mayu_py.ingress.haproxy_config import Route, render_config

__all__ = ["HaproxySupervisor", "Route", "render_config"]
