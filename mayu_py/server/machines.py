"""Machine lifecycle: registration by hardware identity, boot tokens, the recorded state machine.

Every read-modify-write is one store transaction; a refused action still records its event
(the transaction commits, then the error is raised).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mayu_py.config import Group, Settings
from mayu_py.errors import BadRequest, Conflict, Forbidden, NotFound
from mayu_py.model import (
    REPORT_EVENTS,
    Event,
    Machine,
    MachineState,
    canonical_mac,
    canonical_uuid,
    clean_hostname,
    clean_serial,
    default_hostname,
    transition_allowed,
)
from mayu_py.server.matching import match_group
from mayu_py.server.tokens import new_token, token_hash, token_matches
from mayu_py.store import Store, Tx

log = logging.getLogger(__name__)

ROLE_LABEL = "role"
SETTABLE_FIELDS = ("hostname", "state")


@dataclass(frozen=True)
class BootDecision:
    """What /ipxe needs: the machine, its fresh boot token and the group it matched."""

    machine: Machine
    token: str
    group: Group | None


class MachineService:
    """The inventory's rules on top of a Store."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.store = store
        self.clock = clock

    # -- boot plane ---------------------------------------------------------------------

    def boot(
        self, mac_raw: str, uuid_raw: str | None, serial_raw: str | None, source: str | None
    ) -> BootDecision:
        """Identify (or register) a machine, match its group and issue a fresh boot token."""
        mac = canonical_mac(mac_raw)
        uuid = canonical_uuid(uuid_raw)
        serial = clean_serial(serial_raw)
        token = new_token()

        def txn(tx: Tx) -> tuple[Machine | None, Group | None]:
            now = self.clock()
            machine = tx.get_machine(mac)
            if machine is None:
                if self.settings.server.unknown_machines == "deny":
                    tx.add_event(Event(mac, now, "denied", "unknown machine, policy deny", source))
                    return None, None
                machine = self._register(tx, mac, uuid, serial, source, now)
            changes: dict[str, Any] = {"token_hash": token_hash(token), "token_consumed": False}
            for key, value in (("uuid", uuid), ("serial", serial), ("ip", source)):
                if value and getattr(machine, key) != value:
                    changes[key] = value
            group = match_group(self.settings.groups, machine.selector_view())
            if group and machine.profile != group.profile:
                changes["profile"] = group.profile
            machine = replace(machine, **changes, updated=now)
            if group and machine.state == MachineState.DISCOVERED:
                machine = self._move(
                    tx, machine, MachineState.CONFIGURED, f"matched group {group.name}", source, now
                )
            tx.put_machine(machine)
            return machine, group

        machine, group = self.store.atomically(txn)
        if machine is None:
            log.info("denied unknown machine mac=%s source=%s", mac, source)
            raise NotFound("unknown machine", {"mac": mac, "policy": "deny"})
        return BootDecision(machine, token, group)

    def _register(
        self, tx: Tx, mac: str, uuid: str | None, serial: str | None, source: str | None, now: float
    ) -> Machine:
        controllers = tx.count_machines_with_label(ROLE_LABEL, "controller")
        role = "controller" if controllers < self.settings.cluster.controller_count else "worker"
        machine = Machine(
            id=mac,
            mac=mac,
            uuid=uuid,
            serial=serial,
            hostname=default_hostname(mac),
            ip=source,
            labels={ROLE_LABEL: role},
            created=now,
            updated=now,
        )
        tx.add_event(
            Event(
                mac,
                now,
                "registered",
                f"first boot request; role {role}",
                source,
                None,
                str(MachineState.DISCOVERED),
                {"uuid": uuid, "serial": serial},
            )
        )
        log.info("registered machine mac=%s role=%s source=%s", mac, role, source)
        return machine

    def verify_ignition_token(self, mac_raw: str, token: str | None, source: str | None) -> Machine:
        """Check (without consuming) that token is the machine's current, unused boot token."""
        machine = self.get(mac_raw)
        if machine.token_consumed or not token_matches(token, machine.token_hash):
            self._refuse(machine, "ignition-refused", "boot token invalid or already used", source)
            raise Forbidden("boot token invalid or already used", {"mac": machine.id})
        return machine

    def consume_ignition_token(self, mac_raw: str, token: str, source: str | None) -> Machine:
        """Mark the boot token used and move the machine to installing, atomically."""
        mac = canonical_mac(mac_raw)

        def txn(tx: Tx) -> Machine | None:
            now = self.clock()
            machine = tx.get_machine(mac)
            if (
                machine is None
                or machine.token_consumed
                or not token_matches(token, machine.token_hash)
            ):
                return None
            machine = replace(machine, token_consumed=True, updated=now)
            if source and machine.ip != source:
                machine = replace(machine, ip=source)
            machine = self._move(
                tx, machine, MachineState.INSTALLING, "ignition config served", source, now
            )
            tx.put_machine(machine)
            return machine

        machine = self.store.atomically(txn)
        if machine is None:
            raise Forbidden("boot token invalid or already used", {"mac": mac})
        return machine

    def report(
        self,
        mac_raw: str,
        token: str | None,
        event: str,
        details: dict[str, Any],
        source: str | None,
    ) -> Machine:
        """Apply a phone-home event sent with the machine's current boot token."""
        machine = self.get(mac_raw)
        if not token_matches(token, machine.token_hash):
            self._refuse(machine, "report-refused", "boot token invalid", source)
            raise Forbidden("boot token invalid", {"mac": machine.id})
        if event not in REPORT_EVENTS:
            raise BadRequest(
                "unknown report event", {"event": event[:64], "allowed": sorted(REPORT_EVENTS)}
            )
        return self.transition(machine.id, REPORT_EVENTS[event], f"report {event}", source, details)

    # -- admin plane --------------------------------------------------------------------

    def get(self, machine_id: str) -> Machine:
        mac = canonical_mac(machine_id)
        machine = self.store.get_machine(mac)
        if machine is None:
            raise NotFound("no such machine", {"id": mac})
        return machine

    def transition(
        self,
        machine_id: str,
        target: MachineState,
        cause: str,
        source: str | None,
        details: dict[str, Any] | None = None,
        changes: dict[str, Any] | None = None,
    ) -> Machine:
        """Move a machine to target; an illegal move is recorded, then refused with 409."""
        mac = canonical_mac(machine_id)

        def txn(tx: Tx) -> tuple[Machine | None, Machine | None]:
            now = self.clock()
            machine = tx.get_machine(mac)
            if machine is None:
                return None, None
            if not transition_allowed(machine.state, target):
                tx.add_event(
                    Event(
                        mac,
                        now,
                        "transition-refused",
                        cause,
                        source,
                        str(machine.state),
                        str(target),
                        details or {},
                    )
                )
                return None, machine
            moved = self._move(
                tx,
                replace(machine, **(changes or {}), updated=now),
                target,
                cause,
                source,
                now,
                details,
            )
            tx.put_machine(moved)
            return moved, machine

        moved, before = self.store.atomically(txn)
        if before is None:
            raise NotFound("no such machine", {"id": mac})
        if moved is None:
            raise Conflict(
                f"illegal transition {before.state} -> {target}",
                {"id": mac, "from": str(before.state), "to": str(target)},
            )
        return moved

    def set_attribute(self, machine_id: str, key: str, value: str, source: str | None) -> Machine:
        """Set hostname, state or a label (e.g. role) of a machine, recording an event."""
        if key == "state":
            try:
                target = MachineState(value)
            except ValueError as exc:
                raise BadRequest(
                    "unknown state", {"state": value, "allowed": [s.value for s in MachineState]}
                ) from exc
            return self.transition(machine_id, target, "operator set state", source)
        if key == ROLE_LABEL and value not in ("controller", "worker"):
            raise BadRequest("role must be controller or worker", {"role": value})
        if not key or len(key) > 63 or len(value) > 253:
            raise BadRequest("key or value too long", {"key": key[:63]})
        mac = canonical_mac(machine_id)

        def txn(tx: Tx) -> Machine | None:
            now = self.clock()
            machine = tx.get_machine(mac)
            if machine is None:
                return None
            if key == "hostname":
                updated = replace(machine, hostname=clean_hostname(value), updated=now)
            else:
                updated = replace(machine, labels={**machine.labels, key: value}, updated=now)
            group = match_group(self.settings.groups, updated.selector_view())
            updated = replace(updated, profile=group.profile if group else None)
            tx.add_event(
                Event(
                    mac,
                    now,
                    "set",
                    f"operator set {key}",
                    source,
                    None,
                    None,
                    {"key": key, "value": value},
                )
            )
            tx.put_machine(updated)
            return updated

        machine = self.store.atomically(txn)
        if machine is None:
            raise NotFound("no such machine", {"id": mac})
        return machine

    # -- helpers ------------------------------------------------------------------------

    def _move(
        self,
        tx: Tx,
        machine: Machine,
        target: MachineState,
        cause: str,
        source: str | None,
        now: float,
        details: dict[str, Any] | None = None,
    ) -> Machine:
        kind = "transition" if machine.state != target else "event"
        tx.add_event(
            Event(
                machine.id, now, kind, cause, source, str(machine.state), str(target), details or {}
            )
        )
        return replace(machine, state=target)

    def _refuse(self, machine: Machine, kind: str, cause: str, source: str | None) -> None:
        log.info("%s mac=%s source=%s", kind, machine.id, source)
        self.store.atomically(
            lambda tx: tx.add_event(Event(machine.id, self.clock(), kind, cause, source))
        )
