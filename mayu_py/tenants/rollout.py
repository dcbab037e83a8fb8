"""Rolling replacement of a tenant's nodes: one node at a time, masters first (pure).

A spec change that gives an existing node a new `spec_hash` (Kubernetes version, size, image)
does not reach the agents at once. The server *pins* each such node to the revision of the
tenant it runs (its generation and spec, kept in `Rollout.revisions`), so the host keeps
running it as it is. `advance` unpins one node when every node of the tenant is settled (ready
in the revision it should run, its host alive): the agent then drains it, deletes it and
recreates it from the current spec. The next node goes only when that one is ready again, so
at most one node is ever down, masters go one by one before workers (`tenant_nodes` lists
masters first), and a kubelet never runs a newer Kubernetes than the apiservers.

Nodes that never ran (nothing reported of them) are not pinned: they are created from the
current spec straight away. A second change during a rollout pins the nodes it changes at
the revision they run then; nodes already pinned keep their pin.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from mayu_py.tenants.nodes import TenantNode, tenant_nodes
from mayu_py.tenants.resource import RolloutStatus, TenantCluster
from mayu_py.tenants.states import NodeState
from mayu_py.tenants.wire import NodeReport

# the step of the node being replaced, from its last report
_STEPS = {
    NodeState.READY: "draining",  # still the old VM: its agent drains and deletes it next
    NodeState.SHUTOFF: "recreating",
    NodeState.PENDING: "recreating",
    NodeState.DEFINED: "recreating",
    NodeState.DELETED: "recreating",
    NodeState.RUNNING: "booting",  # the new VM runs, not ready yet
}


@dataclass(frozen=True)
class Rollout:
    """Nodes pinned to an earlier revision, those revisions, and the nodes of the rollout."""

    pins: Mapping[str, int] = field(default_factory=dict)  # node -> generation it runs
    revisions: Mapping[int, TenantCluster] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # every node this rollout replaces, in order

    def to_json(self) -> dict[str, Any]:
        return {
            "pins": dict(self.pins),
            "revisions": {
                str(g): t.model_dump(mode="json", exclude={"status"})
                for g, t in self.revisions.items()
            },
            "members": list(self.members),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Rollout:
        if not data:
            return cls()
        return cls(
            pins={str(n): int(g) for n, g in (data.get("pins") or {}).items()},
            revisions={
                int(g): TenantCluster.model_validate(doc)
                for g, doc in (data.get("revisions") or {}).items()
            },
            members=tuple(data.get("members") or ()),
        )


def desired_nodes(tenant: TenantCluster, rollout: Rollout) -> list[TenantNode]:
    """The nodes the hosts should run now: pinned ones as their revision has them."""
    pinned = {
        g: {n.name: n for n in tenant_nodes(t)}
        for g, t in rollout.revisions.items()
        if g in rollout.pins.values()
    }
    return [
        pinned[rollout.pins[n.name]].get(n.name, n) if n.name in rollout.pins else n
        for n in tenant_nodes(tenant)
    ]


def pin_changed(
    running: TenantCluster,
    changed: TenantCluster,
    rollout: Rollout,
    reported: Mapping[str, NodeReport],
) -> Rollout:
    """The rollout after `running` (the tenant as it was) became `changed`: every node that
    has run and whose VM would change is pinned to what it runs now."""
    now = {n.name: n for n in desired_nodes(running, rollout)}
    pins = dict(rollout.pins)
    revisions = dict(rollout.revisions)
    members = list(rollout.members)
    names = set()
    for node in tenant_nodes(changed):
        names.add(node.name)
        current = now.get(node.name)
        report = reported.get(node.name)
        if current is None or node.name in pins or report is None or not report.generation:
            continue
        if current.spec_hash != node.spec_hash:
            pins[node.name] = current.generation
            revisions.setdefault(current.generation, running)
            if node.name not in members:
                members.append(node.name)
    pins = {n: g for n, g in pins.items() if n in names}
    order = [n.name for n in tenant_nodes(changed)]
    return _pruned(pins, revisions, tuple(n for n in order if n in members))


def _pruned(
    pins: dict[str, int], revisions: dict[int, TenantCluster], members: tuple[str, ...]
) -> Rollout:
    kept = {g: t for g, t in revisions.items() if g in pins.values()}
    return Rollout(pins, kept, members)


def _settled(node: TenantNode, reported: Mapping[str, NodeReport], lapsed: Collection[str]) -> bool:
    report = reported.get(node.name)
    return (
        report is not None
        and node.name not in lapsed
        and report.state == NodeState.READY
        and report.generation == node.generation
    )


def advance(
    tenant: TenantCluster,
    rollout: Rollout,
    reported: Mapping[str, NodeReport],
    lapsed: Collection[str] = (),
) -> Rollout:
    """Unpin the next node when every node is settled; forget a rollout that is done."""
    if not rollout.members:
        return rollout
    nodes = desired_nodes(tenant, rollout)
    if not all(_settled(n, reported, lapsed) for n in nodes):
        return rollout
    following = next((n.name for n in nodes if n.name in rollout.pins), None)
    if following is None:
        return Rollout()  # every member replaced and ready
    pins = {n: g for n, g in rollout.pins.items() if n != following}
    return _pruned(pins, dict(rollout.revisions), rollout.members)


def rollout_status(
    tenant: TenantCluster,
    rollout: Rollout,
    reported: Mapping[str, NodeReport],
    lapsed: Collection[str] = (),
) -> RolloutStatus | None:
    """`status.rollout`: the node being replaced and its step, or the node next in line
    (step `waiting`: a node of the tenant is not ready); None when no rollout runs."""
    if not rollout.members:
        return None
    nodes = {n.name: n for n in desired_nodes(tenant, rollout)}
    members = [nodes[m] for m in rollout.members if m in nodes]
    done = {m.name for m in members if m.name not in rollout.pins and _settled(m, reported, lapsed)}
    current = next((m for m in members if m.name not in set(rollout.pins) | done), None)
    base = {"done": len(done), "total": len(members), "revision": tenant.metadata.generation}
    if current is not None:
        report = reported.get(current.name)
        state = report.state if report else NodeState.PENDING
        step = _STEPS.get(state, str(state)) if current.name not in lapsed else "host lost"
        message = report.message if report else ""
        return RolloutStatus(node=current.name, step=step, message=message, **base)
    following = next((m.name for m in members if m.name in rollout.pins), None)
    return RolloutStatus(node=following, step="waiting", **base)
