"""dnsmasq's lease file, read into canonical MAC -> IPv4 address."""

from __future__ import annotations

from pathlib import Path

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
