"""The lab image installs itself to a disk and boots from it, in qemu (TCG), against a real
`mayu serve`: the disk image from `build_lab_image` boots under SeaBIOS and OVMF; a machine
with a blank disk PXE-boots through qemu's iPXE ROM, is approved through the API, installs,
reboots into its disk (the server answers local boot), runs Ignition from the config on the
disk and reports `running` with its own credential (SeaBIOS; OVMF: the libvirt lab's e2e); a
bad image or a small disk ends `failed` with the reason and the disk untouched.

qemu's user-mode network reaches the host's 127.0.0.1 as 10.0.2.2: the server's public URLs
name that address and its certificate carries it. Run under `flock /tmp/mayu-vm.lock`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mayu_py.images.disk import DISK_NAME, SHA256_SUFFIX
from mayu_py.images.lab import LabImage, build_lab_image
from tests.conftest import RunningServer, free_port, start_server
from tests.support.qemu_vm import Vm, VmSpec, blank_disk, qcow2_of, untouched

pytestmark = pytest.mark.peer

MAC = "52:54:00:4d:44:01"
GUEST_HOST = "10.0.2.2"  # the host's loopback as qemu's user-mode network shows it


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LabImage]:
    """An asset root with the lab image (kernel, initrd, disk image) under lab/."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    root = tmp_path_factory.mktemp("assets")
    return root, build_lab_image(root / "lab")


def _serve(tmp_path: Path, assets_root: Path, disk: str = "/dev/vda") -> RunningServer:
    port, tls_port = free_port(), free_port()
    profile = {
        "kernel": "lab/vmlinuz",
        "initrd": ["lab/initrd.img"],
        "args": ["console=ttyS0"],
        "install": {"tool": "lab", "disk": disk, "image": f"lab/{DISK_NAME}"},
        "ignition_template": "worker.yaml.j2",
        "role": "worker",
    }
    config = {
        "server": {
            "discovery": {"retry_seconds": 1},
            "tls": {"public_url": f"https://{GUEST_HOST}:{tls_port}", "extra_sans": [GUEST_HOST]},
        },
        "assets": {"root": str(assets_root)},
        "profiles": {"disk-worker": profile},
        "groups": [{"name": "workers", "profile": "disk-worker", "selector": {"role": "worker"}}],
    }
    return start_server(
        tmp_path / "data",
        config=config,
        listen=f"127.0.0.1:{port}",
        tls_listen=f"127.0.0.1:{tls_port}",
    )


@pytest.fixture
def vms() -> Iterator[list[Vm]]:
    started: list[Vm] = []
    try:
        yield started
    finally:
        for vm in started:
            vm.stop()


def _events(server: RunningServer) -> list[dict[str, Any]]:
    return server.api("GET", f"/api/v1/machines/{MAC}/events").json().get("items", [])


def _reports(server: RunningServer, event: str) -> list[dict[str, Any]]:
    return [e for e in _events(server) if e["cause"].startswith(f"report {event} ")]


def _pxe_install(server: RunningServer, tmp_path: Path, vms: list[Vm], disk: Path) -> Vm:
    """Power on a machine with `disk` that network-boots first, approve it when it shows
    up, and return the running VM."""
    port = server.url.rsplit(":", 1)[1]
    bootfile = f"http://{GUEST_HOST}:{port}/boot.ipxe"
    spec = VmSpec(tmp_path, MAC, disk=disk, memory_mib=512, bootfile=bootfile)
    vm = Vm(spec, "pxe")
    vms.append(vm)
    vm.wait_for_text("waiting for approval")
    approved = server.api("POST", f"/api/v1/machines/{MAC}/approve", json={"role": "worker"})
    assert approved.status_code == 200, approved.text
    return vm


def _disk_files(disk: Path, work: Path) -> dict[str, str]:
    """The installer's files on the FAT filesystem of a qcow2 disk (read with mtools)."""
    raw = work / "inspect.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw)], check=True)
    files = {}
    for name in ("ignition.json", "install-id", "report-origin"):
        out = subprocess.run(
            ["mtype", "-i", str(raw), f"::/mayu/{name}"], capture_output=True, text=True, check=True
        )
        files[name] = out.stdout
    raw.unlink()
    return files


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_the_disk_image_boots_to_init(
    assets: tuple[Path, LabImage], tmp_path: Path, vms: list[Vm], firmware: str
) -> None:
    """The disk image alone (no config on it yet) boots the lab /init down its disk path."""
    _, image = assets
    assert image.disk is not None
    disk = qcow2_of(image.disk, tmp_path / "disk.qcow2")
    vm = Vm(VmSpec(tmp_path, MAC, disk=disk, firmware=firmware, memory_mib=512), firmware)
    vms.append(vm)
    seconds = vm.wait_for_text("MAYU-READY")
    text = vm.text()
    assert ("SYSLINUX" in text) if firmware == "bios" else ("GRUB" in text)
    assert "MAYU: mode disk platform file" in text
    assert "no Ignition config on /dev/vda: the disk was never installed" in text
    print(f"\n{firmware}: qemu start -> MAYU-READY from the bare disk image {seconds:.1f} s")


