"""The lab's names and addresses, in one place (RECIPES.md section 8)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from mayu_py.model import default_hostname

NAMESPACE = "mayu-lab"
BRIDGE = "mayu-br0"
SERVER_IP = "10.77.0.1"
PREFIX_LEN = 24
SUBNET = "10.77.0.0/24"
SERVER_IPV6 = "fd77::1/64"
PORT = 8080
TLS_PORT = 8443  # the HTTPS listener: secret configs, report credentials (inside the netns)
RANGE_START = "10.77.0.100"
RANGE_END = "10.77.0.199"
MAX_MACHINES = 64
SERVER_URL = f"http://{SERVER_IP}:{PORT}"
SERVER_TLS_URL = f"https://{SERVER_IP}:{TLS_PORT}"

# `--dhcp proxy`: the site's own DHCP server (a plain dnsmasq) in a second namespace, joined
# to the lab bridge by a veth pair; our dnsmasq then only adds boot information (proxyDHCP).
SITE_NAMESPACE = "mayu-lab-site"
SITE_IP = "10.77.0.2"
SITE_IPV6 = "fd77::2/64"  # the site server sends the router advertisements iPXE waits for
SITE_VETH = "mayu-site0"  # the site end, inside SITE_NAMESPACE
SITE_VETH_PEER = "mayu-site-br"  # the bridge end, inside NAMESPACE
DHCP_MODES = ("full", "proxy")

# Level 2: the lab's agent and its demo tenants. Tenant subnets exist only on the isolated
# bridges the agent's libvirt networks create (no <forward>); the lab never sends to them.
AGENT_HOST = "lab-host"
TENANT_PREFIX = "demo"
MAX_TENANTS = 16
TENANT_VNI_BASE = 2200


MAC_PREFIX = "52:54:00:77:00:"


@dataclass(frozen=True)
class LabMachine:
    """One lab VM's fixed identity: MAC, SMBIOS uuid and serial, reserved IP, tap device."""

    index: int

    @property
    def mac(self) -> str:
        return f"{MAC_PREFIX}{self.index:02x}"

    @property
    def uuid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mayu-lab/machine/{self.index}"))

    @property
    def serial(self) -> str:
        return f"MAYULAB{self.index:04d}"

    @property
    def ip(self) -> str:
        """A DHCP reservation below the dynamic range, so each VM keeps its address."""
        return f"10.77.0.{10 + self.index}"

    @property
    def tap(self) -> str:
        return f"mayu-tap{self.index}"

    @property
    def hostname(self) -> str:
        return default_hostname(self.mac)

    @property
    def name(self) -> str:
        return f"lab{self.index}"


def is_lab_mac(mac: str) -> bool:
    """A MAC the lab gives its machines (their inventory records are the lab's)."""
    return mac.lower().startswith(MAC_PREFIX)


def lab_machines(count: int) -> list[LabMachine]:
    if not 1 <= count <= MAX_MACHINES:
        raise ValueError(f"--machines must be between 1 and {MAX_MACHINES}")
    return [LabMachine(i) for i in range(1, count + 1)]


@dataclass(frozen=True)
class LabTenant:
    """One demo tenant's fixed name, subnet and VXLAN id."""

    index: int

    @property
    def name(self) -> str:
        return f"{TENANT_PREFIX}-{self.index}"

    @property
    def cidr(self) -> str:
        return f"10.220.{self.index}.0/24"

    @property
    def vni(self) -> int:
        return TENANT_VNI_BASE + self.index


def lab_tenants(count: int) -> list[LabTenant]:
    if not 0 <= count <= MAX_TENANTS:
        raise ValueError(f"--tenants must be between 0 and {MAX_TENANTS}")
    return [LabTenant(i) for i in range(1, count + 1)]


def is_lab_tenant(name: str) -> bool:
    """A tenant name of the lab's (demo-N)."""
    prefix, _, index = name.partition("-")
    return prefix == TENANT_PREFIX and index.isdigit()
