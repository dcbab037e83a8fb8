"""The Agent against the real qemu:///system: isolated network, TCG domains, crash recovery;
an ingress started or stopped leaves the network and its VMs alone (also a network an earlier
version defined with the ingress address in it); an earlier version's guest filter goes once no
domain names it.

Uses the lab image (mayu_py.images.lab) when it builds, else the Debian kernel with a trivial
busybox initramfs. VM files live under /var/tmp in 0711 directories: qemu runs as libvirt-qemu
and cannot enter pytest's 0700 tmp_path.
"""

from __future__ import annotations

import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from mayu_py.agent import plan as p
from mayu_py.agent.actual import observe
from mayu_py.agent.desired import networks_for
from mayu_py.agent.ingress import IngressController
from mayu_py.agent.libvirt_xml import OBSOLETE_FILTERS, network_xml
from mayu_py.agent.loop import Agent
from mayu_py.agent.probe import detect_domain_type
from mayu_py.agent.statedir import StateDir, log_name, node_files
from mayu_py.command import run
from mayu_py.errors import MayuError
from mayu_py.images.base import BaseImages, install_base_image
from mayu_py.tenants import ImageInfo, TenantNode, parse_tenant, tenant_nodes
from mayu_py.virt.host import LibvirtHost
from tests.conftest import free_port
from tests.support.crash import run_killed_after
from tests.support.leaks import assert_no_leaks, snapshot
from tests.support.libvirtd import URI, ensure_daemons
from tests.support.peers import require_peers
from tests.support.sources import StaticSource
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer
TENANT = "peer-" + uuid.uuid4().hex[:6]
CIDR, VNI = "10.231.0.0/24", 9231  # bridge mayu-t9231; nothing is sent to these addresses


def _trivial_initrd(work: Path) -> Path:
    root = work / "initramfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "init").write_text(
        "#!/bin/busybox sh\n/bin/busybox mkdir -p /proc\n/bin/busybox mount -t proc p /proc\n"
        "echo MAYU-READY ip=none\nwhile :; do /bin/busybox sleep 3600; done\n"
    )
    (root / "init").chmod(0o755)
    out = work / "trivial.cpio"
    files = run(["sh", "-c", f"cd {root} && find . | cpio -o -H newc -R 0:0 > {out}"])
    assert files.returncode == 0
    return out


def _base_image(work: Path, images_dir: Path) -> None:
    try:
        from mayu_py.images.lab import build_lab_image

        lab = build_lab_image(work / "lab")
        kernel, initrd, version = lab.kernel, lab.initrd, lab.version.replace("+", "-")
    except (ImportError, MayuError, OSError):
        kernels = sorted(Path("/boot").glob("vmlinuz-*"))
        require_peers(files=kernels[-1:] or (Path("/boot/vmlinuz-*"),))
        kernel, initrd, version = kernels[-1], _trivial_initrd(work), "trivial"
    install_base_image(
        images_dir, "lab", version, kernel, initrd,
        cmdline="console=ttyS0 mayu.after=stay", min_memory_mib=256,
    )  # fmt: skip


def _cleanup(host: LibvirtHost) -> None:
    for dom in host.list_domains():
        if dom.meta is not None and dom.meta.tenant.startswith("peer-"):
            host.delete_domain(dom.name)
    for net in host.list_networks():
        if net.facts.owned and net.facts.name.startswith("mayu-tenant-peer-"):
            host.delete_network(net.facts.name)


@pytest.fixture(scope="module")
def env():
    ensure_daemons()
    work = Path(f"/var/tmp/mayu-peer-{uuid.uuid4().hex[:8]}")
    work.mkdir(mode=0o711)
    work.chmod(0o711)
    host = LibvirtHost(URI)
    try:
        _base_image(work, work / "images")
        yield host, work
    finally:
        try:
            _cleanup(host)
        finally:
            host.close()
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_leaks(env) -> Iterator[None]:
    """Whatever a test makes, its agent removes: domains, networks, bridges, taps, nwfilter
    bindings, overlays and other state files, qemu and dnsmasq processes."""
    host, work = env
    states = [work / "state", work / "state-moved"]
    before = snapshot(host.connection(), files=states, markers=[str(work)])
    yield
    assert_no_leaks(before, snapshot(host.connection(), files=states, markers=[str(work)]))


def _nodes() -> list[TenantNode]:
    size = {"cpus": 1, "memory": "256Mi", "disk": "1Gi"}
    doc = {
        "apiVersion": "mayu.io/v1alpha1",
        "kind": "TenantCluster",
        "metadata": {"name": TENANT},
        "spec": {
            "kubernetesVersion": "1.37",
            "image": "lab",
            "network": {"cidr": CIDR, "vni": VNI},
            "masters": [size],
            "workers": [size],
        },
    }
    tenant = parse_tenant(doc, {"lab": ImageInfo("lab", 256)}, [])
    return tenant_nodes(tenant)


