"""mayuctl's user commands: `users add|list|rotate-token|remove`.

Each person who operates the server gets their own token (for mayuctl and the dashboard at
/ui); the events their actions cause name them. Adding and removing users takes the shared
admin token (<data-dir>/admin.token or MAYU_TOKEN of `mayu serve`); a user may rotate their
own. A token is printed once, on stdout alone, and never shown again.
"""

from __future__ import annotations

import click

from mayu_py.cli.ctl_common import client_of, fmt_of, output_option
from mayu_py.cli.output import emit, with_local_times

USER_COLUMNS = ["name", "created", "updated"]


@click.group("users")
def users() -> None:
    """People who operate the server, each with their own token."""


def _print_token(name: str, token: str, what: str) -> None:
    click.echo(
        f"{what} {name}; their token (shown once: give it to them, it is not stored):", err=True
    )
    click.echo(token)


@users.command("add")
@click.argument("name")
@click.pass_context
def users_add(ctx: click.Context, name: str) -> None:
    """Add a user (lower-case letters, digits, '-'); prints their token once."""
    answer = client_of(ctx).request("POST", "/api/v1/users", json={"name": name})
    _print_token(answer["name"], answer["token"], "added user")


@users.command("list")
@output_option
@click.pass_context
def users_list(ctx: click.Context, output: str | None) -> None:
    """List users (never their tokens)."""
    items = client_of(ctx).request("GET", "/api/v1/users")["items"]
    fmt = fmt_of(ctx, output)
    shown = with_local_times(items, ("created", "updated")) if fmt == "table" else items
    emit(shown, fmt, USER_COLUMNS)


@users.command("rotate-token")
@click.argument("name")
@click.pass_context
def users_rotate(ctx: click.Context, name: str) -> None:
    """Give a user a new token; the old one and their dashboard sessions stop at once."""
    answer = client_of(ctx).request("POST", f"/api/v1/users/{name}/rotate-token")
    _print_token(answer["name"], answer["token"], "new token for")


@users.command("remove")
@click.argument("name")
@click.pass_context
def users_remove(ctx: click.Context, name: str) -> None:
    """Remove a user: their token and sessions stop at once (their events keep their name)."""
    client_of(ctx).request("DELETE", f"/api/v1/users/{name}")
    click.echo(f"user {name} removed")
