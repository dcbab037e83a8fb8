"""The shared console entry: errors are one clear line on stderr and an exit code.

0: done. 1: the server or the operation failed (a 5xx, no answer, a BMC action that failed or
timed out): trying again later may work. 2: the request itself is wrong (usage, bad input, or
a 4xx: no such machine, a conflict, a wrong token): it fails again as it is."""

from __future__ import annotations

import sys

import click

from mayu_py.api_client import ApiError
from mayu_py.cli.follow import FollowError
from mayu_py.errors import MayuError

RUNTIME_ERROR = 1
USAGE_ERROR = 2


def exit_code(exc: MayuError) -> int:
    """1 for what failed on the server's or the machine's side (an answer of 500 or more,
    which an unreachable server's error carries too; a followed action that failed), 2 for
    what the caller got wrong (a 4xx, or a local error: a bad file, a bad config)."""
    if isinstance(exc, ApiError) and exc.status >= 500 or isinstance(exc, FollowError):
        return RUNTIME_ERROR
    return USAGE_ERROR


def run(group: click.Group, prog: str) -> None:
    """Run a click group; usage and mayu errors print `prog: message` and exit 1 or 2."""
    try:
        group.main(prog_name=prog, standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"{prog}: {exc.format_message()}", err=True)
        sys.exit(USAGE_ERROR)
    except MayuError as exc:
        click.echo(f"{prog}: {exc.message}", err=True)
        sys.exit(exit_code(exc))
    sys.exit(0)
