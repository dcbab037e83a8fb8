"""The server's record of a tenant: its resource, node placement, reported node states.

The store keeps a `TenantRecord` as JSON ({"doc", "assignments", "nodes", "deleting",
"rollout"}) and gives it back typed. `rollout` holds the nodes pinned to an earlier revision
while a spec change replaces them one at a time (mayu_py.tenants.rollout). Records are
immutable: a change is a new record (`dataclasses.replace`). `status` computes the
TenantCluster's `status` from a record, with the phase rule of `tenants.states`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mayu_py.tenants.nodes import tenant_nodes
from mayu_py.tenants.resource import NodeStatus, TenantCluster, TenantStatus
from mayu_py.tenants.rollout import Rollout, rollout_status
from mayu_py.tenants.states import NodeState, phase_of
from mayu_py.tenants.wire import NodeReport


@dataclass(frozen=True)
class ReportedNode:
    """A node's last report, as its agent sent it, and when the server received it."""

    report: NodeReport
    updated: float = 0.0

    @property
    def state(self) -> NodeState:
        return self.report.state

    def to_json(self) -> dict[str, Any]:
        return self.report.to_json() | {"updated": self.updated}

    @classmethod
    def from_json(cls, tenant: str, node: str, data: dict[str, Any]) -> ReportedNode:
        return cls(NodeReport.from_json(tenant, node, data), float(data.get("updated") or 0.0))


@dataclass(frozen=True)
class TenantRecord:
    """A tenant as the server keeps it. `tenant` carries no status (it is computed)."""

    tenant: TenantCluster
    assignments: Mapping[str, str] = field(default_factory=dict)  # node -> host
    nodes: Mapping[str, ReportedNode] = field(default_factory=dict)  # node -> last report
    deleting: bool = False
    rollout: Rollout = field(default_factory=Rollout)

    @property
    def name(self) -> str:
        return self.tenant.name

    @property
    def purgeable(self) -> bool:
        """Deleting, and no agent still holds a node: each assigned node reported `deleted`
        or never reported at all (an agent that never saw a node has nothing to remove)."""
        return self.deleting and all(
            self.nodes[node].state == NodeState.DELETED
            for node in self.assignments
            if node in self.nodes
        )

    def status(self, lapsed: set[str]) -> TenantStatus:
        """The computed status; nodes in `lapsed` (their host stopped heartbeating) are
        `unknown`."""
        nodes = []
        for node in tenant_nodes(self.tenant):
            reported = self.nodes.get(node.name)
            state = reported.state if reported else NodeState.PENDING
            nodes.append(
                NodeStatus(
                    name=node.name,
                    role=node.role,
                    host=self.assignments.get(node.name),
                    state=NodeState.UNKNOWN if node.name in lapsed else state,
                    ip=reported.report.ip if reported else None,
                )
            )
        generations = [r.report.generation if (r := self.nodes.get(n.name)) else 0 for n in nodes]
        return TenantStatus(
            phase=phase_of((n.state for n in nodes), deleting=self.deleting),
            observedGeneration=min(generations, default=0),
            nodes=nodes,
            rollout=rollout_status(self.tenant, self.rollout, self.reports, lapsed),
        )

    @property
    def reports(self) -> dict[str, NodeReport]:
        """node -> its last report."""
        return {name: reported.report for name, reported in self.nodes.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "doc": self.tenant.model_dump(mode="json", exclude={"status"}),
            "assignments": dict(self.assignments),
            "nodes": {name: r.to_json() for name, r in self.nodes.items()},
            "deleting": self.deleting,
            "rollout": self.rollout.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TenantRecord:
        tenant = TenantCluster.model_validate(data["doc"])
        return cls(
            tenant=tenant,
            assignments=dict(data.get("assignments") or {}),
            nodes={
                node: ReportedNode.from_json(tenant.name, node, reported)
                for node, reported in (data.get("nodes") or {}).items()
            },
            deleting=bool(data.get("deleting")),
            rollout=Rollout.from_json(data.get("rollout")),
        )
