"""The server's record of a tenant: its resource, node placement, reported node states.

The store keeps a `TenantRecord` as JSON ({"doc", "assignments", "nodes", "deleting",
"conditions", "rollout"}) and gives it back typed. `rollout` holds the nodes pinned to an
earlier revision while a spec change replaces them one at a time (mayu_py.tenants.rollout).
Records are immutable: a change is a new record (`dataclasses.replace`). `status` computes the
TenantCluster's `status` from a record, with the phase rule of `tenants.states` and the
conditions of `tenants.conditions`; the conditions last stored (`refreshed`, in every
transaction that changes a tenant or its hosts) keep their lastTransitionTime while their
status holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mayu_py.tenants.conditions import (
    NodeFacts,
    node_conditions,
    rfc3339,
    stamp,
    tenant_conditions,
)
from mayu_py.tenants.nodes import tenant_nodes
from mayu_py.tenants.placement import HostInfo, why_unplaced
from mayu_py.tenants.resource import Condition, NodeStatus, TenantCluster, TenantStatus
from mayu_py.tenants.rollout import Rollout, advance, pin_changed, rollout_status
from mayu_py.tenants.states import NodeState, phase_of
from mayu_py.tenants.wire import NodeReport

TENANT_KEY = ""  # the tenant's own conditions in `TenantRecord.conditions`


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
    # as last stored: "" -> the tenant's, node -> the node's (for their transition times)
    conditions: Mapping[str, tuple[Condition, ...]] = field(default_factory=dict)
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

    def status(self, hosts: Sequence[HostInfo], now: float) -> TenantStatus:
        """The computed status as of `now`: nodes on a host whose heartbeat lapsed are
        `unknown` (since the lapse), unplaced ones say why; conditions keep the transition
        times of the stored ones while their status holds."""
        by_host = {h.name: h for h in hosts}
        facts, when = [], []
        for node in tenant_nodes(self.tenant):
            reported = self.nodes.get(node.name)
            host = self.assignments.get(node.name)
            report = reported.report if reported else None
            state = report.state if report else NodeState.PENDING
            reason, message, at = (report.reason, report.message, now) if report else ("", "", now)
            info = by_host.get(host) if host else None
            if info is not None and not info.alive(now):
                state, reason, at = NodeState.UNKNOWN, "", info.lapsed_at()
                message = f"host {host} sent no heartbeat since {rfc3339(info.last_seen)}"
            unplaced = why_unplaced(node, list(hosts), now) if host is None else None
            facts.append(NodeFacts(node.name, state, host, reason, message, unplaced))
            when.append(at)
        lapses = [at for f, at in zip(facts, when, strict=True) if f.state is NodeState.UNKNOWN]
        lapsed = {f.name for f in facts if f.state is NodeState.UNKNOWN}
        nodes = [
            NodeStatus(
                name=node.name,
                role=node.role,
                host=f.host,
                state=f.state,
                ip=r.report.ip if (r := self.nodes.get(node.name)) else None,
                conditions=stamp(node_conditions(f), self.conditions.get(f.name, ()), at),
            )
            for node, f, at in zip(tenant_nodes(self.tenant), facts, when, strict=True)
        ]
        generations = [r.report.generation if (r := self.nodes.get(n.name)) else 0 for n in nodes]
        own = tenant_conditions(facts, deleting=self.deleting)
        return TenantStatus(
            phase=phase_of((n.state for n in nodes), deleting=self.deleting),
            observedGeneration=min(generations, default=0),
            conditions=stamp(own, self.conditions.get(TENANT_KEY, ()), max(lapses, default=now)),
            nodes=nodes,
            rollout=rollout_status(self.tenant, self.rollout, self.reports, lapsed),
        )

    def refreshed(self, hosts: Sequence[HostInfo], now: float) -> TenantRecord:
        """The record with its conditions as of `now` stored (for their transition times)."""
        status = self.status(hosts, now)
        conditions = {TENANT_KEY: tuple(status.conditions)}
        conditions |= {n.name: tuple(n.conditions) for n in status.nodes}
        return dataclasses.replace(self, conditions=conditions)

    def with_spec(self, tenant: TenantCluster) -> TenantRecord:
        """The record after its resource became `tenant` (a new generation): each node whose
        VM would change and that has run stays pinned to what it runs (rollout.pin_changed);
        the assignments of nodes no longer in the spec go."""
        names = {n.name for n in tenant_nodes(tenant)}
        assignments = {n: h for n, h in self.assignments.items() if n in names}
        rollout = pin_changed(self.tenant, tenant, self.rollout, self.reports)
        return dataclasses.replace(self, tenant=tenant, assignments=assignments, rollout=rollout)

    def advanced(self, lapsed: Collection[str] = ()) -> TenantRecord:
        """The record with its rollout moved on when every node is ready for the next step
        (rollout.advance; `lapsed`: nodes on hosts whose heartbeat lapsed)."""
        if not self.rollout.members or self.deleting:
            return self
        rollout = advance(self.tenant, self.rollout, self.reports, lapsed)
        return dataclasses.replace(self, rollout=rollout)

    @property
    def held_addresses(self) -> set[str]:
        """Addresses of nodes whose agents still hold them (reported, not deleted): a removed
        node's address is free once it is gone (mayu_py.tenants.addresses)."""
        return {
            r.report.ip for r in self.nodes.values() if r.report.ip and r.state != NodeState.DELETED
        }

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
            "conditions": {
                key: [c.model_dump(mode="json") for c in found]
                for key, found in self.conditions.items()
            },
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
            conditions={
                key: tuple(Condition.model_validate(c) for c in found)
                for key, found in (data.get("conditions") or {}).items()
            },
            rollout=Rollout.from_json(data.get("rollout")),
        )
