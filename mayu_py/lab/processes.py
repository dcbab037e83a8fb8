"""The lab's processes: started inside a network namespace, recognised and stopped by pid.

Every program the lab runs in a namespace (server, site dnsmasq, VMs, agent) starts through
`spawn` (`mayu lab ctl`'s mayuctl through `mayu_py.command.in_namespace`, which `spawn` uses):
`ip netns exec` execs the program, so the pid the lab records is the program's own. Before
signalling a recorded pid, the lab checks that it is alive and still the program it started
(`mayu_py.pids.running`), since pids are reused.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from mayu_py.command import in_namespace


def spawn(
    argv: list[str], namespace: str, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start argv inside `namespace`, output appended to log_path, in its own session (a
    terminal's Ctrl-C is the lab's to handle, and the program may outlive `mayu lab up`)."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            in_namespace(namespace, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            start_new_session=True,
        )


def child_env(token: str, **extra: str) -> dict[str, str]:
    """This process's environment without any MAYU_* setting, plus the lab's admin token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAYU_")}
    return {**env, "MAYU_TOKEN": token, **extra}


def log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log on one line, for an error message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return f"no log at {path}"
    return " | ".join(text) or "no output"
