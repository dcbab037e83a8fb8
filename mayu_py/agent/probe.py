"""Which libvirt domain type works here: "kvm" only when a real short KVM boot succeeds.

/dev/kvm opening proves nothing (RECIPES 1: a paravirtual KVM that triple-faults stock
kernels), so the probe boots the base image's kernel under KVM for a few seconds and looks for
the kernel handing over to /init on the serial log. The answer is cached in the state dir;
MAYU_ACCEL=tcg|kvm overrides it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid as uuidlib
from collections.abc import Mapping
from pathlib import Path

from mayu_py.agent.libvirt_xml import probe_xml
from mayu_py.errors import ConfigError, MayuError
from mayu_py.files import atomic_write
from mayu_py.virt.host import LibvirtHost

log = logging.getLogger(__name__)
PROBE_NAME = "mayu-kvm-probe"
PROBE_UUID = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "https://mayu.io/agent/kvm-probe"))
_MARKER = re.compile(rb"Run \S+ as init process")
_OVERRIDES = {"tcg": "qemu", "kvm": "kvm"}


def detect_domain_type(
    host: LibvirtHost,
    cache: Path,
    kernel: Path | None = None,
    initrd: Path | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    timeout_s: float = 15.0,
) -> str:
    """Return "kvm" or "qemu" (TCG)."""
    override = env.get("MAYU_ACCEL", "auto").strip().lower()
    if override in _OVERRIDES:
        return _OVERRIDES[override]
    if override != "auto":
        raise ConfigError(f"MAYU_ACCEL must be tcg, kvm or auto, not {override!r}")
    if cache.is_file():
        cached = json.loads(cache.read_text()).get("domain_type")
        if cached in ("kvm", "qemu"):
            return cached
    if "kvm" not in host.domain_types():
        result = "qemu"
    elif kernel is None or initrd is None:
        log.warning("no base image to probe KVM with; using TCG for now")
        return "qemu"
    else:
        result = "kvm" if _kvm_boots(host, cache.parent, kernel, initrd, timeout_s) else "qemu"
    atomic_write(cache, json.dumps({"domain_type": result, "time": time.time()}), 0o644)
    log.info("domain type: %s", result)
    return result


def _kvm_boots(
    host: LibvirtHost, workdir: Path, kernel: Path, initrd: Path, timeout_s: float
) -> bool:
    serial = workdir / "kvm-probe.log"
    serial.unlink(missing_ok=True)
    host.delete_domain(PROBE_NAME)
    try:
        host.boot_transient(probe_xml(PROBE_NAME, PROBE_UUID, kernel, initrd, serial))
    except MayuError as exc:
        log.info("KVM probe guest did not start: %s", exc)
        return False
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if serial.is_file() and _MARKER.search(serial.read_bytes()):
                return True
            if not host.is_active(PROBE_NAME):
                log.info("KVM probe guest died (reset or crash); using TCG")
                return False
            time.sleep(0.5)
        log.info("KVM probe guest never reached /init in %.0fs; using TCG", timeout_s)
        return False
    finally:
        host.delete_domain(PROBE_NAME)
