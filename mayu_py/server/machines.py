"""The operator's side of the machine lifecycle: approve, reinstall, edit, move, delete.

Every read-modify-write is one store transaction; a refused action still records its event
(the transaction commits, then the error is raised). Changes are validated as a whole before
any is applied: a PATCH with one bad field changes nothing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mayu_py.bmc.records import BmcAction
from mayu_py.config import Settings
from mayu_py.errors import BadRequest, Conflict, NotFound
from mayu_py.model import (
    Event,
    Machine,
    MachineState,
    canonical_mac,
    clean_hostname,
    transition_allowed,
)
from mayu_py.server.boot_service import ROLE_LABEL, approve, expire_windows
from mayu_py.server.matching import match_group
from mayu_py.server.power import PowerService
from mayu_py.store import Store, Tx

log = logging.getLogger(__name__)

ROLES = ("controller", "worker")
# Label keys and values as Kubernetes writes them (prefix/name, 63-character segments).
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
REINSTALLABLE = frozenset(
    {
        MachineState.CONFIGURED,
        MachineState.INSTALLING,
        MachineState.INSTALLED,
        MachineState.RUNNING,
        MachineState.FAILED,
        MachineState.MAINTENANCE,
    }
)


def check_label(key: str, value: str) -> None:
    """BadRequest unless key and value are valid Kubernetes-style label parts."""
    if len(key) > 253 or not _LABEL_KEY.fullmatch(key):
        raise BadRequest("invalid label key", {"key": key[:64]})
    if not _LABEL_VALUE.fullmatch(value):
        raise BadRequest("invalid label value", {"key": key[:64], "value": value[:64]})


class MachineService:
    """The inventory's rules for operators, on top of a Store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        power: PowerService | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.store = store
        self.power = power
        self.clock = clock

    def get(self, machine_id: str) -> Machine:
        mac = canonical_mac(machine_id)
        machine = self.store.get_machine(mac)
        if machine is None:
            raise NotFound("no such machine", {"id": mac})
        return machine

    def list(self, state: str | None = None) -> list[Machine]:
        """Every machine (in `state`); windows that ran out are closed first."""
        if state is not None and state not in set(MachineState):
            raise BadRequest("unknown state", {"state": state[:32], "allowed": list(MachineState)})
        self.store.atomically(lambda tx: expire_windows(tx, self.clock()))
        return self.store.list_machines(state)

    def approve(
        self, machine_id: str, role: str, labels: dict[str, str], source: str | None
    ) -> Machine:
        """Give a discovered machine its role (and labels): it becomes provisionable."""
        if role not in ROLES:
            raise BadRequest("role must be controller or worker", {"role": str(role)[:32]})
        for key, value in labels.items():
            check_label(key, value)
        if ROLE_LABEL in labels:
            raise BadRequest("give the role with `role`, not as a label")
        mac = canonical_mac(machine_id)

        def txn(tx: Tx) -> Machine:
            now = self.clock()
            machine = self._existing(tx, mac)
            if machine.state != MachineState.DISCOVERED:
                raise Conflict(
                    f"only discovered machines are approved; this one is {machine.state}"
                    " (use reinstall)",
                    {"id": mac, "state": str(machine.state)},
                )
            wanted = {**machine.labels, **labels, ROLE_LABEL: role}
            group = match_group(
                self.settings.groups, replace(machine, labels=wanted).selector_view()
            )
            if group is None or self.settings.profiles[group.profile].role != role:
                raise Conflict(
                    f"no config group gives a {role} profile to this machine with these labels",
                    {"id": mac, "labels": wanted},
                )
            return approve(tx, machine, group, self.settings, "operator", source, now, wanted)

        machine = self.store.atomically(txn)
        if machine.state != MachineState.CONFIGURED:
            raise Conflict(
                "approval refused: the cluster already has all its controllers "
                "(cluster.controller_count)",
                {"id": mac},
            )
        return machine

    def reinstall(self, machine_id: str, source: str | None) -> tuple[Machine, BmcAction | None]:
        """Open a new provisioning window at the machine's next network boot: back to
        configured, outstanding token and report credential revoked. With a BMC, the same
        transaction queues its action: next boot PXE, then a power cycle."""
        mac = canonical_mac(machine_id)

        def txn(tx: Tx) -> tuple[Machine, BmcAction | None]:
            now = self.clock()
            machine = self._existing(tx, mac)
            if machine.state not in REINSTALLABLE:
                raise Conflict(
                    f"a {machine.state} machine is approved, not reinstalled",
                    {"id": mac, "state": str(machine.state)},
                )
            moved = replace(
                machine.closed_window(),
                report_hash=None,
                state=MachineState.CONFIGURED,
                updated=now,
            )
            tx.delete_pending_config(mac)
            tx.add_event(
                Event(
                    mac,
                    now,
                    "transition",
                    "operator requested a reinstall",
                    source,
                    str(machine.state),
                    str(MachineState.CONFIGURED),
                )  # fmt: skip
            )
            tx.put_machine(moved)
            action = self.power.queue_reinstall(tx, mac, source, now) if self.power else None
            return moved, action

        machine, action = self.store.atomically(txn)
        if action is not None and self.power is not None:
            self.power.ring()
        return machine, action

    def delete(self, machine_id: str, source: str | None) -> Machine:
        """Forget a machine with its events and credentials (it is discovered anew if it
        boots again)."""
        mac = canonical_mac(machine_id)

        def txn(tx: Tx) -> Machine:
            machine = self._existing(tx, mac)
            tx.delete_machine(mac)
            tx.add_alert(
                Event(mac, self.clock(), "deleted", "operator deleted the machine", source)
            )
            return machine

        return self.store.atomically(txn)

    def update(self, machine_id: str, changes: dict[str, Any], source: str | None) -> Machine:
        """Set hostname, state and labels (e.g. role) at once; all or nothing."""
        if not isinstance(changes, dict) or not changes:
            raise BadRequest("body must be a JSON object of KEY: VALUE")
        target, hostname, labels = self._validated(changes)
        mac = canonical_mac(machine_id)

        def txn(tx: Tx) -> tuple[Machine, Machine | None]:
            now = self.clock()
            machine = self._existing(tx, mac)
            if target is not None and not transition_allowed(machine.state, target):
                tx.add_event(
                    Event(
                        mac,
                        now,
                        "transition-refused",
                        "operator set state",
                        source,
                        str(machine.state),
                        str(target),
                    )  # fmt: skip
                )
                return machine, None
            updated = replace(machine, labels={**machine.labels, **labels}, updated=now)
            if hostname is not None:
                owner = tx.hostname_owner(hostname)
                if owner is not None and owner != mac:
                    raise Conflict(
                        "hostname taken by another machine", {"hostname": hostname, "id": owner}
                    )
                updated = replace(updated, hostname=hostname)
            if labels.get(ROLE_LABEL) == "controller" and machine.role != "controller":
                named = tx.count_with_role("controller")
                if named >= self.settings.cluster.controller_count:
                    raise Conflict(
                        f"the cluster already has {named} controllers (cluster.controller_count)",
                        {"id": mac},
                    )
            if labels:
                group = match_group(self.settings.groups, updated.selector_view())
                updated = replace(updated, profile=group.profile if group else None)
            if target is not None and target != machine.state:
                # A token is only good in the state it was issued for.
                updated = replace(updated.closed_window(), state=target)
                tx.delete_pending_config(mac)
            tx.add_event(
                Event(
                    mac,
                    now,
                    "transition" if target and target != machine.state else "set",
                    "operator edit",
                    source,
                    str(machine.state),
                    str(updated.state),
                    {"changes": changes},
                )  # fmt: skip
            )
            tx.put_machine(updated)
            return machine, updated

        before, after = self.store.atomically(txn)
        if after is None:
            raise Conflict(
                f"illegal transition {before.state} -> {target}",
                {"id": mac, "from": str(before.state), "to": str(target)},
            )
        return after

    def boot_complete(self, machine_id: str, source: str | None) -> Machine:
        """The operator marks an installed machine as running."""
        return self.update(machine_id, {"state": str(MachineState.RUNNING)}, source)

    def _validated(
        self, changes: dict[str, Any]
    ) -> tuple[MachineState | None, str | None, dict[str, str]]:
        target: MachineState | None = None
        hostname: str | None = None
        labels: dict[str, str] = {}
        for key, value in changes.items():
            if not isinstance(value, str):
                raise BadRequest("values must be strings", {"key": str(key)[:64]})
            if key == "state":
                try:
                    target = MachineState(value)
                except ValueError:
                    raise BadRequest(
                        "unknown state", {"state": value[:32], "allowed": list(MachineState)}
                    ) from None
            elif key == "hostname":
                hostname = clean_hostname(value)
            else:
                check_label(key, value)
                if key == ROLE_LABEL and value not in ROLES:
                    raise BadRequest("role must be controller or worker", {"role": value[:32]})
                labels[key] = value
        return target, hostname, labels

    @staticmethod
    def _existing(tx: Tx, mac: str) -> Machine:
        machine = tx.get_machine(mac)
        if machine is None:
            raise NotFound("no such machine", {"id": mac})
        return machine
