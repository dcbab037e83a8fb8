"""Which libvirt objects are mayu's, and of which host (agents sharing one libvirtd)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mayu_py.virt.ownership import (
    NS,
    DomainMeta,
    HostScope,
    NetworkFacts,
    host_tag,
    mark_domain,
    network_name,
    overlay_bridge,
    parse_domain_meta,
)


def test_domain_meta_names_its_host_and_network() -> None:
    meta = DomainMeta("acme", "acme-worker-0", "worker", "h", 3, "/d", "h1", "mayu-tenant-acme")
    root = ET.Element("domain")
    mark_domain(root, meta)
    element = root.find(f"metadata/{{{NS}}}instance")
    assert element is not None
    assert parse_domain_meta(ET.tostring(element, "unicode")) == meta
    scope = HostScope("h1")
    assert scope.domain(meta) and not HostScope("h2").domain(meta)
    assert scope.domain(DomainMeta("acme", "n", "worker", "h", 1))  # names no host: legacy
    assert HostScope().domain(meta)  # one agent per libvirtd: every host's


def test_overlay_networks_carry_their_host_tag() -> None:
    tag = host_tag("h1")
    assert len(tag) == 6 and tag != host_tag("h2")
    assert len(overlay_bridge(tag, 0xFFFFFF)) <= 15  # the kernel's limit for a bridge name
    mine = NetworkFacts(network_name("acme", tag), overlay_bridge(tag, 100), None, ())
    theirs = NetworkFacts(network_name("acme", host_tag("h2")), overlay_bridge("abcdef", 100),
                          None, ())  # fmt: skip
    isolated = NetworkFacts(network_name("acme"), "mayu-t100", "10.100.0.1", ())
    assert all(f.owned and f.tenant == "acme" for f in (mine, theirs, isolated))
    assert (mine.host_tag, isolated.host_tag) == (tag, "")
    scope = HostScope("h1")
    assert scope.network(mine) and scope.network(isolated) and not scope.network(theirs)
    assert not NetworkFacts(network_name("acme", tag), "virbr0", None, ()).owned
