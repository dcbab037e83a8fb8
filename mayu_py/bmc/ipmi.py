"""IPMI BMCs (RMCP+ over UDP) through OpenStack's `pyghmi`.

One session per operation: log in, run the commands, log out. A BMC has few session slots,
and a session kept for later would turn "the BMC died since" into pyghmi's ~28 s of
retransmissions and re-logins. pyghmi shares one session per BMC among all callers in the
process, so operations on one BMC are serialized here (else one caller's logout would cut
another's command).

Time, bounded at each step:
- the login runs in pyghmi's asynchronous mode under our own deadline (`connect_timeout`,
  3 s): pyghmi's own loop restarts forever against a BMC that answers the session request
  but never RAKP1 (virtualbmc does that for an unknown user name);
- after the login the session may not silently log in again (`logontries = 0`), so a BMC
  that dies in the middle of an operation fails it after pyghmi's retransmissions (~10 s)
  instead of ~28 s; shorter would cut valid slow answers (virtualbmc answers "power off"
  only once libvirt destroyed the domain, 1.5-2.5 s);
- a power cycle waits at most `timeout` for "off" before powering on.

Cycle is off, then on: virtualbmc has no power cycle, and its reset does not apply a new
boot device. Credentials go to pyghmi as bytes: pyghmi files a session being set up under
the arguments as given but removes it under their encoded form, so with str credentials a
second login to the same BMC waits forever for one that already finished.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TypeVar

from pyghmi import exceptions as pyghmi_exc
from pyghmi.ipmi.command import Command

from mayu_py.bmc import pyghmi_sha1
from mayu_py.bmc.base import BootDevice, BootResult, PowerAction, PowerResult, PowerState
from mayu_py.bmc.coordinates import BmcCoordinates, BmcProtocol
from mayu_py.bmc.errors import (
    BmcAuthFailed,
    BmcError,
    BmcUnreachable,
    BmcUnsupported,
    library_boundary,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_BOOT = {BootDevice.PXE: "network", BootDevice.DISK: "hd"}
_AUTH_WORDS = (
    "password",
    "unauthorized name",
    "invalid role",
    "unauthorized role",
    "invalid username",
    "integrity check value",
)
_SILENT_WORDS = ("timeout", "no longer connected", "failed to initialize")
# pyghmi mostly passes on a completion code's text only (its constants.ipmi_completion_codes).
_UNSUPPORTED_WORDS = (
    "invalid command",
    "parameter not supported",
    "invalid data field",
    "parameter out of range",
    "not supported in present state",
)
_POLL = 0.2
# pyghmi gives up on a silent BMC within ~10 s once logged in (see the module docstring).
_COMMANDS_BOUND = 12.0

_BUSY_LOCK = threading.Lock()
_BUSY: dict[tuple[str, int], threading.Lock] = {}


def _endpoint_lock(host: str, port: int) -> threading.Lock:
    with _BUSY_LOCK:
        return _BUSY.setdefault((host, port), threading.Lock())


class IpmiBmc:
    """An IPMI BMC; see `Bmc` for the contract."""

    def __init__(
        self, coordinates: BmcCoordinates, *, connect_timeout: float = 3.0, timeout: float = 10.0
    ) -> None:
        if coordinates.protocol is not BmcProtocol.IPMI:
            raise ValueError(f"IpmiBmc for a {coordinates.protocol} BMC")
        self.coordinates = coordinates
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.host, self.port = coordinates.endpoint
        if coordinates.ipmi_cipher_suite == 3:
            pyghmi_sha1.force_sha1(self.host, self.port)

    def power_status(self) -> PowerState:
        return self._run("power status", _state)

    def power_on(self) -> PowerResult:
        return self._power(PowerAction.ON)

    def power_off(self) -> PowerResult:
        return self._power(PowerAction.OFF)

    def power_cycle(self) -> PowerResult:
        return self._power(PowerAction.CYCLE)

    def set_boot_device(self, device: BootDevice) -> BootResult:
        start = time.monotonic()
        self._run(f"boot device {device}", lambda cmd: cmd.set_bootdev(_BOOT[device], persist=True))
        return BootResult(device, True, time.monotonic() - start)

    def _power(self, action: PowerAction) -> PowerResult:
        start = time.monotonic()

        def act(command: Command) -> PowerState:
            if action is PowerAction.CYCLE:
                command.set_power("off")
                self._await_off(command, time.monotonic() + self.timeout)
                command.set_power("on")
            else:
                command.set_power(str(action))
            return _state(command)

        state = self._run(f"power {action}", act)
        return PowerResult(action, state, time.monotonic() - start)

    def _await_off(self, command: Command, deadline: float) -> None:
        while _state(command) is not PowerState.OFF:
            if time.monotonic() > deadline:
                raise BmcError(
                    self.coordinates.label,
                    f"power cycle: still on {self.timeout:g} s after power off",
                )
            time.sleep(_POLL)

    def _run(self, what: str, action: Callable[[Command], T]) -> T:
        """Run `action` on a fresh session to this BMC, one operation at a time per BMC."""
        lock = _endpoint_lock(self.host, self.port)
        with self._errors(what):
            if not lock.acquire(timeout=self.connect_timeout + self.timeout + _COMMANDS_BOUND):
                raise BmcError(self.coordinates.label, f"{what}: another call is still running")
            try:
                with self._session(what) as command:
                    return action(command)
            finally:
                lock.release()

    @contextlib.contextmanager
    def _session(self, what: str) -> Iterator[Command]:
        answer: dict[str, object] = {}
        command = Command(
            self.host,
            self.coordinates.username.encode(),
            self.coordinates.password.encode(),
            port=self.port,
            onlogon=lambda response, _command: answer.update(response, done=True),
        )
        session = command.ipmi_session
        deadline = time.monotonic() + self.connect_timeout
        while not answer:
            left = deadline - time.monotonic()
            if left <= 0:
                session._mark_broken("login timed out")  # else pyghmi retransmits forever
                raise BmcUnreachable(
                    self.coordinates.label,
                    f"{what}: no IPMI session within {self.connect_timeout:g} s"
                    " (no answer, or a user name the BMC ignores)",
                )
            Command.wait_for_rsp(min(left, _POLL))
        if "error" in answer:
            raise pyghmi_exc.IpmiException(answer["error"])
        session.logontries = 0
        try:
            yield command
        finally:
            try:
                session.logout()
            except Exception:  # best effort: the BMC drops idle sessions itself
                log.debug("%s: logout failed", self.coordinates.label, exc_info=True)

    def _errors(self, what: str) -> AbstractContextManager[None]:
        """Map pyghmi's and the socket layer's exceptions to one BmcError line."""
        return library_boundary(self.coordinates.label, lambda exc: self._translate(what, exc))

    def _translate(self, what: str, exc: Exception) -> BmcError:
        label = self.coordinates.label
        if isinstance(exc, socket.gaierror):
            return BmcUnreachable(label, f"{what}: cannot resolve {self.host} ({exc.strerror})")
        if isinstance(exc, OSError):
            return BmcUnreachable(label, f"{what}: unreachable ({exc.strerror or exc})")
        if isinstance(exc, pyghmi_exc.InvalidParameterValue | pyghmi_exc.UnsupportedFunctionality):
            return BmcUnsupported(label, f"{what}: {exc}")
        if isinstance(exc, pyghmi_exc.IpmiException):
            text = "" if exc.args in ((), (None,)) else str(exc)
            lower = text.lower()
            if any(word in lower for word in _AUTH_WORDS):
                return BmcAuthFailed(label, f"{what}: authentication failed ({text})")
            if not text or any(word in lower for word in _SILENT_WORDS):
                return BmcUnreachable(label, f"{what}: no answer from {self.host}:{self.port}")
            if any(word in lower for word in _UNSUPPORTED_WORDS):
                return BmcUnsupported(label, f"{what}: the BMC answered {text!r}")
            return BmcError(label, f"{what}: the BMC answered {text!r}")
        return BmcError(label, f"{what}: unexpected answer ({type(exc).__name__}: {exc})")


def _state(command: Command) -> PowerState:
    return PowerState(command.get_power()["powerstate"])