def test_install_reboot_and_run_from_disk(
    assets: tuple[Path, LabImage], tmp_path: Path, vms: list[Vm]
) -> None:
    """SeaBIOS. The same story under OVMF (the NIC's iPXE, its `exit` back to the firmware,
    GRUB from the disk) is the libvirt lab's UEFI e2e (tests/e2e/test_lab_libvirt.py), which
    also checks the image checksum, the disk marker and Ignition from the disk."""
    root, image = assets
    server = _serve(tmp_path, root)
    try:
        disk = blank_disk(tmp_path / "machine.qcow2", "256M")
        vm = _pxe_install(server, tmp_path, vms, disk)
        vm.wait("the running report", lambda: bool(_reports(server, "running")), timeout=300)
        installed, running = _reports(server, "installed"), _reports(server, "running")
        to_running = running[0]["time"] - vm.started
        vm.wait_for_text("MAYU-READY")
        vm.stop()

        # One token for the whole story: the disk boot used the machine's own credential.
        kinds = [e["kind"] for e in _events(server)]
        assert kinds.count("token-issued") == 1, kinds
        assert len(installed) == 1 and installed[0]["cause"] == "report installed (boot token)"
        assert running[0]["cause"] == "report running (report credential)"
        assert (installed[0]["to"], running[0]["to"]) == ("installed", "running")
        install = installed[0]["details"]["install"]
        assert install["disk"] == "/dev/vda"
        assert install["image_sha256"] == image.disk_sha256
        assert running[0]["details"]["boot"] == "disk"
        assert running[0]["details"]["install_id"] == install["install_id"]

        text = vm.text()
        assert text.count("mayu: installing") == 1
        assert text.count("booting its disk") == 1  # the second network boot: local boot
        assert text.count("MAYU: mode install") == 1 and text.count("MAYU: mode disk") == 1
        assert "Ignition finished successfully" in text.split("MAYU: mode disk")[1]

        files = _disk_files(disk, tmp_path)
        assert files["install-id"].strip() == install["install_id"]  # the install's marker
        assert files["report-origin"].strip() == server.url.replace("127.0.0.1", GUEST_HOST)
        on_disk = json.loads(files["ignition.json"])
        assert "config" not in on_disk["ignition"]  # no reference to the spent token left
        paths = {f["path"] for f in on_disk["storage"]["files"]}
        assert {"/etc/mayu/report.token", "/etc/mayu/report-url"} <= paths

        # Floor: the same installed disk booted directly (no network boot at all).
        direct = Vm(VmSpec(tmp_path, MAC, disk=disk, memory_mib=512), "direct")
        vms.append(direct)
        direct.wait("a second running report", lambda: len(_reports(server, "running")) == 2)
        floor = _reports(server, "running")[1]["time"] - direct.started
        assert [e["kind"] for e in _events(server)].count("token-issued") == 1
        phases = ", ".join(
            f"{e['kind'] if e['kind'] != 'transition' else e['to']} {e['time'] - vm.started:.1f}"
            for e in _events(server)[:6]
        )
        print(
            f"\nbios: qemu start -> running: {to_running:.1f} s through PXE, install and"
            f" reboot ({phases}); {floor:.1f} s booting the installed disk directly"
        )
    finally:
        server.kill()


def _corrupt_copy(root: Path, target: Path) -> Path:
    """A copy of the asset root whose disk image no longer matches its sha256 file."""
    shutil.copytree(root, target)
    image = target / "lab" / DISK_NAME
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    assert (target / "lab" / f"{DISK_NAME}{SHA256_SUFFIX}").is_file()
    return target


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("checksum", "checksum mismatch: the image has sha256"),
        ("small-disk", "disk /dev/vda is too small"),
    ],
)
def test_install_faults_fail_with_the_reason_and_write_nothing(
    assets: tuple[Path, LabImage], tmp_path: Path, vms: list[Vm], fault: str, reason: str
) -> None:
    root, image = assets
    assert image.disk is not None
    if fault == "checksum":
        root = _corrupt_copy(root, tmp_path / "assets")
    size = "16M" if fault == "small-disk" else "256M"
    assert fault != "small-disk" or image.disk.stat().st_size > 16 << 20
    server = _serve(tmp_path, root)
    try:
        disk = blank_disk(tmp_path / "machine.qcow2", size)
        vm = _pxe_install(server, tmp_path, vms, disk)
        vm.wait("the failed report", lambda: bool(_reports(server, "failed")), timeout=300)
        failed = _reports(server, "failed")[0]
        assert failed["to"] == "failed"
        assert failed["details"]["stage"] == "install"
        assert failed["details"]["reason"].startswith(reason), failed["details"]
        assert failed["details"]["reason"].endswith("nothing written")
        assert vm.wait_exit() == 0  # powered off, not rebooted into the same failure
        assert not _reports(server, "installed")
        assert untouched(disk)
    finally:
        server.kill()
