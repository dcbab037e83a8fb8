"""An in-memory DesiredSource for agent tests: serves given nodes, keeps what was reported."""

from __future__ import annotations

import threading
import time

from mayu_py.errors import NotFound
from mayu_py.tenants import HostRegistration, NodeReport, TenantNode

DEFAULT_IGNITION = b'{"ignition":{"version":"3.3.0"}}'


class StaticSource:
    """Desired state from a list the test sets; registrations, reports and the times desired
    state was asked for are recorded. `fail_next` errors are raised by the next calls of
    `desired_nodes`, `ignition_errors[node]` by every `ignition` of that node."""

    def __init__(
        self, nodes: list[TenantNode] | None = None, ignition: dict[str, bytes] | None = None
    ) -> None:
        self.nodes = list(nodes or [])
        self.ignition_by_node = dict(ignition or {})
        self.registrations: list[HostRegistration] = []
        self.reports: list[NodeReport] = []
        self.wake_event = threading.Event()  # never set: no watch
        self.asked: list[float] = []  # time.monotonic() of each desired_nodes call
        self.fail_next: list[Exception] = []
        self.ignition_errors: dict[str, Exception] = {}

    def register(self, host: HostRegistration) -> None:
        self.registrations.append(host)

    def desired_nodes(self) -> list[TenantNode]:
        self.asked.append(time.monotonic())
        if self.fail_next:
            raise self.fail_next.pop(0)
        return list(self.nodes)

    def ignition(self, node: TenantNode) -> bytes:
        if node.name in self.ignition_errors:
            raise self.ignition_errors[node.name]
        return self.ignition_by_node.get(node.name, DEFAULT_IGNITION)

    def report(self, report: NodeReport) -> None:
        self.reports.append(report)

    def drain_kubeconfig(self, tenant: str) -> str:
        raise NotFound("no tenant API here", {"tenant": tenant})  # the drain says it skipped

    def close(self) -> None:
        pass

    def last_reports(self) -> dict[str, NodeReport]:
        return {r.node: r for r in self.reports}
