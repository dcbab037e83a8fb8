"""mayu_py.bmc against the real emulators (sushy-emulator, vbmcd) on real libvirt domains.

The domains `mayu-bmc-test-1/2` and their BMCs come from tests/support/bmc_lab.py (domain 1
Redfish, domain 2 IPMI). Every effect is checked through libvirt: domain state and id, and
the boot order of the persistent (and live) XML. Run under `flock /tmp/mayu-vm.lock`; `-s`
prints how long each power action took to be acknowledged.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import libvirt
import pytest

from mayu_py.bmc.base import BootDevice, PowerState
from mayu_py.bmc.client import connect
from mayu_py.bmc.coordinates import BmcCoordinates, BmcProtocol
from mayu_py.bmc.errors import BmcAuthFailed, BmcError, BmcSystemNotFound, BmcUnreachable
from mayu_py.lab.bmc_emulators import IpmiEmulators, RedfishEmulator, _group_alive
from mayu_py.pki import x509 as pki
from tests.conftest import free_port
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
    timed,
)

pytestmark = pytest.mark.peer
PREFIX = "mayu-bmc-test"
ACK_BOUND = 5.0  # a power action acknowledged within (target 3 s; headroom for a busy host)


@pytest.fixture(scope="module")
def lab() -> Iterator[BmcLab]:
    with bmc_lab(PREFIX, "mayubmct0", 0xB1) as built:
        yield built


def check_one_line(err: BmcError, coords: BmcCoordinates) -> None:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text
    assert coords.password not in text and PASSWORD not in text
    assert text.startswith(f"BMC {coords.label}: ")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_power_on_status_off(lab: BmcLab, protocol: BmcProtocol) -> None:
    bmc, dom = lab.bmc(protocol), lab.domains[protocol]
    power_off_directly(dom)
    assert timed(f"{protocol} status", bmc.power_status) is PowerState.OFF

    on = bmc.power_on()
    print(f"BMC-TIMING {protocol} on: {on.seconds:.3f} s")
    assert on.state is PowerState.ON and on.seconds < ACK_BOUND
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert bmc.power_status() is PowerState.ON

    again = bmc.power_on()  # already on: acknowledged, nothing restarted
    assert again.state is PowerState.ON and dom.isActive()

    off = bmc.power_off()
    print(f"BMC-TIMING {protocol} off: {off.seconds:.3f} s")
    assert off.state is PowerState.OFF and off.seconds < ACK_BOUND
    assert not dom.isActive()
    assert bmc.power_status() is PowerState.OFF


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cycle_restarts_a_running_machine_and_starts_a_stopped_one(
    lab: BmcLab, protocol: BmcProtocol
) -> None:
    bmc, dom = lab.bmc(protocol), lab.domains[protocol]
    bmc.power_on()
    before = running_id(dom)
    cycled = bmc.power_cycle()
    print(f"BMC-TIMING {protocol} cycle (running): {cycled.seconds:.3f} s")
    assert cycled.state is PowerState.ON and dom.isActive()
    assert running_id(dom) != before, "the domain was not restarted"
    assert cycled.seconds < 2 * ACK_BOUND

    bmc.power_off()
    from_off = bmc.power_cycle()
    print(f"BMC-TIMING {protocol} cycle (off): {from_off.seconds:.3f} s")
    assert from_off.state is PowerState.ON and dom.isActive()
    bmc.power_off()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_boot_device_is_persistent_and_applies_on_cycle(lab: BmcLab, protocol: BmcProtocol) -> None:
    bmc, dom = lab.bmc(protocol), lab.domains[protocol]
    bmc.power_off()
    result = timed(f"{protocol} bootdev disk", lambda: bmc.set_boot_device(BootDevice.DISK))
    assert result.device is BootDevice.DISK and result.persistent
    assert persistent_boot(dom) == "hd"
    bmc.set_boot_device(BootDevice.PXE)
    assert persistent_boot(dom) == "network"

    # What a reinstall does: the machine runs, the next boot device is set, then a cycle.
    bmc.power_on()
    assert live_boot(dom) == "network"
    bmc.set_boot_device(BootDevice.DISK)
    bmc.power_cycle()
    assert live_boot(dom) == "hd" and persistent_boot(dom) == "hd"
    bmc.power_cycle()  # persistent: no "once" that falls back after one boot
    assert live_boot(dom) == "hd" and persistent_boot(dom) == "hd"

    bmc.set_boot_device(BootDevice.PXE)
    bmc.power_off()
    assert persistent_boot(dom) == "network"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_password_is_an_auth_error(lab: BmcLab, protocol: BmcProtocol) -> None:
    coords = replace(lab.coords[protocol], password="not-" + PASSWORD)
    with pytest.raises(BmcAuthFailed) as caught:
        connect(coords).power_on()
    check_one_line(caught.value, coords)
    assert not lab.domains[protocol].isActive()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_closed_port_is_unreachable_within_seconds(lab: BmcLab, protocol: BmcProtocol) -> None:
    if protocol is BmcProtocol.REDFISH:
        address, bound = f"http://127.0.0.1:{free_port()}", 2.5
    else:
        address, bound = f"127.0.0.1:{free_udp_port()}", 4.0
    coords = replace(lab.coords[protocol], address=address)
    start = time.monotonic()
    with pytest.raises(BmcUnreachable) as caught:
        connect(coords).power_status()
    elapsed = time.monotonic() - start
    print(f"BMC-TIMING {protocol} unreachable: {elapsed:.3f} s")
    assert elapsed < bound
    assert caught.value.temporary
    check_one_line(caught.value, coords)


def test_unknown_redfish_system_is_not_found(lab: BmcLab) -> None:
    coords = lab.coords[BmcProtocol.REDFISH]
    never_seen = replace(coords, system_id=str(uuid.uuid4()))
    with pytest.raises(BmcSystemNotFound) as caught:
        connect(never_seen).power_status()
    check_one_line(caught.value, never_seen)
    # Defined in libvirt but not in the emulator's allowed list: hidden, so not found either.
    hidden = replace(coords, system_id=lab.domains[BmcProtocol.IPMI].UUIDString())
    with pytest.raises(BmcSystemNotFound):
        connect(hidden).power_on()
    assert not lab.domains[BmcProtocol.IPMI].isActive()


def test_ipmi_bmc_added_to_a_running_vbmcd_for_a_missing_domain(lab: BmcLab) -> None:
    coords = lab.ipmi.add_domain(
        f"{PREFIX}-absent", address="127.0.0.1", port=free_udp_port(), username=USER,
        password=PASSWORD,
    )  # fmt: skip
    with pytest.raises(BmcError) as caught:
        connect(coords).power_status()
    print(f"IPMI, domain missing: {caught.value}")
    check_one_line(caught.value, coords)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_emulator_killed_mid_sequence_fails_clearly_then_recovers(
    lab: BmcLab, protocol: BmcProtocol
) -> None:
    dom = lab.domains[protocol]
    emulator: RedfishEmulator | IpmiEmulators
    if protocol is BmcProtocol.REDFISH:
        emulator = RedfishEmulator(
            lab.work / "redfish-killed", listen_ip="127.0.0.1", port=free_port(),
            username=USER, password=PASSWORD, allowed=[dom.UUIDString()],
        )  # fmt: skip
        emulator.start()
        coords = emulator.coordinates(dom.UUIDString())
    else:
        emulator = IpmiEmulators(lab.work / "ipmi-killed", control_port=free_port())
        coords = emulator.add_domain(
            dom.name(), address="127.0.0.1", port=free_udp_port(), username=USER,
            password=PASSWORD,
        )  # fmt: skip
        emulator.start()
    try:
        bmc = connect(coords)
        assert bmc.power_on().state is PowerState.ON
        pgid = emulator.pid
        assert pgid is not None
        os.killpg(pgid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(BmcUnreachable) as caught:
            bmc.power_off()
        elapsed = time.monotonic() - start
        print(f"BMC-TIMING {protocol} emulator killed: {elapsed:.3f} s ({caught.value})")
        assert elapsed < 4.0
        check_one_line(caught.value, coords)
        assert dom.isActive(), "the failed call must not have changed the machine"

        emulator.start()  # restarted on the same files
        assert bmc.power_off().state is PowerState.OFF
        assert not dom.isActive()
    finally:
        pgid = emulator.pid
        emulator.stop()
        power_off_directly(dom)
    assert pgid is not None and _group_alive(pgid) == [], "orphan emulator processes"


def test_redfish_over_tls_checks_the_certificate(lab: BmcLab) -> None:
    now = pki.utcnow()
    ca = pki.create_authority("mayu-bmc-test-ca", "mayu", now)
    leaf, key = pki.issue(
        pki.LeafSpec(ca="bmc", common_name="127.0.0.1", ips=frozenset({"127.0.0.1"}), server=True),
        ca, now,
    )  # fmt: skip
    tls = lab.work / "tls"
    tls.mkdir(mode=0o700)
    (tls / "ca.pem").write_text(pki.certificate_pem(ca.certificate))
    (tls / "cert.pem").write_text(pki.certificate_pem(leaf))
    key_file = tls / "key.pem"
    key_file.touch(mode=0o600)
    key_file.write_text(pki.private_key_pem(key))
    uuid_ = lab.domains[BmcProtocol.REDFISH].UUIDString()
    emulator = RedfishEmulator(
        lab.work / "redfish-tls", listen_ip="127.0.0.1", port=free_port(), username=USER,
        password=PASSWORD, allowed=[uuid_], tls_cert=tls / "cert.pem", tls_key=key_file,
    )  # fmt: skip
    emulator.start()
    try:
        assert emulator.url.startswith("https://")
        pinned = emulator.coordinates(uuid_, ca_bundle=str(tls / "ca.pem"))
        assert connect(pinned).power_status() is PowerState.OFF
        system_cas = emulator.coordinates(uuid_)
        with pytest.raises(BmcError, match="TLS failed: certificate verify failed") as caught:
            connect(system_cas).power_status()
        assert not isinstance(caught.value, BmcUnreachable)  # not worth retrying
        check_one_line(caught.value, system_cas)
        unchecked = emulator.coordinates(uuid_, verify_tls=False)
        assert connect(unchecked).power_status() is PowerState.OFF
    finally:
        emulator.stop()


def test_emulator_files_are_private_and_logs_hold_no_password(lab: BmcLab) -> None:
    for directory in (lab.redfish.state_dir, lab.ipmi.state_dir, lab.ipmi.domains_dir):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    secrets_files = [
        lab.redfish.state_dir / "htpasswd",
        lab.redfish.state_dir / "sushy-emulator.conf",
        lab.ipmi.config_file,
        *lab.ipmi.domains_dir.glob("*/config"),
    ]
    assert len(secrets_files) >= 5
    for path in secrets_files:
        assert path.stat().st_mode & 0o777 == 0o600, path
    htpasswd = (lab.redfish.state_dir / "htpasswd").read_text()
    assert PASSWORD not in htpasswd and htpasswd.startswith(f"{USER}:$2b$04$")
    for log_file in lab.work.rglob("*.log"):
        assert PASSWORD not in log_file.read_text(errors="replace"), log_file