def _ours(host: LibvirtHost) -> dict[str, str]:
    return {
        d.name: d.uuid
        for d in host.list_domains()
        if d.meta is not None and d.meta.tenant == TENANT
    }


def _agent(
    host: LibvirtHost,
    work: Path,
    source: StaticSource,
    state: str = "state",
    ingress: IngressController | None = None,
) -> Agent:
    return Agent(
        "peer", host, source, StateDir(work / state), BaseImages(work / "images"), ingress=ingress
    )


def _wait_ready(log: Path) -> None:
    def ready() -> bool:
        return log.is_file() and b"MAYU-READY" in log.read_bytes()

    try:
        wait_for(f"MAYU-READY in {log}", ready, 120, every=1.0)
    except AssertionError:
        print(log.read_bytes()[-2000:] if log.is_file() else b"no log")
        raise


def test_probe_picks_tcg_here(env) -> None:
    host, work = env
    image = BaseImages(work / "images").get("lab")
    started = time.monotonic()
    kind = detect_domain_type(host, work / "accel.json", image.kernel, image.initrd, env={})
    print(f"\nKVM probe: {kind} in {time.monotonic() - started:.1f}s")
    assert kind == "qemu"  # RECIPES 1: KVM here triple-faults stock kernels
    assert detect_domain_type(host, work / "accel.json", env={}) == "qemu"  # cached
    assert detect_domain_type(host, work / "accel.json", env={"MAYU_ACCEL": "kvm"}) == "kvm"
    assert not host.is_active("mayu-kvm-probe")


def test_create_noop_delete_and_crash_recovery(env) -> None:
    host, work = env
    nodes = _nodes()
    source = StaticSource(nodes)
    state = StateDir(work / "state")

    result = _agent(host, work, source).run_once()
    assert result.errors == {}
    assert result.states == {n.name: "running" for n in nodes}
    assert _ours(host) == {n.name: n.uuid for n in nodes}
    net = observe(host, state).networks[f"mayu-tenant-{TENANT}"]
    assert net.active and net.bridge == f"mayu-t{VNI}"
    _wait_ready(state.log(nodes[0]))

    again = _agent(host, work, source).run_once()
    assert again.applied == []  # no redefine, no restart
    assert _ours(host) == {n.name: n.uuid for n in nodes}

    source.nodes = []
    gone = _agent(host, work, source).run_once()
    assert gone.errors == {}
    assert _ours(host) == {}
    assert f"mayu-tenant-{TENANT}" not in {n.facts.name for n in host.list_networks()}
    assert state.scan() == {}

    # kill -9 half-way: a first agent dies after half its plan, a new one must converge
    source.nodes = nodes
    actions = p.plan(nodes, networks_for(nodes), observe(host, state))
    half = len(actions) // 2
    assert run_killed_after(_agent(host, work, source), half) == actions[half - 1]
    converge = _agent(host, work, source).run_once()
    assert converge.errors == {}
    assert _ours(host) == {n.name: n.uuid for n in nodes}
    files = {f for f in state.scan()[TENANT] if not f.endswith(".log")}
    assert files == {f for n in nodes for f in node_files(n) - {log_name(n.name)}}
    assert _agent(host, work, source).run_once().applied == []

    source.nodes = []
    _agent(host, work, source).run_once()
    assert _ours(host) == {} and state.scan() == {}


def test_a_new_state_dir_replaces_domains_that_name_the_old_one(env) -> None:
    """An agent restarted with another --state-dir, the old one gone, its node shut off: it
    used to try to start the domain forever ("Unable to open file: <old dir>/...log")."""
    host, work = env
    node = _nodes()[0]
    source = StaticSource([node])
    old = StateDir(work / "state")
    assert _agent(host, work, source).run_once().errors == {}
    host.call("destroy", lambda c: c.lookupByName(node.name).destroy())
    shutil.rmtree(old.root)
    moved = StateDir(work / "state-moved")
    result = _agent(host, work, source, "state-moved").run_once()
    assert result.errors == {}, result.errors
    assert result.states == {node.name: "running"}
    assert _ours(host) == {node.name: node.uuid}  # the same domain, defined again
    xml = host.domain_xml(node.name)
    assert f"'{moved.log(node)}'" in xml and f"'{moved.overlay(node)}'" in xml
    _wait_ready(moved.log(node))
    assert _agent(host, work, source, "state-moved").run_once().applied == []
    source.nodes = []
    assert _agent(host, work, source, "state-moved").run_once().errors == {}
    assert _ours(host) == {} and moved.scan() == {}


BRIDGE, NETWORK = f"mayu-t{VNI}", f"mayu-tenant-{TENANT}"
GATEWAY, INGRESS = "10.231.0.1/24", "10.231.0.2/24"
LEGACY_FILTER = """<filter name='mayu-tenant' chain='ipv4' priority='-650'>
  <rule action='accept' direction='out' priority='100'>
    <ip dstipaddr='$OWN_NET' dstipmask='$OWN_MASK'/></rule>
  <rule action='drop' direction='out' priority='200'><ip/></rule>
</filter>"""  # as the version before mayu-tenant-node/-master defined it (abridged)


