"""dnsmasq's leases: its lease file (read into canonical MAC -> IPv4 address, or written from
records kept elsewhere), and the lease changes its `dhcp-script` reports (docs/ha.md)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mayu_py.errors import BadRequest
from mayu_py.model import canonical_mac


def read_leases(lease_file: Path) -> dict[str, str]:
    """Current DHCPv4 leases: canonical MAC -> IP. A missing file means no leases yet.

    Lines are `EXPIRY MAC IP HOSTNAME CLIENT-ID`; the `duid` line and DHCPv6 leases (whose
    second field is an IAID, not a MAC) are skipped, as are lines that do not parse.
    """
    try:
        text = Path(lease_file).read_text()
    except FileNotFoundError:
        return {}
    leases: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0] == "duid" or ":" in fields[2]:
            continue
        try:
            leases[canonical_mac(fields[1])] = fields[2]
        except BadRequest:
            continue
    return leases


class LeaseBook:
    """The lease file, read again only when it changed (dnsmasq rewrites it on each lease)."""

    def __init__(self, lease_file: Path) -> None:
        self.lease_file = Path(lease_file)
        self._stamp: tuple[int, int] | None = None
        self._leases: dict[str, str] = {}

    def address_of(self, mac: str) -> str | None:
        """The IPv4 address leased to the canonical MAC, or None."""
        try:
            stat = self.lease_file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            return None
        if stamp != self._stamp:
            self._leases, self._stamp = read_leases(self.lease_file), stamp
        return self._leases.get(mac)


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
