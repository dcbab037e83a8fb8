"""BMC power through Flask's test client on a real SQLite store, with a fake BMC fleet: the
BMC in the inventory (password sealed, never shown), 202 + action, the runner's outcomes as
events, the reinstall's BMC steps and "disk again once installed", bounds and recovery."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mayu_py.bmc.base import BootDevice, PowerState
from mayu_py.bmc.errors import BmcUnreachable
from mayu_py.bmc.records import ActionState
from mayu_py.server import doorbell
from mayu_py.server.doorbell import Doorbell
from mayu_py.server.power_runner import PowerRunner
from tests.support.fake_bmc import FakeBmc, FakeFleet
from tests.support.flask_app import AUTH, Machine, approve, events, make_app, services_of, set_clock

PASSWORD = "s3cret-bmc-pw-1"
MAC = "52:54:00:b0:00:01"
REDFISH = {
    "protocol": "redfish",
    "address": "http://10.0.0.200:8000",
    "username": "admin",
    "password": PASSWORD,
    "system_id": "sys-1",
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    yield make_app(tmp_path).test_client()


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet(PASSWORD)


def runner(client: FlaskClient, fleet: FakeFleet, **kwargs) -> PowerRunner:  # type: ignore[no-untyped-def]
    return PowerRunner(services_of(client).power, fleet.connect, **kwargs)


def set_bmc(client: FlaskClient, mac: str = MAC, body: dict | None = None):  # type: ignore[no-untyped-def]
    return client.put(f"/api/v1/machines/{mac}/bmc", headers=AUTH, json=body or REDFISH)


def power(client: FlaskClient, action: str, mac: str = MAC):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/machines/{mac}/power", headers=AUTH, json={"action": action})


def action_of(client: FlaskClient, action_id: int) -> dict:
    response = client.get(f"/api/v1/actions/{action_id}", headers=AUTH)
    assert response.status_code == 200, response.data
    return response.get_json()


def installed_machine(client: FlaskClient, mac: str = MAC) -> Machine:
    machine = Machine(client, mac)
    machine.ipxe()
    assert approve(client, mac).status_code == 200
    machine.provision()
    return machine


def kinds(client: FlaskClient, mac: str = MAC) -> list[str]:
    return [e["kind"] for e in events(client, mac)]


def fake_of(client: FlaskClient, fleet: FakeFleet, mac: str = MAC) -> FakeBmc:
    """The fake BMC the runner will reach for this machine."""
    svc = services_of(client)
    stored = svc.store.get_bmc(mac)
    assert stored is not None
    return fleet.connect(svc.power.coordinates(stored))


# -- the BMC in the inventory ---------------------------------------------------------------


def test_bmc_set_shows_everything_but_the_password(
    client: FlaskClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    installed_machine(client)
    answer = set_bmc(client)
    assert answer.status_code == 200, answer.data
    shown = [
        answer.get_data(as_text=True),
        client.get(f"/api/v1/machines/{MAC}/bmc", headers=AUTH).get_data(as_text=True),
        client.get(f"/api/v1/machines/{MAC}", headers=AUTH).get_data(as_text=True),
        client.get(f"/api/v1/machines/{MAC}/events", headers=AUTH).get_data(as_text=True),
    ]
    for text in shown:
        assert PASSWORD not in text
    assert answer.get_json() | {"updated": 0} == {
        "protocol": "redfish", "address": REDFISH["address"], "username": "admin",
        "system_id": "sys-1", "verify_tls": True, "updated": 0,
    }  # fmt: skip
    machine = client.get(f"/api/v1/machines/{MAC}", headers=AUTH).get_json()
    assert machine["bmc"]["address"] == REDFISH["address"]
    assert events(client, MAC)[-1]["kind"] == "bmc-set"
    assert PASSWORD not in caplog.text

    data = tmp_path / "data"
    assert (data / "bmc.key").stat().st_mode & 0o777 == 0o600
    assert (data / "inventory.sqlite3").stat().st_mode & 0o777 == 0o600
    for path in data.glob("inventory.sqlite3*"):
        assert PASSWORD.encode() not in path.read_bytes(), path
    with sqlite3.connect(data / "inventory.sqlite3") as db:
        (sealed,) = db.execute("SELECT sealed_password FROM bmcs").fetchone()
    assert sealed.startswith("v1:") and PASSWORD not in sealed
    stored = services_of(client).store.get_bmc(MAC)
    assert stored is not None
    assert services_of(client).power.coordinates(stored).password == PASSWORD


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (REDFISH | {"protocol": "snmp"}, "bmc.protocol"),
        ({k: v for k, v in REDFISH.items() if k != "password"}, "bmc.password"),
        (REDFISH | {"address": "https://root:pw@bmc"}, "bmc.address"),
        (REDFISH | {"colour": "blue"}, "bmc.colour"),
        ({**REDFISH, "protocol": "ipmi", "system_id": None, "password": "x" * 21}, "bmc.password"),
    ],
)
def test_invalid_bmc_is_422_naming_the_field(client: FlaskClient, body: dict, field: str) -> None:
    answer = set_bmc(client, body=body)
    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    problem = answer.get_json()
    assert problem["detail"].startswith(field + ":") and problem["context"] == {"field": field}
    assert PASSWORD not in answer.get_data(as_text=True)
    assert services_of(client).store.get_bmc(MAC) is None


def test_power_needs_a_bmc_409_and_a_machine_404(client: FlaskClient) -> None:
    installed_machine(client)
    no_bmc = power(client, "on")
    assert no_bmc.status_code == 409 and no_bmc.mimetype == "application/problem+json"
    assert "no BMC configured" in no_bmc.get_json()["detail"]
    assert power(client, "on", "52:54:00:b0:00:99").status_code == 404
    set_bmc(client)
    assert power(client, "sideways").status_code == 400
    bad_device = client.post(f"/api/v1/machines/{MAC}/bootdev", headers=AUTH, json={"device": "cd"})
    assert bad_device.status_code == 400
    assert client.get("/api/v1/actions/999", headers=AUTH).status_code == 404
    assert client.delete(f"/api/v1/machines/{MAC}/bmc", headers=AUTH).status_code == 204
    assert client.get(f"/api/v1/machines/{MAC}/bmc", headers=AUTH).status_code == 404
    assert power(client, "on").status_code == 409
    assert client.get(f"/api/v1/machines/{MAC}/bmc").status_code == 401  # admin token needed


# -- actions and their outcomes -------------------------------------------------------------


def test_power_actions_are_202_then_acknowledged_events(
    client: FlaskClient, fleet: FakeFleet
) -> None:
    installed_machine(client)
    set_bmc(client)
    queued = power(client, "on")
    assert queued.status_code == 202
    action = queued.get_json()["action"]
    assert queued.headers["Location"] == f"/api/v1/actions/{action['id']}"
    assert action["state"] == "queued" and action["action"] == "power-on"
    assert fleet.bmcs == {}, "the API itself never calls the BMC"

    done = runner(client, fleet).run_pending()
    assert [a.state for a in done] == [ActionState.DONE]
    shown = action_of(client, action["id"])
    assert shown["state"] == "done" and shown["result"]["state"] == "on"
    assert shown["finished"] >= shown["started"] >= shown["requested"]
    bmc = fleet.bmcs[REDFISH["address"]]
    assert bmc.calls == ["power on"] and bmc.state is PowerState.ON

    power(client, "status")
    client.post(f"/api/v1/machines/{MAC}/bootdev", headers=AUTH, json={"device": "pxe"})
    power(client, "cycle")
    power(client, "off")
    runner(client, fleet).run_pending()
    assert bmc.calls == ["power on", "status", "bootdev pxe", "power cycle", "power off"]
    recorded = [e for e in events(client, MAC) if e["details"].get("action_id")]
    assert [(e["kind"], e["cause"].split(" (")[0]) for e in recorded] == [
        ("power-requested", "power on requested"),
        ("power-acknowledged", "power on acknowledged: machine on"),
        ("bootdev-requested", "boot device pxe requested"),
        ("power-requested", "power cycle requested"),
        ("power-requested", "power off requested"),
        ("bootdev-acknowledged", "boot device pxe acknowledged: persistent"),
        ("power-acknowledged", "power cycle acknowledged: machine on"),
        ("power-acknowledged", "power off acknowledged: machine off"),
    ]  # a status read is no event; requests are recorded when made, outcomes when known
    assert {e["source"] for e in recorded if e["kind"].endswith("acknowledged")} == {
        f"bmc redfish {REDFISH['address']}"
    }
    assert {e["source"] for e in recorded if e["kind"].endswith("requested")} == {"127.0.0.1"}
    listed = client.get(f"/api/v1/machines/{MAC}/actions", headers=AUTH).get_json()["items"]
    assert [a["action"] for a in listed] == [
        "power-off", "power-cycle", "bootdev-pxe", "power-status", "power-on"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("password", "fail", "kind", "words"),
    [
        ("wrong-pw", None, "auth", "authentication failed (HTTP 401)"),
        (PASSWORD, BmcUnreachable("redfish x", "power on: unreachable (Connection refused)"),
         "unreachable", "unreachable (Connection refused)"),
    ],
)  # fmt: skip
def test_bmc_errors_fail_the_action_with_one_line(
    client: FlaskClient,
    fleet: FakeFleet,
    caplog: pytest.LogCaptureFixture,
    password: str,
    fail: BmcUnreachable | None,
    kind: str,
    words: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    set_bmc(client, body=REDFISH | {"password": password})
    fake_of(client, fleet).fail = fail
    action = power(client, "on").get_json()["action"]
    runner(client, fleet).run_pending()
    failed = action_of(client, action["id"])
    assert failed["state"] == "failed" and failed["error_kind"] == kind
    assert words in failed["error"] and "\n" not in failed["error"]
    last = events(client, MAC)[-1]
    assert last["kind"] == "power-failed" and last["cause"] == failed["error"]
    assert password not in json.dumps(failed) and password not in caplog.text


def test_one_action_per_machine_at_a_time_and_a_bounded_pool(
    client: FlaskClient, fleet: FakeFleet
) -> None:
    macs = [f"52:54:00:b0:01:0{i}" for i in range(4)]
    for i, mac in enumerate(macs):
        set_bmc(client, mac, REDFISH | {"address": f"http://10.0.0.{i + 1}:8000"})
    power(client, "on", macs[0])
    power(client, "off", macs[0])
    for mac in macs[1:]:
        power(client, "on", mac)
    assert runner(client, fleet).claim(0) == []
    first = runner(client, fleet, threads=3).claim(3)
    assert [a.machine_id for a in first] == macs[:3]
    second = runner(client, fleet).claim(8)
    assert [a.machine_id for a in second] == [macs[3]]  # machine 0's "off" waits for its "on"


def test_late_actions_expire_and_interrupted_ones_fail_on_restart(
    client: FlaskClient, fleet: FakeFleet
) -> None:
    set_bmc(client)
    now = [1_000_000.0]
    set_clock(client, lambda: now[0])
    late = power(client, "off").get_json()["action"]
    now[0] += 61
    run = runner(client, fleet, clock=lambda: now[0])
    assert run.run_pending() == []
    expired = action_of(client, late["id"])
    assert expired["state"] == "failed" and expired["error_kind"] == "expired"
    assert "not started within 60 s" in expired["error"]

    cut = power(client, "cycle").get_json()["action"]
    assert [a.id for a in run.claim(1)] == [cut["id"]]  # a runner took it, then died
    runner(client, fleet, clock=lambda: now[0]).recover()
    interrupted = action_of(client, cut["id"])
    assert interrupted["state"] == "failed" and interrupted["error_kind"] == "interrupted"
    assert events(client, MAC)[-1]["kind"] == "power-failed"
    assert fleet.bmcs == {}


def test_a_password_sealed_under_another_key_fails_clearly(
    client: FlaskClient, fleet: FakeFleet
) -> None:
    set_bmc(client)
    svc = services_of(client)
    stored = svc.store.get_bmc(MAC)
    assert stored is not None
    svc.store.atomically(
        lambda tx: tx.put_bmc(
            type(stored)(MAC, stored.settings, svc.power.sealer.seal("52:54:00:00:00:00", "x"))
        )
    )
    action = power(client, "on").get_json()["action"]
    runner(client, fleet).run_pending()
    failed = action_of(client, action["id"])
    assert failed["error_kind"] == "config" and "set the BMC again" in failed["error"]


# -- reinstall through the BMC --------------------------------------------------------------


def test_reinstall_sets_pxe_cycles_then_disk_again_once_installed(
    client: FlaskClient, fleet: FakeFleet
) -> None:
    machine = installed_machine(client)
    set_bmc(client)
    answer = client.post(f"/api/v1/machines/{MAC}/reinstall", headers=AUTH)
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["state"] == "configured" and body["action"]["action"] == "reinstall"
    assert answer.headers["Location"] == f"/api/v1/actions/{body['action']['id']}"
    stored = services_of(client).store.get_bmc(MAC)
    assert stored is not None and stored.disk_after_install

    runner(client, fleet).run_pending()
    bmc = fleet.bmcs[REDFISH["address"]]
    assert bmc.calls == ["bootdev pxe", "power cycle"]
    assert bmc.device is BootDevice.PXE and bmc.state is PowerState.ON
    assert action_of(client, body["action"]["id"])["state"] == "done"

    machine.provision()  # the machine PXE-boots, installs and reports installed
    after = services_of(client).store.get_bmc(MAC)
    assert after is not None and not after.disk_after_install
    disk = events(client, MAC)[-1]
    assert disk["kind"] == "bootdev-requested" and disk["source"] == "server"
    assert "installed after a reinstall set PXE" in disk["cause"]
    runner(client, fleet).run_pending()
    assert bmc.calls[-1] == "bootdev disk" and bmc.device is BootDevice.DISK
    story = kinds(client)
    tail = story[story.index("bmc-set") :]
    assert tail == [
        "bmc-set", "transition", "bootdev-requested", "power-requested",
        "bootdev-acknowledged", "power-acknowledged", "token-issued", "transition",
        "transition", "bootdev-requested", "bootdev-acknowledged",
    ]  # fmt: skip


def test_an_ipmi_reinstall_boots_the_disk_again_by_a_power_cycle_once_installed(
    client: FlaskClient, fleet: FakeFleet
) -> None:
    """IPMI boot devices apply at the next power-on (and vbmc's PXE override leaves no disk
    to fall through to): after the install, disk again and a power cycle."""
    machine = installed_machine(client)
    ipmi = {"protocol": "ipmi", "address": "10.0.0.201", "username": "admin", "password": PASSWORD}
    set_bmc(client, body=ipmi)
    assert client.post(f"/api/v1/machines/{MAC}/reinstall", headers=AUTH).status_code == 202
    runner(client, fleet).run_pending()
    machine.provision()
    disk = events(client, MAC)[-2:]
    assert [e["kind"] for e in disk] == ["bootdev-requested", "power-requested"]
    assert {e["details"]["action"] for e in disk} == {"disk-boot"}
    runner(client, fleet).run_pending()
    bmc = fleet.bmcs["10.0.0.201"]
    assert bmc.calls == ["bootdev pxe", "power cycle", "bootdev disk", "power cycle"]
    assert bmc.device is BootDevice.DISK and bmc.state is PowerState.ON


def test_an_install_without_a_bmc_reinstall_leaves_the_boot_device_alone(
    client: FlaskClient,
) -> None:
    set_bmc(client)  # a BMC, but the machine is installed the first time by network boot
    installed_machine(client)
    assert "bootdev-requested" not in kinds(client)
    assert services_of(client).store.machine_actions(MAC) == []


def test_reinstall_without_bmc_says_power_cycle_by_hand(client: FlaskClient) -> None:
    installed_machine(client)
    answer = client.post(f"/api/v1/machines/{MAC}/reinstall", headers=AUTH)
    assert answer.status_code == 202
    assert answer.get_json()["action"] is None and "power-cycle" in answer.get_json()["next"]
    assert "Location" not in answer.headers


def test_reinstall_with_a_dead_bmc_keeps_the_record_consistent_and_retries(
    client: FlaskClient, fleet: FakeFleet
) -> None:
    installed_machine(client)
    set_bmc(client)
    bmc = fake_of(client, fleet)
    bmc.fail = BmcUnreachable("redfish x", "boot device pxe: unreachable (Connection refused)")
    first = client.post(f"/api/v1/machines/{MAC}/reinstall", headers=AUTH).get_json()
    runner(client, fleet).run_pending()
    failed = action_of(client, first["action"]["id"])
    assert failed["state"] == "failed"
    assert failed["error"].endswith("; not done: power cycle")
    shown = client.get(f"/api/v1/machines/{MAC}", headers=AUTH).get_json()
    assert shown["state"] == "configured" and shown["window_expires"] is None
    assert bmc.calls == ["bootdev pxe"]

    bmc.fail = None
    again = client.post(f"/api/v1/machines/{MAC}/reinstall", headers=AUTH)
    assert again.status_code == 202
    runner(client, fleet).run_pending()
    assert action_of(client, again.get_json()["action"]["id"])["state"] == "done"
    assert bmc.calls == ["bootdev pxe", "bootdev pxe", "power cycle"]


# -- a machine registered before it ever booted ---------------------------------------------


def test_bmc_before_first_boot_events_carry_over_and_delete_forgets_the_bmc(
    client: FlaskClient, fleet: FakeFleet
) -> None:
    assert set_bmc(client).status_code == 200  # never booted: no machine record yet
    assert client.get(f"/api/v1/machines/{MAC}", headers=AUTH).status_code == 404
    power(client, "on")
    runner(client, fleet).run_pending()
    assert kinds(client) == ["bmc-set", "power-requested", "power-acknowledged"]
    Machine(client, MAC).ipxe()  # it PXE-boots: discovered, with the story so far
    assert kinds(client)[-1] == "discovered"
    svc = services_of(client)
    later = time.time() + 10 * svc.settings.server.discovery.ttl_seconds
    assert svc.store.atomically(lambda tx: tx.stale_discovered(later, 10)) == []
    assert client.delete(f"/api/v1/machines/{MAC}", headers=AUTH).status_code == 200
    assert svc.store.get_bmc(MAC) is None and svc.store.machine_actions(MAC) == []


# -- the runner's loop and doorbell ---------------------------------------------------------


def test_the_doorbell_wakes_the_runner_at_once(client: FlaskClient, fleet: FakeFleet) -> None:
    data = services_of(client).settings.data_path
    assert doorbell.ring(data) is False  # nobody listening: still no error
    bell = Doorbell(data)
    stop = threading.Event()
    loop = threading.Thread(target=runner(client, fleet).serve, args=(bell, stop))
    loop.start()
    try:
        set_bmc(client)
        start = time.monotonic()
        action = power(client, "on").get_json()["action"]
        while action_of(client, action["id"])["state"] != "done":
            assert time.monotonic() - start < 0.9, "not woken by the doorbell (polls every 1 s)"
            time.sleep(0.01)
    finally:
        stop.set()
        bell.ring()
        loop.join(5)
        bell.close()
    assert not loop.is_alive()
