"""DnsmasqSupervisor against a stand-in `dnsmasq` written in Python: restart, backoff, stop,
errors. The stand-in runs on this interpreter, so the test needs no program of the system."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import pytest

from mayu_py.dhcp import DnsmasqSupervisor
from mayu_py.errors import ConfigError
from tests.support.wait import wait_for

FAKE = """#!{python}
import sys, time
if "--test" in sys.argv:
    print("dnsmasq: syntax check OK.", file=sys.stderr)
    sys.exit(0)
{body}
"""
STARTED = 'print(f"dnsmasq[{os.getpid()}]: started, version fake", file=sys.stderr, flush=True)'


def fake_dnsmasq(tmp_path: Path, body: str) -> str:
    path = tmp_path / "dnsmasq"
    path.write_text(FAKE.format(python=sys.executable, body=body))
    path.chmod(0o755)
    return str(path)


def test_restart_after_kill_and_log_forwarding(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="mayu_py.dhcp")
    binary = fake_dnsmasq(tmp_path, f"import os\n{STARTED}\ntime.sleep(60)")
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
        second = wait_for("a restarted dnsmasq", lambda: sup.pid not in (None, first) and sup.pid)
        wait_for("the restart reported to the metrics", lambda: told == [1])
        assert sup.restarts == 1

        def forwarded() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "mayu_py.dhcp.dnsmasq"]

        line = f"dnsmasq[{second}]: started, version fake"
        wait_for("the restarted child's start-up line", lambda: line in forwarded())
        assert f"dnsmasq[{first}]: started, version fake" in forwarded()
    finally:
        sup.stop()
    assert sup.pid is None


def test_backoff_grows_and_is_capped(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="mayu_py.dhcp")
    starts = tmp_path / "starts"
    body = (
        f"import os\nwith open({str(starts)!r}, 'a') as f: f.write('x')\n{STARTED}\n"
        f"if len(open({str(starts)!r}).read()) > 1: sys.exit(3)\ntime.sleep(60)"
    )
    binary = fake_dnsmasq(tmp_path, body)
    sup = DnsmasqSupervisor(
        tmp_path / "c.conf", dnsmasq=binary, backoff_initial=0.1, backoff_max=0.4
    )
    sup.start()
    try:
        os.kill(sup.pid or 0, 9)  # from now on every child exits at once
        wait_for("5 restarts", lambda: sup.restarts >= 5, timeout_s=30)
    finally:
        sup.stop()
    delays = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"restarting in ([\d.]+) s", r.getMessage()))
    ]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.4, 0.4]


def test_immediate_exit_is_a_one_line_config_error(tmp_path: Path) -> None:
    binary = fake_dnsmasq(
        tmp_path, 'print("dnsmasq: unknown interface mayu-x", file=sys.stderr)\nsys.exit(2)'
    )
    with pytest.raises(ConfigError) as info:
        DnsmasqSupervisor(tmp_path / "c.conf", dnsmasq=binary).start()
    assert (
        info.value.message == "dnsmasq exited at start (code 2): dnsmasq: unknown interface mayu-x"
    )


def test_missing_binary_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found: install dnsmasq"):
        DnsmasqSupervisor(tmp_path / "c.conf", dnsmasq=str(tmp_path / "nope")).start()
