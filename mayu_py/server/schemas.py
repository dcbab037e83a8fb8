"""The admin API's messages as pydantic models: request bodies and queries the handlers validate
with, and the answers they send (the OpenAPI description is generated from these).

Tenant clusters (mayu_py.tenants.resource), agent messages (mayu_py.tenants.wire) and config
profiles and groups (mayu_py.config) have their own models, used here as they are.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from mayu_py.bmc.records import ActionKind, ActionState
from mayu_py.config import Group, Profile
from mayu_py.model import (
    HOSTNAME_PATTERN,
    LABEL_KEY_MAX,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    MAC_PATTERN,
    USER_NAME_PATTERN,
    MachineState,
)
from mayu_py.tenants.nodes import ROLES as NODE_ROLES
from mayu_py.tenants.wire import HostImageBody, OverlayPeerBody

Mac = Annotated[str, Field(pattern=MAC_PATTERN, examples=["52-54-00-12-34-56"])]
Hostname = Annotated[str, Field(pattern=HOSTNAME_PATTERN, max_length=253)]
LabelKey = Annotated[str, Field(pattern=LABEL_KEY_PATTERN, max_length=LABEL_KEY_MAX)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]
# additionalProperties false: a key that is no label name is refused, not left unconstrained.
Labels = Annotated[
    dict[LabelKey, LabelValue], Field(json_schema_extra={"additionalProperties": False})
]
Epoch = Annotated[float, Field(description="seconds since the Unix epoch (UTC)")]
LABEL_NAMES = {"pattern": LABEL_KEY_PATTERN, "maxLength": LABEL_KEY_MAX}


def _no_default(schema: dict[str, Any]) -> None:
    """For a member that may be absent but not null: its schema shows no (null) default."""
    schema.pop("default", None)


class _In(BaseModel):
    """A request message: unknown members are an error."""

    model_config = ConfigDict(extra="forbid")


class _Query(BaseModel):
    """A query string: unknown parameters are ignored."""

    model_config = ConfigDict(extra="ignore")


class Problem(BaseModel):
    """An RFC 9457 problem document: every error answer (`application/problem+json`)."""

    type: str = Field(description="always about:blank: `title` is the HTTP status phrase")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="what went wrong, in one line a user can act on")
    context: Any = Field(
        default=None, description="structured detail: for 400/422 the bad fields and why"
    )


# -- machines -----------------------------------------------------------------------------


class MachineList(_Query):
    state: MachineState | None = Field(default=None, description="only machines in this state")
    selector: str | None = Field(
        default=None,
        max_length=4096,
        description="label selector: `k=v,k2=v2` (equality), `k!=v`, `k` (has the label) "
        "and `!k` (has not); all must hold",
        examples=["role=worker,rack!=r2"],
    )
    limit: int | None = Field(
        default=None, ge=1, le=10_000, description="at most this many items in one answer"
    )
    continue_: str | None = Field(
        default=None,
        alias="continue",
        max_length=512,
        description="the `continue` token of the previous page",
    )


class MachineView(BaseModel):
    """A machine as the inventory holds it (`id` is its canonical MAC)."""

    id: str = Field(examples=["52:54:00:12:34:56"])
    mac: str
    state: MachineState
    uuid: str | None
    serial: str | None
    hostname: str | None
    ip: str | None
    labels: dict[str, str]
    profile: str | None
    window_expires: Epoch | None = Field(description="end of the provisioning window, if open")
    created: Epoch
    updated: Epoch


class EventView(BaseModel):
    """One recorded happening: time, kind, cause, source and the state change it made."""

    model_config = ConfigDict(populate_by_name=True)

    seq: int | None
    time: Epoch
    kind: str
    cause: str
    source: str | None
    from_: str | None = Field(alias="from")
    to: str | None
    details: dict[str, Any]


class AlertView(EventView):
    """An event about no enrolled machine (an unknown machine denied, a refused request)."""

    machine_id: str


class Page(BaseModel):
    """A list answer; `continue` is set while more items follow (pass it back as `continue`)."""

    model_config = ConfigDict(populate_by_name=True)

    continue_: str | None = Field(default=None, alias="continue")


class MachinePage(Page):
    items: list[MachineView]


class EventList(BaseModel):
    items: list[EventView]


class AlertList(BaseModel):
    items: list[AlertView]


class MachineUpdate(BaseModel):
    """Members to set: `state`, `hostname`, or a label (any other key; `null` removes it)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"propertyNames": LABEL_NAMES, "minProperties": 1},
    )
    __pydantic_extra__: dict[str, LabelValue | None]  # type: ignore[assignment]

    # Absent: unchanged (a null is refused: state and hostname are never removed).
    state: MachineState = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment]
    hostname: Hostname = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment]


class Revocation(BaseModel):
    report_credential: bool = Field(description="the machine had a report credential")
    agent_token: bool = Field(description="the agent token of its config was valid")
    certificates: list[str] = Field(description="serials (hex) of its deleted certificates")


class Removed(MachineView):
    """The machine as it was, and what deleting it revoked."""

    revoked: Revocation


class Approval(_In):
    role: Literal["controller", "worker"]
    labels: Labels = Field(default_factory=dict)


# -- BMC ----------------------------------------------------------------------------------


