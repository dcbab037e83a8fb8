"""What the inventory keeps about BMCs: a machine's BMC (password sealed) and BMC actions.

A `StoredBmc` is keyed by the machine's MAC and may exist before the machine ever booted
(an operator registers a rack's BMCs, then powers the machines on). A `BmcAction` is one
request to a BMC, queued by the admin API and run by the BMC runner process: its kind names
its steps, its state moves queued -> running -> done | failed, and its result (or one-line
error) is kept with it. Plain data: the store keeps these, the server and the runner act.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mayu_py.bmc.base import BootDevice, PowerAction


@dataclass(frozen=True)
class StoredBmc:
    """A machine's BMC as kept at rest: the coordinates but the password (`public()` of
    BmcCoordinates), the password sealed (see `sealing`), and whether a reinstall set the
    boot device to PXE that must go back to disk once the machine reports `installed`."""

    machine_id: str
    settings: dict[str, Any]
    sealed_password: str
    disk_after_install: bool = False
    updated: float = 0.0


class ActionKind(StrEnum):
    POWER_ON = "power-on"
    POWER_OFF = "power-off"
    POWER_CYCLE = "power-cycle"
    POWER_STATUS = "power-status"
    BOOTDEV_PXE = "bootdev-pxe"
    BOOTDEV_DISK = "bootdev-disk"
    REINSTALL = "reinstall"  # next boot PXE, then power cycle
    DISK_BOOT = "disk-boot"  # next boot disk, then power cycle (IPMI after an install)


class ActionState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


FINISHED = frozenset({ActionState.DONE, ActionState.FAILED})
# A machine keeps its newest this many finished actions (trimmed when one is added); open
# (queued, running) ones are never trimmed.
ACTIONS_KEPT = 50


@dataclass(frozen=True)
class Step:
    """One BMC call of an action: `family` is power, bootdev or status (event kinds are
    `<family>-requested|acknowledged|failed`)."""

    family: str
    power: PowerAction | None = None
    device: BootDevice | None = None

    @property
    def words(self) -> str:
        """How messages name the step: `power cycle`, `boot device pxe`, `power status`."""
        if self.power is not None:
            return f"power {self.power}"
        if self.device is not None:
            return f"boot device {self.device}"
        return "power status"

    @property
    def recorded(self) -> bool:
        """Steps that change the machine are events; a status read is not."""
        return self.family != "status"


STEPS: dict[ActionKind, tuple[Step, ...]] = {
    ActionKind.POWER_ON: (Step("power", power=PowerAction.ON),),
    ActionKind.POWER_OFF: (Step("power", power=PowerAction.OFF),),
    ActionKind.POWER_CYCLE: (Step("power", power=PowerAction.CYCLE),),
    ActionKind.POWER_STATUS: (Step("status"),),
    ActionKind.BOOTDEV_PXE: (Step("bootdev", device=BootDevice.PXE),),
    ActionKind.BOOTDEV_DISK: (Step("bootdev", device=BootDevice.DISK),),
    ActionKind.REINSTALL: (
        Step("bootdev", device=BootDevice.PXE),
        Step("power", power=PowerAction.CYCLE),
    ),
    ActionKind.DISK_BOOT: (
        Step("bootdev", device=BootDevice.DISK),
        Step("power", power=PowerAction.CYCLE),
    ),
}


@dataclass(frozen=True)
class BmcAction:
    """One request to a machine's BMC and, once run, its outcome."""

    machine_id: str
    kind: ActionKind
    requested: float
    cause: str
    source: str | None = None
    state: ActionState = ActionState.QUEUED
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None
    id: int | None = None

    @property
    def steps(self) -> tuple[Step, ...]:
        return STEPS[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "machine_id": self.machine_id,
            "action": str(self.kind),
            "state": str(self.state),
            "cause": self.cause,
            "source": self.source,
            "requested": self.requested,
            "started": self.started,
            "finished": self.finished,
            "result": dict(self.result),
            "error": self.error,
            "error_kind": self.error_kind,
        }
