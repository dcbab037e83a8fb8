"""What every mayuctl command module shares: the output option and the context's client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from mayu_py.api_client import AdminClient
from mayu_py.cli.output import OutputFormat

OUTPUT = OutputFormat()


def output_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """-o/--output on a subcommand, falling back to the group's --output."""
    return click.option("-o", "--output", "output", type=OUTPUT, default=None)(fn)


def fmt_of(ctx: click.Context, output: str | None) -> str:
    """The output format of this command: its own --output, else the group's."""
    return output or ctx.obj["output"]


def client_of(ctx: click.Context) -> AdminClient:
    return ctx.obj["client"]