class BmcSettings(_In):
    """Where a machine's BMC is and how to log in (the password is never shown again)."""

    protocol: Literal["redfish", "ipmi"]
    address: StrictStr = Field(
        min_length=1,
        description="Redfish: https://host[:port] (bare host[:port] means https). "
        "IPMI: host[:port] (623 by default)",
        examples=["https://10.0.0.5"],
    )
    username: StrictStr = Field(min_length=1)
    password: StrictStr = Field(min_length=1, json_schema_extra={"writeOnly": True})
    system_id: StrictStr | None = Field(default=None, description="Redfish: the system's id")
    verify_tls: StrictBool = Field(default=True, description="Redfish over https")
    ca_bundle: StrictStr | None = Field(default=None, description="Redfish over https")
    ipmi_cipher_suite: Literal[3, 17] = Field(default=17, description="IPMI only")


class BmcView(BaseModel):
    """A machine's BMC as the API shows it: everything but the password."""

    protocol: Literal["redfish", "ipmi"]
    address: str
    username: str
    system_id: str | None = None
    verify_tls: bool | None = None
    ca_bundle: str | None = None
    ipmi_cipher_suite: int | None = None
    updated: Epoch


class MachineDetail(MachineView):
    bmc: BmcView | None
    events: list[EventView]


class PowerRequest(_In):
    action: Literal["on", "off", "cycle", "status"]


class BootDeviceRequest(_In):
    device: Literal["pxe", "disk"]


class ActionView(BaseModel):
    """A queued BMC action; it moves queued -> running -> done | failed."""

    id: int
    machine_id: str
    action: ActionKind
    state: ActionState
    cause: str
    source: str | None
    requested: Epoch
    started: Epoch | None
    finished: Epoch | None
    result: dict[str, Any]
    error: str | None
    error_kind: str | None


class ActionList(BaseModel):
    items: list[ActionView]


class Queued(BaseModel):
    """202: the action is queued; follow it at its `Location` (GET /api/v1/actions/{id})."""

    action: ActionView


class Reinstalled(MachineView):
    """The machine, back to configured, with what happens next and the BMC action (if any)."""

    next: str
    action: ActionView | None


# -- config, hosts ---------------------------------------------------------------------------


class ProfileView(Profile):
    name: str


class ProfileList(BaseModel):
    items: list[ProfileView]


class GroupList(BaseModel):
    items: list[Group]


class CredentialView(BaseModel):
    """An agent host's credential (its token is never shown again)."""

    host: str
    origin: Literal["machine", "operator"]
    revoked: bool
    created: Epoch
    updated: Epoch
    underlay: str = Field(description="its enrolled VXLAN endpoint (approval); empty: none")


class HostSeen(BaseModel):
    """An agent host as of its last heartbeat."""

    name: str
    cpus: int
    memory_mib: int
    last_seen: Epoch
    address: str
    underlay: str = ""
    images: list[HostImageBody] | None = Field(
        default=None, description="its base images; null: it did not say (placed as having any)"
    )


class HostView(BaseModel):
    """A host that sent heartbeats (capacity, liveness) and/or holds an agent credential."""

    name: str
    cpus: int | None = None
    memory_mib: int | None = None
    last_seen: Epoch | None = None
    address: str | None = None
    underlay: str | None = None
    images: list[HostImageBody] | None = None
    alive: bool | None = None
    credential: CredentialView | None


class HostList(BaseModel):
    items: list[HostView]


class HostToken(BaseModel):
    host: str
    token: str = Field(description="the agent token, shown once")


class NodeNetwork(BaseModel):
    cidr: str
    vni: int
    gateway: str
    ingress: str = Field(description="the tenant's ingress address (HAProxy's source)")
    peers: list[OverlayPeerBody] = Field(
        default_factory=list, description="the other hosts with nodes of this tenant"
    )


class DesiredNode(BaseModel):
    """A tenant node placed on the host, as its agent builds the VM."""

    tenant: str
    node: str
    role: Literal[NODE_ROLES]  # type: ignore[valid-type]
    generation: int
    spec_hash: str
    cpus: int
    memory_mib: int
    disk_gib: int
    image: str
    mac: str
    ip: str
    uuid: str
    network: NodeNetwork


# -- boot plane, health ---------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


class IpxeQuery(_Query):
    """A machine's hardware identity, as iPXE fills it in."""

    mac: Mac = Field(description="${net0/mac:hexhyp}")
    uuid: str | None = Field(default=None, description="${uuid} (SMBIOS)")
    serial: str | None = Field(default=None, description="${serial} (SMBIOS)")
    platform: str | None = Field(default=None, description="${platform}: pcbios or efi")
    arch: str | None = Field(default=None, description="${buildarch}")


class MachineCredentials(_Query):
    mac: Mac
    token: str | None = Field(default=None, description="the machine's one-time boot token")


class Report(BaseModel):
    """A machine phoning home: `booted`, `installed`, `running` or `failed`, with details."""

    event: StrictStr = Field(examples=["installed"])
    details: dict[str, Any] | None = None


class ReportAnswer(BaseModel):
    id: str
    state: MachineState


# -- Users ---------------------------------------------------------------------------------


class NewUser(_In):
    name: Annotated[str, Field(pattern=USER_NAME_PATTERN)]


class UserView(BaseModel):
    """A person with their own token (kept only as a hash)."""

    name: str
    created: Epoch
    updated: Epoch


class UserList(BaseModel):
    items: list[UserView]


class UserToken(BaseModel):
    name: str
    token: str = Field(description="the user's token, shown once")
