"""BMC power through `mayuctl` and a running `mayu serve`, against the real emulators on real
libvirt domains: sushy-emulator (Redfish) for domain 1, vbmcd (IPMI) for domain 2.

Power on/off/cycle/status and the boot device, checked in libvirt (domain state and id, the
persistent and live boot order); a wrong password, an unreachable BMC, an emulator killed in
the middle of a reinstall's BMC call; the reinstall's BMC steps and "disk again once
installed" (the test plays the machine's install: token, config, `installed` report); the
boot plane answering while the BMC runner waits on dead BMCs. Run under
`flock /tmp/mayu-vm.lock`; `-s` prints the measured times (lines starting BMC-TIMING).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from mayu_py.bmc.coordinates import BmcProtocol
from mayu_py.server.provisioning import REPORT_CREDENTIAL_FILE
from tests.conftest import BIN, RunningServer, free_port, start_server
from tests.support.bmc_lab import (
    PASSWORD,
    PROTOCOLS,
    USER,
    BmcLab,
    bmc_lab,
    free_udp_port,
    live_boot,
    persistent_boot,
    power_off_directly,
    running_id,
)
from tests.support.boot import enroll, fetch_config, ipxe, register
from tests.support.flask_app import file_of

pytestmark = pytest.mark.peer
PREFIX = "mayu-bmcwire"
# Issue 10's target: a power action acknowledged within 3 s of the API call. The emulators
# and libvirt take 0.4-2 s of it on an idle host and more on a busy one (3.6 s seen for an
# IPMI "off" at load 3): the bound has headroom; what mayu adds is bounded tightly.
ACK_BOUND = 5.0
OVERHEAD_BOUND = 0.2  # from the API call to the BMC call, plus recording the outcome
LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")


@pytest.fixture(scope="module")
def lab() -> Iterator[BmcLab]:
    with bmc_lab(PREFIX, "mayubmcw0", 0xB3) as built:
        yield built


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("bmcwire") / "data")
    try:
        yield server
    finally:
        server.kill()
        log = server.log_path.read_text(errors="replace")
        assert PASSWORD not in log, "the BMC password reached the server's log"


def password_file(lab: BmcLab, password: str) -> Path:
    path = lab.work / f"pw-{abs(hash(password))}"
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    return path


def ctl(serve: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    result = serve.mayuctl(*args)
    assert PASSWORD not in result.stdout + result.stderr
    return result


def ok(serve: RunningServer, *args: str) -> str:
    result = ctl(serve, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """A BMC that fails is a runtime error: exit 1 (docs/mayuctl.md), one line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def set_bmc(
    serve: RunningServer,
    lab: BmcLab,
    protocol: BmcProtocol,
    *,
    address: str | None = None,
    password: str = PASSWORD,
) -> None:
    coords = lab.coords[protocol]
    args = ["bmc", "set", lab.macs[protocol], "--protocol", str(protocol)]
    args += ["--address", address or coords.address, "--username", USER]
    args += ["--password-file", str(password_file(lab, password))]
    if protocol is BmcProtocol.REDFISH:
        args += ["--system-id", str(coords.system_id)]
    else:
        args += ["--ipmi-cipher-suite", "3"]
    shown = ok(serve, *args, "-o", "json")
    assert json.loads(shown)["address"] == (address or coords.address)


@contextmanager
def bmc_set_to(
    serve: RunningServer, lab: BmcLab, protocol: BmcProtocol, **wrong: str
) -> Iterator[None]:
    """The machine's BMC set with a wrong address or password, then right again."""
    set_bmc(serve, lab, protocol, **wrong)
    try:
        yield
    finally:
        set_bmc(serve, lab, protocol)


def acted(serve: RunningServer, *args: str) -> dict[str, Any]:
    """Run a power or bootdev command with -o json; the finished action as the API keeps it
    (epoch seconds: mayuctl shows RFC 3339 times)."""
    action = json.loads(ok(serve, "-o", "json", *args))
    assert action["state"] == "done", action
    return serve.api("GET", f"/api/v1/actions/{action['id']}").json()


def events(serve: RunningServer, mac: str) -> list[dict[str, Any]]:
    return json.loads(ok(serve, "events", mac, "-o", "json"))


def machine(serve: RunningServer, mac: str) -> dict[str, Any] | None:
    response = serve.api("GET", f"/api/v1/machines/{mac}")
    return response.json() if response.ok else None


def report(serve: RunningServer, mac: str, token: str, event: str) -> None:
    response = requests.post(
        f"{serve.url}/report", params={"mac": mac, "token": token}, json={"event": event},
        timeout=10,
    )  # fmt: skip
    assert response.ok, response.text


