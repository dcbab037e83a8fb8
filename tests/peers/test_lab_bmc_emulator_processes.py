"""The BMC emulator supervisor with real processes (a shell stands in for the emulators):
stopping whole process groups, start-up failures reported, emulators that never bind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mayu_py.errors import ConfigError
from mayu_py.lab import bmc_emulators as be

pytestmark = pytest.mark.peer


class Scripted(be._Emulator):
    name = "scripted"

    def run(self, script: str, tcp: list[int] | None = None) -> None:
        be.ensure_private_dir(self.state_dir)
        self._spawn(["sh", "-c", script], {})
        self._await_bound(tcp=tcp or [])


def test_stop_ends_the_whole_group_even_when_sigterm_is_ignored(tmp_path: Path) -> None:
    emulator = Scripted(tmp_path / "s", None, startup_timeout=5.0)
    emulator.run("trap '' TERM; sleep 60 & sleep 60 & wait")
    pgid = emulator.pid
    assert pgid is not None
    children = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    assert len(children.stdout.split()) == 3  # sh and its two sleeps
    emulator.stop(timeout=0.3)
    assert be._group_alive(pgid) == [] and emulator.pid is None
    emulator.stop()  # idempotent


def test_an_emulator_that_exits_at_start_says_why(tmp_path: Path) -> None:
    emulator = Scripted(tmp_path / "s", None, startup_timeout=5.0)
    with pytest.raises(
        ConfigError, match=r"exited at start \(code 3\): OSError: Address already in use$"
    ):
        emulator.run("echo 'OSError: Address already in use' >&2; exit 3", tcp=[1])
    log = emulator.log_file
    assert log.stat().st_mode & 0o777 == 0o600


def test_an_emulator_that_never_binds_is_stopped(tmp_path: Path) -> None:
    emulator = Scripted(tmp_path / "s", None, startup_timeout=0.5)
    with pytest.raises(ConfigError, match=r"did not bind port\(s\) \[1\] within 0.5 s"):
        emulator.run("echo starting; exec sleep 60", tcp=[1])
    assert emulator.pid is None
