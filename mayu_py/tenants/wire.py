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
MAX_CPUS = 4096
MAX_MEMORY_MIB = 1 << 24  # 16 TiB
MAX_GENERATION = (1 << 31) - 1


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
        """Read a heartbeat body; BadRequest for a missing field, a wrong type, or a name,
        address or capacity out of bounds."""
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        return cls(
            name=_host_name(body.get("name"), "name"),
            cpus=_integer(body.get("cpus"), "cpus", 1, MAX_CPUS),
            memory_mib=_integer(body.get("memory_mib"), "memory_mib", 1, MAX_MEMORY_MIB),
            address=_address(body.get("address"), "address") or "",
        )


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
        """Read a report body; BadRequest for a state an agent may not report or a field of
        the wrong type."""
        if not isinstance(body, dict) or body.get("state") not in REPORTED_STATES:
            raise BadRequest("state must be one of " + ", ".join(REPORTED_STATES))
        host, message, generation = body.get("host"), body.get("message"), body.get("generation")
        if message is not None and not isinstance(message, str):
            raise BadRequest("message must be a string", {"field": "message"})
        return cls(
            tenant=tenant,
            node=node,
            state=NodeState(body["state"]),
            ip=_address(body.get("ip"), "ip"),
            host=None if host is None or host == "" else _host_name(host, "host"),
            message=(message or "")[:MAX_MESSAGE],
            generation=0
            if generation is None
            else _integer(generation, "generation", 0, MAX_GENERATION),
        )


def _integer(value: Any, name: str, low: int, high: int) -> int:
    """A JSON integer (not a boolean, not a float) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(
            f"{name} must be an integer from {low} to {high}",
            {"field": name, "min": low, "max": high},
        )
    return value


def _host_name(value: Any, name: str) -> str:
    """A host name as machines have them (lower-case DNS labels, model.clean_hostname)."""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a host name", {"field": name})
    return clean_hostname(value)


def _address(value: Any, name: str) -> str | None:
    """An IP address in text form, or None for null or an empty string."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str) and value == value.strip():
            return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    raise BadRequest(f"{name} must be an IP address", {"field": name})
