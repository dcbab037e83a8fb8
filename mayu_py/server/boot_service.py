"""The boot service: the one place that decides what a machine asking to boot gets.

A machine is matched to its group here, once, and the answer follows from its recorded state:
- unknown: recorded as `discovered` (rate-limited, expiring) and told to wait, or denied by
  policy; a config group that names it approves it at once;
- configured (approved): a provisioning window opens, a one-time boot token bound to one
  address is minted, and the installer script is served;
- installed, running, maintenance: boot the local disk, no token, no write;
- anything else (discovered, installing elsewhere, failed): wait.

An unauthenticated request never changes an enrolled machine's identity: a different UUID or
serial for a known MAC is recorded and refused. In full-DHCP mode a request from another
address than the one our dnsmasq leased to the MAC changes nothing at all (an alert is
recorded): it cannot discover, approve or provision in the real machine's name. HTTP handlers
only translate the answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from enum import StrEnum

from mayu_py.config import Group, Profile, Settings
from mayu_py.errors import MayuError, NotFound
from mayu_py.model import (
    LOCAL_BOOT_STATES,
    Event,
    Machine,
    MachineState,
    canonical_mac,
    canonical_uuid,
    clean_serial,
    default_hostname,
)
from mayu_py.server.addresses import same_address
from mayu_py.server.matching import match_group
from mayu_py.server.metrics import ServerMetrics
from mayu_py.server.tokens import new_token, token_hash
from mayu_py.store import Store, Tx

log = logging.getLogger(__name__)

SWEEP_BATCH = 20
ROLE_LABEL = "role"


class TooManyDiscoveries(MayuError):
    """Unknown machines arrive faster than discovery allows (HTTP 429)."""

    status = 429


class BootKind(StrEnum):
    INSTALL = "install"
    LOCAL = "local"
    WAIT = "wait"


@dataclass(frozen=True)
class BootAnswer:
    """What /ipxe serves: the kind of script, for which machine, and why."""

    kind: BootKind
    machine: Machine
    reason: str
    token: str | None = None
    profile: Profile | None = None
    # The store's state version this answer stays true at (a read that follows from the
    # machine's record alone, read after that version): it may be kept while the state stays
    # there (boot_front.py). None: not to be kept.
    kept_at: Hashable | None = None


@dataclass(frozen=True)
class Identity:
    """The hardware identity a boot request presents (validated)."""

    mac: str
    uuid: str | None
    serial: str | None

    @classmethod
    def parse(cls, mac: str, uuid: str | None, serial: str | None) -> Identity:
        return cls(canonical_mac(mac), canonical_uuid(uuid), clean_serial(serial))

    def mismatch(self, machine: Machine) -> dict[str, dict[str, str | None]]:
        """The presented values that differ from the machine's record."""
        return {
            key: {"stored": getattr(machine, key), "presented": getattr(self, key)}
            for key in ("uuid", "serial")
            if getattr(machine, key) != getattr(self, key)
        }


