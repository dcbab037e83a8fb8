"""The sample alert rules and Grafana dashboard in docs/monitoring/ use exactly the metrics the
code defines (names, series suffixes, label names), cover every one of them, and the dashboard
has the shape Grafana imports. (`promtool` checks the PromQL itself: tests/peers.)"""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
from prometheus_client.metrics import MetricWrapperBase

from mayu_py.agent.metrics import AgentMetrics
from mayu_py.server.metrics import ServerMetrics
from mayu_py.store.sqlite import SqliteStore
from tests.support.monitoring import (
    GRAFANA_VARIABLES,
    alert_queries,
    dashboard,
    dashboard_queries,
)

SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series
METRIC = re.compile(r"\b(mayu_[a-z0-9_]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def defined_series(tmp_path: Path) -> dict[str, set[str]]:
    """Every series name the server and the agent expose, with its label names."""
    server, agent = ServerMetrics(), AgentMetrics(lambda: 0)
    families: dict[str, tuple[str, set[str]]] = {}
    for owner in (server, agent):
        for metric in vars(owner).values():
            if isinstance(metric, MetricWrapperBase):
                families[metric._name] = (metric._type, set(metric._labelnames))
    for collected in agent.registry.collect():  # libvirt reconnects: read when scraped
        families.setdefault(collected.name, (collected.type, set()))
    # Counted from the store when scraped.
    assert b'mayu_machines{state="running"}' in server.exposition(SqliteStore(tmp_path / "s"))
    families["mayu_machines"] = ("gauge", {"state"})
    series = {}
    for name, (kind, labels) in families.items():
        for suffix in SERIES_SUFFIXES[kind]:
            series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def used(queries: dict[str, str], series: dict[str, set[str]]) -> set[str]:
    """The mayu series the queries use; asserts each exists with the labels it is given."""
    names: set[str] = set()
    for where, expr in queries.items():
        in_expr: set[str] = set()
        for name, matchers in METRIC.findall(expr):
            assert name in series, f"{where}: {name} is not a metric of mayu"
            labels = set(MATCHER.findall(matchers))
            assert labels <= series[name] | TARGET_LABELS, f"{where}: {name} has no {labels}"
            in_expr.add(name)
        known = set().union(*(series[n] for n in in_expr)) | TARGET_LABELS
        for grouping in GROUPING.findall(expr):
            by = {label.strip() for label in grouping.split(",") if label.strip()}
            assert by <= known, f"{where}: grouping by {by - known}, not a label of {in_expr}"
        names |= in_expr
    return names


def test_every_name_in_the_alerts_and_dashboard_is_defined(tmp_path: Path) -> None:
    series = defined_series(tmp_path)
    alerts = used(alert_queries(), series)
    shown = used(dashboard_queries(), series)
    assert alerts and shown
    families = {re.sub(r"_(total|bucket|sum|count)$", "", s) for s in series}
    seen = {re.sub(r"_(total|bucket|sum|count)$", "", s) for s in alerts | shown}
    assert families - seen == set(), "metrics neither alerted on nor shown"


def test_a_misspelled_name_or_label_is_caught(tmp_path: Path) -> None:
    series = defined_series(tmp_path)
    with pytest.raises(AssertionError, match="not a metric"):
        used({"x": "rate(mayu_boot_token_issued_total[5m])"}, series)
    with pytest.raises(AssertionError, match="has no"):
        used({"x": 'mayu_machines{status="failed"}'}, series)
    with pytest.raises(AssertionError, match="grouping by"):
        used({"x": "sum by (path) (rate(mayu_http_requests_total[5m]))"}, series)


# The parts of Grafana's dashboard model an import relies on (grafana.com/docs/grafana/latest/
# dashboards/build-dashboards/view-dashboard-json-model/).
DATASOURCE = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"const": "${DS_PROMETHEUS}"}},
}
GRID = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["__inputs", "uid", "title", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "__inputs": {
            "type": "array",
            "contains": {
                "type": "object",
                "required": ["name", "type", "pluginId"],
                "properties": {
                    "name": {"const": "DS_PROMETHEUS"},
                    "type": {"const": "datasource"},
                    "pluginId": {"const": "prometheus"},
                },
            },
        },
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {"type": "object", "required": ["name", "type", "query"]},
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos"],
                "properties": {
                    "id": {"type": "integer"},
                    "type": {"enum": ["row", "timeseries", "stat", "bargauge", "table"]},
                    "gridPos": GRID,
                    "datasource": DATASOURCE,
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["refId", "expr", "datasource"],
                            "properties": {
                                "refId": {"type": "string", "pattern": "^[A-Z]$"},
                                "expr": {"type": "string", "minLength": 1},
                                "datasource": DATASOURCE,
                            },
                        },
                    },
                },
                "if": {"properties": {"type": {"const": "row"}}},
                "then": {"required": ["collapsed"]},
                "else": {"required": ["datasource", "targets"]},
            },
        },
    },
}


def test_the_dashboard_has_the_shape_grafana_imports() -> None:
    board = dashboard()
    jsonschema.validate(board, DASHBOARD_SCHEMA)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    variables = {f"${v['name']}" for v in board["templating"]["list"]} | {"$__rate_interval"}
    assert variables == set(GRAFANA_VARIABLES)
    for where, expr in dashboard_queries().items():
        assert "$" not in expr, f"{where}: an undeclared variable"
