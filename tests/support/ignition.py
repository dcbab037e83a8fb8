"""Runs the real Ignition binary (-platform file) against a fresh sysroot directory."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

IGNITION = Path("/usr/lib/dracut/modules.d/30ignition/ignition")


@dataclass
class IgnitionRun:
    sysroot: Path
    returncode: int
    log: str


def _allow_traversal(path: Path) -> None:
    """Ignition writes SSH keys as the user: every ancestor must be searchable (o+x)."""
    for ancestor in path.resolve().parents:
        mode = ancestor.stat().st_mode
        if not mode & 0o001:
            ancestor.chmod(mode | 0o001)


def make_sysroot(root: Path) -> Path:
    """The skeleton Ignition's files stage needs (RECIPES section 2)."""
    etc = root / "etc"
    (etc / "selinux").mkdir(parents=True)
    root.chmod(0o755)
    _allow_traversal(root)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    (etc / "selinux" / "config").write_text("SELINUX=disabled\nSELINUXTYPE=targeted\n")
    return root


def _stub_bin(directory: Path) -> Path:
    """`setfiles` that does nothing (no SELinux here); useradd & co. exist on the host."""
    directory.mkdir(parents=True, exist_ok=True)
    stub = directory / "setfiles"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return directory


def run_ignition(
    workdir: Path, config: dict, timeout: float = 120.0, may_time_out: bool = False
) -> IgnitionRun:
    """Run the fetch and files stages of the real binary with config as the base config.

    With may_time_out, a stage still running after `timeout` (Ignition retries some failures
    for ever) ends the run with returncode -1 and the log so far."""
    sysroot = make_sysroot(workdir / "sysroot")
    run = workdir / "run"
    run.mkdir()
    base = workdir / "base.ign"
    base.write_text(json.dumps(config))
    env = {
        **os.environ,
        "IGNITION_CONFIG_FILE": str(base),
        "PATH": f"{_stub_bin(workdir / 'bin')}:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    log = []
    code = 0
    for stage in ("fetch", "files"):
        argv = [
            str(IGNITION),
            "-platform",
            "file",
            "-stage",
            stage,
            "-root",
            str(sysroot),
            "-log-to-stdout",
            "-config-cache",
            str(run / "cache.json"),
            "-state-file",
            str(run / "state"),
            "-neednet",
            str(run / "neednet"),
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            if not may_time_out:
                raise
            log.append(_text(exc.stdout) + _text(exc.stderr))
            return IgnitionRun(sysroot, -1, "\n".join(log))
        log.append(proc.stdout + proc.stderr)
        code = proc.returncode
        if code != 0:
            break
    return IgnitionRun(sysroot, code, "\n".join(log))


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def remote_config(url: str) -> dict:
    """A base config that makes Ignition fetch (replace) its config from url."""
    return {"ignition": {"version": "3.3.0", "config": {"replace": {"source": url}}}}


def file_text(entry: dict) -> str:
    """The text of an Ignition storage.files entry (its data: URL decoded)."""
    header, _, payload = entry["contents"]["source"].partition(",")
    if header.endswith(";base64"):
        return base64.b64decode(payload).decode()
    return urllib.parse.unquote(payload)
