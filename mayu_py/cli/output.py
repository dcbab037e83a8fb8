"""Renders mayuctl results like kubectl: a table (`wide`: more columns), JSON, YAML, or the
values a JSONPath expression (jsonpath-ng) selects.

Times leave the API as seconds since the epoch; JSON, YAML and JSONPath show them as RFC 3339
UTC (`2026-11-30T19:08:18.250Z`), tables as RFC 3339 too, with an AGE column where an object
has a creation time.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import click
import yaml
from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext import parse
from rich.console import Console
from rich.table import Table

TABLES = ("table", "wide")
FORMATS = ("table", "wide", "json", "yaml", "jsonpath=EXPR")
# Members that hold epoch seconds in the API's answers.
TIME_KEYS = frozenset(
    {
        "created",
        "updated",
        "time",
        "window_expires",
        "requested",
        "started",
        "finished",
        "last_seen",
    }  # fmt: skip
)


class OutputFormat(click.ParamType):
    """`table`, `wide`, `json`, `yaml` or `jsonpath=EXPR` (checked when it is given)."""

    name = "|".join(FORMATS)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if text.startswith("jsonpath="):
            try:
                jsonpath(text)
            except JSONPathError as exc:
                why = " ".join(str(exc).split())
                self.fail(f"{text!r}: not a JSONPath expression ({why})", param, ctx)
            return text
        if text not in FORMATS[:4]:
            self.fail(f"{text!r} is not one of {', '.join(FORMATS)}", param, ctx)
        return text


def is_table(fmt: str) -> bool:
    return fmt in TABLES


def jsonpath(fmt: str) -> JSONPath:
    """The expression of `jsonpath=EXPR`; kubectl's `{.a.b}` form is taken too."""
    expr = fmt.removeprefix("jsonpath=").strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1].strip()
    if expr.startswith("."):
        expr = "$" + expr
    return parse(expr)


def emit(
    data: Any,
    fmt: str,
    columns: list[str] | None = None,
    wide: list[str] | None = None,
    *,
    header: bool = True,
) -> None:
    """Print data in fmt; tables show `columns` of each item (`wide`: and `wide`), or key and
    value of one object. JSONPath runs on a list as kubectl's lists: `{"items": [...]}`."""
    shown = rfc3339_times(data)
    if fmt == "json":
        click.echo(json.dumps(shown, indent=2, sort_keys=True))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump(shown, sort_keys=True).rstrip())
    elif fmt.startswith("jsonpath="):
        root = {"items": shown} if isinstance(shown, list) else shown
        for match in jsonpath(fmt).find(root):
            value = match.value
            click.echo(value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    else:
        keys = None if columns is None else columns + ((wide or []) if fmt == "wide" else [])
        Console(width=200).print(_table(with_age(shown), keys, header))


def rfc3339(seconds: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc3339_times(data: Any) -> Any:
    """`data` with every epoch time member (TIME_KEYS) as RFC 3339."""
    if isinstance(data, list):
        return [rfc3339_times(item) for item in data]
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        epoch = isinstance(value, int | float) and not isinstance(value, bool)
        out[key] = rfc3339(value) if key in TIME_KEYS and epoch else rfc3339_times(value)
    return out


def age(seconds: float) -> str:
    """A duration as kubectl shows ages: 42s, 7m, 3h, 5d (two units under a day: 2m5s)."""
    whole = max(0, int(seconds))
    if whole < 120:
        return f"{whole}s"
    if whole < 600:
        return f"{whole // 60}m{whole % 60}s" if whole % 60 else f"{whole // 60}m"
    if whole < 3 * 3600:
        return f"{whole // 60}m"
    if whole < 48 * 3600:
        return f"{whole // 3600}h"
    return f"{whole // 86400}d"


def with_age(data: Any, now: float | None = None) -> Any:
    """Items (or one object) with an `age` from their RFC 3339 `created`, for a table."""
    now = time.time() if now is None else now
    if isinstance(data, list):
        return [with_age(item, now) for item in data]
    if isinstance(data, dict) and isinstance(data.get("created"), str):
        created = datetime.fromisoformat(data["created"].replace("Z", "+00:00")).timestamp()
        return data | {"age": age(now - created)}
    return data


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _table(data: Any, columns: list[str] | None, header: bool = True) -> Table:
    if isinstance(data, list):
        keys = columns or (list(data[0]) if data else [])
        table = Table(*[k.upper() for k in keys], box=None, pad_edge=False, show_header=header)
        for item in data:
            table.add_row(*[_cell(item.get(k)) for k in keys])
        return table
    table = Table("FIELD", "VALUE", box=None, pad_edge=False)
    for key, value in data.items():
        table.add_row(key, _cell(value))
    return table


def local_time(seconds: float | None) -> str:
    """An epoch time as local `YYYY-MM-DD HH:MM:SS.mmm` (what an event table shows)."""
    if seconds is None:
        return "-"
    whole = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    return f"{whole}.{int(seconds * 1000) % 1000:03d}"


def with_local_times(
    items: list[dict[str, Any]], keys: tuple[str, ...] = ("time",)
) -> list[dict[str, Any]]:
    """Items for a table: their epoch times as local times (JSON and YAML show RFC 3339)."""
    return [item | {k: local_time(item[k]) for k in keys if k in item} for item in items]
