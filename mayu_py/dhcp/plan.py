"""Check a DhcpConfig against the live interfaces and resolve it into a complete DhcpPlan.

Every problem is a ConfigError with one line naming the `dhcp.` field and what to do.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mayu_py.config import DhcpConfig
from mayu_py.dhcp.addresses import AddressProvider, has_routable_ipv6, live_provider
from mayu_py.errors import BadRequest, ConfigError
from mayu_py.model import canonical_mac

_LEASE_TIME_RE = re.compile(r"^(infinite|\d+[smhdw]?)$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


@dataclass(frozen=True)
class DhcpPlan:
    """A validated DHCP setup with every address filled in."""

    mode: str
    interface: str
    server_ip: ipaddress.IPv4Address
    network: ipaddress.IPv4Network
    range_start: ipaddress.IPv4Address | None
    range_end: ipaddress.IPv4Address | None
    lease_time: str
    reservations: tuple[tuple[str, ipaddress.IPv4Address], ...]
    ipv6: bool


def _ip(field: str, value: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(f"dhcp.{field}: {value!r} is not an IPv4 address") from None


def resolve_dhcp(cfg: DhcpConfig, *, addresses: AddressProvider | None = None) -> DhcpPlan:
    """Validate `cfg` against the interface addresses and fill in what it leaves out.

    server_ip defaults to the interface's first IPv4 address, subnet to that address's network.
    """
    if cfg.mode == "off":
        raise ConfigError("dhcp.mode is off: there is no DHCP configuration to use")
    if not cfg.interface:
        raise ConfigError(f"dhcp.interface is required for dhcp.mode {cfg.mode}")
    if not _IFNAME_RE.match(cfg.interface):
        raise ConfigError(f"dhcp.interface: {cfg.interface!r} is not a valid interface name")
    found = (addresses or live_provider())()
    if cfg.interface not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ConfigError(
            f"dhcp.interface: no interface {cfg.interface!r} on this host (have: {known})"
        )
    v4 = [a for a in found[cfg.interface] if isinstance(a, ipaddress.IPv4Interface)]
    if not v4:
        raise ConfigError(f"dhcp.interface: {cfg.interface} has no IPv4 address; add one first")
    if cfg.server_ip:
        server_ip = _ip("server_ip", cfg.server_ip)
        matching = [a for a in v4 if a.ip == server_ip]
        if not matching:
            have = ", ".join(str(a) for a in v4)
            raise ConfigError(
                f"dhcp.server_ip: {server_ip} is not an address of {cfg.interface} (has {have})"
            )
        own = matching[0]
    else:
        own = v4[0]
        server_ip = own.ip
    network = own.network
    if cfg.subnet:
        try:
            subnet = ipaddress.IPv4Network(cfg.subnet, strict=True)
        except ValueError as exc:
            raise ConfigError(
                f"dhcp.subnet: {cfg.subnet!r} is not an IPv4 network: {exc}"
            ) from None
        if subnet != network:
            raise ConfigError(
                f"dhcp.subnet: {subnet} is not the subnet of {cfg.interface} ({network})"
            )
    if not _LEASE_TIME_RE.match(cfg.lease_time):
        raise ConfigError(
            f"dhcp.lease_time: {cfg.lease_time!r} is not a duration like 1h, 30m, 3600 or infinite"
        )
    range_start = range_end = None
    if cfg.mode == "full":
        range_start, range_end = _check_range(cfg, network, server_ip)
    reservations = _check_reservations(cfg, network, server_ip)
    return DhcpPlan(
        mode=cfg.mode,
        interface=cfg.interface,
        server_ip=server_ip,
        network=network,
        range_start=range_start,
        range_end=range_end,
        lease_time=cfg.lease_time,
        reservations=reservations,
        ipv6=has_routable_ipv6(found[cfg.interface]),
    )


def _check_range(
    cfg: DhcpConfig, network: ipaddress.IPv4Network, server_ip: ipaddress.IPv4Address
) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    if not cfg.range_start or not cfg.range_end:
        raise ConfigError("dhcp.range_start and dhcp.range_end are required for dhcp.mode full")
    start = _ip("range_start", cfg.range_start)
    end = _ip("range_end", cfg.range_end)
    hosts = (network.network_address, network.broadcast_address)
    for field, value in (("range_start", start), ("range_end", end)):
        if value not in network or value in hosts:
            raise ConfigError(
                f"dhcp.{field}: {value} is outside the usable addresses of {network} "
                f"(subnet of {cfg.interface})"
            )
    if start > end:
        raise ConfigError(f"dhcp.range_start {start} is after dhcp.range_end {end}")
    if start <= server_ip <= end:
        raise ConfigError(
            f"dhcp.range_start..range_end ({start}-{end}) contains dhcp.server_ip {server_ip}"
        )
    return start, end


def _check_reservations(
    cfg: DhcpConfig, network: ipaddress.IPv4Network, server_ip: ipaddress.IPv4Address
) -> tuple[tuple[str, ipaddress.IPv4Address], ...]:
    seen_ips: dict[ipaddress.IPv4Address, str] = {}
    result: dict[str, ipaddress.IPv4Address] = {}
    for raw_mac, raw_ip in cfg.reservations.items():
        try:
            mac = canonical_mac(raw_mac)
        except BadRequest:
            raise ConfigError(f"dhcp.reservations: {raw_mac!r} is not a MAC address") from None
        if mac in result:
            raise ConfigError(f"dhcp.reservations: MAC {mac} is listed twice")
        ip = _ip(f"reservations.{raw_mac}", raw_ip)
        if ip not in network or ip in (network.network_address, network.broadcast_address):
            raise ConfigError(
                f"dhcp.reservations.{raw_mac}: {ip} is outside the usable addresses of {network}"
            )
        if ip == server_ip:
            raise ConfigError(f"dhcp.reservations.{raw_mac}: {ip} is the server's own address")
        if ip in seen_ips:
            raise ConfigError(
                f"dhcp.reservations.{raw_mac}: {ip} is already reserved for {seen_ips[ip]}"
            )
        seen_ips[ip] = mac
        result[mac] = ip
    return tuple(sorted(result.items()))


def validate_dhcp(cfg: DhcpConfig, *, addresses: AddressProvider | None = None) -> None:
    """Raise ConfigError (one line) unless `cfg` fits this host's interfaces; mode off passes."""
    if cfg.mode == "off":
        return
    resolve_dhcp(cfg, addresses=addresses)
