"""Domain model: hardware identities, machine states and their legal transitions, events."""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from mayu_py.errors import BadRequest

# The forms a MAC is accepted in (any case): 52:54:00:.., 52-54-00-.. or 525400... These
# patterns are also what the OpenAPI description states (JSON Schema and Python agree on them).
_HEX2 = "[0-9A-Fa-f]{2}"
MAC_PATTERN = rf"^({_HEX2}(:{_HEX2}){{5}}|{_HEX2}(-{_HEX2}){{5}}|[0-9A-Fa-f]{{12}})$"
_MAC = re.compile(MAC_PATTERN)


def canonical_mac(raw: str) -> str:
    """Return the stored MAC form (lower case, colons) of 52-54-00-.., 52:54:.. or 525400.."""
    if not raw or not _MAC.fullmatch(raw):
        raise BadRequest("malformed MAC address", {"mac": raw[:64] if raw else raw})
    text = raw.lower().replace(":", "").replace("-", "")
    return ":".join(text[i : i + 2] for i in range(0, 12, 2))


def canonical_uuid(raw: str | None) -> str | None:
    """Return an SMBIOS UUID in lower-case hyphenated form, or None when absent."""
    if raw is None or raw.strip() == "":
        return None
    try:
        return str(uuidlib.UUID(raw.strip()))
    except ValueError as exc:
        raise BadRequest("malformed UUID", {"uuid": raw[:64]}) from exc


_SERIAL_OK = re.compile(r"[\x20-\x7e]{0,128}")


def clean_serial(raw: str | None) -> str | None:
    """Validate a hardware serial: printable ASCII, at most 128 characters."""
    if raw is None or raw.strip() == "":
        return None
    if not _SERIAL_OK.fullmatch(raw):
        raise BadRequest("malformed serial", {"serial": raw[:64]})
    return raw.strip()


class MachineState(StrEnum):
    DISCOVERED = "discovered"
    CONFIGURED = "configured"
    INSTALLING = "installing"
    INSTALLED = "installed"
    RUNNING = "running"
    FAILED = "failed"
    MAINTENANCE = "maintenance"


_S = MachineState
# A reinstall moves installed, running, failed and maintenance machines back to configured.
TRANSITIONS: dict[MachineState, frozenset[MachineState]] = {
    _S.DISCOVERED: frozenset({_S.CONFIGURED, _S.FAILED, _S.MAINTENANCE}),
    _S.CONFIGURED: frozenset({_S.INSTALLING, _S.FAILED, _S.MAINTENANCE, _S.DISCOVERED}),
    _S.INSTALLING: frozenset({_S.INSTALLED, _S.FAILED, _S.MAINTENANCE, _S.CONFIGURED}),
    _S.INSTALLED: frozenset({_S.RUNNING, _S.CONFIGURED, _S.FAILED, _S.MAINTENANCE}),
    _S.RUNNING: frozenset({_S.CONFIGURED, _S.FAILED, _S.MAINTENANCE}),
    _S.FAILED: frozenset({_S.CONFIGURED, _S.MAINTENANCE}),
    _S.MAINTENANCE: frozenset({_S.CONFIGURED, _S.DISCOVERED}),
}
# States whose machines boot their local disk and never receive a token.
LOCAL_BOOT_STATES = frozenset({_S.INSTALLED, _S.RUNNING, _S.MAINTENANCE})


def transition_allowed(current: MachineState, target: MachineState) -> bool:
    """True when moving from current to target is legal (staying put always is)."""
    return current == target or target in TRANSITIONS[current]


# Phone-home event name -> the state it moves the machine to.
REPORT_EVENTS: dict[str, MachineState] = {
    "booted": MachineState.INSTALLING,
    "installed": MachineState.INSTALLED,
    "running": MachineState.RUNNING,
    "failed": MachineState.FAILED,
}


# Events anyone on the network can cause: refusals of unauthenticated boot-plane requests.
# A machine keeps them within a budget of their own, so a flood of them cannot push the rest
# of its history out.
REFUSAL_EVENTS = frozenset({"alert", "identity-mismatch", "ignition-refused", "report-refused"})


@dataclass(frozen=True)
class Event:
    """One recorded happening in a machine's life."""

    machine_id: str
    time: float
    kind: str
    cause: str
    source: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "cause": self.cause,
            "source": self.source,
            "from": self.from_state,
            "to": self.to_state,
            "details": self.details,
        }


