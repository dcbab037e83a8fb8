"""dnsmasq's leases: its lease file (read into canonical MAC -> IPv4 address, or written from
records kept elsewhere), and the lease changes its `dhcp-script` reports (docs/ha.md).

Reading the lease file while dnsmasq rewrites it. dnsmasq 2.90 (lease.c `lease_update_file`)
rewrites the file in place on every lease change: rewind, `ftruncate` to 0, stdio writes
(flushed in 4 KiB blocks), `fflush`, `fsync`. It does so while handling the DHCP packet,
before the reply leaves (dhcp.c `dhcp_packet`), so a machine's own lease is on file before
its ACK. But another machine's exchange may rewrite the file while a lookup reads it: the
reader then sees an empty file, or one cut at a block boundary, mid-line; and as a file's
mtime moves in clock ticks of a few ms, a stat taken before such a read can match the
finished file, so a (mtime, size) stamp alone may keep a torn read as current. In full DHCP
that turns a machine's `/ipxe` right after its ACK into an alert ('no DHCP lease', the
3-machine lab e2e once failed on it when iPXE stopped waiting 3 s for a ProxyDHCP offer).

So `LeaseBook` keeps a read as current only when it is whole (the same stamp, inode
included, before and after the read, as many bytes as the stamp says, a complete last
line), and parses complete lines only (a cut `10.77.0.123` would read `10.77.0.1`). A miss
while the file is being rewritten (a torn read, or a file written within the last
`LEASE_WAIT_S`) is asked again every `LEASE_POLL_S` until the MAC is found or `LEASE_WAIT_S`
(1 s) has passed; a request from a MAC never leased costs its worker at most that second,
and only while leases are changing. Lookups share no lock: a read is swapped in whole. The
`dhcp-script` journal is no better source: dnsmasq runs the script from its main loop after
the reply, through a helper, one change at a time, so it lags the file; and it is only
configured for the etcd DHCP leader (cli/dhcp_leader.py, which reads the store first and
falls back to this book).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mayu_py.errors import BadRequest
from mayu_py.model import canonical_mac

log = logging.getLogger(__name__)

LEASE_WAIT_S = 1.0
LEASE_POLL_S = 0.02


def parse_lease_text(text: str) -> dict[str, str]:
    """dnsmasq's lease file text as canonical MAC -> IP, complete lines only.

    Lines are `EXPIRY MAC IP HOSTNAME CLIENT-ID`; the `duid` line and DHCPv6 leases (whose
    second field is an IAID, not a MAC) are skipped, as are lines that do not parse and a
    last line without its newline (the file caught mid-write).
    """
    leases: dict[str, str] = {}
    for line in text[: text.rfind("\n") + 1].splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0] == "duid" or ":" in fields[2]:
            continue
        try:
            leases[canonical_mac(fields[1])] = fields[2]
        except BadRequest:
            continue
    return leases


def read_leases(lease_file: Path) -> dict[str, str]:
    """Current DHCPv4 leases: canonical MAC -> IP. A missing file means no leases yet."""
    try:
        return parse_lease_text(Path(lease_file).read_text())
    except FileNotFoundError:
        return {}


_Stamp = tuple[int, int, int]  # inode, mtime_ns, size


def _stamp(stat: os.stat_result) -> _Stamp:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


@dataclass(frozen=True)
class _Read:
    """One read of the lease file; `stamp` None when it was not whole (read again)."""

    stamp: _Stamp | None
    written_ns: int = 0
    leases: dict[str, str] = field(default_factory=dict)

    def changing(self, now_ns: int, window_s: float) -> bool:
        """Caught mid-rewrite, or written within the last `window_s`."""
        return self.stamp is None or now_ns - self.written_ns < window_s * 1e9


_MISSING = _Read(stamp=(0, 0, -1))  # no file: nothing leased, nothing being written


class LeaseBook:
    """The lease file, read again only when it changed (dnsmasq rewrites it on each lease),
    and a miss asked again while the file is being rewritten (module docstring)."""

    def __init__(
        self, lease_file: Path, wait_s: float = LEASE_WAIT_S, poll_s: float = LEASE_POLL_S
    ) -> None:
        self.lease_file = Path(lease_file)
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._read = _MISSING

    def address_of(self, mac: str) -> str | None:
        """The IPv4 address leased to the canonical MAC, or None (after up to `wait_s` when
        the file is being rewritten)."""
        started = time.monotonic()
        current = self._current()
        waited = False
        while (
            mac not in current.leases
            and current.changing(time.time_ns(), self.wait_s)
            and time.monotonic() < started + self.wait_s
        ):
            time.sleep(self.poll_s)
            current, waited = self._current(), True
        address = current.leases.get(mac)
        if waited:
            log.info(
                "lease of %s %s after %.2f s of lease file rewrites",
                mac,
                f"read as {address}" if address else "still missing",
                time.monotonic() - started,
            )
        return address

    def _current(self) -> _Read:
        try:
            stamp = _stamp(self.lease_file.stat())
        except FileNotFoundError:
            self._read = _MISSING
            return _MISSING
        if stamp != self._read.stamp:
            self._read = self._load()
        return self._read

    def _load(self) -> _Read:
        try:
            with self.lease_file.open("rb") as handle:
                before = _stamp(os.fstat(handle.fileno()))
                data = handle.read()
                after = _stamp(os.fstat(handle.fileno()))
        except FileNotFoundError:
            return _MISSING
        whole = before == after and len(data) == after[2] and data[-1:] in (b"", b"\n")
        leases = parse_lease_text(data.decode(errors="replace"))
        return _Read(after if whole else None, after[1], leases)


LeaseAction = Literal["add", "old", "del"]


@dataclass(frozen=True)
class Lease:
    """One DHCPv4 lease as dnsmasq keeps it; `hostname` and `client_id` are `*` when none."""

    mac: str
    ip: str
    expires: int
    hostname: str = "*"
    client_id: str = "*"

    def lease_line(self) -> str:
        """The lease as a line of dnsmasq's lease file."""
        return f"{self.expires} {self.mac} {self.ip} {self.hostname} {self.client_id}"


@dataclass(frozen=True)
class LeaseChange:
    action: LeaseAction
    lease: Lease


def parse_change(line: str) -> LeaseChange | None:
    """A line the lease script wrote (`ACTION MAC IP EXPIRES HOSTNAME CLIENT-ID`), or None for
    what is not a DHCPv4 lease of an Ethernet MAC (DHCPv6, tftp, a torn line)."""
    fields = line.split()
    if len(fields) != 6 or fields[0] not in ("add", "old", "del"):
        return None
    action, raw_mac, ip, expires, hostname, client_id = fields
    try:
        mac = canonical_mac(raw_mac)
        address = ipaddress.IPv4Address(ip)
    except (BadRequest, ValueError):
        return None
    if not expires.isdigit():
        return None
    lease = Lease(mac, str(address), int(expires), hostname or "*", client_id or "*")
    return LeaseChange(action, lease)  # type: ignore[arg-type]


def lease_file_text(leases: list[Lease], now: float) -> str:
    """dnsmasq's lease file holding the unexpired `leases` (0: an infinite lease)."""
    kept = [lease for lease in leases if lease.expires == 0 or lease.expires > now]
    return "".join(lease.lease_line() + "\n" for lease in sorted(kept, key=lambda x: x.mac))
