"""`mayuctl users` against a running server: a token printed once on stdout alone, listing
without tokens, rotation and removal that stop the old token, who may manage users, and the
events a user's actions cause naming them."""

from __future__ import annotations

import json

import pytest

from tests.conftest import RunningServer
from tests.support.boot import ipxe

pytestmark = pytest.mark.peer

MAC = "52-54-00-21-00-01"


def _token_of(server: RunningServer, *args: str) -> str:
    result = server.mayuctl("users", *args)
    assert result.returncode == 0, result.stderr
    assert "shown once" in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("user."), result.stdout
    return lines[0]


def test_users_add_list_rotate_remove(server: RunningServer) -> None:
    shared = server.token
    alice = _token_of(server, "add", "alice")
    listed = json.loads(server.mayuctl("users", "list", "-o", "json").stdout)
    assert [u["name"] for u in listed] == ["alice"] and alice not in json.dumps(listed)
    table = server.mayuctl("users", "list")
    assert table.returncode == 0 and "alice" in table.stdout and "CREATED" in table.stdout.upper()

    server.token = alice
    ipxe(server.url, MAC)
    approved = server.mayuctl("approve", MAC, "--role", "worker")
    assert approved.returncode == 0, approved.stderr
    events = json.loads(server.mayuctl("events", MAC, "-o", "json").stdout)
    assert events[-1]["source"].startswith("user:alice@"), events[-1]
    refused = server.mayuctl("users", "add", "mallory")
    assert refused.returncode == 2 and "shared admin token" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    rotated = _token_of(server, "rotate-token", "alice")
    assert rotated != alice
    stale = server.mayuctl("list")
    assert stale.returncode == 2 and "401" in stale.stderr
    server.token = rotated
    assert server.mayuctl("list").returncode == 0

    server.token = shared
    removed = server.mayuctl("users", "remove", "alice")
    assert removed.returncode == 0 and "user alice removed" in removed.stdout
    server.token = rotated
    assert server.mayuctl("list").returncode == 2
    server.token = shared
    missing = server.mayuctl("users", "remove", "alice")
    assert missing.returncode == 2 and "alice" in missing.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [(("add", "Alice"), "lower-case"), (("rotate-token", "nobody"), "nobody")],
)
def test_user_errors_are_one_line_exit_2(
    server: RunningServer, args: tuple[str, ...], needle: str
) -> None:
    result = server.mayuctl("users", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
