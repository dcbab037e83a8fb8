"""DnsmasqSupervisor against a stand-in `dnsmasq` script: restart, backoff, stop, errors."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from mayu_py.dhcp import DnsmasqSupervisor
from mayu_py.errors import ConfigError

FAKE = """#!/bin/sh
for a in "$@"; do case "$a" in --test) echo "dnsmasq: syntax check OK." >&2; exit 0;; esac; done
{mode}
"""


def fake_dnsmasq(tmp_path: Path, mode: str) -> str:
    path = tmp_path / "dnsmasq"
    path.write_text(FAKE.format(mode=mode))
    path.chmod(0o755)
    return str(path)


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_restart_after_kill_and_log_forwarding(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="mayu_py.dhcp")
    binary = fake_dnsmasq(tmp_path, 'echo "dnsmasq[$$]: started, version fake" >&2; exec sleep 60')
    told: list[int] = []
    sup = DnsmasqSupervisor(
        tmp_path / "c.conf",
        dnsmasq=binary,
        backoff_initial=0.05,
        on_restart=lambda: told.append(sup.restarts),
    )
    sup.start()
    try:
        first = sup.pid
        assert first is not None
        assert told == []
        os.kill(first, 9)
        assert wait_for(lambda: sup.pid not in (None, first))
        assert wait_for(lambda: told == [1])  # the server's metrics hear of each restart
        assert sup.restarts == 1
        assert any(
            r.name == "mayu_py.dhcp.dnsmasq" and "started, version fake" in r.getMessage()
            for r in caplog.records
        )
    finally:
        sup.stop()
    assert sup.pid is None


def test_backoff_grows_and_is_capped(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    binary = fake_dnsmasq(
        tmp_path,
        f'echo x >> {counter}; echo "dnsmasq: started, version fake" >&2; '
        "if [ $(wc -l < " + str(counter) + ") -gt 1 ]; then exit 3; fi; exec sleep 60",
    )
    sup = DnsmasqSupervisor(
        tmp_path / "c.conf", dnsmasq=binary, backoff_initial=0.1, backoff_max=0.4
    )
    sup.start()
    try:
        os.kill(sup.pid or 0, 9)
        # Delays 0.1, 0.2, 0.4, 0.4, ...: about 5 restarts in 1.6 s, not 16.
        time.sleep(1.6)
        assert 3 <= sup.restarts <= 7
    finally:
        sup.stop()


def test_immediate_exit_is_a_one_line_config_error(tmp_path: Path) -> None:
    binary = fake_dnsmasq(tmp_path, 'echo "dnsmasq: unknown interface mayu-x" >&2; exit 2')
    with pytest.raises(ConfigError) as info:
        DnsmasqSupervisor(tmp_path / "c.conf", dnsmasq=binary).start()
    assert (
        info.value.message == "dnsmasq exited at start (code 2): dnsmasq: unknown interface mayu-x"
    )


def test_missing_binary_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found: install dnsmasq"):
        DnsmasqSupervisor(tmp_path / "c.conf", dnsmasq=str(tmp_path / "nope")).start()
