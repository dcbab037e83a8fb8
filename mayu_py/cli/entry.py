"""The shared console entry: one clear line and exit code 2 for usage or mayu errors."""

from __future__ import annotations

import sys

import click

from mayu_py.errors import MayuError


def run(group: click.Group, prog: str) -> None:
    """Run a click group; usage and mayu errors print `prog: message` and exit 2."""
    try:
        group.main(prog_name=prog, standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"{prog}: {exc.format_message()}", err=True)
        sys.exit(2)
    except MayuError as exc:
        click.echo(f"{prog}: {exc.message}", err=True)
        sys.exit(2)
    sys.exit(0)