def make_running(serve: RunningServer, mac: str) -> None:
    """Bring the machine's record to `running` the way a machine would (boot, config,
    `installed`) and the operator marks boot-complete."""
    shown = machine(serve, mac)
    state = shown["state"] if shown else None
    if state == "running":
        return
    token = register(serve.url, mac) if state == "configured" else enroll(serve, mac)
    fetch_config(serve.url, mac, token, serve.ca_file)
    report(serve, mac, token, "installed")
    ok(serve, "boot-complete", mac)


def running_from_disk(serve: RunningServer, lab: BmcLab, protocol: BmcProtocol) -> None:
    """The machine is `running` in the inventory, powered on, booting its disk."""
    mac = lab.macs[protocol]
    set_bmc(serve, lab, protocol)
    make_running(serve, mac)
    acted(serve, "power", "on", mac)
    acted(serve, "bootdev", mac, "disk")


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def actions(serve: RunningServer, mac: str) -> list[dict[str, Any]]:
    """The machine's BMC actions, newest first."""
    return serve.api("GET", f"/api/v1/machines/{mac}/actions").json()["items"]


def finished(serve: RunningServer, action_id: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        action = serve.api("GET", f"/api/v1/actions/{action_id}").json()
        return action if action["state"] in ("done", "failed") else None

    return wait_for(f"action {action_id} to finish", check)


def elapsed(action: dict[str, Any]) -> float:
    """From the API call (queued) to the BMC's acknowledgement recorded; printed with its
    parts: waiting to be claimed, the BMC call itself, the rest (session, recording)."""
    total = action["finished"] - action["requested"]
    call = action["result"].get("power_seconds", action["result"].get("bootdev_seconds", 0.0))
    print(
        f"BMC-TIMING {action['action']}: API call -> acknowledged {total:.3f} s = queued "
        f"{action['started'] - action['requested']:.3f} + BMC call {call:.3f} + other "
        f"{action['finished'] - action['started'] - call:.3f}"
    )
    assert total - call < OVERHEAD_BOUND
    assert total < ACK_BOUND
    return total


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_power_and_boot_device_through_mayuctl(
    serve: RunningServer, lab: BmcLab, protocol: BmcProtocol
) -> None:
    mac, dom = lab.macs[protocol], lab.domains[protocol]
    power_off_directly(dom)
    set_bmc(serve, lab, protocol)  # the machine never booted: its BMC is known already
    assert ok(serve, "power", "status", mac).strip() == f"{mac}: off"

    print(f"BMC-TIMING {protocol}")
    on = acted(serve, "power", "on", mac)
    elapsed(on)
    assert on["result"]["state"] == "on" and dom.isActive()
    assert ok(serve, "power", "status", mac).strip() == f"{mac}: on"

    disk = acted(serve, "bootdev", mac, "disk")
    assert persistent_boot(dom) == "hd" and disk["result"]["persistent"] is True
    elapsed(disk)
    assert "boot device pxe" in ok(serve, "bootdev", mac, "pxe")
    assert persistent_boot(dom) == "network"

    before = running_id(dom)
    cycle = acted(serve, "power", "cycle", mac)
    elapsed(cycle)
    assert running_id(dom) != before and cycle["result"]["state"] == "on"
    off = acted(serve, "power", "off", mac)
    elapsed(off)
    assert not dom.isActive()

    table = ok(serve, "events", mac)
    assert "power-acknowledged" in table and f"bmc {protocol} " in table
    assert LOCAL_TIME.search(table), table
    recorded = [(e["kind"], e["source"]) for e in events(serve, mac)[-12:]]
    label = f"bmc {lab.coords[protocol].label}"
    for kind in ("power-acknowledged", "bootdev-acknowledged"):
        assert (kind, label) in recorded
    assert ("power-requested", "127.0.0.1") in recorded
    shown = ok(serve, "bmc", "show", mac)
    assert lab.coords[protocol].address in shown and "password" not in shown


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_password_fails_in_one_line(
    serve: RunningServer, lab: BmcLab, protocol: BmcProtocol
) -> None:
    mac, dom = lab.macs[protocol], lab.domains[protocol]
    power_off_directly(dom)
    with bmc_set_to(serve, lab, protocol, password="not-" + PASSWORD):
        line = one_line_error(ctl(serve, "power", "on", mac))
        assert events(serve, mac)[-1]["kind"] == "power-failed"
    assert "authentication failed" in line and line.startswith(f"mayuctl: {mac}: ")
    assert not dom.isActive()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_bmc_fails_in_one_line(
    serve: RunningServer, lab: BmcLab, protocol: BmcProtocol
) -> None:
    mac = lab.macs[protocol]
    closed = (
        f"http://127.0.0.1:{free_port()}"
        if protocol is BmcProtocol.REDFISH
        else f"127.0.0.1:{free_udp_port()}"
    )
    with bmc_set_to(serve, lab, protocol, address=closed):
        start = time.monotonic()
        line = one_line_error(ctl(serve, "power", "status", mac))
        spent = time.monotonic() - start
    print(f"BMC-TIMING {protocol} unreachable, mayuctl exit: {spent:.3f} s ({line})")
    assert ("unreachable" in line) or ("no IPMI session" in line), line
    assert spent < 6.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reinstall_sets_pxe_cycles_and_disk_comes_back_once_installed(
    serve: RunningServer, lab: BmcLab, protocol: BmcProtocol
) -> None:
    mac, dom = lab.macs[protocol], lab.domains[protocol]
    running_from_disk(serve, lab, protocol)
    before, seen = running_id(dom), len(events(serve, mac))

    out = ok(serve, "reinstall", mac)
    assert "power cycle acknowledged (machine on)" in out, out
    assert persistent_boot(dom) == "network" and live_boot(dom) == "network"
    assert running_id(dom) != before, "the domain was not power-cycled"
    shown = machine(serve, mac)
    assert shown is not None and shown["state"] == "configured"
    story = events(serve, mac)[seen:]
    assert [e["kind"] for e in story] == [
        "transition", "bootdev-requested", "power-requested",
        "bootdev-acknowledged", "power-acknowledged",
    ]  # fmt: skip
    assert story[0]["cause"] == "operator requested a reinstall"

    # The machine network-boots into its install and reports `installed`.
    token = register(serve.url, mac)
    fetch_config(serve.url, mac, token, serve.ca_file)
    report(serve, mac, token, "installed")

    # IPMI: the boot device applies at the next power-on, so the server power-cycles too.
    ipmi = protocol is BmcProtocol.IPMI
    disk_action, last_step = ("disk-boot", "power") if ipmi else ("bootdev-disk", "bootdev")
    installed_id = running_id(dom)

    def disk_acknowledged() -> list[dict[str, Any]]:
        """This reinstall's boot-from-disk acknowledgement (not the first install's)."""
        return [
            e
            for e in events(serve, mac)[seen:]
            if e["kind"] == f"{last_step}-acknowledged" and e["details"]["action"] == disk_action
        ]

    done = wait_for("the server's boot-from-disk action", disk_acknowledged)[-1]
    assert persistent_boot(dom) == "hd"
    assert (live_boot(dom) == "hd") is ipmi and (running_id(dom) != installed_id) is ipmi
    same = done["details"]["action_id"]
    requested = [e for e in events(serve, mac) if e["details"].get("action_id") == same]
    assert requested[0]["kind"] == "bootdev-requested" and requested[0]["source"] == "server"
    assert done["source"] == f"bmc {lab.coords[protocol].label}"
    assert json.loads(ok(serve, "boot-complete", mac, "-o", "json"))["state"] == "running"
    power_off_directly(dom)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_emulator_killed_mid_reinstall_fails_clearly_and_a_retry_succeeds(
    serve: RunningServer, lab: BmcLab, protocol: BmcProtocol
) -> None:
    mac, dom = lab.macs[protocol], lab.domains[protocol]
    running_from_disk(serve, lab, protocol)
    emulator = lab.emulator(protocol)
    pgid = emulator.pid
    assert pgid is not None
    os.killpg(pgid, signal.SIGSTOP)  # frozen: the runner's call is on its way, unanswered
    env = {**os.environ, "MAYU_URL": serve.url, "MAYU_TOKEN": serve.token}
    command = subprocess.Popen(
        [str(BIN / "mayuctl"), "reinstall", mac], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        wait_for(
            "the reinstall's BMC call to be under way",
            lambda: [
                a
                for a in actions(serve, mac)
                if a["action"] == "reinstall" and a["state"] == "running"
            ],
        )
    finally:
        os.killpg(pgid, signal.SIGKILL)
    out, err = command.communicate(timeout=60)
    line = one_line_error(subprocess.CompletedProcess(command.args, command.returncode, out, err))
    print(f"BMC-TIMING {protocol} emulator killed mid-reinstall: {line}")
    assert f"BMC {lab.coords[protocol].label}: boot device pxe:" in line
    assert "not done: power cycle" in line and "the reinstall is recorded" in line
    shown = machine(serve, mac)
    assert shown is not None and shown["state"] == "configured"
    assert shown["window_expires"] is None  # opens at the next network boot, as without BMC
    assert events(serve, mac)[-1]["kind"] == "bootdev-failed"
    assert persistent_boot(dom) == "hd", "the killed call must not have changed the machine"
    failed = actions(serve, mac)[0]  # kept failed with its reason; nothing left open
    assert (failed["action"], failed["state"]) == ("reinstall", "failed"), failed
    assert failed["error"] and failed["error"] in line, (failed, line)
    assert not [a for a in actions(serve, mac) if a["state"] in ("queued", "running")]

    emulator.start()  # the operator restarts the BMC and retries
    before = running_id(dom)
    assert "power cycle acknowledged" in ok(serve, "reinstall", mac)
    assert persistent_boot(dom) == "network" and running_id(dom) != before
    retried = actions(serve, mac)[0]
    assert (retried["action"], retried["state"]) == ("reinstall", "done"), retried
    assert retried["id"] > failed["id"]
    power_off_directly(dom)


def test_the_boot_plane_answers_while_bmc_calls_wait(serve: RunningServer, lab: BmcLab) -> None:
    """Eight IPMI BMCs that never answer keep the runner's eight threads busy for 3 s each
    (the login deadline); /ipxe keeps answering at once and every POST is a quick 202."""
    macs = [f"52:54:00:b3:01:{i:02x}" for i in range(8)]
    body = {"protocol": "ipmi", "username": USER, "password": PASSWORD, "ipmi_cipher_suite": 3}
    for mac in macs:
        put = serve.api("PUT", f"/api/v1/machines/{mac}/bmc",
                        json=body | {"address": f"127.0.0.1:{free_udp_port()}"})  # fmt: skip
        assert put.ok, put.text
    ipxe(serve.url, "52-54-00-b3-02-01")  # a machine asking to boot meanwhile (discovered)

    posts, queued = [], []
    for mac in macs:
        start = time.monotonic()
        answer = serve.api("POST", f"/api/v1/machines/{mac}/power", json={"action": "status"})
        posts.append(time.monotonic() - start)
        assert answer.status_code == 202
        queued.append(answer.json()["action"]["id"])
    boots = []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        start = time.monotonic()
        ipxe(serve.url, "52-54-00-b3-02-01")
        boots.append(time.monotonic() - start)
    ended = [finished(serve, action_id) for action_id in queued]
    print(
        f"BMC-TIMING POST power (202) max {max(posts) * 1000:.1f} ms; /ipxe during 8 dead-BMC "
        f"calls: n={len(boots)} median {statistics.median(boots) * 1000:.1f} ms max "
        f"{max(boots) * 1000:.1f} ms; calls took "
        f"{min(f['finished'] - f['started'] for f in ended):.2f}-"
        f"{max(f['finished'] - f['started'] for f in ended):.2f} s"
    )
    assert all(f["error_kind"] == "unreachable" for f in ended)
    assert all(f["finished"] - f["started"] >= 2.9 for f in ended)
    started = sorted(f["started"] for f in ended)
    assert started[-1] - started[0] < 1.0, "the eight calls ran in parallel"
    assert max(posts) < 0.5 and max(boots) < 0.5
    assert len(boots) >= 20


def test_reinstall_wait_follows_the_machine_until_running(
    serve: RunningServer, lab: BmcLab
) -> None:
    protocol = BmcProtocol.REDFISH
    mac, dom = lab.macs[protocol], lab.domains[protocol]
    running_from_disk(serve, lab, protocol)
    env = {**os.environ, "MAYU_URL": serve.url, "MAYU_TOKEN": serve.token}
    command = subprocess.Popen(
        [str(BIN / "mayuctl"), "reinstall", mac, "--wait", "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        wait_for("the power cycle", lambda: events(serve, mac)[-1]["kind"] == "power-acknowledged")
        # The machine installs: boot token, config, `installed`; boots its disk: `running`,
        # reported with the credential its config carried.
        token = register(serve.url, mac)
        config = fetch_config(serve.url, mac, token, serve.ca_file)
        report(serve, mac, token, "installed")
        wait_for("boot from disk again", lambda: persistent_boot(dom) == "hd")
        credential = file_of(config, REPORT_CREDENTIAL_FILE).strip()
        running = requests.post(
            f"{serve.url}/report", params={"mac": mac}, json={"event": "running"},
            headers={"Authorization": f"Bearer {credential}"}, timeout=10,
        )  # fmt: skip
        assert running.ok, running.text
        out, err = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 0, err
    print(out)
    lines = out.strip().splitlines()
    assert lines[-1] == f"{mac}: running"
    shown = [line.split()[2] for line in lines if LOCAL_TIME.match(line)]
    for kind in ("bootdev-acknowledged", "power-acknowledged", "token-issued",
                 "bootdev-requested", "transition"):  # fmt: skip
        assert kind in shown, out
    assert shown.index("token-issued") > shown.index("power-acknowledged")

    slow = ctl(serve, "reinstall", mac, "--wait", "--timeout", "2")
    assert "still configured after 2 s" in one_line_error(slow)
    assert "power cycle acknowledged" in slow.stdout
    power_off_directly(dom)
