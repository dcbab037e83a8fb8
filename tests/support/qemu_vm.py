"""A qemu VM (TCG) for peer tests: SeaBIOS or OVMF, a virtio disk, a user-mode NIC, the
serial console in a file, and waiting on what the console or a condition shows."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# OVMF's own PXE and HTTP boot clients (OvmfPkg/RUNTIME_CONFIG.md): the NIC's iPXE ROM is
# the network boot here; after iPXE `exit`s to boot the disk, OVMF would otherwise try each
# of these first, DHCPv6 and HTTP boot timing out for minutes under TCG.
OVMF_NETWORK_BOOT_OFF = [
    arg
    for knob in ("IPv4PXESupport", "IPv6PXESupport", "IPv4Support", "IPv6Support")
    for arg in ("-fw_cfg", f"name=opt/org.tianocore/{knob},string=no")
]


@dataclass
class VmSpec:
    """What the VM is made of. `bootfile` makes the NIC's iPXE ROM network-boot from that
    URL (user-mode DHCP) before the disk; without it the NIC has no ROM."""

    workdir: Path
    mac: str
    disk: Path | None = None
    firmware: str = "bios"  # or "uefi"
    memory_mib: int = 256
    bootfile: str | None = None
    no_reboot: bool = False
    extra: list[str] = field(default_factory=list)

    def argv(self, console: Path) -> list[str]:
        argv = [QEMU, "-accel", "tcg", "-m", str(self.memory_mib), "-display", "none"]
        argv += ["-serial", f"file:{console}"]
        if self.firmware == "uefi":
            variables = self.workdir / "OVMF_VARS.fd"
            if not variables.exists():
                shutil.copyfile(OVMF_VARS, variables)
            argv += [
                "-machine", "q35",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
                *OVMF_NETWORK_BOOT_OFF,
            ]  # fmt: skip
        else:
            argv += ["-machine", "pc,graphics=off"]  # SeaBIOS and iPXE print on the serial port
        if self.no_reboot:
            argv.append("-no-reboot")
        netdev = "user,id=n0" + (f",bootfile={self.bootfile}" if self.bootfile else "")
        nic = f"virtio-net-pci,netdev=n0,mac={self.mac},disable-legacy=on"
        nic += ",bootindex=1" if self.bootfile else ",romfile="
        argv += ["-netdev", netdev, "-device", nic]
        if self.disk is not None:
            argv += [
                "-drive", f"file={self.disk},if=none,id=d0,format=qcow2",
                "-device", "virtio-blk-pci,drive=d0,bootindex=2",
            ]  # fmt: skip
        return [*argv, *self.extra]


class Vm:
    """A running VM; `stop()` kills it (tests call it in `finally`)."""

    def __init__(self, spec: VmSpec, name: str = "vm") -> None:
        self.console = spec.workdir / f"{name}-console.log"
        self.console.write_bytes(b"")
        self.started = time.time()
        self.process = subprocess.Popen(
            spec.argv(self.console), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def text(self) -> str:
        return self.console.read_text(errors="replace")

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 180) -> float:
        """Wait until check() holds; returns the seconds since qemu started."""
        deadline = time.monotonic() + timeout
        while not check():
            if self.process.poll() is not None and not check():
                raise AssertionError(
                    f"qemu exited ({self.process.returncode}) before {what}; console:\n"
                    f"{self.text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}; console:\n"
                    f"{self.text()[-3000:]}"
                )
            time.sleep(0.25)
        return time.time() - self.started

    def wait_for_text(self, needle: str, timeout: float = 180) -> float:
        return self.wait(repr(needle), lambda: needle in self.text(), timeout)

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"qemu still running after {timeout:.0f} s; console:\n{self.text()[-3000:]}"
            ) from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=15)


def blank_disk(path: Path, size: str) -> Path:
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(path), size], check=True, capture_output=True
    )
    return path


def qcow2_of(raw: Path, path: Path) -> Path:
    subprocess.run(
        ["qemu-img", "convert", "-O", "qcow2", str(raw), str(path)], check=True, capture_output=True
    )
    return path


def untouched(disk: Path) -> bool:
    """True when no cluster of the qcow2 holds data (nothing was ever written)."""
    out = subprocess.run(
        ["qemu-img", "map", "--output=json", str(disk)], check=True, capture_output=True, text=True
    ).stdout
    return '"data": true' not in out
