"""A fake BMC fleet for unit tests: `FakeFleet.connect` stands in for mayu_py.bmc.client.connect.

Each BMC address has one `FakeBmc` with a power state, a boot device and a log of calls;
`fail` makes its next calls raise a given BmcError (as the real clients do: one line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mayu_py.bmc.base import BootDevice, BootResult, PowerAction, PowerResult, PowerState
from mayu_py.bmc.coordinates import BmcCoordinates
from mayu_py.bmc.errors import BmcAuthFailed, BmcError


@dataclass
class FakeBmc:
    coordinates: BmcCoordinates
    password: str
    state: PowerState = PowerState.OFF
    device: BootDevice = BootDevice.DISK
    calls: list[str] = field(default_factory=list)
    fail: BmcError | None = None

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.coordinates.password != self.password:
            raise BmcAuthFailed(self.coordinates.label, f"{what}: authentication failed (HTTP 401)")
        if self.fail is not None:
            raise self.fail

    def power_status(self) -> PowerState:
        self._check("status")
        return self.state

    def _power(self, action: PowerAction, state: PowerState) -> PowerResult:
        self._check(f"power {action}")
        self.state = state
        return PowerResult(action, state, 0.01)

    def power_on(self) -> PowerResult:
        return self._power(PowerAction.ON, PowerState.ON)

    def power_off(self) -> PowerResult:
        return self._power(PowerAction.OFF, PowerState.OFF)

    def power_cycle(self) -> PowerResult:
        return self._power(PowerAction.CYCLE, PowerState.ON)

    def set_boot_device(self, device: BootDevice) -> BootResult:
        self._check(f"bootdev {device}")
        self.device = device
        return BootResult(device, True, 0.01)


class FakeFleet:
    """BMCs by address; each accepts one password."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.bmcs: dict[str, FakeBmc] = {}

    def connect(self, coordinates: BmcCoordinates) -> FakeBmc:
        bmc = self.bmcs.setdefault(coordinates.address, FakeBmc(coordinates, self.password))
        bmc.coordinates = coordinates
        return bmc
