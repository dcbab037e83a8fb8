"""The guests' nwfilters (virt-xml-validate and the real libvirt run them in tests/peers and
tests/e2e): a master's API port is the one thing the tenant's ingress address reaches, a
worker takes nothing of it, and each domain names its role's filter with its tenant's
addresses."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from mayu_py.agent.desired import network_of
from mayu_py.agent.libvirt_xml import (
    FILTER_NAME,
    MASTER_FILTER,
    DomainFiles,
    domain_xml,
    nwfilter_xml,
)
from mayu_py.tenants import ImageInfo, parse_tenant, tenant_nodes
from tests.support.tenants import acme


def _rules(text: str) -> list[tuple[str, str, str, dict[str, str]]]:
    root = ET.fromstring(text)
    return [
        (r.get("action", ""), r.get("direction", ""), r.get("priority", ""), dict(r[0].attrib))
        for r in root.iterfind("rule")
    ]


def test_only_a_master_takes_its_api_port_from_the_ingress_address() -> None:
    worker, master = _rules(nwfilter_xml()), _rules(nwfilter_xml(api=True))
    api_in = (
        "accept",
        "in",
        "60",
        {"srcipaddr": "$INGRESS", "protocol": "tcp", "dstportstart": "6443"},
    )
    api_out = ("accept", "out", "60",
               {"dstipaddr": "$INGRESS", "protocol": "tcp", "srcportstart": "6443"})  # fmt: skip
    assert master[:2] == [api_in, api_out]
    assert master[2:] == worker
    assert ("drop", "in", "70", {"srcipaddr": "$INGRESS"}) in worker
    assert ("drop", "out", "70", {"dstipaddr": "$INGRESS"}) in worker
    assert ("drop", "in", "90", {"srcipaddr": "$GATEWAY"}) in worker  # but DHCP (80)
    assert worker[-2:] == [("drop", "in", "200", {}), ("drop", "out", "200", {})]


def test_each_domain_names_its_role_s_filter_and_its_tenant_s_addresses() -> None:
    nodes = tenant_nodes(parse_tenant(acme(), {"lab": ImageInfo("lab")}, []))
    files = DomainFiles(*(Path(f"/{n}") for n in ("k", "i")), "console=ttyS0",
                        *(Path(f"/{n}") for n in ("o", "ign", "log")))  # fmt: skip
    for node in nodes:
        ref = ET.fromstring(domain_xml(node, network_of(node, "abcdef"), files, "qemu", "h1"))
        filterref = ref.find("devices/interface/filterref")
        assert filterref is not None
        params = {p.get("name"): p.get("value") for p in filterref.iterfind("parameter")}
        assert filterref.get("filter") == (MASTER_FILTER if node.role == "master" else FILTER_NAME)
        assert params == {"OWN_NET": "10.100.0.0", "OWN_MASK": "24",
                          "GATEWAY": "10.100.0.1", "INGRESS": "10.100.0.2"}  # fmt: skip
