"""JSON forms of the records the etcd backend keeps (every field, unlike the API views)."""

from __future__ import annotations

import base64
from dataclasses import fields, replace
from typing import Any

from mayu_py.bmc.records import ActionKind, ActionState, BmcAction, StoredBmc
from mayu_py.model import AgentCredential, Event, Machine, MachineState, PendingConfig


def asdict(record: Any) -> dict[str, Any]:
    """A flat record's fields (dataclasses.asdict deep-copies every value: 5x slower)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def machine_data(machine: Machine) -> dict[str, Any]:
    return asdict(machine) | {"state": str(machine.state)}


def machine_of(data: dict[str, Any]) -> Machine:
    return Machine(**(data | {"state": MachineState(data["state"])}))


def event_data(event: Event, seq: int | None = None) -> dict[str, Any]:
    return asdict(replace(event, seq=seq))


def event_of(data: dict[str, Any], seq: int | None = None) -> Event:
    event = Event(**data)
    return event if seq is None else replace(event, seq=seq)


def pending_data(pending: PendingConfig) -> dict[str, Any]:
    return asdict(pending) | {"body": base64.b64encode(pending.body).decode()}


def pending_of(data: dict[str, Any]) -> PendingConfig:
    return PendingConfig(**(data | {"body": base64.b64decode(data["body"])}))


def credential_data(credential: AgentCredential) -> dict[str, Any]:
    return asdict(credential)


def credential_of(data: dict[str, Any]) -> AgentCredential:
    return AgentCredential(**data)


def bmc_data(bmc: StoredBmc) -> dict[str, Any]:
    return asdict(bmc)


def bmc_of(data: dict[str, Any]) -> StoredBmc:
    return StoredBmc(**data)


def action_data(action: BmcAction) -> dict[str, Any]:
    return asdict(action) | {"kind": str(action.kind), "state": str(action.state)}


def action_of(data: dict[str, Any]) -> BmcAction:
    kind, state = ActionKind(data["kind"]), ActionState(data["state"])
    return BmcAction(**(data | {"kind": kind, "state": state}))
