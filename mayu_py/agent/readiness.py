"""Node readiness from the guest's serial log: `MAYU-READY ip=<ip>` after the last boot.

The lab image prints `MAYU-READY ip=<ip>` on its console once Ignition has run and eth0 has
its address (with `mayu.after=stay` on the kernel command line; otherwise it powers off).
libvirt appends the serial output of every boot to the same `<node>.log`, so the verdict is
the last one after the last kernel banner. Only new bytes are read on each pass (an offset
per log; the first look reads at most the last TAIL_BYTES), so a pass over 50 running domains
costs 50 `stat` calls when nothing was printed.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

TAIL_BYTES = 256 * 1024  # more than a lab boot prints (~40 KB): the whole last boot
MAX_PARTIAL = 4096  # an unterminated line longer than this is noise, not a marker
BOOT_TIMEOUT_S = 300.0  # a running node not ready after this is not polled fast any more
_BANNER = re.compile(rb"Linux version \d")
_READY = re.compile(rb"MAYU-READY ip=(\S+)")
_FAILED = re.compile(rb"MAYU: stage (\S+) FAILED")


@dataclass(frozen=True)
class Verdict:
    """What the log says about the current boot."""

    ready: bool = False
    ip: str | None = None
    failed: str = ""  # non-empty: the guest finished, but something it needed failed


@dataclass
class _Follow:
    inode: int = -1
    offset: int = 0
    partial: bytes = b""
    ready_ip: bytes | None = None
    failed_stages: list[str] = field(default_factory=list)
    since: float = 0.0  # monotonic time this boot was first seen without a verdict


class ReadinessTracker:
    """Follows each running node's serial log; one instance per agent."""

    def __init__(self) -> None:
        self._logs: dict[str, _Follow] = {}
        self._now = time.monotonic

    def started(self, node: str, log: Path) -> None:
        """The agent just (re)started the domain: output before this point is history."""
        try:
            st = log.stat()
            inode, size = st.st_ino, st.st_size
        except OSError:
            inode, size = -1, 0
        self._logs[node] = _Follow(inode=inode, offset=size, since=self._now())

    def check(self, node: str, log: Path) -> Verdict:
        """The verdict for a running node, reading only what was appended since last time."""
        follow = self._logs.setdefault(node, _Follow(since=self._now()))
        try:
            fd = os.open(log, os.O_RDONLY)
        except OSError:
            return self._verdict(follow)
        try:
            st = os.fstat(fd)
            if (follow.inode not in (-1, st.st_ino)) or st.st_size < follow.offset:
                # replaced or truncated: a new file, start over from its tail
                follow.inode, follow.offset, follow.partial = -1, 0, b""
                follow.ready_ip, follow.failed_stages = None, []
            if follow.inode == -1 and follow.offset == 0:
                follow.offset = max(0, st.st_size - TAIL_BYTES)
            follow.inode = st.st_ino
            if st.st_size > follow.offset:
                os.lseek(fd, follow.offset, os.SEEK_SET)
                chunk = os.read(fd, st.st_size - follow.offset)
                follow.offset += len(chunk)
                self._scan(follow, chunk)
        finally:
            os.close(fd)
        return self._verdict(follow)

    def booting(self, node: str) -> bool:
        """Running without a verdict for less than BOOT_TIMEOUT_S: worth polling soon."""
        follow = self._logs.get(node)
        if follow is None:
            return False
        return follow.ready_ip is None and self._now() - follow.since < BOOT_TIMEOUT_S

    def forget(self, keep: set[str]) -> None:
        """Drop the state of nodes that are no longer running here."""
        for node in list(self._logs):
            if node not in keep:
                del self._logs[node]

    def _scan(self, follow: _Follow, chunk: bytes) -> None:
        data = follow.partial + chunk
        lines = data.split(b"\n")
        follow.partial = lines.pop()[-MAX_PARTIAL:]
        for line in lines:
            if _BANNER.search(line):
                follow.ready_ip, follow.failed_stages = None, []
                follow.since = self._now()
                continue
            failed = _FAILED.search(line)
            if failed:
                follow.failed_stages.append(failed.group(1).decode(errors="replace"))
                continue
            ready = _READY.search(line)
            if ready:
                follow.ready_ip = ready.group(1)

    @staticmethod
    def _verdict(follow: _Follow) -> Verdict:
        if follow.ready_ip is None:
            return Verdict()
        ip = follow.ready_ip.decode(errors="replace").strip()
        fatal = [s for s in follow.failed_stages if s != "network"]
        if fatal:
            return Verdict(failed=f"guest: stage {fatal[0]} failed (see its serial log)")
        if ip in ("", "none"):
            return Verdict(failed="guest booted without an IP address (no DHCP lease on eth0)")
        return Verdict(ready=True, ip=ip)
