"""Redfish BMCs through OpenStack's `sushy` client.

Every call opens the service root, finds the system and acts; nothing is cached between
calls, so a BMC that restarted in between is no special case. Time is bounded per request:
TCP connect `connect_timeout` (2 s: a dead BMC fails at once instead of after sushy's
default 27 s of retries), answer `timeout`, one retry of a failed GET after `retry_delay`.
HTTP basic auth on every request (no Redfish session to leak or expire). sushy's and
requests' exceptions are mapped to the BmcError family here and nowhere else.
"""

from __future__ import annotations

import re
import time
from contextlib import AbstractContextManager

import requests
import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exc
from sushy.resources.system.system import System

from mayu_py.bmc.base import BootDevice, BootResult, PowerAction, PowerResult, PowerState
from mayu_py.bmc.coordinates import BmcCoordinates, BmcProtocol
from mayu_py.bmc.errors import (
    BmcAuthFailed,
    BmcError,
    BmcSystemNotFound,
    BmcUnreachable,
    BmcUnsupported,
    library_boundary,
    one_line,
)

_STATES = {
    sushy.PowerState.ON: PowerState.ON,
    sushy.PowerState.OFF: PowerState.OFF,
    sushy.PowerState.POWERING_ON: PowerState.POWERING_ON,
    sushy.PowerState.POWERING_OFF: PowerState.POWERING_OFF,
}
_TARGETS = {BootDevice.PXE: sushy.BootSource.PXE, BootDevice.DISK: sushy.BootSource.HDD}
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()]+)")
_SSL_REASON = re.compile(r"\[SSL: [A-Z_]+\] ([^'\"()]+)")


def _state(system: System) -> PowerState:
    return _STATES.get(system.power_state, PowerState.UNKNOWN)


