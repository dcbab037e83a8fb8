"""What the shipped monitoring files (docs/monitoring/) say, for the tests that check them:
their PromQL expressions, with Grafana's variables replaced by values Prometheus accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
ALERTS = DOCS / "alerts.yaml"
ALERTS_TEST = DOCS / "alerts_test.yaml"
DASHBOARD = DOCS / "dashboard.json"

# Grafana variables in the dashboard's queries, and what they stand for in plain PromQL.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$agent_job": "mayu-agent",
    "$job": "mayu-serve",
}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def plain_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced."""
    return re.sub(
        "|".join(re.escape(v) for v in GRAFANA_VARIABLES),
        lambda m: GRAFANA_VARIABLES[m.group(0)],
        expr,
    )


def dashboard_queries() -> dict[str, str]:
    """Every query of the dashboard, in plain PromQL, by panel title and refId."""
    return {
        f"{panel['title']} {target['refId']}": plain_promql(target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    }


def alert_queries() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for rule in alert_rules()}
