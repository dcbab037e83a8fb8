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
from dataclasses import dataclass, replace
from typing import Any

from mayu_py.bmc.records import BmcAction
from mayu_py.config import Settings
from mayu_py.errors import BadRequest, Conflict, NotFound
from mayu_py.model import (
    LABEL_KEY_MAX,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    Event,
    Machine,
    MachineState,
    canonical_mac,
    clean_hostname,
    labels_selected,
    transition_allowed,
)
from mayu_py.server.boot_service import ROLE_LABEL, approve, expire_windows
from mayu_py.server.hosts import HostService
from mayu_py.server.listing import decode_token, encode_token, page, parse_selector
from mayu_py.server.matching import match_group
from mayu_py.server.power import PowerService
from mayu_py.store import Store, Tx

log = logging.getLogger(__name__)

ROLES = ("controller", "worker")
_LABEL_KEY = re.compile(LABEL_KEY_PATTERN)
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)
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
    if len(key) > LABEL_KEY_MAX or not _LABEL_KEY.fullmatch(key):
        raise BadRequest("invalid label key", {"key": key[:64]})
    if not _LABEL_VALUE.fullmatch(value):
        raise BadRequest("invalid label value", {"key": key[:64], "value": value[:64]})


@dataclass(frozen=True)
class Revoked:
    """What deleting a machine revoked."""

    report_credential: bool
    agent_token: bool
    certificates: list[str]  # serial numbers (hex) of the certificates whose keys were deleted


class MachineService:
    """The inventory's rules for operators, on top of a Store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        hosts: HostService,
        forget_certificates: Callable[[str], list[str]],
        power: PowerService | None = None,
        clock: Callable[[], float] = time.time,
    ):
        """`forget_certificates(node name)` deletes a node's cached certificates and returns
        their serial numbers (ClusterPKI.forget_node)."""
        self.settings = settings
        self.store = store
        self.hosts = hosts
        self.forget_certificates = forget_certificates
        self.power = power
        self.clock = clock

    def get(self, machine_id: str) -> Machine:
        mac = canonical_mac(machine_id)
        machine = self.store.get_machine(mac)
        if machine is None:
            raise NotFound("no such machine", {"id": mac})
        return machine

    def list(
        self,
        state: str | None = None,
        selector: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> tuple[list[Machine], str | None]:
        """Machines (in `state`, whose labels match `selector`) in id order: up to `limit`
        after the `after` continue token, and the next page's token (None: no more).
        Windows that ran out are closed first."""
        if state is not None and state not in set(MachineState):
            raise BadRequest("unknown state", {"state": state[:32], "allowed": list(MachineState)})
        terms = parse_selector(selector)
        start = decode_token(after) if after else None
        self.store.atomically(lambda tx: expire_windows(tx, self.clock()))
        if limit is None:
            machines = self.store.list_machines(state)
            machines = [m for m in machines if labels_selected(terms, m.labels)]
            return page(machines, lambda m: m.id, None, start)
        # A page from the store (one more: is there a next page?), never all.
        shown = self.store.machines_after(start, limit + 1, state, terms)
        more = len(shown) > limit
        return shown[:limit], encode_token(shown[limit - 1].id) if more else None

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

    def delete(self, machine_id: str, source: str | None) -> tuple[Machine, Revoked]:
        """Forget a machine with its events, and revoke what it was given: its report
        credential and boot token (they lived on its record), the agent token its config
        carried (its tenant nodes move to other hosts) and its certificates (their keys are
        deleted; a machine that boots again is discovered anew and gets new ones)."""
        mac = canonical_mac(machine_id)

        def txn(tx: Tx) -> tuple[Machine, bool]:
            machine = self._existing(tx, mac)
            tx.delete_machine(mac)
            agent = self.hosts.revoke_deleted_machine(tx, machine.node_name, source)
            details = {"report_credential": machine.report_hash is not None, "agent_token": agent}
            tx.add_alert(
                Event(
                    mac,
                    self.clock(),
                    "deleted",
                    "operator deleted the machine",
                    source,
                    details=details,
                )  # fmt: skip
            )
            return machine, agent

        machine, agent = self.store.atomically(txn)
        certificates = self.forget_certificates(machine.node_name)
        if certificates:
            log.info("certificates of deleted machine %s forgotten: %s", mac, certificates)
        return machine, Revoked(machine.report_hash is not None, agent, certificates)

    def update(self, machine_id: str, changes: dict[str, Any], source: str | None) -> Machine:
        """Set hostname, state and labels (e.g. role) at once, a label given as None is
        removed (JSON merge patch); all or nothing."""
        if not isinstance(changes, dict) or not changes:
            raise BadRequest("body must be a JSON object of KEY: VALUE")
        target, hostname, labels, removed = self._validated(changes)
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
            kept = {k: v for k, v in machine.labels.items() if k not in removed}
            updated = replace(machine, labels={**kept, **labels}, updated=now)
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
            if labels or removed:
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
    ) -> tuple[MachineState | None, str | None, dict[str, str], set[str]]:
        target: MachineState | None = None
        hostname: str | None = None
        labels: dict[str, str] = {}
        removed: set[str] = set()
        for key, value in changes.items():
            if value is None and key not in ("state", "hostname"):
                check_label(key, "")
                if key == ROLE_LABEL:
                    raise BadRequest("the role label is not removed: set another role")
                removed.add(key)
                continue
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
        return target, hostname, labels, removed

    @staticmethod
    def _existing(tx: Tx, mac: str) -> Machine:
        machine = tx.get_machine(mac)
        if machine is None:
            raise NotFound("no such machine", {"id": mac})
        return machine
