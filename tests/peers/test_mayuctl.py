"""mayuctl against a running server: outputs, set, boot-complete, one-line errors, exit code 2."""

from __future__ import annotations

import json

import pytest
import requests
import yaml

from tests.conftest import RunningServer
from tests.support.boot import register

pytestmark = pytest.mark.peer


def test_list_show_set_in_every_format(server: RunningServer) -> None:
    register(server.url, "52-54-00-20-00-01")
    table = server.mayuctl("list")
    assert (
        table.returncode == 0
        and "52:54:00:20:00:01" in table.stdout
        and "configured" in table.stdout
    )
    as_json = json.loads(server.mayuctl("list", "-o", "json").stdout)
    as_yaml = yaml.safe_load(server.mayuctl("--output", "yaml", "list").stdout)
    assert as_json == as_yaml and as_json[0]["labels"]["role"] == "controller"
    changed = server.mayuctl("set", "525400200001", "role", "worker", "-o", "json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["labels"]["role"] == "worker"
    shown = server.mayuctl("show", "52:54:00:20:00:01")
    assert shown.returncode == 0, shown.stderr
    events = shown.stdout.split("\nSEQ ", 1)[1].splitlines()[1:]  # the rows under the header
    kinds = [row.split()[2] for row in events if row.strip()]
    assert kinds[0] == "registered" and kinds[-1] == "set", shown.stdout
    assert "operator set role" in events[-1], shown.stdout


def test_boot_complete_after_install(server: RunningServer) -> None:
    token = register(server.url, "52-54-00-20-00-02")
    q = {"mac": "52-54-00-20-00-02", "token": token}
    assert requests.get(f"{server.url}/ignition", params=q, timeout=30).status_code == 200
    assert requests.post(
        f"{server.url}/report", params=q, json={"event": "installed"}, timeout=10
    ).ok
    done = server.mayuctl("boot-complete", "52-54-00-20-00-02", "-o", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["state"] == "running"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("show", "52-54-00-99-99-99"), "no such machine"),
        (("show", "not-a-mac"), "malformed MAC"),
        (("set", "52-54-00-99-99-98", "state", "flying"), "unknown state"),
        (("list", "--output", "xml"), "Invalid value"),
        (("frobnicate",), "No such command"),
    ],
)
def test_errors_are_one_line_exit_2(
    server: RunningServer, args: tuple[str, ...], needle: str
) -> None:
    if args[0] == "set":
        register(server.url, "52-54-00-99-99-98")
    result = server.mayuctl(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_wrong_token_is_one_line(server: RunningServer) -> None:
    server.token = "wrong"
    result = server.mayuctl("list")
    assert result.returncode == 2 and "401" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