class RedfishBmc:
    """A Redfish BMC; see `Bmc` for the contract."""

    def __init__(
        self,
        coordinates: BmcCoordinates,
        *,
        connect_timeout: float = 2.0,
        timeout: float = 10.0,
        retry_delay: float = 0.5,
    ) -> None:
        if coordinates.protocol is not BmcProtocol.REDFISH:
            raise ValueError(f"RedfishBmc for a {coordinates.protocol} BMC")
        self.coordinates = coordinates
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.retry_delay = retry_delay

    def power_status(self) -> PowerState:
        with self._errors("power status"):
            return _state(self._system())

    def power_on(self) -> PowerResult:
        return self._reset(PowerAction.ON)

    def power_off(self) -> PowerResult:
        return self._reset(PowerAction.OFF)

    def power_cycle(self) -> PowerResult:
        return self._reset(PowerAction.CYCLE)

    def set_boot_device(self, device: BootDevice) -> BootResult:
        start = time.monotonic()
        with self._errors(f"boot device {device}"):
            system = self._system()
            target = _TARGETS[device]
            offered = system.get_allowed_system_boot_source_values()
            if target not in offered:
                raise BmcUnsupported(
                    self.coordinates.label,
                    f"boot device {device}: the BMC offers {sorted(v.value for v in offered)}",
                )
            system.set_system_boot_options(
                target, enabled=sushy.BootSourceOverrideEnabled.CONTINUOUS
            )
        return BootResult(device, True, time.monotonic() - start)

    def _reset(self, action: PowerAction) -> PowerResult:
        start = time.monotonic()
        with self._errors(f"power {action}"):
            system = self._system()
            system.reset_system(self._reset_type(system, action))
            system.refresh()
            return PowerResult(action, _state(system), time.monotonic() - start)

    def _reset_type(self, system: System, action: PowerAction) -> sushy.ResetType:
        if action is PowerAction.OFF:
            wanted = [sushy.ResetType.FORCE_OFF]
        elif action is PowerAction.ON or _state(system) is PowerState.OFF:
            wanted = [sushy.ResetType.ON, sushy.ResetType.FORCE_ON]
        else:
            wanted = [sushy.ResetType.FORCE_RESTART]
        offered = system.get_allowed_reset_system_values()
        for reset in wanted:
            if reset in offered:
                return reset
        raise BmcUnsupported(
            self.coordinates.label,
            f"power {action}: the BMC offers {sorted(v.value for v in offered)} only",
        )

    def _system(self) -> System:
        coords = self.coordinates
        try:
            root = sushy.Sushy(
                coords.url,
                auth=sushy_auth.BasicAuth(coords.username, coords.password),
                verify=coords.ca_bundle or coords.verify_tls,
                server_side_retries=1,
                server_side_retries_delay=self.retry_delay,
                connect_timeout=self.connect_timeout,
                read_timeout=self.timeout,
            )
        except sushy_exc.ResourceNotFoundError:
            raise BmcUnsupported(coords.label, f"no Redfish service at {coords.url}") from None
        collection = root.get_system_collection()
        members = sorted(collection.members_identities)
        wanted = coords.system_id
        if wanted is None:
            if len(members) != 1:
                raise BmcSystemNotFound(
                    coords.label, f"{len(members)} systems ({', '.join(members)}): set system_id"
                )
            return root.get_system(members[0])
        path = wanted if wanted.startswith("/") else f"{collection.path.rstrip('/')}/{wanted}"
        if path not in members:
            # Not even asked: sushy-emulator answers 500, not 404, for a system it hides.
            raise BmcSystemNotFound(
                coords.label, f"system {wanted} not found (the BMC lists {', '.join(members)})"
            )
        return root.get_system(path)

    def _errors(self, what: str) -> AbstractContextManager[None]:
        """Map sushy's and requests' exceptions to one BmcError line."""
        return library_boundary(self.coordinates.label, lambda exc: self._translate(what, exc))

    def _translate(self, what: str, exc: Exception) -> BmcError:
        label = self.coordinates.label
        if isinstance(exc, sushy_exc.ConnectionError):
            return self._connection_error(what, exc.__context__ or exc)
        if isinstance(exc, requests.RequestException):
            return self._connection_error(what, exc)
        if isinstance(exc, sushy_exc.AccessError):
            return BmcAuthFailed(label, f"{what}: authentication failed (HTTP {exc.status_code})")
        if isinstance(exc, sushy_exc.BadRequestError):
            return BmcUnsupported(label, f"{what}: the BMC refused: {exc.detail or exc}")
        if isinstance(exc, sushy_exc.HTTPError):
            return BmcError(label, f"{what}: HTTP {exc.status_code}: {exc.detail or 'no detail'}")
        if isinstance(
            exc,
            sushy_exc.MissingActionError
            | sushy_exc.MissingAttributeError
            | sushy_exc.InvalidParameterValueError,
        ):
            return BmcUnsupported(label, f"{what}: {exc}")
        if isinstance(exc, sushy_exc.SushyError):
            return BmcError(label, f"{what}: {exc}")
        return BmcError(label, f"{what}: unexpected answer ({type(exc).__name__}: {exc})")

    def _connection_error(self, what: str, cause: BaseException) -> BmcError:
        label = self.coordinates.label
        if isinstance(cause, requests.exceptions.SSLError):
            return BmcError(label, f"{what}: TLS failed: {_tls_reason(cause)}")
        if isinstance(cause, requests.exceptions.ConnectTimeout):
            return BmcUnreachable(label, f"{what}: no connection within {self.connect_timeout:g} s")
        if isinstance(cause, requests.exceptions.Timeout):
            return BmcUnreachable(label, f"{what}: no answer within {self.timeout:g} s")
        return BmcUnreachable(label, f"{what}: unreachable ({_os_reason(cause)})")


def _os_reason(cause: BaseException) -> str:
    """The operating system's words ("Connection refused") from requests' nested errors."""
    seen: set[int] = set()
    todo: list[object] = [cause]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
        todo += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    found = _ERRNO.search(str(cause))
    return found.group(1).strip() if found else one_line(cause)


def _tls_reason(cause: BaseException) -> str:
    found = _SSL_REASON.search(str(cause))
    return found.group(1).strip() if found else one_line(cause)
