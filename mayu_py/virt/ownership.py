"""What marks a libvirt object as mayu's, and who may delete which of them.

A domain is mayu's when it carries our metadata element (namespace NS); a network when its
name has NETWORK_PREFIX and its bridge BRIDGE_PREFIX. Anything else is foreign and never
touched. An `Ownership` narrows that down for one caller: the agent owns every mayu object,
the lab only those of its demo tenants; both delete through the same `LibvirtHost` calls.
The lab's own machines (level 1) carry the same element in another namespace (LAB_NS), so
the agent never sees them as its own; the lab's `Ownership` for them reads that namespace.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

NS = "https://mayu.io/xmlns/agent/1"
NS_PREFIX = "mayu"
LAB_NS = "https://mayu.io/xmlns/lab/1"  # the lab's machines: never the agent's
LAB_NS_PREFIX = "mayulab"
NETWORK_PREFIX = "mayu-tenant-"
BRIDGE_PREFIX = "mayu-t"
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
        return self.name.startswith(NETWORK_PREFIX) and self.bridge.startswith(BRIDGE_PREFIX)

    @property
    def tenant(self) -> str:
        return self.name.removeprefix(NETWORK_PREFIX)


def parse_network(xml_text: str) -> NetworkFacts:
    root = ET.fromstring(xml_text)
    bridge = root.find("bridge")
    ip = root.find("ip")
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
