"""bench/boot_storm.py keeps working: a small storm of both flows against a real `mayu serve`
and nginx provisions every machine with no error (the figures themselves are the bench's)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.peer

MACHINES = 12


@pytest.mark.parametrize("flow", ["trusted", "plain"])
def test_a_small_storm_provisions_every_machine_on_mayu_and_nginx(flow: str) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "boot_storm.py"), "--machines", str(MACHINES),
         "--concurrency", "4", "--flow", flow],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    done = re.findall(rf"== (.+?): (\d+)/{MACHINES} provisioned .+ errors (\d+)", run.stdout)
    assert [(name.split()[0], int(n), int(e)) for name, n, e in done] == [
        ("mayu", MACHINES, 0),
        ("nginx", MACHINES, 0),
    ], run.stdout
    steps = set(re.findall(r"^   (/\S+(?: https)?|machine) +\d+ ", run.stdout, re.M))
    https = {"/ignition https"} if flow == "trusted" else set()
    assert steps == {"/ipxe", "/ignition", "/report", "machine"} | https, run.stdout
