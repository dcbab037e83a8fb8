"""What marks a libvirt object as mayu's, and who may delete which of them.

A domain is mayu's when it carries our metadata element (namespace NS); a network when its
name has NETWORK_PREFIX and its bridge is BRIDGE_PREFIX<vni> (an isolated network libvirt runs)
or a host's overlay bridge (`overlay_bridge`). Anything else is foreign and never touched.

Several agents may share one libvirtd (two "hosts" on one machine): a domain's metadata names
the host whose agent defined it (`DomainMeta.host`), an overlay network's name ends in
`.<host tag>` (`network_name`), and an agent takes for its own only objects of its host or
ones that name no host (defined before hosts were named: `HostScope`).

An `Ownership` narrows mayu's objects down for one caller's deletions: the agent owns every
mayu object, the lab only those of its demo tenants; both delete through the same
`LibvirtHost` calls. The lab's own machines (level 1) carry the same element in another
namespace (LAB_NS), so the agent never sees them as its own; the lab's `Ownership` for them
reads that namespace.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

NS = "https://mayu.io/xmlns/agent/1"
NS_PREFIX = "mayu"
LAB_NS = "https://mayu.io/xmlns/lab/1"  # the lab's machines: never the agent's
LAB_NS_PREFIX = "mayulab"
NETWORK_PREFIX = "mayu-tenant-"
BRIDGE_PREFIX = "mayu-t"
OVERLAY_BRIDGE = re.compile(r"^mo[0-9a-f]{6}b[0-9a-f]+$")
HOST_TAG_SEP = "."  # never in a tenant name (a DNS label)
ET.register_namespace(NS_PREFIX, NS)
ET.register_namespace(LAB_NS_PREFIX, LAB_NS)


@dataclass(frozen=True)
class DomainMeta:
    """What our metadata element records about a domain."""

    tenant: str
    node: str
    role: str
    spec_hash: str
    generation: int
    files_dir: str = ""  # where the node's overlay, Ignition file and serial log are
    host: str = ""  # the host whose agent defined it ("": defined before hosts were named)
    network: str = ""  # the libvirt network its interface is on ("": not recorded)


def host_tag(host: str) -> str:
    """6 hex digits naming a host in names with little room (bridges: 15 characters)."""
    return hashlib.sha256(host.encode()).hexdigest()[:6]


def overlay_bridge(tag: str, vni: int) -> str:
    """The tenant's overlay bridge of the host tagged `tag` (where its VMs attach)."""
    return f"mo{tag}b{vni:x}"


def network_name(tenant: str, tag: str = "") -> str:
    """A tenant's libvirt network on a host: `.<tag>` when it is on the host's overlay."""
    return NETWORK_PREFIX + tenant + (HOST_TAG_SEP + tag if tag else "")


def mark_domain(domain: ET.Element, meta: DomainMeta, ns: str = NS) -> None:
    """Add our metadata element (in namespace `ns`) to a <domain> document: the mark of
    ownership."""
    ET.SubElement(
        ET.SubElement(domain, "metadata"),
        f"{{{ns}}}instance",
        tenant=meta.tenant,
        node=meta.node,
        role=meta.role,
        spec_hash=meta.spec_hash,
        generation=str(meta.generation),
        files_dir=meta.files_dir,
        host=meta.host,
        network=meta.network,
    )


def parse_domain_meta(element_xml: str) -> DomainMeta | None:
    """Our metadata element as libvirt returns it; None when it is not ours or malformed."""
    try:
        el = ET.fromstring(element_xml)
        return DomainMeta(
            tenant=el.attrib["tenant"],
            node=el.attrib["node"],
            role=el.attrib["role"],
            spec_hash=el.attrib["spec_hash"],
            generation=int(el.attrib["generation"]),
            files_dir=el.attrib.get("files_dir", ""),
            host=el.attrib.get("host", ""),
            network=el.attrib.get("network", ""),
        )
    except (ET.ParseError, KeyError, ValueError):
        return None


@dataclass(frozen=True)
class NetworkFacts:
    """What a network's XML says: name, bridge, gateway and DHCP reservations."""

    name: str
    bridge: str
    gateway: str | None
    hosts: tuple[tuple[str, str, str], ...]

    @property
    def owned(self) -> bool:
        return self.name.startswith(NETWORK_PREFIX) and (
            self.bridge.startswith(BRIDGE_PREFIX) or bool(OVERLAY_BRIDGE.match(self.bridge))
        )

    @property
    def tenant(self) -> str:
        return tenant_of_network(self.name)

    @property
    def host_tag(self) -> str:
        """The tag of the host whose overlay it is on; "" for an isolated network."""
        return self.name.partition(HOST_TAG_SEP)[2]


def tenant_of_network(name: str) -> str:
    return name.removeprefix(NETWORK_PREFIX).partition(HOST_TAG_SEP)[0]


def parse_network(xml_text: str) -> NetworkFacts:
    root = ET.fromstring(xml_text)
    bridge = root.find("bridge")
    ip = root.find("ip")  # the gateway (an earlier version's second one: the ingress address)
    hosts = tuple(
        sorted(
            (h.get("mac", "").lower(), h.get("ip", ""), h.get("name", ""))
            for h in root.iterfind("ip/dhcp/host")
        )
    )
    return NetworkFacts(
        name=root.findtext("name", ""),
        bridge=bridge.get("name", "") if bridge is not None else "",
        gateway=ip.get("address") if ip is not None else None,
        hosts=hosts,
    )


def _any_tenant(_tenant: str) -> bool:
    return True


@dataclass(frozen=True)
class Ownership:
    """Which mayu objects a caller may delete: those whose tenant passes `tenant`."""

    name: str = "managed by mayu"  # for messages: "domain X is not <name>"
    tenant: Callable[[str], bool] = _any_tenant
    ns: str = NS  # the metadata namespace that marks this caller's domains

    def owns_domain(self, meta: DomainMeta | None) -> bool:
        return meta is not None and self.tenant(meta.tenant)

    def owns_network(self, facts: NetworkFacts) -> bool:
        return facts.owned and self.tenant(facts.tenant)


MAYU = Ownership()  # the agent's: every object mayu marked


@dataclass(frozen=True)
class HostScope:
    """Which of mayu's objects are one host's, when agents of several hosts share libvirtd:
    those naming this host (or its tag), and those naming none."""

    host: str = ""  # "": every host's (one agent per libvirtd)

    @property
    def tag(self) -> str:
        return host_tag(self.host) if self.host else ""

    def domain(self, meta: DomainMeta) -> bool:
        return not self.host or meta.host in ("", self.host)

    def network(self, facts: NetworkFacts) -> bool:
        return not self.host or facts.host_tag in ("", self.tag)


ANY_HOST = HostScope()  # one agent per libvirtd: every host's objects are its own