def _bridge(host: LibvirtHost) -> tuple[str, set[str], set[str]]:
    """The network's UUID (a new one: it was defined again), the ports on its bridge (the
    VMs' taps: attached) and the bridge's IPv4 addresses."""
    net_uuid = host.call("uuid", lambda c: c.networkLookupByName(NETWORK).UUIDString())
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=BRIDGE)[0]
        ports = {
            str(link.get("IFLA_IFNAME"))
            for link in ipr.get_links()
            if link.get("IFLA_MASTER") == index
        }
        addresses = {
            f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=2, index=index)
        }
    return net_uuid, ports, addresses


def _network_actions(applied: list[p.Action]) -> list[str]:
    return [a.describe() for a in applied if "Network" in type(a).__name__]


@pytest.fixture
def ingress(env) -> Iterator[IngressController]:
    """A real HAProxy the agent routes (it connects from the ingress address)."""
    _host, work = env
    controller = IngressController(work / "ingress", f"127.0.0.1:{free_port()}", "ing.test")
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def test_an_ingress_started_or_stopped_leaves_the_network_and_its_vms(env, ingress) -> None:
    """An agent restarted with an ingress holds the tenant's ingress address on the bridge,
    one restarted without drops it; neither defines the network again nor touches the VMs
    (their taps stay on the bridge). The same for a network an earlier version defined with
    the ingress address as second `<ip>`: left as it is, the address held or dropped."""
    host, work = env
    nodes = _nodes()[:1]  # one VM is enough (and saves seconds)
    source = StaticSource(nodes)
    assert _agent(host, work, source).run_once().errors == {}
    net_uuid, ports, addresses = _bridge(host)
    assert len(ports) == len(nodes) and addresses == {GATEWAY}
    with_ingress = _agent(host, work, source, ingress=ingress).run_once()
    assert with_ingress.errors == {} and with_ingress.applied == []
    assert _bridge(host) == (net_uuid, ports, {GATEWAY, INGRESS})
    assert f"source {INGRESS.split('/')[0]}" in ingress.haproxy.config_file.read_text()
    without = _agent(host, work, source).run_once()
    assert without.errors == {} and without.applied == []
    assert _bridge(host) == (net_uuid, ports, {GATEWAY})

    source.nodes = []
    assert _agent(host, work, source).run_once().errors == {}
    legacy = ET.fromstring(network_xml(networks_for(nodes)[0]))
    ET.SubElement(legacy, "ip", address=INGRESS.split("/")[0], netmask="255.255.255.0")
    host.define_network(ET.tostring(legacy, "unicode"))
    host.start_network(NETWORK)
    source.nodes = nodes
    adopted = _agent(host, work, source).run_once()
    assert adopted.errors == {} and _network_actions(adopted.applied) == []
    net_uuid, ports, addresses = _bridge(host)
    assert len(ports) == len(nodes) and addresses == {GATEWAY}  # no ingress here: dropped
    with_ingress = _agent(host, work, source, ingress=ingress).run_once()
    assert with_ingress.errors == {} and with_ingress.applied == []
    assert _bridge(host) == (net_uuid, ports, {GATEWAY, INGRESS})
    source.nodes = []
    assert _agent(host, work, source).run_once().errors == {}


def test_an_earlier_versions_filter_goes_once_no_domain_names_it(env) -> None:
    """A domain of an earlier version (here a foreign, shut-off one: every domain counts)
    keeps the old filter defined; once it is gone, the agent's next pass undefines it."""
    host, work = env
    (old,) = OBSOLETE_FILTERS
    if not host.has_nwfilter(old):
        host.define_nwfilter(LEGACY_FILTER)
    name = f"peer-old-{uuid.uuid4().hex[:6]}"
    domain = f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
      <interface type='network'><source network='{NETWORK}'/><filterref filter='{old}'>
        <parameter name='OWN_NET' value='10.231.0.0'/><parameter name='OWN_MASK' value='24'/>
      </filterref></interface></devices></domain>"""
    host.define_domain(domain)
    try:
        source = StaticSource([])
        assert _agent(host, work, source).run_once().errors == {}
        assert host.has_nwfilter(old)  # still named by a domain
        host.call("undefine", lambda c: c.lookupByName(name).undefine())
        result = _agent(host, work, source).run_once()
        assert [a.describe() for a in result.applied] == [f"DeleteFilter {old}"]
        assert host.has_nwfilter(old) is False
        assert _agent(host, work, source).run_once().applied == []
    finally:
        if name in {d.name for d in host.list_domains()}:
            host.call("undefine", lambda c: c.lookupByName(name).undefine())
