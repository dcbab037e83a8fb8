"""The shipped alert rules and dashboard queries against Prometheus' own checker (`promtool`,
Debian package `prometheus`): the rules load, their unit tests pass, every dashboard query
parses; and a broken rule is refused (the check can fail)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.monitoring import ALERTS, ALERTS_TEST, dashboard_queries

pytestmark = pytest.mark.peer

if not shutil.which("promtool"):
    pytest.skip("needs promtool (Debian: prometheus)", allow_module_level=True)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_alert_rules_load_and_their_tests_pass() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(ALERTS_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_queries()
    rules = [
        {"record": f"mayu:dashboard_query_{i}", "expr": expr}
        for i, expr in enumerate(queries.values())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(queries)} rules found" in checked.stdout


def test_a_broken_rule_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    rule = {"alert": "Broken", "expr": "sum by (instance (rate(mayu_machines[5m]))"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode != 0
    assert '"Broken": could not parse expression' in checked.stderr
