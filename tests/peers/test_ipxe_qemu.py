"""qemu's real iPXE ROM network-boots against `mayu serve` through the whole decision chain:
discovered (the wait script sleeps and asks again), approved (installer script with a token),
then booting the local disk (`sanboot` fails without a disk, `exit` ends iPXE: no more
requests). This proves the iPXE semantics the scripts rely on: `isset`, a chained script's
`exit 1`, and `chain ... && exit`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

MAC = "52:54:00:5e:00:11"
UUID = "3f0d6a4c-8d3e-4d61-a7c5-2b9f3c1d0e77"
SERIAL = "MAYU-QEMU-0001"


@pytest.fixture
def quick_server(tmp_path: Path) -> Iterator[RunningServer]:
    srv = start_server(tmp_path / "data", config={"server": {"discovery": {"retry_seconds": 2}}})
    try:
        yield srv
    finally:
        srv.kill()


def _wait(what: str, check: Callable[[], bool], console: Path, timeout: float = 120) -> None:
    try:
        wait_for(what, check, timeout, every=0.5)
    except AssertionError as exc:
        tail = console.read_text(errors="replace")[-3000:]
        raise AssertionError(f"{exc}; console:\n{tail}") from None


def test_ipxe_rom_waits_installs_then_boots_its_disk(
    quick_server: RunningServer, tmp_path: Path
) -> None:
    server = quick_server
    port = server.url.rsplit(":", 1)[1]
    console = tmp_path / "console.log"
    console.touch()
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-machine", "pc,graphics=off", "-m", "128",
        "-display", "none", "-serial", f"file:{console}", "-no-reboot",
        "-netdev", f"user,id=n0,bootfile=http://10.0.2.2:{port}/boot.ipxe",
        "-device", f"virtio-net-pci,netdev=n0,mac={MAC},disable-legacy=on,bootindex=1",
        "-smbios", f"type=1,serial={SERIAL},uuid={UUID}",
    ]  # fmt: skip
    qemu = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def events() -> list[dict]:
        return server.api("GET", f"/api/v1/machines/{MAC}/events").json().get("items", [])

    def text() -> str:
        return console.read_text(errors="replace")

    try:
        _wait("discovery", lambda: text().count("waiting for approval") >= 2, console)
        machine = server.api("GET", f"/api/v1/machines/{MAC}").json()
        assert (machine["uuid"], machine["serial"]) == (UUID, SERIAL)
        assert machine["state"] == "discovered" and "role" not in machine["labels"]
        assert [e["kind"] for e in events()] == ["discovered"]

        approved = server.mayuctl("approve", MAC, "--role", "worker")
        assert approved.returncode == 0, approved.stderr
        _wait("a boot token", lambda: any(e["kind"] == "token-issued" for e in events()), console)
        _wait("the installer script", lambda: "mayu: installing" in text(), console)
        issued = next(e for e in events() if e["kind"] == "token-issued")
        assert issued["source"] == "127.0.0.1"  # qemu's user network NATs the guest

        # The kernel is not among the assets here, so the installer fails and iPXE asks
        # again; maintenance makes the next answer "boot your disk".
        patched = server.api("PATCH", f"/api/v1/machines/{MAC}", json={"state": "maintenance"})
        assert patched.status_code == 200, patched.text
        _wait("the local-boot script", lambda: "booting its disk" in text(), console)
        # Absence over a period: longer than boot.ipxe's 5 s retry, so a loop would show.
        time.sleep(8)
        assert text().count("booting its disk") == 1, text()[-2000:]
    finally:
        qemu.kill()
        qemu.wait(timeout=10)
