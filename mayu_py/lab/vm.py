"""qemu for lab machines: the PXE-booting command line, UEFI variable stores, the KVM probe.

KVM on these machines is a paravirtual flavour: /dev/kvm opens but stock kernels and the
iPXE ROM crash under it, so `auto` decides by booting the lab kernel for real (RECIPES 1).
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

from mayu_py.errors import ConfigError
from mayu_py.files import atomic_copy
from mayu_py.lab import topology as topo

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
MEMORY_MIB = 256
UEFI_MEMORY_MIB = 512  # OVMF needs more than SeaBIOS
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
UEFI_VARS_SUFFIX = ".OVMF_VARS.fd"  # a machine's own UEFI variables, beside its console log
PROBE_MARK = "MAYU: init start"


def qemu_argv(
    machine: topo.LabMachine, accel: str, serial_log: Path, firmware: str = "bios"
) -> list[str]:
    """A VM whose only boot device is its virtio NIC on the machine's tap.

    bios: SeaBIOS with qemu's iPXE ROM on the NIC (DHCP as iPXE, straight to HTTP).
    uefi: OVMF with the NIC's ROM removed, so EDK2's own PXE client boots: DHCP as a plain
    UEFI PXE client (arch 7), TFTP `ipxe.efi`, which then DHCPs again as iPXE (RECIPES 1, 4).
    """
    nic = f"virtio-net-pci,netdev=n0,mac={machine.mac},disable-legacy=on,bootindex=1"
    if firmware == "uefi":
        vars_copy = serial_log.with_name(machine.name + UEFI_VARS_SUFFIX)
        if not vars_copy.exists():
            atomic_copy(OVMF_VARS, vars_copy, 0o600)
        board = [
            "-machine", "q35", "-m", str(UEFI_MEMORY_MIB),
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
        ]  # fmt: skip
        nic += ",romfile="
    else:
        board = ["-machine", "pc,graphics=off", "-m", str(MEMORY_MIB)]
    return [
        QEMU, "-name", f"mayu-{machine.name}", "-accel", accel, *board, "-smp", "1",
        "-display", "none", "-monitor", "none", "-serial", f"file:{serial_log}",
        "-no-reboot", "-boot", "reboot-timeout=1000",
        "-netdev", f"tap,id=n0,ifname={machine.tap},script=no,downscript=no",
        "-device", nic,
        "-smbios", f"type=1,uuid={machine.uuid},serial={machine.serial}",
    ]  # fmt: skip


def kvm_works(kernel: Path, initrd: Path, timeout: float = 10.0) -> bool:
    """Boot the lab kernel under KVM without a network; True when it reaches /init.

    A working KVM gets there in 1-2 s (TCG: 4-5 s); the broken flavour hangs or resets.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="mayu-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        argv = [
            QEMU, "-accel", "kvm", "-m", str(MEMORY_MIB), "-display", "none",
            "-monitor", "none", "-no-reboot", "-nic", "none",
            "-serial", f"file:{console}", "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0 mayu.after=poweroff mayu.dhcp_timeout=1",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        ok = False
        try:
            while time.monotonic() < deadline:
                if console.exists() and PROBE_MARK in console.read_text(errors="replace"):
                    ok = True
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
    log.info("KVM probe: %s", "guest reached /init" if ok else "guest did not reach /init")
    return ok


def choose_accel(requested: str, kernel: Path, initrd: Path) -> str:
    if requested in ("kvm", "tcg"):
        return requested
    if requested != "auto":
        raise ConfigError(f"--accel: {requested!r} is not auto, kvm or tcg")
    return "kvm" if kvm_works(kernel, initrd) else "tcg"
