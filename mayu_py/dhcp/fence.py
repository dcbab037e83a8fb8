"""Run a program that ends when the process that started it dies, even by SIGKILL.

    python fence.py PARENT_PID PROGRAM [ARGS...]

dnsmasq drops privileges, which clears a parent-death signal set for it (PR_SET_PDEATHSIG),
so a `mayu serve` killed with -9 would leave it answering DHCP. This small process keeps the
signal (it never changes its credentials): when PARENT_PID dies it gets SIGTERM and passes it
on, then exits with the program's status. The DHCP leader runs dnsmasq under it, so a leader
that dies stops handing out addresses (docs/ha.md: fencing).

Run by path, not as a module: it imports the standard library only and starts in ~30 ms.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv: list[str]) -> int:
    parent, program = int(argv[0]), argv[1:]
    child: subprocess.Popen[bytes] | None = None
    early: list[int] = []  # signals that came before the program started

    def forward(number: int, _frame: object) -> None:
        if child is None:
            early.append(number)
        else:
            child.send_signal(number)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent or early:  # the parent died (or asked us to stop) already
        return 1
    child = subprocess.Popen(program)
    for number in early:
        child.send_signal(number)
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
