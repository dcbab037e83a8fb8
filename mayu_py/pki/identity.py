"""Who certificates are for: a node's identity and the cluster facts that shape SANs.

Both are validated at construction, because the node name becomes a directory name and a
certificate subject: a bad name is refused here (BadRequest), not discovered on disk.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from mayu_py.errors import BadRequest

# A lower-case DNS-1123 subdomain: what Kubernetes accepts as a node name.
_DNS_NAME = re.compile(
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)
ROLES = ("controller", "worker")


def check_dns_name(value: str, what: str) -> str:
    """Return value if it is a lower-case DNS subdomain of at most 253 characters."""
    if len(value) > 253 or not _DNS_NAME.match(value):
        raise BadRequest(f"{what} must be a lower-case DNS name", {what: value[:64]})
    return value


def check_ip(value: str, what: str) -> str:
    """Return the canonical text of an IPv4/IPv6 address."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise BadRequest(f"{what} is not an IP address", {what: str(value)[:64]}) from exc


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def endpoint_host(url: str) -> str:
    """The host part of an https URL (brackets of an IPv6 literal removed)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise BadRequest("api_endpoint must be an https:// URL with a host", {"api_endpoint": url})
    return parts.hostname


@dataclass(frozen=True)
class NodeIdentity:
    """A node: its hostname (the Kubernetes node name), role, and addresses."""

    name: str
    role: Literal["controller", "worker"]
    ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_dns_name(self.name, "node name")
        if self.role not in ROLES:
            raise BadRequest("node role must be controller or worker", {"role": self.role})
        for ip in self.ips:
            check_ip(ip, "node ip")


@dataclass(frozen=True)
class ClusterFacts:
    """What a cluster's certificates and kubeconfigs must name."""

    name: str
    domain: str
    service_ip: str
    api_endpoint: str
    etcd_members: tuple[tuple[str, str], ...] = ()
    external_names: tuple[str, ...] = ()  # names clients outside reach the API by (ingress)

    def __post_init__(self) -> None:
        check_dns_name(self.domain, "cluster domain")
        check_ip(self.service_ip, "service_ip")
        endpoint_host(self.api_endpoint)
        for name in self.external_names:
            check_dns_name(name, "external API name")
