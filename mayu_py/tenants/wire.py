"""What an agent sends the server: its host registration (a heartbeat) and node reports.

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


@dataclass(frozen=True)
class HostRegistration:
    """An agent host's capacity and the address it reaches the server from."""

    name: str
    cpus: int
    memory_mib: int
    address: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "address": self.address,
        }

    @classmethod
    def from_json(cls, body: Any) -> HostRegistration:
        """Validated: a DNS host name, whole cpus and MiB within sane bounds, an IP address."""
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        name, address = body.get("name"), body.get("address") or ""
        if not isinstance(name, str) or not isinstance(address, str):
            raise BadRequest("host needs name (string), cpus, memory_mib, address (string)")
        clean_hostname(name)
        if address:
            try:
                address = str(ipaddress.ip_address(address))
            except ValueError:
                detail = {"address": address[:64]}
                raise BadRequest("address is not an IP address", detail) from None
        return cls(
            name=name,
            cpus=_bounded(body.get("cpus"), "cpus", *CPU_BOUNDS),
            memory_mib=_bounded(body.get("memory_mib"), "memory_mib", *MEMORY_MIB_BOUNDS),
            address=address,
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
