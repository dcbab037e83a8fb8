"""mayuctl like kubectl, against a running `mayu serve`: RFC 3339 times and an AGE column,
`-o wide|json|yaml|jsonpath=`, `label k=v k-`, `--selector`, `--limit`/`--continue`,
`delete` with what it revoked, `-w` (bounded, with ETags), click's shell completion, and the
documented exit codes (0 ok, 1 server or runtime failure, 2 usage or bad input; one line)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from tests.conftest import BIN, RunningServer, free_port, start_server
from tests.support.boot import enroll, fetch_config, ipxe

pytestmark = pytest.mark.peer

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("kubectl") / "data")
    try:
        yield server
    finally:
        server.kill()


def ok(server: RunningServer, *args: str) -> str:
    result = server.mayuctl(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_times_are_rfc3339_and_tables_have_an_age(live: RunningServer) -> None:
    mac = "52:54:00:30:00:01"
    ipxe(live.url, mac)
    machine = json.loads(ok(live, "show", mac, "-o", "json"))
    assert RFC3339.match(machine["created"]) and RFC3339.match(machine["updated"])
    assert all(RFC3339.match(e["time"]) for e in machine["events"])
    listed = yaml.safe_load(ok(live, "list", "-o", "yaml"))
    assert RFC3339.match(next(m for m in listed if m["id"] == mac)["created"])
    table = ok(live, "list").splitlines()
    assert table[0].split()[-1] == "AGE" and "UUID" not in table[0]
    row = next(line for line in table if mac in line).rstrip()
    assert re.search(r"\b\d+s$", row), row
    wide = ok(live, "list", "-o", "wide").splitlines()
    assert {"UUID", "SERIAL", "CREATED", "AGE"} <= set(wide[0].split())
    assert re.search(r"\d{4}-\d\d-\d\dT[\d:.]+Z", next(r for r in wide if mac in r))


def test_label_set_and_remove_then_select(live: RunningServer) -> None:
    macs = ["52:54:00:30:01:01", "52:54:00:30:01:02", "52:54:00:30:01:03"]
    for mac in macs:
        ipxe(live.url, mac)
    labelled = json.loads(ok(live, "label", macs[0], "rack=r1", "zone=z1", "-o", "json"))
    assert labelled["labels"] == {"rack": "r1", "zone": "z1"}
    ok(live, "label", macs[1], "rack=r1")
    ok(live, "label", macs[2], "rack=r2", "zone=z1")
    removed = json.loads(ok(live, "label", macs[0], "zone-", "-o", "json"))
    assert removed["labels"] == {"rack": "r1"}
    ids = ok(live, "list", "--selector", "rack=r1", "-o", "jsonpath={.items[*].id}")
    assert ids.split() == macs[:2]
    assert ok(live, "list", "-l", "zone,rack!=r1", "-o", "jsonpath=$.items[*].id").split() == [
        macs[2]
    ]
    assert ok(live, "list", "-l", "rack=r9", "-o", "json").strip() == "[]"


def test_pages_continue_where_the_last_stopped(live: RunningServer) -> None:
    for i in range(3):
        ipxe(live.url, f"52:54:00:30:02:0{i}")
    everything = json.loads(ok(live, "list", "-o", "json"))
    first = json.loads(ok(live, "list", "--limit", "2", "-o", "json"))
    assert [m["id"] for m in first["items"]] == [m["id"] for m in everything[:2]]
    token = first["continue"]
    seen = [m["id"] for m in first["items"]]
    while token:
        page = json.loads(ok(live, "list", "--limit", "2", "--continue", token, "-o", "json"))
        seen += [m["id"] for m in page["items"]]
        token = page["continue"]
    assert seen == [m["id"] for m in everything]
    table = live.mayuctl("list", "--limit", "1")
    assert table.returncode == 0 and "more machines: --continue " in table.stderr
    assert len([line for line in table.stdout.splitlines() if "52:54:00" in line]) == 1


def test_delete_says_what_it_revoked(live: RunningServer) -> None:
    mac = "52:54:00:30:03:01"
    token = enroll(live, mac)
    fetch_config(live.url, mac, token, live.ca_file)  # the machine now holds a credential
    answer = json.loads(ok(live, "delete", mac, "-o", "json"))
    assert answer["id"] == mac and answer["revoked"]["report_credential"] is True
    assert "404 Not Found (no such machine" in one_line(live.mayuctl("show", mac), 2)
    ipxe(live.url, mac)
    said = ok(live, "delete", mac)
    assert said.strip() == f"{mac} deleted (revoked: 0 certificate(s))"
    assert "no such machine" in one_line(live.mayuctl("delete", mac), 2)


def test_watch_prints_what_changes_until_its_bound(live: RunningServer) -> None:
    known, new = "52:54:00:30:04:01", "52:54:00:30:04:02"
    ipxe(live.url, known)
    env = {**os.environ, "MAYU_URL": live.url, "MAYU_TOKEN": live.token}
    args = ["list", "-w", "--watch-timeout", "4", "--interval", "0.2", "-o", "json"]
    watch = subprocess.Popen(
        [str(BIN / "mayuctl"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    assert watch.stdout is not None
    initial = [json.loads(watch.stdout.readline())]  # the first listing has begun
    ipxe(live.url, new)
    ok(live, "label", known, "watched=yes")
    out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    lines = initial + [json.loads(line) for line in out.splitlines()]
    assert any(m["id"] == new for m in lines)
    assert any(m["id"] == known and m["labels"].get("watched") == "yes" for m in lines)
    assert sum(m["id"] == new for m in lines) == 1  # printed when it changed, not every poll


def test_usage_errors_exit_2_in_one_line(live: RunningServer) -> None:
    mac = "52:54:00:30:05:01"
    ipxe(live.url, mac)
    cases = [
        (("label", mac, "nokv"), "expected KEY=VALUE or KEY-"),
        (("label", mac, "Bad Key!=x"), "invalid"),
        (("label", mac, "role-"), "role label is not removed"),
        (("label", "52:54:00:30:05:99", "a=b"), "no such machine"),
        (("list", "-l", "a=b=c"), "invalid label selector"),
        (("list", "--continue", "!!!"), "invalid continue token"),
        (("list", "--limit", "0"), "Invalid value"),
        (("list", "-w", "--limit", "1"), "--watch shows every machine"),
        (("list", "-o", "jsonpath=$.items[["), "not a JSONPath expression"),
        (("list", "-o", "xml"), "is not one of"),
    ]
    for args, needle in cases:
        line = one_line(live.mayuctl(*args), 2)
        assert needle in line, (args, line)


def test_an_unreachable_server_exits_1(live: RunningServer) -> None:
    env = {**os.environ, "MAYU_URL": f"http://127.0.0.1:{free_port()}", "MAYU_TOKEN": "t"}
    result = subprocess.run(
        [str(BIN / "mayuctl"), "list"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "cannot reach" in one_line(result, 1)


def test_click_shell_completion(live: RunningServer) -> None:
    del live
    env = {**os.environ, "_MAYUCTL_COMPLETE": "bash_source"}
    source = subprocess.run(
        [str(BIN / "mayuctl")], capture_output=True, text=True, env=env, timeout=60
    )
    assert source.returncode == 0 and "_mayuctl_completion" in source.stdout
    env |= {"_MAYUCTL_COMPLETE": "bash_complete", "COMP_WORDS": "mayuctl la", "COMP_CWORD": "1"}
    words = subprocess.run(
        [str(BIN / "mayuctl")], capture_output=True, text=True, env=env, timeout=60
    )
    assert words.returncode == 0 and "plain,label" in words.stdout.split()
