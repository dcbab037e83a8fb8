"""What an agent and the server tell each other: the host registration (a heartbeat), node
reports, and the overlay peers of a tenant (`OverlayPeer`, in each desired node).

The agent builds these and its API source sends `to_json()`; the server reads the same bodies
with `from_json`, so both ends share one definition of each message. `from_json` validates
with the pydantic models `HostRegistrationBody` and `NodeReportBody`, which are also what the
server's OpenAPI description shows.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)

from mayu_py.errors import BadRequest
from mayu_py.model import HOSTNAME_PATTERN
from mayu_py.tenants.conditions import MAX_REASON, REASON_PATTERN
from mayu_py.tenants.states import REPORTED_STATES, NodeState

MAX_MESSAGE = 500
MAX_CPUS = 4096
MAX_MEMORY_MIB = 1 << 24  # 16 TiB
MAX_GENERATION = (1 << 31) - 1
MAX_IMAGES = 256
IMAGE_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"


def _ip_text(value: str | None) -> str | None:
    """An IP address in text form, or None for null or an empty string."""
    if value is None or value == "":
        return None
    if value != value.strip():
        raise ValueError("not an IP address")
    return str(ipaddress.ip_address(value))


HostName = Annotated[StrictStr, Field(pattern=HOSTNAME_PATTERN, max_length=253)]
IpAddress = Annotated[
    StrictStr | None,
    AfterValidator(_ip_text),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "ipv4"},
                {"type": "string", "format": "ipv6"},
                {"const": ""},
                {"type": "null"},
            ],
            "description": "an IP address; empty or null: none",
        }
    ),
]


class HostImageBody(BaseModel):
    """A base image present on an agent host."""

    model_config = ConfigDict(extra="ignore")
    name: Annotated[StrictStr, Field(pattern=IMAGE_NAME_PATTERN)]
    version: Annotated[StrictStr, Field(max_length=128)] = ""
    sha256: Annotated[StrictStr, Field(pattern=r"^([0-9a-f]{64})?$")] = Field(
        default="", description="of the image's manifest (which holds its files' digests)"
    )


class HostRegistrationBody(BaseModel):
    """POST /api/v1/hosts: an agent host's heartbeat with its capacity and base images."""

    model_config = ConfigDict(extra="ignore")
    name: HostName
    cpus: StrictInt = Field(ge=1, le=MAX_CPUS)
    memory_mib: StrictInt = Field(ge=1, le=MAX_MEMORY_MIB)
    address: IpAddress = Field(default=None, description="where the host reaches the server")
    underlay: IpAddress = Field(default=None, description="its VXLAN endpoint for tenants")
    images: list[HostImageBody] | None = Field(
        default=None,
        max_length=MAX_IMAGES,
        description="its base images; absent or null (an older agent): placement assumes any",
    )


class NodeReportBody(BaseModel):
    """PUT /api/v1/tenants/{tenant}/nodes/{node}/status: a node's observed state."""

    model_config = ConfigDict(extra="ignore")
    state: Literal[REPORTED_STATES]  # type: ignore[valid-type]
    ip: IpAddress = None
    host: Annotated[HostName | Literal[""] | None, Field(description="empty or null: none")] = None
    message: StrictStr | None = Field(
        default=None, description=f"why, in one line (cut at {MAX_MESSAGE} characters)"
    )
    generation: StrictInt | None = Field(
        default=None, ge=0, le=MAX_GENERATION, description="the tenant generation the VM is of"
    )
    reason: Annotated[StrictStr, Field(pattern=REASON_PATTERN, max_length=MAX_REASON)] | None = (
        Field(default=None, description="why, in one CamelCase word (e.g. BaseImageMissing)")
    )


def _read(model: type[Any], body: Any) -> Any:
    """`body` as `model`; BadRequest naming the first bad field."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = ".".join(str(part) for part in error["loc"][:1])
        raise BadRequest(f"{name}: {error['msg']}", {"field": name}) from None


@dataclass(frozen=True)
class HostImage:
    """A base image on a host: its name, version and the sha256 of its manifest."""

    name: str
    version: str = ""
    sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class HostRegistration:
    """An agent host's capacity, the address it reaches the server from, its underlay
    address (the local end of its tenants' VXLAN tunnels, "" when it has none) and its base
    images (None: not told, as by an agent older than image reports)."""

    name: str
    cpus: int
    memory_mib: int
    address: str
    underlay: str = ""
    images: tuple[HostImage, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "address": self.address,
            "underlay": self.underlay,
        }
        if self.images is not None:
            body["images"] = [i.to_json() for i in self.images]
        return body

    @classmethod
    def from_json(cls, body: Any) -> HostRegistration:
        """Read a heartbeat body; BadRequest for a missing field, a wrong type, or a name,
        address, capacity or image out of bounds."""
        read: HostRegistrationBody = _read(HostRegistrationBody, body)
        images = None
        if read.images is not None:
            images = tuple(HostImage(i.name, i.version, i.sha256) for i in read.images)
        return cls(
            read.name, read.cpus, read.memory_mib, read.address or "", read.underlay or "", images
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
    reason: str = ""  # why, in one CamelCase word ("": the state's own reason)

    def to_json(self) -> dict[str, Any]:
        """The body of PUT /api/v1/tenants/<tenant>/nodes/<node>/status."""
        return {
            "state": str(self.state),
            "ip": self.ip,
            "host": self.host,
            "message": self.message,
            "generation": self.generation,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, tenant: str, node: str, body: Any) -> NodeReport:
        """Read a report body; BadRequest for a state an agent may not report or a field of
        the wrong type."""
        if not isinstance(body, dict) or body.get("state") not in REPORTED_STATES:
            raise BadRequest("state must be one of " + ", ".join(REPORTED_STATES))
        read: NodeReportBody = _read(NodeReportBody, body)
        return cls(
            tenant=tenant,
            node=node,
            state=NodeState(read.state),
            ip=read.ip,
            host=read.host or None,
            message=(read.message or "")[:MAX_MESSAGE],
            generation=read.generation or 0,
            reason=read.reason or "",
        )


def ip_address_or_none(value: Any, name: str) -> str | None:
    """An IP address in text form, or None for null or an empty string; BadRequest else."""
    try:
        if value is None or isinstance(value, str):
            return _ip_text(value)
    except ValueError:
        pass
    raise BadRequest(f"{name} must be an IP address", {"field": name})


class OverlayPeerBody(BaseModel):
    """Another host of a tenant, as the server publishes it in each desired node."""

    model_config = ConfigDict(extra="ignore")
    host: HostName
    underlay: IpAddress = Field(default=None, description="from its heartbeats: tunnels go here")
    enrolled: IpAddress = Field(
        default=None, description="from its enrolled record: VXLAN is accepted only from here"
    )
    macs: list[StrictStr] = Field(default_factory=list, description="the tenant's MACs there")


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
        read: OverlayPeerBody = _read(OverlayPeerBody, data)
        macs = tuple(sorted(m.lower() for m in read.macs))
        return cls(read.host, read.underlay or "", read.enrolled, macs)
