"""The `Bmc` protocol every implementation follows, and the values it speaks in.

Boot device overrides are always requested persistent (Redfish `Continuous`, IPMI
"persistent" flag). That is not a preference: both emulators (sushy-tools, virtualbmc)
ignore "once" and keep any override, so an interface offering "once" would lie on them. A
caller that wants "PXE for this boot only" sets PXE, then sets the disk again afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from mayu_py.bmc.coordinates import BmcCoordinates


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"
    POWERING_ON = "powering-on"
    POWERING_OFF = "powering-off"
    UNKNOWN = "unknown"


class PowerAction(StrEnum):
    ON = "on"
    OFF = "off"
    CYCLE = "cycle"


class BootDevice(StrEnum):
    PXE = "pxe"
    DISK = "disk"


@dataclass(frozen=True)
class PowerResult:
    """A power action the BMC acknowledged, and the state it reported right after."""

    action: PowerAction
    state: PowerState
    seconds: float  # from the first request to the acknowledged action and state read


@dataclass(frozen=True)
class BootResult:
    device: BootDevice
    persistent: bool  # always True: see the module docstring
    seconds: float


class Bmc(Protocol):
    """One machine's BMC. Every call is bounded in time and raises only BmcError.

    power_cycle leaves the machine on, started afresh: when it was on, it is reset (a new
    boot device applies); when it was off, it is powered on.
    """

    coordinates: BmcCoordinates

    def power_status(self) -> PowerState: ...

    def power_on(self) -> PowerResult: ...

    def power_off(self) -> PowerResult: ...

    def power_cycle(self) -> PowerResult: ...

    def set_boot_device(self, device: BootDevice) -> BootResult: ...
