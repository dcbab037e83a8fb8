"""The one wrapper through which every external command (qemu-img, ip, dnsmasq, ...) runs,
and the one way to run a command inside a network namespace."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence

from mayu_py.errors import CommandError

log = logging.getLogger(__name__)


def run(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv with a timeout; raise CommandError carrying argv, exit code and stderr."""
    args = [str(a) for a in argv]
    log.debug("run %s", args)
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, input=input_text, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, None, str(exc.stderr or "")) from exc
    except FileNotFoundError as exc:
        raise CommandError(args, 127, f"{args[0]}: not found") from exc
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stderr or proc.stdout)
    return proc


def in_namespace(namespace: str | None, argv: Sequence[str]) -> list[str]:
    """argv run inside the network namespace (`ip netns exec`, which execs: the pid is the
    program's own); argv itself when namespace is None."""
    return ["ip", "netns", "exec", namespace, *argv] if namespace else list(argv)
