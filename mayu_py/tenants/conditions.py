"""Kubernetes-style conditions of tenant nodes and tenants: why each is in its state.

A node has `Scheduled` (placed on a host, or why not) and `Ready` (the VM's guest said
MAYU-READY, or the reason it has not: `Booting`, `BaseImageMissing`, `DefineFailed`, ...). A
tenant has `Ready`, `Progressing` and `Degraded`, aggregated from its nodes. `stamp` gives each
condition its lastTransitionTime: kept from the previous conditions while the status (True,
False, Unknown) stays the same, else the time of the change. Pure: the caller gives the times.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mayu_py.tenants.resource import Condition
from mayu_py.tenants.states import NodeState

SCHEDULED, READY, PROGRESSING, DEGRADED = "Scheduled", "Ready", "Progressing", "Degraded"
REASON_PATTERN = r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$"  # Kubernetes' (or empty)
MAX_REASON = 64

# Why a node is in its state when its agent told no more (server side and agent side alike).
_STATE_REASONS: dict[NodeState, tuple[str, str]] = {
    NodeState.PENDING: ("Creating", "its host has not created the VM of this spec yet"),
    NodeState.DEFINED: ("Defined", "the VM is defined, not started"),
    NodeState.RUNNING: ("Booting", "the VM runs; its guest has not said MAYU-READY yet"),
    NodeState.READY: ("Ready", "the guest said MAYU-READY"),
    NodeState.SHUTOFF: ("ShutOff", "the VM is shut off"),
    NodeState.CRASHED: ("Crashed", "the VM crashed"),
    NodeState.PAUSED: ("Paused", "the VM is paused"),
    NodeState.FAILED: ("Failed", "its agent could not create or start it"),
    NodeState.DELETED: ("Deleted", "its agent removed the VM and its files"),
    NodeState.UNKNOWN: ("HostLost", "its host stopped sending heartbeats"),
}
_DEGRADED = frozenset({NodeState.FAILED, NodeState.CRASHED, NodeState.UNKNOWN})
_ON_ITS_WAY = frozenset({NodeState.PENDING, NodeState.DEFINED, NodeState.RUNNING})


def rfc3339(seconds: float) -> str:
    """`2026-11-30T21:55:58Z` (UTC, whole seconds: what Kubernetes writes)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_reason(state: NodeState) -> tuple[str, str]:
    """The reason and message of a state when nothing more specific is known."""
    return _STATE_REASONS[state]


@dataclass(frozen=True)
class NodeFacts:
    """What the conditions of one node are made of."""

    name: str
    state: NodeState
    host: str | None
    reason: str = ""  # as its agent reported it ("" : the state's own)
    message: str = ""
    unplaced: tuple[str, str] | None = None  # (reason, message) when no host took it


def node_conditions(facts: NodeFacts) -> list[Condition]:
    """`Scheduled` and `Ready` of one node, without times."""
    if facts.host is None:
        reason, message = facts.unplaced or ("Unschedulable", "no host has taken it yet")
        return [
            Condition(type=SCHEDULED, status="False", reason=reason, message=message),
            Condition(type=READY, status="False", reason=reason, message=message),
        ]
    default_reason, default_message = state_reason(facts.state)
    if facts.state is NodeState.UNKNOWN:
        reason, message = default_reason, facts.message or default_message
    else:
        reason = facts.reason or default_reason
        message = facts.message or (default_message if reason == default_reason else "")
    status = {NodeState.READY: "True", NodeState.UNKNOWN: "Unknown"}.get(facts.state, "False")
    return [
        Condition(type=SCHEDULED, status="True", reason="Placed", message=f"on host {facts.host}"),
        Condition(type=READY, status=status, reason=reason, message=message),  # type: ignore[arg-type]
    ]


def _first_why(nodes: Iterable[tuple[NodeFacts, Condition]]) -> tuple[str, str]:
    """The reason of the first node given, and a message naming the nodes with theirs."""
    listed = list(nodes)
    reason = listed[0][1].reason
    parts = [f"{f.name}: {c.reason}" + (f" ({c.message})" if c.message else "") for f, c in listed]
    return reason, "; ".join(parts)[:1000]


def _about(
    kind: str, status: str, nodes: Sequence[NodeFacts], ready_of: dict[str, Condition]
) -> Condition:
    """A tenant condition whose reason and message come from the nodes it is about."""
    reason, detail = _first_why((f, ready_of[f.name]) for f in nodes)
    return Condition(type=kind, status=status, reason=reason, message=detail)  # type: ignore[arg-type]


def tenant_conditions(nodes: Sequence[NodeFacts], *, deleting: bool = False) -> list[Condition]:
    """`Ready`, `Progressing` and `Degraded` of a tenant from its nodes, without times."""
    ready_of = {f.name: next(c for c in node_conditions(f) if c.type == READY) for f in nodes}
    ready = [f for f in nodes if f.state is NodeState.READY and f.host is not None]
    unplaced = [f for f in nodes if f.host is None]
    degraded = [f for f in nodes if f.host is not None and f.state in _DEGRADED]
    moving = [f for f in nodes if f.host is not None and f.state in _ON_ITS_WAY]
    count = f"{len(ready)} of {len(nodes)} nodes ready"
    if deleting:
        ready_c = Condition(type=READY, status="False", reason="Deleting", message=count)
    elif nodes and len(ready) == len(nodes):
        ready_c = Condition(type=READY, status="True", reason="AllNodesReady", message=count)
    else:
        why = [(f, ready_of[f.name]) for f in nodes if f not in ready]
        reason, detail = _first_why(why) if why else ("NoNodes", "")
        ready_c = Condition(type=READY, status="False", reason=reason, message=f"{count}: {detail}")
    if deleting:
        progressing = Condition(
            type=PROGRESSING, status="True", reason="Deleting", message="agents remove its nodes"
        )
    elif moving or unplaced:  # on their way, or stalled by what keeps them from a host
        status = "True" if moving else "False"
        progressing = _about(PROGRESSING, status, moving or unplaced, ready_of)
    else:
        progressing = Condition(
            type=PROGRESSING, status="False", reason="Settled", message="no node is on its way"
        )
    degraded_c = (
        _about(DEGRADED, "True", degraded, ready_of)
        if degraded
        else Condition(
            type=DEGRADED, status="False", reason="NoFailures", message="no node failed or lost"
        )
    )
    return [ready_c, progressing, degraded_c]


def stamp(new: Iterable[Condition], old: Sequence[Condition], at: float) -> list[Condition]:
    """`new` with lastTransitionTime: an old condition's time when its type had the same
    status, else `at` (Kubernetes' meta.SetStatusCondition)."""
    before = {c.type: c for c in old}
    result = []
    for condition in new:
        previous = before.get(condition.type)
        if previous is not None and previous.status == condition.status:
            when = previous.lastTransitionTime or rfc3339(at)
        else:
            when = rfc3339(at)
        result.append(condition.model_copy(update={"lastTransitionTime": when}))
    return result
