"""Node states and tenant phases, and the one rule that turns node states into a phase.

Used by the server's view of a tenant, by the agent that reports its nodes and by the
Kubernetes source that writes `status.phase` itself: all three agree because they share this.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class NodeState(StrEnum):
    """What a tenant node is doing, as its agent observed it (or, for `unknown`, the server)."""

    PENDING = "pending"  # not placed, or not created yet in its current spec
    DEFINED = "defined"
    RUNNING = "running"  # booting: the VM runs, its guest has not said MAYU-READY yet
    READY = "ready"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    PAUSED = "paused"
    FAILED = "failed"
    DELETED = "deleted"  # the agent removed the node's VM and files
    UNKNOWN = "unknown"  # the server's verdict when the node's host stopped heartbeating


REPORTED_STATES: tuple[NodeState, ...] = tuple(s for s in NodeState if s is not NodeState.UNKNOWN)
"""The states an agent may report; `unknown` is only ever computed by the server."""

_DEGRADED = frozenset({NodeState.FAILED, NodeState.CRASHED, NodeState.UNKNOWN})


class Phase(StrEnum):
    """A tenant's `status.phase`."""

    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    READY = "Ready"
    DEGRADED = "Degraded"
    DELETING = "Deleting"
    INVALID = "Invalid"  # the Kubernetes source's verdict on an object that does not validate


def phase_of(states: Iterable[NodeState], *, deleting: bool = False) -> Phase:
    """Deleting while being deleted; Ready when every node is ready; Degraded when one failed,
    crashed or is unknown; else Provisioning."""
    seen = set(states)
    if deleting:
        return Phase.DELETING
    if seen == {NodeState.READY}:
        return Phase.READY
    if seen & _DEGRADED:
        return Phase.DEGRADED
    return Phase.PROVISIONING
