"""Renders mayuctl results as a table, JSON or YAML."""

from __future__ import annotations

import json
import time
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table


def emit(data: Any, fmt: str, columns: list[str] | None = None) -> None:
    """Print data in fmt; tables show `columns` of each item (or key/value of one object)."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=True).rstrip())
    else:
        Console(width=200).print(_table(data, columns))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _table(data: Any, columns: list[str] | None) -> Table:
    if isinstance(data, list):
        keys = columns or (list(data[0]) if data else [])
        table = Table(*[k.upper() for k in keys], box=None, pad_edge=False)
        for item in data:
            table.add_row(*[_cell(item.get(k)) for k in keys])
        return table
    table = Table("FIELD", "VALUE", box=None, pad_edge=False)
    for key, value in data.items():
        table.add_row(key, _cell(value))
    return table


def local_time(seconds: float | None) -> str:
    """An epoch time as local `YYYY-MM-DD HH:MM:SS.mmm` (what a table shows)."""
    if seconds is None:
        return "-"
    whole = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    return f"{whole}.{int(seconds * 1000) % 1000:03d}"


def with_local_times(
    items: list[dict[str, Any]], keys: tuple[str, ...] = ("time",)
) -> list[dict[str, Any]]:
    """Items for a table: their epoch times as local times (JSON and YAML keep the numbers)."""
    return [item | {k: local_time(item[k]) for k in keys if k in item} for item in items]