class BootService:
    """Decides every boot-plane answer of a machine asking to boot."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        lease_of: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.lease_of = lease_of  # full DHCP: the address our dnsmasq leased to a MAC
        self.clock = clock
        self.metrics = metrics or ServerMetrics()

    def answer(self, identity: Identity, source: str | None) -> BootAnswer:
        """The boot answer for a machine presenting `identity` from address `source`."""
        version = self.store.state_version()  # before the read it vouches for
        now = self.clock()
        known = self.store.get_machine(identity.mac)
        if known is not None:
            quick = self._read_only_answer(known, identity, now)
            if quick is not None:
                if quick.machine.state != MachineState.DISCOVERED:  # not on the clock either
                    return replace(quick, kept_at=version)
                return quick
        lease = self.lease_of(identity.mac) if self.lease_of else None
        token = new_token()
        answer = self.store.atomically(lambda tx: self._decide(tx, identity, source, lease, token))
        if answer is None:
            raise NotFound("unknown machine", {"mac": identity.mac, "policy": "deny"})
        if answer.kind == BootKind.INSTALL:
            self.metrics.tokens_issued.inc()
        return answer

    # -- the read-only path: no transaction, no write ---------------------------------------

    def _read_only_answer(
        self, machine: Machine, identity: Identity, now: float
    ) -> BootAnswer | None:
        """The answer when it is a read; it follows from the machine's record alone (and may
        be cached with it), except a discovered machine's, which also depends on the clock."""
        if identity.mismatch(machine) or machine.window_expires is not None:
            return None
        if machine.state in LOCAL_BOOT_STATES:
            return BootAnswer(BootKind.LOCAL, machine, f"{machine.state}: boot the local disk")
        if machine.state == MachineState.FAILED:
            return BootAnswer(BootKind.WAIT, machine, "failed: waiting for an operator's reinstall")
        fresh = now - machine.updated < self.settings.server.discovery.ttl_seconds / 4
        if machine.state == MachineState.DISCOVERED and fresh and not self._group(machine):
            return BootAnswer(BootKind.WAIT, machine, "discovered: waiting for approval")
        return None

    # -- the deciding transaction -----------------------------------------------------------

    def _decide(
        self, tx: Tx, identity: Identity, source: str | None, lease: str | None, token: str
    ) -> BootAnswer | None:
        """The answer, the machine written once whatever steps it took (discovered,
        approved, window opened: one row write, not three)."""
        now = self.clock()
        expire_windows(tx, now)
        stored = tx.get_machine(identity.mac)
        if self.settings.dhcp.mode == "full" and not same_address(source, lease):
            return self._not_from_lease(tx, identity.mac, stored, source, lease, now)
        machine = stored or self._discover(tx, identity, source, now)
        if machine is None:
            return None
        answer = self._advance(tx, machine, identity, source, lease, token, now)
        if answer.machine is not stored:
            tx.put_machine(answer.machine)
        return answer

    def _advance(
        self,
        tx: Tx,
        machine: Machine,
        identity: Identity,
        source: str | None,
        lease: str | None,
        token: str,
        now: float,
    ) -> BootAnswer:
        """The steps a machine takes on this request (events recorded, the machine not
        written): its answer carries the machine as it ends."""
        if mismatch := identity.mismatch(machine):
            tx.add_event(
                Event(
                    machine.id,
                    now,
                    "identity-mismatch",
                    "boot request with another identity for this MAC; not applied, no token",
                    source,
                    details=mismatch,
                )
            )
            log.warning("identity mismatch mac=%s source=%s", machine.id, source)
            return BootAnswer(BootKind.WAIT, machine, "identity does not match the record")
        if machine.state == MachineState.DISCOVERED:
            group = self._group(machine)
            if group is None:
                if now - machine.updated >= self.settings.server.discovery.ttl_seconds / 4:
                    machine = replace(machine, updated=now)
                return BootAnswer(BootKind.WAIT, machine, "discovered: waiting for approval")
            cause = f"config group {group.name}"
            machine = approve(tx, machine, group, self.settings, cause, source, now, write=False)
            if machine.state != MachineState.CONFIGURED:
                return BootAnswer(BootKind.WAIT, machine, "approval refused")
        if machine.state == MachineState.CONFIGURED:
            return self._provision(tx, machine, source, lease, token, now)
        if machine.state in LOCAL_BOOT_STATES:
            return BootAnswer(BootKind.LOCAL, machine, f"{machine.state}: boot the local disk")
        return BootAnswer(BootKind.WAIT, machine, f"{machine.state}: nothing to boot")

    def _discover(
        self, tx: Tx, identity: Identity, source: str | None, now: float
    ) -> Machine | None:
        discovery = self.settings.server.discovery
        if self.settings.server.unknown_machines == "deny":
            tx.add_alert(Event(identity.mac, now, "denied", "unknown machine, policy deny", source))
            log.info("denied unknown machine mac=%s source=%s", identity.mac, source)
            return None
        since = now - 60
        if (
            tx.registrations_since(since, source, discovery.per_source_per_minute)
            >= discovery.per_source_per_minute
            or tx.registrations_since(since, None, discovery.per_minute) >= discovery.per_minute
        ):
            raise TooManyDiscoveries(
                "too many new machines; try again later", {"mac": identity.mac}
            )
        for stale in tx.stale_discovered(now - discovery.ttl_seconds, SWEEP_BATCH):
            tx.delete_machine(stale)
        machine = Machine(
            id=identity.mac,
            mac=identity.mac,
            uuid=identity.uuid,
            serial=identity.serial,
            hostname=default_hostname(identity.mac),
            registered_from=source,
            created=now,
            updated=now,
        )
        tx.add_event(
            Event(
                machine.id,
                now,
                "discovered",
                "first boot request of an unknown machine",
                source,
                None,
                str(MachineState.DISCOVERED),
                {"uuid": identity.uuid, "serial": identity.serial},
            )
        )
        log.info("discovered machine mac=%s source=%s", machine.id, source)
        return machine

    def _provision(
        self,
        tx: Tx,
        machine: Machine,
        source: str | None,
        lease: str | None,
        token: str,
        now: float,
    ) -> BootAnswer:
        """Open (or continue) the machine's provisioning window and mint its boot token."""
        group = self._group(machine)
        if group is None:
            return BootAnswer(BootKind.WAIT, machine, "no group matches this machine")
        bound = lease if self.settings.dhcp.mode == "full" else source
        if machine.window_open(now) and not same_address(machine.window_address, bound):
            self._alert(
                tx,
                machine,
                now,
                source,
                f"second requester inside the window bound to {machine.window_address}",
            )
            return BootAnswer(BootKind.WAIT, machine, "provisioning from another address")
        again = machine.window_open(now)
        expires = (
            machine.window_expires
            if again
            else now + self.settings.server.provisioning_window_seconds
        )
        machine = replace(
            machine,
            token_hash=token_hash(token),
            token_consumed=False,
            window_expires=expires,
            window_address=bound,
            profile=group.profile,
            updated=now,
        )
        tx.delete_pending_config(machine.id)
        tx.add_event(
            Event(
                machine.id,
                now,
                "token-issued",
                "boot token issued again (same address)" if again else "provisioning window opened",
                source,
                details={"address": bound, "expires": expires, "profile": group.profile},
            )
        )
        profile = self.settings.profiles[group.profile]
        return BootAnswer(BootKind.INSTALL, machine, "provisioning", token, profile)

    def _not_from_lease(
        self,
        tx: Tx,
        mac: str,
        machine: Machine | None,
        source: str | None,
        lease: str | None,
        now: float,
    ) -> BootAnswer:
        """Full DHCP: a boot request from another address than the one our dnsmasq leased to
        this MAC is someone else's. It is recorded as an alert and changes nothing: no
        discovery (its identity would lock the real machine out), no approval, no token."""
        why = "no DHCP lease for this MAC" if lease is None else f"leased to {lease}"
        cause = f"boot request from {source}: {why}"
        if machine is None:
            tx.add_alert(Event(mac, now, "alert", cause, source))
            log.warning("alert mac=%s source=%s: %s", mac, source, cause)
            machine = Machine(id=mac, mac=mac)
        else:
            self._alert(tx, machine, now, source, cause)
        return BootAnswer(BootKind.WAIT, machine, "not from this machine's leased address")

    def _group(self, machine: Machine) -> Group | None:
        return match_group(self.settings.groups, machine.selector_view())

    @staticmethod
    def _alert(tx: Tx, machine: Machine, now: float, source: str | None, cause: str) -> None:
        tx.add_event(Event(machine.id, now, "alert", cause, source))
        log.warning("alert mac=%s source=%s: %s", machine.id, source, cause)


