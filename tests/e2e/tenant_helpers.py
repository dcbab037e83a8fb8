"""Helpers for the tenant e2e tests and bench/tenant_lifecycle.py: the agent as a subprocess,
the lab base image, libvirt and state-dir listings, and a guest's serial console.

VM files live under /var/tmp in 0711 directories (qemu runs as libvirt-qemu and cannot enter
pytest's 0700 tmp_path; RECIPES section 7).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import time
import tty
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import libvirt
import yaml

from mayu_py.images.base import install_lab_base_image
from mayu_py.images.lab import build_lab_image
from tests.support.libvirtd import URI as URI  # th.URI in e2e and bench
from tests.support.libvirtd import ensure_daemons as ensure_daemons
from tests.support.wait import wait_for as wait_for  # th.wait_for in e2e and bench

BIN = Path(sys.executable).parent
LAB_CACHE = Path("/var/tmp/mayu-e2e-lab-cache")  # build_lab_image reuses an unchanged build


def make_workdir(prefix: str) -> Path:
    import uuid

    work = Path(f"/var/tmp/{prefix}-{uuid.uuid4().hex[:8]}")
    work.mkdir(mode=0o711)
    work.chmod(0o711)
    return work


def install_lab_image(images_dir: Path) -> None:
    """The lab kernel + initrd as base image `lab`, kept up after Ignition (mayu.after=stay)."""
    lab = build_lab_image(LAB_CACHE)
    install_lab_base_image(images_dir, lab.kernel, lab.initrd, lab.version)


def write_tenant(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


# ---- the agent as a subprocess ---------------------------------------------------------------


@dataclass
class AgentProcess:
    """`mayu agent` against qemu:///system and a running server."""

    server_url: str
    token: str
    state_dir: Path
    images_dir: Path
    log_path: Path
    host_name: str = "h1"
    interval: float = 2.0
    extra: tuple[str, ...] = ()  # more options (--underlay, --overlay-netns, --drain, ...)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        args = [
            str(BIN / "mayu"),
            "agent",
            "--host-name",
            self.host_name,
            "--libvirt-uri",
            URI,
            "--server",
            self.server_url,
            "--state-dir",
            str(self.state_dir),
            "--images-dir",
            str(self.images_dir),
            "--interval",
            str(self.interval),
            *self.extra,
        ]
        env = {**os.environ, "MAYU_TOKEN": self.token, "MAYU_ACCEL": "tcg"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# ---- libvirt and the state dir ----------------------------------------------------------------


@dataclass(frozen=True)
class Dom:
    name: str
    uuid: str
    id: int  # -1 when not running
    active: bool
    pid: int | None  # the qemu process


def _qemu_pid(name: str) -> int | None:
    try:
        return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def domains(conn: libvirt.virConnect, prefix: str) -> dict[str, Dom]:
    """Every domain whose name starts with prefix (a test's tenant names). A domain undefined
    between the listing and its questions (an agent replacing it) is left out: it is gone."""
    out = {}
    for dom in conn.listAllDomains():
        try:
            name = dom.name()
            if name.startswith(prefix):
                active = bool(dom.isActive())
                pid = _qemu_pid(name) if active else None
                out[name] = Dom(name, dom.UUIDString(), dom.ID(), active, pid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return out


def networks(conn: libvirt.virConnect, prefix: str) -> set[str]:
    return {n.name() for n in conn.listAllNetworks() if n.name().startswith(prefix)}


def state_files(state_dir: Path) -> dict[str, set[str]]:
    root = state_dir / "tenants"
    if not root.is_dir():
        return {}
    return {d.name: {f.name for f in d.iterdir()} for d in root.iterdir() if d.is_dir()}


def cleanup_libvirt(conn: libvirt.virConnect, tenants: list[str]) -> None:
    """Destroy and undefine every domain and network of these tenants (best effort)."""
    for dom in conn.listAllDomains():
        if any(dom.name().startswith(t + "-") for t in tenants):
            for step in (dom.destroy, dom.undefine):
                with contextlib.suppress(libvirt.libvirtError):
                    step()
    for net in conn.listAllNetworks():
        if net.name().partition(".")[0] in {f"mayu-tenant-{t}" for t in tenants}:
            for step in (net.destroy, net.undefine):
                with contextlib.suppress(libvirt.libvirtError):
                    step()


# ---- the server's view -----------------------------------------------------------------------


def tenant_nodes(show_json: str) -> dict[str, dict]:
    doc = json.loads(show_json)
    return {n["name"]: n for n in doc["status"]["nodes"]}


def ignition_files(config: dict) -> dict[str, bytes]:
    """path -> decoded contents of every file in an Ignition config with a data: URL."""
    out = {}
    for entry in config.get("storage", {}).get("files", []):
        source = (entry.get("contents") or {}).get("source")
        if not source or not source.startswith("data:"):
            continue
        meta, _, data = source[5:].partition(",")
        if meta.endswith(";base64"):
            out[entry["path"]] = base64.b64decode(data)
        else:
            out[entry["path"]] = urllib.parse.unquote_to_bytes(data)
    return out


# ---- the guest's serial console --------------------------------------------------------------


def serial_pty(conn: libvirt.virConnect, name: str) -> str:
    root = ET.fromstring(conn.lookupByName(name).XMLDesc(0))
    source = root.find("devices/serial[@type='pty']/source")
    assert source is not None and source.get("path"), f"{name} has no serial pty"
    return str(source.get("path"))


_COUNTER = [0]


_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _read(fd: int, wait_s: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], wait_s)
    if not ready:
        return b""
    try:
        return os.read(fd, 65536).replace(b"\r", b"")
    except BlockingIOError:
        return b""


def _await_prompt(fd: int, deadline: float) -> None:
    """Until the shell sits at its prompt (`<hostname># `, /etc/profile of the lab image) after
    a fresh line: it may have had a half-typed line, or not be reading the tty yet."""
    buf = b""
    nudged = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - nudged > 2.0:
            os.write(fd, b"\n")
            nudged = time.monotonic()
        buf += _read(fd, 0.2)
        # busybox ash asks the cursor position (ESC [ 6 n) right after printing its prompt
        if _ESCAPES.sub(b"", buf).rstrip(b" ").endswith(b"#"):
            return
    raise AssertionError(f"no shell prompt on the console: {buf[-500:]!r}")


def console_run(pty_path: str, command: str, timeout_s: float = 20.0) -> tuple[int, str]:
    """Type command into the guest's root shell; return (exit code, output).

    The tty echoes what we type, so the end marker is computed by the shell: the typed text
    holds `$((N+1))`, the output holds the number.
    """
    _COUNTER[0] += 1
    n = 7000 + _COUNTER[0]
    marker = re.compile(rb"MAYU-RC-%d-(\d+)-END" % (n + 1))
    begin = b"MAYU-BEGIN-%d\n" % (n + 2)
    fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        tty.setraw(fd, termios.TCSANOW)
        deadline = time.monotonic() + timeout_s
        _await_prompt(fd, deadline)
        line = f"echo MAYU-BEGIN-$(({n}+2)); {command}; echo MAYU-RC-$(({n}+1))-$?-END\n"
        os.write(fd, line.encode())
        buf = b""
        while time.monotonic() < deadline:
            buf += _read(fd, 0.5)
            m = marker.search(buf)
            if m:
                start = buf.find(begin)
                text = buf[start + len(begin) if start >= 0 else 0 : m.start()]
                return int(m.group(1)), text.decode(errors="replace")
        raise AssertionError(f"no answer from {pty_path} to {command!r}: {buf[-2000:]!r}")
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
