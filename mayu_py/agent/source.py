"""Where desired state comes from: the `DesiredSource` protocol and the mayu server's API.

The other source is TenantCluster objects in Kubernetes (kube_source.py). A source's errors
say whether they are temporary (`MayuError.temporary`: the pass is retried after a short
delay) or permanent.
"""

from __future__ import annotations

import socket
import threading
from typing import Protocol
from urllib.parse import urlparse

from mayu_py.api_client import AdminClient, ApiError
from mayu_py.tenants import HostRegistration, NodeReport, TenantNode

WATCH_EVERY_S = 0.5


class DesiredSource(Protocol):
    """What the agent needs from a desired-state source."""

    wake_event: threading.Event
    """Set by the source when desired state may have changed (a watch); the agent then
    reconciles at once and clears it. A source without a watch never sets it."""

    def register(self, host: HostRegistration) -> None:
        """Register this host, or refresh its heartbeat."""

    def desired_nodes(self) -> list[TenantNode]:
        """Every node this host should run; raise (never return []) when unknown."""

    def ignition(self, node: TenantNode) -> bytes:
        """The node's rendered Ignition config."""

    def report(self, report: NodeReport) -> None:
        """Record a node's observed state."""

    def drain_kubeconfig(self, tenant: str) -> str:
        """This host's kubeconfig for draining the tenant's nodes (mayu_py.agent.drain): a
        credential that may cordon and evict, never the tenant's admin one."""

    def close(self) -> None:
        """Stop any background work (a watch)."""


class ApiSource:
    """The mayu server's admin API, authenticated with a bearer (agent or admin) token."""

    def __init__(
        self, server_url: str, token: str, host_name: str, timeout_s: float = 10.0
    ) -> None:
        self.server_url = server_url
        self.host_name = host_name
        self.client = AdminClient(server_url, token, timeout=timeout_s)
        self._watcher = AdminClient(server_url, token, timeout=timeout_s)  # its own session
        self.wake_event = threading.Event()
        self._closed = threading.Event()

    def register(self, host: HostRegistration) -> None:
        self.client.register_host(host)

    def desired_nodes(self) -> list[TenantNode]:
        return self.client.host_nodes(self.host_name)

    def ignition(self, node: TenantNode) -> bytes:
        return self.client.node_ignition(node.tenant, node.name)

    def report(self, report: NodeReport) -> None:
        self.client.report_node(report)

    def drain_kubeconfig(self, tenant: str) -> str:
        """This host's drain kubeconfig for the tenant (mayu_py.agent.drain): a credential
        that may cordon and evict, not the tenant's admin one."""
        path = f"/api/v1/hosts/{self.host_name}/tenants/{tenant}/drain-kubeconfig"
        return str(self.client.request("GET", path))

    def start_watch(self, every_s: float = WATCH_EVERY_S) -> None:
        """Check the host's desired nodes every `every_s` with If-None-Match (a 304 when
        nothing changed) and set `wake_event` on a change, so the agent acts within about a
        second instead of at its next periodic pass (a 304 costs the server ~1 ms)."""
        thread = threading.Thread(target=self._watch, args=(every_s,), daemon=True)
        thread.start()

    def _watch(self, every_s: float) -> None:
        etag = ""
        while not self._closed.wait(every_s):
            try:
                new = self._watcher.host_nodes_etag(self.host_name, etag)
            except ApiError:
                continue  # the next pass reports what is wrong
            if new != etag:
                if etag:
                    self.wake_event.set()
                etag = new

    def close(self) -> None:
        self._closed.set()

    def local_address(self) -> str:
        """The local address that routes to the server (a UDP connect sends no packet)."""
        parsed = urlparse(self.server_url)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((parsed.hostname or "127.0.0.1", parsed.port or 80))
                return str(sock.getsockname()[0])
            except OSError:
                return ""
