"""Build the lab's bootable disk image: one FAT filesystem that boots under BIOS and UEFI.

The image is a FAT "superfloppy" (no partition table, RECIPES section 13), built without any
loop mount: `mkfs.vfat -C` makes the file, `syslinux --install` puts SYSLINUX's boot sector
and ldlinux.sys on it (SeaBIOS boots it), and a standalone GRUB (`grub-mkstandalone`, its
grub.cfg inside the binary) at the removable-media path `EFI/BOOT/BOOTX64.EFI` boots it under
OVMF. Both boot loaders start the same kernel and initrd with the same command line, which
sends the lab /init down its "boot from disk" path. The lab installer writes this image to a
machine's disk and then adds its own files (the machine's Ignition config) under `/mayu/`.

Beside the image goes `<image>.sha256` in `sha256sum` format: what the installer checks the
download against.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mayu_py.command import run
from mayu_py.errors import ConfigError
from mayu_py.files import atomic_copy, atomic_write, file_digest

DISK_NAME = "disk.img"
SHA256_SUFFIX = ".sha256"
VOLUME_LABEL = "MAYUBOOT"
# Kernel arguments that make the lab image's boots cheaper under TCG (docs/benchmarks.md,
# "Lab boot costs"): no Spectre mitigations (retpolines and RSB fills cost an emulated CPU
# more than a real one), no KASLR relocation pass, no BIOS EDD probe, and kernel messages
# kept off the emulated serial port.
TCG_BOOT_ARGS = ("quiet", "mitigations=off", "nokaslr", "edd=off")
# The kernel command line of a boot from disk: /init's disk path (README.md of the recipe).
DISK_CMDLINE = " ".join(("console=ttyS0", "mayu.boot=disk", "mayu.after=stay", *TCG_BOOT_ARGS))
KERNEL_FILE = "vmlinuz"
INITRD_FILE = "initrd.img"
EFI_LOADER = "EFI/BOOT/BOOTX64.EFI"
# Only what grub.cfg uses (and their dependencies): 1 MiB instead of 10 with every module.
GRUB_MODULES = ("fat", "search", "search_fs_file", "linux", "normal", "serial", "terminal")
# Room left for what the installer adds (the Ignition config, a few files of KiB): ~2.7 MB free
# in all (the recipe test asks for 2 MiB); every MiB more is hashed twice and written by each
# install.
FREE_MIB = 2
MIB = 1 << 20
# Bump when the layout or the boot configuration changes.
DISK_FORMAT = "1"

TOOLS = {
    "mkfs.vfat": "dosfstools",
    "syslinux": "syslinux",
    "mcopy": "mtools",
    "mmd": "mtools",
    "grub-mkstandalone": "grub-efi-amd64-bin",
}
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")


@dataclass(frozen=True)
class BootDisk:
    """A built disk image and its checksum file."""

    image: Path
    sha256_file: Path
    sha256: str


def recipe_fingerprint(cmdline: str = DISK_CMDLINE) -> str:
    """What the disk's contents depend on besides kernel and initrd (for a build id)."""
    recipe = f"{DISK_FORMAT}\n{cmdline}\n{' '.join(GRUB_MODULES)}\n{FREE_MIB}\n"
    return hashlib.sha256(recipe.encode()).hexdigest()


def syslinux_cfg(cmdline: str) -> str:
    return (
        "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT disk\nLABEL disk\n"
        f"  KERNEL /{KERNEL_FILE}\n  INITRD /{INITRD_FILE}\n  APPEND {cmdline}\n"
    )


def grub_cfg(cmdline: str) -> str:
    return (
        "set timeout=0\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial console\n"
        "terminal_output serial console\n"
        "set gfxpayload=text\n"
        f"search --no-floppy --file --set=root /{KERNEL_FILE}\n"
        f"linux /{KERNEL_FILE} {cmdline}\n"
        f"initrd /{INITRD_FILE}\n"
        "boot\n"
    )


def check_tools() -> None:
    """ConfigError naming the package of the first missing tool."""
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            raise ConfigError(f"disk image: {tool} is missing (apt-get install {package})")
    if not GRUB_EFI_DIR.is_dir():
        raise ConfigError(
            f"disk image: {GRUB_EFI_DIR} is missing (apt-get install grub-efi-amd64-bin)"
        )


def build_boot_disk(
    kernel: Path, initrd: Path, image: Path, cmdline: str = DISK_CMDLINE
) -> BootDisk:
    """Write `image` (atomically) and `image`.sha256 from kernel and initrd."""
    check_tools()
    with tempfile.TemporaryDirectory(prefix="mayu-disk-") as tmp:
        work = Path(tmp)
        loader = work / "BOOTX64.EFI"
        (work / "grub.cfg").write_text(grub_cfg(cmdline))
        run(
            [
                "grub-mkstandalone", "-O", "x86_64-efi", "-o", loader,
                f"--install-modules={' '.join(GRUB_MODULES)}",
                f"--modules={' '.join(GRUB_MODULES)}",
                "--locales=", "--fonts=", "--themes=",
                f"boot/grub/grub.cfg={work / 'grub.cfg'}",
            ],
            timeout=120,
        )  # fmt: skip
        (work / "syslinux.cfg").write_text(syslinux_cfg(cmdline))
        payload = sum(p.stat().st_size for p in (kernel, initrd, loader))
        # FAT tables, directories and cluster slack stay well under 2% at these sizes.
        size_mib = math.ceil(payload * 1.02 / MIB) + FREE_MIB
        fat = work / DISK_NAME
        run(["mkfs.vfat", "-C", "-n", VOLUME_LABEL, fat, str(size_mib * 1024)], timeout=60)
        run(["syslinux", "--install", fat], timeout=60)
        run(["mmd", "-i", fat, "::/EFI", "::/EFI/BOOT"], timeout=60)
        for source, name in (
            (kernel, KERNEL_FILE),
            (initrd, INITRD_FILE),
            (work / "syslinux.cfg", "syslinux.cfg"),
            (loader, EFI_LOADER),
        ):
            run(["mcopy", "-i", fat, source, f"::/{name}"], timeout=60)
        digest = file_digest(fat)
        image.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(fat, image, 0o644)
    sha256_file = image.with_name(image.name + SHA256_SUFFIX)
    atomic_write(sha256_file, f"{digest}  {image.name}\n", 0o644)
    return BootDisk(image, sha256_file, digest)


def read_sha256_file(path: Path) -> str | None:
    """The digest a `sha256sum`-format file names, or None when it is missing or malformed."""
    try:
        word = path.read_text().split(maxsplit=1)[0]
    except (OSError, IndexError):
        return None
    return word if len(word) == 64 and all(c in "0123456789abcdef" for c in word) else None
