"""An in-memory DesiredSource for agent tests: serves given nodes, keeps what was reported."""

from __future__ import annotations

import threading

from mayu_py.tenants import HostRegistration, NodeReport, TenantNode

DEFAULT_IGNITION = b'{"ignition":{"version":"3.3.0"}}'


class StaticSource:
    """Desired state from a list the test sets; registrations and reports are recorded."""

    def __init__(
        self, nodes: list[TenantNode] | None = None, ignition: dict[str, bytes] | None = None
    ) -> None:
        self.nodes = list(nodes or [])
        self.ignition_by_node = dict(ignition or {})
        self.registrations: list[HostRegistration] = []
        self.reports: list[NodeReport] = []
        self.wake_event = threading.Event()  # never set: no watch

    def register(self, host: HostRegistration) -> None:
        self.registrations.append(host)

    def desired_nodes(self) -> list[TenantNode]:
        return list(self.nodes)

    def ignition(self, node: TenantNode) -> bytes:
        return self.ignition_by_node.get(node.name, DEFAULT_IGNITION)

    def report(self, report: NodeReport) -> None:
        self.reports.append(report)

    def close(self) -> None:
        pass

    def last_reports(self) -> dict[str, NodeReport]:
        return {r.node: r for r in self.reports}
