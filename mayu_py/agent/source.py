"""Where desired state comes from: the mayu server's REST API, or a static in-memory list."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from mayu_py.agent.desired import DesiredNode
from mayu_py.errors import MayuError, NotFound, PeerUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostRegistration:
    name: str
    cpus: int
    memory_mib: int
    address: str


@dataclass(frozen=True)
class NodeReport:
    tenant: str
    node: str
    state: str  # pending | running | ready | shutoff | crashed | paused | failed | deleted
    ip: str | None
    host: str
    message: str = ""
    generation: int = 0  # the tenant generation the node's VM reflects (0: none yet)


class DesiredSource(Protocol):
    def register(self, host: HostRegistration) -> None:
        """Register this host, or refresh its heartbeat."""

    def desired_nodes(self) -> list[DesiredNode]:
        """Every node this host should run; raise (never return []) when unknown."""

    def ignition(self, node: DesiredNode) -> bytes:
        """The node's rendered Ignition config."""

    def report(self, report: NodeReport) -> None:
        """Record a node's observed state."""


class StaticSource:
    """In-memory desired state for tests and single-host use; keeps what was reported."""

    def __init__(
        self, nodes: list[DesiredNode] | None = None, ignition: dict[str, bytes] | None = None
    ) -> None:
        self.nodes = list(nodes or [])
        self.ignition_by_node = dict(ignition or {})
        self.registrations: list[HostRegistration] = []
        self.reports: list[NodeReport] = []

    def register(self, host: HostRegistration) -> None:
        self.registrations.append(host)

    def desired_nodes(self) -> list[DesiredNode]:
        return list(self.nodes)

    def ignition(self, node: DesiredNode) -> bytes:
        default = b'{"ignition":{"version":"3.3.0"}}'
        return self.ignition_by_node.get(node.node, default)

    def report(self, report: NodeReport) -> None:
        self.reports.append(report)

    def last_reports(self) -> dict[str, NodeReport]:
        return {r.node: r for r in self.reports}


class ApiSource:
    """The mayu server's admin API, authenticated with a bearer token."""

    def __init__(
        self, server_url: str, token: str, host_name: str, timeout_s: float = 10.0
    ) -> None:
        self.base = server_url.rstrip("/")
        self.host_name = host_name
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.wake_event = threading.Event()
        self._closed = threading.Event()

    def _request(self, method: str, path: str, body: Any = None) -> requests.Response:
        url = self.base + path
        try:
            resp = self.session.request(method, url, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise PeerUnavailable(f"mayu server not reachable: {method} {url}: {exc}") from exc
        if resp.status_code == 404:
            raise NotFound(f"{method} {url}: 404", _error_body(resp))
        if resp.status_code in (502, 503, 504):
            raise PeerUnavailable(f"{method} {url}: {resp.status_code}", _error_body(resp))
        if resp.status_code >= 400:
            raise MayuError(f"{method} {url}: {resp.status_code}", _error_body(resp))
        return resp

    def register(self, host: HostRegistration) -> None:
        body = {
            "name": host.name,
            "cpus": host.cpus,
            "memory_mib": host.memory_mib,
            "address": host.address,
        }
        self._request("POST", "/api/v1/hosts", body)

    def desired_nodes(self) -> list[DesiredNode]:
        resp = self._request("GET", f"/api/v1/hosts/{self.host_name}/nodes")
        return [DesiredNode.from_json(item) for item in resp.json()]

    def start_watch(self, every_s: float = 0.5) -> None:
        """Check the host's desired nodes every `every_s` with If-None-Match (a 304 when
        nothing changed) and set `wake_event` on a change, so the agent acts within about a
        second instead of at its next periodic pass (a 304 costs the server ~1 ms)."""
        thread = threading.Thread(target=self._watch, args=(every_s,), daemon=True)
        thread.start()

    def _watch(self, every_s: float) -> None:
        session = requests.Session()
        session.headers.update(self.session.headers)
        url = f"{self.base}/api/v1/hosts/{self.host_name}/nodes"
        etag = ""
        while not self._closed.wait(every_s):
            try:
                resp = session.get(url, headers={"If-None-Match": etag}, timeout=self.timeout_s)
            except requests.RequestException:
                continue
            new = resp.headers.get("ETag", "")
            if resp.status_code == 200 and new != etag:
                if etag:
                    self.wake_event.set()
                etag = new

    def close(self) -> None:
        self._closed.set()

    def ignition(self, node: DesiredNode) -> bytes:
        path = f"/api/v1/tenants/{node.tenant}/nodes/{node.node}/ignition"
        return self._request("GET", path).content

    def report(self, report: NodeReport) -> None:
        body = {
            "state": report.state,
            "ip": report.ip,
            "host": report.host,
            "message": report.message,
            "generation": report.generation,
        }
        self._request("PUT", f"/api/v1/tenants/{report.tenant}/nodes/{report.node}/status", body)


def _error_body(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return {"body": resp.text[:500]}
