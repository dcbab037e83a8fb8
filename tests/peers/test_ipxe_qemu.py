"""qemu's real iPXE ROM network-boots against `mayu serve`; the machine shows up in mayuctl."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RunningServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

MAC = "52:54:00:5e:00:11"
UUID = "3f0d6a4c-8d3e-4d61-a7c5-2b9f3c1d0e77"
SERIAL = "MAYU-QEMU-0001"


def test_ipxe_rom_registers_machine_with_smbios_identity(
    server: RunningServer, tmp_path: Path
) -> None:
    port = server.url.rsplit(":", 1)[1]
    console = tmp_path / "console.log"
    argv = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-machine",
        "pc,graphics=off",
        "-m",
        "128",
        "-display",
        "none",
        "-serial",
        f"file:{console}",
        "-no-reboot",
        "-netdev",
        f"user,id=n0,bootfile=http://10.0.2.2:{port}/boot.ipxe",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={MAC},disable-legacy=on,bootindex=1",
        "-smbios",
        f"type=1,serial={SERIAL},uuid={UUID}",
    ]
    qemu = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def registered() -> dict | None:
        assert qemu.poll() is None, f"qemu exited {qemu.returncode}: {qemu.stderr.read()!r}"
        listing = server.mayuctl("list", "--output", "json")
        assert listing.returncode == 0, listing.stderr
        return next((m for m in json.loads(listing.stdout) if m["mac"] == MAC), None)

    try:
        try:
            machine = wait_for("the VM's iPXE to register it", registered, 120, every=1.0)
        except AssertionError:
            print(console.read_text()[-2000:] if console.exists() else "no console output")
            raise
        assert machine["uuid"] == UUID
        assert machine["serial"] == SERIAL
        assert machine["state"] == "configured"
        shown = json.loads(server.mayuctl("show", MAC.replace(":", "-"), "-o", "json").stdout)
        assert shown["events"][0]["kind"] == "registered"
    finally:
        qemu.kill()
        qemu.wait(timeout=10)
