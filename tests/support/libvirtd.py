"""The system libvirt daemons, started when they are not running (there is no systemd here)."""

from __future__ import annotations

import subprocess

import libvirt

from tests.support.peers import require_peers
from tests.support.wait import wait_for

URI = "qemu:///system"


def _answers() -> bool:
    try:
        libvirt.open(URI).close()
    except libvirt.libvirtError:
        return False
    return True


def ensure_daemons() -> None:
    """virtlogd and libvirtd running, and libvirtd answering on qemu:///system."""
    require_peers("virtlogd", "libvirtd", "qemu-system-x86_64")
    for daemon in ("virtlogd", "libvirtd"):
        if subprocess.run(["pgrep", "-x", daemon], capture_output=True).returncode != 0:
            subprocess.run([daemon, "-d"], check=True, timeout=30)
    wait_for(f"libvirtd to answer on {URI}", _answers, 30)
