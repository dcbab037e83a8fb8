"""dnsmasq's lease file, read into canonical MAC -> IPv4 address."""

from __future__ import annotations

import re
from pathlib import Path

_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


def canonical_mac(value: str) -> str:
    """`52-54-00-AA-BB-CC`, `525400aabbcc` or `52:54:00:aa:bb:cc` -> `52:54:00:aa:bb:cc`.

    Raises ValueError for anything that is not a 48-bit MAC address.
    """
    text = value.strip().lower()
    if not _MAC_RE.match(text):
        raise ValueError(f"not a MAC address: {value!r}")
    digits = re.sub(r"[:-]", "", text)
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


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
        except ValueError:
            continue
    return leases
