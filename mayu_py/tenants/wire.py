"""What an agent and the server tell each other: the host registration (a heartbeat), node
reports, and the overlay peers of a tenant (`OverlayPeer`, in each desired node).

The agent builds these and its API source sends `to_json()`; the server reads the same bodies
with `from_json`, so both ends share one definition of each message.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from mayu_py.errors import BadRequest
from mayu_py.model import clean_hostname
from mayu_py.tenants.states import REPORTED_STATES, NodeState

MAX_MESSAGE = 500


def ip_or_empty(value: Any, field: str) -> str:
    """`value` as a normalised IP address, or "" for an empty or missing one; BadRequest else."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string holding an IP address")
    if not value:
        return ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadRequest(f"{field} is not an IP address", {field: value[:64]}) from None


@dataclass(frozen=True)
class HostRegistration:
    """An agent host's capacity, the address it reaches the server from, and its underlay
    address: the local end of its tenants' VXLAN tunnels ("" when it has none)."""

    name: str
    cpus: int
    memory_mib: int
    address: str
    underlay: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "address": self.address,
            "underlay": self.underlay,
        }

    @classmethod
    def from_json(cls, body: Any) -> HostRegistration:
        """Validated: a DNS host name, whole cpus and MiB within sane bounds, an IP address."""
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str):
            raise BadRequest("host needs name (string), cpus, memory_mib, address (string)")
        clean_hostname(name)
        return cls(
            name=name,
            cpus=_bounded(body.get("cpus"), "cpus", *CPU_BOUNDS),
            memory_mib=_bounded(body.get("memory_mib"), "memory_mib", *MEMORY_MIB_BOUNDS),
            address=ip_or_empty(body.get("address") or "", "address"),
            underlay=ip_or_empty(body.get("underlay") or "", "underlay"),
        )


# What one host can plausibly offer; anything else is a mistake or a lie (400).
CPU_BOUNDS = (1, 4096)
MEMORY_MIB_BOUNDS = (64, 64 * 1024 * 1024)


def _bounded(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{field} must be a whole number from {low} to {high}", {field: value})
    return value


@dataclass(frozen=True)
class NodeReport:
    """A node's observed state, as its agent reports it."""

    tenant: str
    node: str
    state: NodeState
    ip: str | None
    host: str | None
    message: str = ""
    generation: int = 0  # the tenant generation the node's VM reflects (0: none yet)

    def to_json(self) -> dict[str, Any]:
        """The body of PUT /api/v1/tenants/<tenant>/nodes/<node>/status."""
        return {
            "state": str(self.state),
            "ip": self.ip,
            "host": self.host,
            "message": self.message,
            "generation": self.generation,
        }

    @classmethod
    def from_json(cls, tenant: str, node: str, body: Any) -> NodeReport:
        """Read a report body; BadRequest for a state an agent may not report."""
        if not isinstance(body, dict) or body.get("state") not in REPORTED_STATES:
            raise BadRequest("state must be one of " + ", ".join(REPORTED_STATES))
        try:
            generation = int(body.get("generation") or 0)
        except (TypeError, ValueError) as exc:
            raise BadRequest("generation must be an integer", {"error": str(exc)}) from exc
        return cls(
            tenant=tenant,
            node=node,
            state=NodeState(body["state"]),
            ip=str(body["ip"]) if body.get("ip") else None,
            host=str(body["host"]) if body.get("host") else None,
            message=str(body.get("message") or "")[:MAX_MESSAGE],
            generation=generation,
        )


@dataclass(frozen=True)
class OverlayPeer:
    """Another host carrying nodes of a tenant: where its VXLAN endpoint is and which of the
    tenant's MACs sit behind it.

    `underlay` is what the host says in its heartbeats (the tunnels' destination);
    `enrolled` is the address its enrolled record holds (an approval's underlay, an enrolled
    machine's address), None when it has none: only enrolled addresses may send VXLAN to us.
    """

    host: str
    underlay: str
    enrolled: str | None
    macs: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "underlay": self.underlay,
            "enrolled": self.enrolled,
            "macs": list(self.macs),
        }

    @classmethod
    def from_json(cls, data: Any) -> OverlayPeer:
        if not isinstance(data, dict) or not isinstance(data.get("host"), str):
            raise BadRequest("an overlay peer needs host, underlay, enrolled, macs")
        enrolled = data.get("enrolled")
        return cls(
            host=data["host"],
            underlay=ip_or_empty(data.get("underlay") or "", "underlay"),
            enrolled=ip_or_empty(enrolled, "enrolled") or None if enrolled else None,
            macs=tuple(sorted(str(m).lower() for m in data.get("macs") or ())),
        )
