"""bmc_emulators without the emulators: the files it writes (read back by virtualbmc's own parser),
readiness from /proc, and start/stop of real throw-away processes (sh, sleep)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from mayu_py.bmc.coordinates import BmcProtocol
from mayu_py.errors import ConfigError
from mayu_py.lab import bmc_emulators as be


@pytest.mark.parametrize("secret", ["with space", "co:lon", "per%cent", "", "naïve"])
def test_secrets_the_emulators_cannot_store_are_refused(tmp_path: Path, secret: str) -> None:
    emulators = be.IpmiEmulators(tmp_path / "ipmi", control_port=1)
    with pytest.raises(ConfigError, match="printable ASCII"):
        emulators.add_domain("d1", address="127.0.0.1", port=6230, username="u", password=secret)
    with pytest.raises(ConfigError, match="printable ASCII"):
        be.RedfishEmulator(
            tmp_path / "rf", listen_ip="127.0.0.1", port=1, username=secret, password="p",
            allowed=[],
        )  # fmt: skip


def test_vbmc_domain_files_are_private_and_read_back_by_virtualbmc(tmp_path: Path) -> None:
    from virtualbmc.manager import VirtualBMCManager

    emulators = be.IpmiEmulators(tmp_path / "ipmi", control_port=1)
    coords = emulators.add_domain(
        "mayu-m1", address="::1", port=6231, username="admin", password="S3cr#t!"
    )
    assert coords.protocol is BmcProtocol.IPMI and coords.endpoint == ("::1", 6231)
    assert coords.ipmi_cipher_suite == 3
    domain_dir = emulators.domains_dir / "mayu-m1"
    for directory in (emulators.state_dir, emulators.domains_dir, domain_dir):
        assert directory.stat().st_mode & 0o777 == 0o700
    assert (domain_dir / "config").stat().st_mode & 0o777 == 0o600

    manager = VirtualBMCManager()
    manager.config_dir = str(emulators.domains_dir)
    parsed = manager._parse_config("mayu-m1")
    assert parsed == {
        "username": "admin", "password": "S3cr#t!", "address": "::1", "port": 6231,
        "domain_name": "mayu-m1", "libvirt_uri": "qemu:///system",
        "libvirt_sasl_username": None, "libvirt_sasl_password": None, "active": "True",
    }  # fmt: skip
    assert manager._vbmc_enabled("mayu-m1", config=parsed) is True


def test_domain_names_are_plain(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a plain name"):
        be.IpmiEmulators(tmp_path, control_port=1).add_domain(
            "../etc", address="127.0.0.1", port=1, username="u", password="p"
        )


def test_bound_ports_are_read_from_proc() -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        udp.bind(("::1", 0))
        tcp_port, udp_port = tcp.getsockname()[1], udp.getsockname()[1]
        assert tcp_port not in be._bound_ports(os.getpid(), "tcp")  # bound, not listening
        tcp.listen(1)
        assert tcp_port in be._bound_ports(os.getpid(), "tcp")
        assert udp_port in be._bound_ports(os.getpid(), "udp")
    assert be._bound_ports(2**22 + 7, "tcp") == set()  # no such process
