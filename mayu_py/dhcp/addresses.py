"""Interface addresses of this host (or of a network namespace), read with `ip -j addr`.

Validation and rendering take an `AddressProvider` so unit tests can pass a fake one.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable

from mayu_py.command import run
from mayu_py.errors import ConfigError

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
InterfaceAddresses = dict[str, list[IPInterface]]
AddressProvider = Callable[[], InterfaceAddresses]


def parse_ip_addr_json(text: str) -> InterfaceAddresses:
    """Map interface name -> its addresses (with prefix) from `ip -j addr show` output."""
    result: InterfaceAddresses = {}
    for link in json.loads(text or "[]"):
        addrs: list[IPInterface] = []
        for info in link.get("addr_info", []):
            if info.get("family") not in ("inet", "inet6"):
                continue
            addrs.append(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}"))
        result[link["ifname"]] = addrs
    return result


def live_addresses(netns: str | None = None) -> InterfaceAddresses:
    """The live interface addresses, optionally inside network namespace `netns`."""
    argv = ["ip", "-j"] + (["-n", netns] if netns else []) + ["addr", "show"]
    proc = run(argv, timeout=10.0, check=False)
    if proc.returncode != 0:
        where = f" in netns {netns}" if netns else ""
        line = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"cannot list interface addresses{where}: {line}")
    return parse_ip_addr_json(proc.stdout)


def live_provider(netns: str | None = None) -> AddressProvider:
    """An AddressProvider reading the live addresses of `netns` (None: this namespace)."""
    return lambda: live_addresses(netns)


def has_routable_ipv6(addresses: list[IPInterface]) -> bool:
    """True when an interface has an IPv6 address other than link-local (e.g. fd77::1/64)."""
    return any(a.version == 6 and not a.ip.is_link_local for a in addresses)