@dataclass(frozen=True)
class Machine:
    """A machine record; `id` is its canonical MAC."""

    id: str
    mac: str
    state: MachineState = MachineState.DISCOVERED
    uuid: str | None = None
    serial: str | None = None
    hostname: str | None = None
    ip: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    token_hash: str | None = None
    token_consumed: bool = False
    window_expires: float | None = None
    window_address: str | None = None
    report_hash: str | None = None
    registered_from: str | None = None
    created: float = 0.0
    updated: float = 0.0

    @property
    def role(self) -> str | None:
        """The role an operator or a config group gave the machine (None until approved)."""
        return self.labels.get("role")

    def window_open(self, now: float) -> bool:
        """True while the machine's provisioning window runs."""
        return self.window_expires is not None and now < self.window_expires

    def closed_window(self) -> Machine:
        """This machine with no provisioning window and no boot token."""
        return replace(
            self,
            token_hash=None,
            token_consumed=False,
            window_expires=None,
            window_address=None,
        )

    @property
    def node_name(self) -> str:
        """The machine's DNS name as a Kubernetes node (its hostname, or one from its MAC)."""
        return self.hostname or default_hostname(self.mac)

    def selector_view(self) -> dict[str, str]:
        """The attributes groups select on: hardware identity plus labels."""
        view = dict(self.labels)
        view["mac"] = self.mac
        for key in ("uuid", "serial", "hostname"):
            value = getattr(self, key)
            if value:
                view[key] = value
        return view

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mac": self.mac,
            "state": str(self.state),
            "uuid": self.uuid,
            "serial": self.serial,
            "hostname": self.hostname,
            "ip": self.ip,
            "labels": dict(self.labels),
            "profile": self.profile,
            "window_expires": self.window_expires,
            "created": self.created,
            "updated": self.updated,
        }


_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOSTNAME_PATTERN = rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$"
_HOSTNAME = re.compile(HOSTNAME_PATTERN)
# Label keys and values as Kubernetes writes them (prefix/name, 63-character segments).
LABEL_KEY_PATTERN = (
    rf"^({_DNS_LABEL}(\.{_DNS_LABEL})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
LABEL_KEY_MAX = 253


@dataclass(frozen=True)
class LabelTerm:
    """One term of a label selector: `op` is "=", "!=" (the label is absent or differs),
    "exists" or "!exists"."""

    key: str
    op: str
    value: str = ""

    def holds(self, labels: dict[str, str]) -> bool:
        have = labels.get(self.key)
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        return (have is not None) == (self.op == "exists")


def labels_selected(terms: Sequence[LabelTerm], labels: dict[str, str]) -> bool:
    """Every term holds for these labels."""
    return all(term.holds(labels) for term in terms)


def clean_hostname(raw: str) -> str:
    """Validate a hostname: lower-case DNS labels (RFC 1123), at most 253 characters."""
    if len(raw) > 253 or not _HOSTNAME.fullmatch(raw):
        raise BadRequest("hostname must be a lower-case DNS name", {"hostname": raw[:64]})
    return raw


def default_hostname(mac: str) -> str:
    """A stable DNS-safe hostname derived from the MAC."""
    return "node-" + mac.replace(":", "")


@dataclass(frozen=True)
class AgentCredential:
    """The hashed token of one host's node agent: minted in an enrolled machine's config
    (origin `machine`) or by an operator's approval (origin `operator`); revocable.
    `underlay`: the VXLAN endpoint address the operator approved the host with ("" none)."""

    host: str
    token_hash: str
    origin: str
    revoked: bool = False
    created: float = 0.0
    updated: float = 0.0
    underlay: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "origin": self.origin,
            "revoked": self.revoked,
            "created": self.created,
            "updated": self.updated,
            "underlay": self.underlay,
        }


USER_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"


@dataclass(frozen=True)
class User:
    """A person operating the server: their own token (kept only as a hash) opens the admin API
    and the dashboard, and the events their actions cause name them. The shared admin token
    stays for automation."""

    name: str
    token_hash: str
    created: float = 0.0
    updated: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "updated": self.updated}


@dataclass(frozen=True)
class PendingConfig:
    """A machine's secret Ignition config, rendered once per boot token: the stub served over
    HTTP names these exact bytes by their SHA-512, and the HTTPS fetch serves them."""

    machine_id: str
    token_hash: str
    body: bytes
    sha512: str
    report_hash: str
    created: float
    agent_token_hash: str = ""


@dataclass(frozen=True)
class FileSpec:
    """A file to place on a node: absolute path, octal mode, text contents."""

    path: str
    mode: int
    contents: str

    @property
    def secret(self) -> bool:
        """Private keys and kubeconfigs with embedded keys are secrets (mode 0600)."""
        return self.mode & 0o077 == 0
