"""Watching one `mayu lab up`: what happened during this run, the reboot policy, the outcome.

A machine counts as installed only when one of its events recorded after this run started
moves it to `installed` or `running`; a state an earlier run left in the inventory never
counts. A VM whose qemu exited before its machine installed (iPXE gave up, a guest crash) is
booted again, up to MAX_BOOTS boots.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.state import Phase, VmRecord

MAX_BOOTS = 4
DONE_STATES = ("installed", "running")
DISK_DONE_STATES = ("running",)  # `--vms libvirt`: installed, rebooted, running from disk


def done_states(vm_driver: str) -> tuple[str, ...]:
    """What counts as done for a lab of these VMs."""
    return DISK_DONE_STATES if vm_driver == "libvirt" else DONE_STATES


class Outcome(Enum):
    """How watching a stage ended."""

    DONE = "done"
    TIMEOUT = "timeout"
    AGENT_EXITED = "agent exited"

    @property
    def phase(self) -> Phase:
        """The lab's phase after `up` ended this way."""
        return {
            Outcome.DONE: Phase.READY,
            Outcome.TIMEOUT: Phase.TIMEOUT,
            Outcome.AGENT_EXITED: Phase.AGENT_EXITED,
        }[self]


def installed_since(
    events: Iterable[dict[str, Any]], since: float, done_states: Iterable[str] = DONE_STATES
) -> bool:
    """True when an event at or after `since` moved the machine to one of `done_states`
    (installed or running)."""
    done = set(done_states)
    return any(e.get("to") in done and float(e.get("time") or 0) >= since for e in events)


@dataclass(frozen=True)
class Snapshot:
    """One look at the lab server."""

    machines: dict[str, dict[str, Any]]  # the server's records, by MAC
    installed: frozenset[str]  # MACs whose machine installed during this run
    tenants: list[dict[str, Any]] | None = None  # None: level 2 is not watched
    done_states: tuple[str, ...] = DONE_STATES  # what counts as done (`installed`)

    def all_installed(self, machines: Iterable[topo.LabMachine]) -> bool:
        return all(m.mac in self.installed for m in machines)

    def tenants_ready(self, names: Iterable[str]) -> bool:
        phases = {
            t["metadata"]["name"]: (t.get("status") or {}).get("phase") for t in self.tenants or []
        }
        return all(phases.get(name) == "Ready" for name in names)


EMPTY = Snapshot({}, frozenset())


class Watcher:
    """Polls the lab server and remembers which machines installed during this run."""

    def __init__(
        self, client: LabClient, since: float, done_states: tuple[str, ...] = DONE_STATES
    ) -> None:
        self.client = client
        self.since = since
        self.done_states = done_states  # `--vms libvirt`: running (from its disk)
        self._installed: set[str] = set()

    def poll(self, with_tenants: bool) -> Snapshot:
        """The server's machines (and tenants); a machine's events are read once its state
        says done, until an event of this run confirms it."""
        machines = self.client.machines()
        for mac, record in machines.items():
            if mac in self._installed or record.get("state") not in self.done_states:
                continue
            events = self.client.machine(mac).get("events") or []
            if installed_since(events, self.since, self.done_states):
                self._installed.add(mac)
        tenants = self.client.tenants() if with_tenants else None
        return Snapshot(machines, frozenset(self._installed), tenants, self.done_states)


def to_reboot(records: Iterable[VmRecord], installed: frozenset[str]) -> list[VmRecord]:
    """VMs whose qemu exited before their machine installed during this run, with boots left."""
    return [
        r
        for r in records
        if r.exited is not None and r.mac not in installed and r.boots < MAX_BOOTS
    ]


def judge(
    snapshot: Snapshot,
    machines: Iterable[topo.LabMachine],
    tenants: Iterable[str] | None,
    agent_exited: bool,
    timed_out: bool,
) -> Outcome | None:
    """The stage's outcome, or None while it goes on. `tenants` None: level 1 only."""
    if snapshot.all_installed(machines) and (tenants is None or snapshot.tenants_ready(tenants)):
        return Outcome.DONE
    if agent_exited:
        return Outcome.AGENT_EXITED
    if timed_out:
        return Outcome.TIMEOUT
    return None
