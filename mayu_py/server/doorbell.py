"""The BMC runner's doorbell: a datagram that says "actions were queued, look now".

The queue itself is the store (table `bmc_actions`); the doorbell only saves the runner its
poll interval. It is a Linux abstract unix socket named after the data dir (no file to
leave behind, no path-length limit; one per network namespace, which is where `mayu serve`
and its runner live). Ringing never blocks and never fails: without a listener the runner
still finds the action at its next poll. Anyone on the host may ring; a ring carries no
data and only makes the runner read the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import socket
from pathlib import Path

from mayu_py.errors import ConfigError


def address(data_dir: Path) -> bytes:
    """The abstract socket name of the runner serving data_dir."""
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:32]
    return b"\0mayu-bmc-runner-" + digest.encode()


def ring(data_dir: Path) -> bool:
    """Wake the runner of data_dir; True when a runner is listening."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.sendto(b"!", address(data_dir))
        except OSError:  # nobody listening, or its queue is full: it is awake anyway
            return False
    return True


class Doorbell:
    """The runner's end: bound to the data dir's address while open."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.bind(address(self.data_dir))
        except OSError as exc:
            self._sock.close()
            raise ConfigError(
                f"BMC runner: another runner serves data dir {self.data_dir} ({exc.strerror})"
            ) from None
        self._sock.setblocking(False)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` for a ring; True when rung. Drains every pending ring."""
        ready, _, _ = select.select([self._sock], [], [], timeout)
        rung = False
        while ready:
            try:
                self._sock.recv(16)
                rung = True
            except BlockingIOError:
                break
        return rung

    def ring(self) -> None:
        ring(self.data_dir)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
