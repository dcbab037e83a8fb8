"""The TFTP root dnsmasq serves: iPXE binaries from Debian's `ipxe` package."""

from __future__ import annotations

from pathlib import Path

from mayu_py.errors import ConfigError
from mayu_py.files import atomic_copy

IPXE_SOURCE = Path("/usr/lib/ipxe")
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


def prepare_tftp_root(directory: Path, *, source: Path = IPXE_SOURCE) -> Path:
    """Copy the iPXE binaries into `directory` (created, mode 0755) and return it.

    Files are world-readable (dnsmasq's TFTP server serves only those when it drops
    privileges). Symlinks in the source (Debian links ipxe.efi to /boot) are followed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    for name in IPXE_BINARIES:
        src = source / name
        if not src.is_file():
            raise ConfigError(f"iPXE binary {src} is missing: install the ipxe package")
        atomic_copy(src, directory / name, 0o644)
    return directory