def approve(
    tx: Tx,
    machine: Machine,
    group: Group,
    settings: Settings,
    cause: str,
    source: str | None,
    now: float,
    labels: dict[str, str] | None = None,
    write: bool = True,
) -> Machine:
    """Move a discovered machine to configured under `group` (with the operator's `labels`),
    its events recorded, and write it (with `write=False` the caller writes it, once, with
    whatever else its request changes); a controller beyond the cluster's controller_count is
    refused (recorded, unchanged)."""
    role = settings.profiles[group.profile].role
    if role == "controller":
        named = tx.count_with_role("controller") - (machine.role == "controller")
        if named >= settings.cluster.controller_count:
            tx.add_event(
                Event(
                    machine.id,
                    now,
                    "approval-refused",
                    f"{cause}: the cluster already has {named} controllers "
                    "(cluster.controller_count)",
                    source,
                )
            )
            return machine
    result = replace(
        machine,
        labels={**machine.labels, **(labels or {}), ROLE_LABEL: role},
        profile=group.profile,
        state=MachineState.CONFIGURED,
        updated=now,
    )
    tx.add_event(
        Event(
            machine.id,
            now,
            "transition",
            f"approved by {cause} as {role}",
            source,
            str(machine.state),
            str(MachineState.CONFIGURED),
            {"group": group.name, "role": role},
        )
    )
    if write:
        tx.put_machine(result)
    return result


def expire_windows(tx: Tx, now: float) -> None:
    """Close provisioning windows that ran out: the machine fails with the reason."""
    for machine in tx.expired_windows(now, SWEEP_BATCH):
        failed = machine.closed_window()
        if machine.state in (MachineState.CONFIGURED, MachineState.INSTALLING):
            failed = replace(failed, state=MachineState.FAILED, updated=now)
        tx.delete_pending_config(machine.id)
        tx.add_event(
            Event(
                machine.id,
                now,
                "window-expired",
                "provisioning window ran out before the machine reported installed",
                None,
                str(machine.state),
                str(failed.state),
            )
        )
        tx.put_machine(failed)
