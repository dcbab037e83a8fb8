"""DHCP/proxyDHCP and TFTP for network boot: dnsmasq configuration, supervision, leases.

Layer: imports only model, config, errors and command.
"""

from __future__ import annotations

from mayu_py.dhcp.addresses import AddressProvider, live_addresses, live_provider
from mayu_py.dhcp.conf import render_dnsmasq_conf
from mayu_py.dhcp.leases import LeaseBook, read_leases
from mayu_py.dhcp.plan import DhcpPlan, resolve_dhcp, validate_dhcp
from mayu_py.dhcp.supervisor import DnsmasqSupervisor
from mayu_py.dhcp.tftp import IPXE_BINARIES, prepare_tftp_root

__all__ = [
    "IPXE_BINARIES",
    "AddressProvider",
    "DhcpPlan",
    "DnsmasqSupervisor",
    "LeaseBook",
    "live_addresses",
    "live_provider",
    "prepare_tftp_root",
    "read_leases",
    "render_dnsmasq_conf",
    "resolve_dhcp",
    "validate_dhcp",
]
