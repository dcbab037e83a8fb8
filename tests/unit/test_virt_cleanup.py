"""The lab's libvirt cleanup goes through the agent's own deletions, narrowed by an Ownership:
against libvirt's in-process mock driver (test:///default), which ships a foreign domain
"test" and a foreign network "default" that must survive."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from mayu_py.errors import Conflict
from mayu_py.lab.tenants import LAB_TENANTS
from mayu_py.virt.cleanup import remove_owned
from mayu_py.virt.host import LibvirtHost
from mayu_py.virt.ownership import MAYU, DomainMeta, mark_domain


def _domain(name: str, tenant: str | None) -> str:
    root = ET.Element("domain", type="test")
    ET.SubElement(root, "name").text = name
    if tenant is not None:
        mark_domain(root, DomainMeta(tenant, name, "worker", "h", 1))
    ET.SubElement(root, "memory", unit="MiB").text = "64"
    ET.SubElement(ET.SubElement(root, "os"), "type").text = "hvm"
    return ET.tostring(root, encoding="unicode")


def _network(name: str, bridge: str, third: int) -> str:
    return (
        f"<network><name>{name}</name><bridge name='{bridge}'/>"
        f"<ip address='10.9.{third}.1' netmask='255.255.255.0'/></network>"
    )


@pytest.fixture
def host() -> Iterator[LibvirtHost]:
    host = LibvirtHost("test:///default")  # one connection: each open is a fresh state
    for name, tenant in (
        ("demo-1-master-0", "demo-1"),
        ("acme-master-0", "acme"),
        ("unmarked", None),
    ):
        host.define_domain(_domain(name, tenant))
        host.start_domain(name)
    for name, bridge, third in (
        ("mayu-tenant-demo-1", "mayu-t2201", 1),
        ("mayu-tenant-acme", "mayu-t100", 2),
        ("mayu-tenant-demo-2", "virbr9", 3),  # our name, not our bridge: not ours
    ):
        host.define_network(_network(name, bridge, third))
        host.start_network(name)
    yield host
    host.close()


def _names(host: LibvirtHost) -> tuple[set[str], set[str]]:
    return {d.name for d in host.list_domains()}, {n.facts.name for n in host.list_networks()}


def test_lab_cleanup_removes_only_the_lab_tenants_objects(host: LibvirtHost) -> None:
    done = remove_owned(host, LAB_TENANTS, "tenant ")
    assert done == [
        "removed tenant VM demo-1-master-0",
        "removed tenant network mayu-tenant-demo-1",
    ]
    domains, networks = _names(host)
    assert domains == {"test", "acme-master-0", "unmarked"}
    assert networks == {"default", "mayu-tenant-acme", "mayu-tenant-demo-2"}
    assert remove_owned(host, LAB_TENANTS) == []  # idempotent


def test_the_agents_ownership_covers_every_marked_object_and_nothing_foreign(
    host: LibvirtHost,
) -> None:
    remove_owned(host, MAYU)
    assert _names(host) == ({"test", "unmarked"}, {"default", "mayu-tenant-demo-2"})


def test_deleting_outside_ones_ownership_is_refused(host: LibvirtHost) -> None:
    with pytest.raises(Conflict, match="acme-master-0 is not a lab tenant's"):
        host.delete_domain("acme-master-0", LAB_TENANTS)
    with pytest.raises(Conflict, match="mayu-tenant-acme is not a lab tenant's"):
        host.delete_network("mayu-tenant-acme", LAB_TENANTS)
    with pytest.raises(Conflict, match="unmarked is not managed by mayu"):
        host.delete_domain("unmarked")
    assert "acme-master-0" in _names(host)[0] and "mayu-tenant-acme" in _names(host)[1]
    host.delete_domain("acme-master-0")  # the agent's (default) ownership covers it
    assert "acme-master-0" not in _names(host)[0]
