"""`--vms libvirt`: the lab machine's domain XML, and the ownership that lets `mayu lab down`
remove exactly the lab's domains: the agent never sees them as its own, the lab never
touches the agent's (libvirt's in-process mock driver test:///default)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mayu_py.config import load_settings
from mayu_py.lab import topology as topo
from mayu_py.lab.domains import LAB_MACHINES, domain_xml
from mayu_py.lab.site import INSTALL_DISK, serve_config
from mayu_py.lab.tenants import LAB_TENANTS
from mayu_py.lab.vm import OVMF_CODE, OVMF_VARS
from mayu_py.virt.cleanup import remove_owned
from mayu_py.virt.host import LibvirtHost
from mayu_py.virt.ownership import LAB_NS, MAYU, NS, DomainMeta, mark_domain, parse_domain_meta

M = topo.LabMachine(2)


def _xml(accel: str = "tcg", firmware: str = "bios") -> str:
    disk = Path("/var/lib/x/machines/lab2.qcow2")
    return domain_xml(M, accel, disk, Path("/var/log/c.log"), firmware)


def test_the_domain_boots_the_network_then_its_disk_on_the_host_bridge() -> None:
    root = ET.fromstring(_xml())
    assert root.get("type") == "qemu"  # TCG
    assert root.findtext("name") == "mayu-lab-lab2"
    assert root.findtext("uuid") == M.uuid  # the SMBIOS uuid iPXE sends
    assert root.findtext("sysinfo/system/entry[@name='serial']") == M.serial
    assert [b.get("dev") for b in root.findall("os/boot")] == ["network", "hd"]
    assert root.find("os/bios").get("useserial") == "yes"
    nic = root.find("devices/interface")
    assert nic.get("type") == "bridge"
    assert nic.find("source").get("bridge") == topo.ROOT_BRIDGE
    assert nic.find("mac").get("address") == M.mac
    assert nic.find("model").get("type") == "virtio-non-transitional"
    assert root.find("devices/disk/source").get("file").endswith("lab2.qcow2")
    assert root.findtext("on_reboot") == "restart"
    assert ET.fromstring(_xml("kvm")).get("type") == "kvm"
    assert root.find("os/loader") is None and root.find("sysinfo[@type='fwcfg']") is None


def test_a_uefi_domain_has_ovmf_its_own_variables_and_no_firmware_network_boot() -> None:
    root = ET.fromstring(_xml(firmware="uefi"))
    assert root.find("os/type").get("machine") == "q35"
    loader = root.find("os/loader")
    assert loader.text == str(OVMF_CODE) and loader.get("type") == "pflash"
    nvram = root.find("os/nvram")
    assert nvram.text == "/var/lib/x/machines/lab2.OVMF_VARS.fd"
    assert nvram.get("template") == str(OVMF_VARS)
    assert [b.get("dev") for b in root.findall("os/boot")] == ["network", "hd"]
    assert root.find("os/bios") is None  # SeaBIOS only
    knobs = {e.get("name"): e.text for e in root.findall("sysinfo[@type='fwcfg']/entry")}
    assert knobs == {
        f"opt/org.tianocore/{k}": "no"
        for k in ("IPv4PXESupport", "IPv6PXESupport", "IPv4Support", "IPv6Support")
    }
    assert root.find("devices/interface/rom") is None  # the NIC's iPXE ROM boots the network


def test_the_lab_mark_is_in_its_own_namespace() -> None:
    root = ET.fromstring(_xml())
    element = root.find(f"metadata/{{{LAB_NS}}}instance")
    assert element is not None and root.find(f"metadata/{{{NS}}}instance") is None
    meta = parse_domain_meta(ET.tostring(element, encoding="unicode"))
    assert meta is not None and LAB_MACHINES.owns_domain(meta)
    assert meta.tenant == topo.LAB_DOMAIN_OWNER and meta.node == "lab2"


def _test_domain(name: str, ns: str | None, tenant: str = topo.LAB_DOMAIN_OWNER) -> str:
    root = ET.Element("domain", type="test")
    ET.SubElement(root, "name").text = name
    if ns is not None:
        mark_domain(root, DomainMeta(tenant, name, "machine", "", 0), ns)
    ET.SubElement(root, "memory", unit="MiB").text = "64"
    ET.SubElement(ET.SubElement(root, "os"), "type").text = "hvm"
    return ET.tostring(root, encoding="unicode")


@pytest.fixture
def host() -> Iterator[LibvirtHost]:
    host = LibvirtHost("test:///default")
    for name, ns, tenant in (
        ("mayu-lab-lab1", LAB_NS, topo.LAB_DOMAIN_OWNER),
        ("mayu-lab-lab9", None, ""),  # our prefix, no mark: foreign
        ("mayu-lab-other", LAB_NS, "someone-else"),
        ("demo-1-master-0", NS, "demo-1"),
    ):
        host.define_domain(_test_domain(name, ns, tenant))
        host.start_domain(name)
    yield host
    host.close()


def test_lab_machines_are_removed_and_nothing_else(host: LibvirtHost) -> None:
    assert remove_owned(host, LAB_MACHINES, "lab machine ") == [
        "removed lab machine VM mayu-lab-lab1"
    ]
    names = {d.name for d in host.list_domains()}
    assert names == {"test", "mayu-lab-lab9", "mayu-lab-other", "demo-1-master-0"}
    assert remove_owned(host, LAB_MACHINES) == []


def test_the_agent_and_the_tenant_cleanup_never_see_lab_machines(host: LibvirtHost) -> None:
    agent_view = {d.name: d.meta for d in host.list_domains()}
    assert agent_view["mayu-lab-lab1"] is None  # foreign to the agent
    remove_owned(host, MAYU)
    remove_owned(host, LAB_TENANTS)
    assert "mayu-lab-lab1" in {d.name for d in host.list_domains()}


def test_the_libvirt_lab_serves_disk_install_profiles(tmp_path: Path) -> None:
    config = serve_config([topo.LabMachine(1)], "full", tmp_path, None, disk_install=True)
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path, environ={})
    for role in ("controller", "worker"):
        install = settings.profiles[role].install
        assert install is not None and install.tool == "lab" and install.disk == INSTALL_DISK
        assert "mayu.after=poweroff" not in settings.profiles[role].args
    plain = serve_config([topo.LabMachine(1)], "full", tmp_path, None)
    assert "profiles" not in plain
