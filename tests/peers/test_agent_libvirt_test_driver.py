"""The Agent against libvirt's in-process mock driver (test:///default), with real qemu-img
overlays (hence a peer test) and real `virt-xml-validate`.

Each open of test:///default is a fresh state, so every test keeps one LibvirtHost. The driver
ships a foreign running domain "test" and a foreign network "default": they must survive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import stat
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import requests
import yaml

from mayu_py.agent import plan as p
from mayu_py.agent.actual import observe
from mayu_py.agent.desired import network_of, networks_for
from mayu_py.agent.drain import KubeDrain
from mayu_py.agent.kube_source import KubernetesSource
from mayu_py.agent.libvirt_xml import DomainFiles, domain_xml, network_xml, nwfilters
from mayu_py.agent.loop import Agent
from mayu_py.agent.metrics import AgentMetrics
from mayu_py.agent.statedir import StateDir, log_name, node_files
from mayu_py.api_client import ApiError
from mayu_py.command import run
from mayu_py.errors import ConfigError, PeerUnavailable
from mayu_py.files import TMP_SUFFIX
from mayu_py.images.base import BaseImages, install_base_image
from mayu_py.tenants import ImageInfo, TenantNode, parse_tenant, tenant_nodes
from mayu_py.tenants.conditions import state_reason
from mayu_py.virt.host import LibvirtHost
from mayu_py.virt.ownership import NS, NS_PREFIX, HostScope, host_tag, overlay_bridge
from tests.support.crash import run_killed_after
from tests.support.fake_kube import serve_kube
from tests.support.fake_kube_core import FakeCore, FakePod, serve
from tests.support.leaks import Snapshot, assert_no_leaks, snapshot
from tests.support.peers import require_peers
from tests.support.prometheus import Samples, parse, value
from tests.support.sources import StaticSource
from tests.support.tenants import tenant_doc as support_tenant_doc
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer
FOREIGN_DOMAIN, FOREIGN_NETWORK = "test", "default"


def tenant_doc(name: str, cidr: str, vni: int, workers: int, worker_cpus: int = 1) -> dict:
    return support_tenant_doc(
        name, cidr, vni, workers, memory="512Mi", disk="2Gi", worker_cpus=worker_cpus
    )


def desired(*docs: dict) -> list[TenantNode]:
    result = []
    for doc in docs:
        tenant = parse_tenant(doc, {"lab": ImageInfo("lab")}, [])
        result += tenant_nodes(tenant)
    return result


@dataclasses.dataclass
class Rig:
    host: LibvirtHost
    source: StaticSource
    state: StateDir
    images: BaseImages
    tmp: Path

    def agent(self) -> Agent:
        return Agent("h1", self.host, self.source, self.state, self.images)

    def domains(self) -> dict[str, str]:
        """name -> uuid of every domain (ours and foreign)."""
        return {d.name: d.uuid for d in self.host.list_domains()}

    def networks(self) -> set[str]:
        return {n.facts.name for n in self.host.list_networks()}

    def files(self) -> dict[str, frozenset[str]]:
        return self.state.scan()

    def snapshot(self) -> Snapshot:
        return snapshot(self.host.connection(), files=[self.state.root], host=False)


@contextlib.contextmanager
def open_rig(tmp_path: Path) -> Iterator[Rig]:
    """A fresh test:///default (the foreign domain `test` and network `default` only) and a
    state dir; at the end the agent, told that nothing is desired, must leave no trace."""
    require_peers("qemu-img")
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "initrd").write_bytes(b"initrd")
    install_base_image(tmp_path / "images", "lab", "1", tmp_path / "vmlinuz", tmp_path / "initrd")
    host = LibvirtHost("test:///default")
    try:
        rig = Rig(
            host, StaticSource(), StateDir(tmp_path / "state"), BaseImages(tmp_path / "images"),
            tmp_path,
        )  # fmt: skip
        before = rig.snapshot()
        yield rig
        rig.source.nodes = []
        assert rig.agent().run_once().errors == {}
        assert_no_leaks(before, rig.snapshot())
    finally:
        host.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with open_rig(tmp_path) as made:
        yield made


ACME = tenant_doc("acme", "10.100.0.0/24", 100, workers=2)


def assert_converged(rig: Rig, nodes: list[TenantNode]) -> None:
    """Exactly the desired domains (UUIDs), networks (DHCP reservations, no duplicates) and
    files; the foreign objects untouched; and a further pass has nothing to do."""
    doms = rig.domains()
    assert FOREIGN_DOMAIN in doms and FOREIGN_NETWORK in rig.networks()
    assert {k: v for k, v in doms.items() if k != FOREIGN_DOMAIN} == {n.name: n.uuid for n in nodes}
    actual = observe(rig.host, rig.state)
    assert {name: net.hosts for name, net in actual.networks.items()} == {
        net.name: net.hosts for net in networks_for(nodes)
    }
    assert all(net.active for net in actual.networks.values())
    assert all(d.files_current and d.state == "running" for d in actual.domains.values())
    expected: dict[str, set[str]] = {}
    for n in nodes:
        kept = node_files(n) - {log_name(n.name)}  # overlay, Ignition; a master's data disk
        expected.setdefault(n.tenant, set()).update(kept)
    got = {t: {f for f in names if not f.endswith(".log")} for t, names in rig.files().items()}
    assert got == expected
    assert rig.agent().run_once().applied == []


def test_create_then_noop(rig: Rig) -> None:
    rig.source.nodes = desired(ACME)
    result = rig.agent().run_once()
    assert result.errors == {}
    assert set(result.states.values()) == {"running"}
    assert {r.node: r.state for r in rig.source.reports} == {
        "acme-master-0": "running",
        "acme-worker-0": "running",
        "acme-worker-1": "running",
    }
    generations = {n.name: n.generation for n in rig.source.nodes}
    assert {r.node: r.generation for r in rig.source.reports} == generations
    assert_converged(rig, rig.source.nodes)
    node = rig.source.nodes[0]
    assert stat.S_IMODE(rig.state.ignition(node).stat().st_mode) == 0o600
    assert stat.S_IMODE(rig.state.tenant_dir("acme").stat().st_mode) == 0o711
    assert stat.S_IMODE(rig.state.root.stat().st_mode) == 0o711
    net = observe(rig.host, rig.state).networks["mayu-tenant-acme"]
    assert {h[1] for h in net.hosts} == {"10.100.0.10", "10.100.0.11", "10.100.0.12"}
    reports = len(rig.source.reports)
    rig.agent().run_once()
    assert len(rig.source.reports) == reports + 3  # a new agent reports once; same agent not
    agent = rig.agent()
    agent.run_once()
    agent.run_once()
    assert len(rig.source.reports) == reports + 6


def test_scale_up_down_spec_change_delete(rig: Rig) -> None:
    rig.source.nodes = desired(ACME)
    rig.agent().run_once()
    uuids = rig.domains()

    rig.source.nodes = desired(tenant_doc("acme", "10.100.0.0/24", 100, workers=3))
    assert rig.agent().run_once().errors == {}
    assert_converged(rig, rig.source.nodes)
    assert {k: v for k, v in rig.domains().items() if k in uuids} == uuids

    rig.source.nodes = desired(tenant_doc("acme", "10.100.0.0/24", 100, workers=1))
    assert rig.agent().run_once().errors == {}
    assert_converged(rig, rig.source.nodes)
    net = observe(rig.host, rig.state).networks["mayu-tenant-acme"]
    assert len(net.hosts) == 2

    drained: list[str] = []
    changed = desired(tenant_doc("acme", "10.100.0.0/24", 100, workers=1, worker_cpus=2))
    rig.source.nodes = changed

    def drain(tenant: str, node: str) -> str:
        drained.append(node)
        return "drain skipped: tenant API unreachable after 1.0s"

    agent = Agent("h1", rig.host, rig.source, rig.state, rig.images, drain=drain)
    old_log = rig.state.log(changed[1])
    old_log.write_text("Linux version 6\nMAYU-READY ip=10.100.0.11\n")  # the old VM's boot
    result = agent.run_once()
    assert drained == ["acme-worker-0"]
    assert not old_log.exists()  # the new VM is not judged by the old one's MAYU-READY
    # what the drain did is the replaced node's message until it is ready again
    report = rig.source.last_reports()["acme-worker-0"]
    assert (report.state, report.message) == (
        "running",
        "drain skipped: tenant API unreachable after 1.0s",
    )
    # the untouched master says only what its state says (conditions' default reason)
    untouched = rig.source.last_reports()["acme-master-0"]
    assert (untouched.reason, untouched.message) == state_reason(untouched.state)
    assert [a.describe() for a in result.applied if isinstance(a, p.DefineDomain)] == [
        "DefineDomain acme/acme-worker-0"
    ]
    assert_converged(rig, changed)
    xml = rig.host.domain_xml("acme-worker-0")
    assert "<vcpu placement='static'>2</vcpu>" in xml

    rig.source.nodes = desired(tenant_doc("beta", "10.101.0.0/24", 101, workers=0))
    assert rig.agent().run_once().errors == {}
    assert_converged(rig, rig.source.nodes)
    assert not rig.state.tenant_dir("acme").exists()

    rig.source.nodes = []
    rig.agent().run_once()
    assert set(rig.domains()) == {FOREIGN_DOMAIN}
    assert rig.networks() == {FOREIGN_NETWORK}
    assert rig.files() == {}


def forget_files_dir(rig: Rig, name: str) -> None:
    """Rewrite a domain's metadata as agents wrote it before it named the files' directory."""
    dom = rig.host.connection().lookupByName(name)
    element = ET.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS))
    del element.attrib["files_dir"]
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, ET.tostring(element, "unicode"), NS_PREFIX, NS
    )
    assert rig.host.domain_meta(name).files_dir == ""  # type: ignore[union-attr]


@pytest.mark.parametrize("recorded", [True, False], ids=["files-dir", "older-metadata"])
def test_domains_of_another_state_dir_are_defined_again(
    rig: Rig, tmp_path: Path, recorded: bool
) -> None:
    """An agent restarted with a new --state-dir finds its domains naming the old dir's
    overlays, Ignition files and logs: it replaces them (same names and UUIDs), it does not
    start them as they are. Domains defined before the metadata named the files' directory
    are judged by their disk, and left alone when it is this agent's."""
    nodes = desired(ACME)[:2]
    rig.source.nodes = nodes
    assert rig.agent().run_once().errors == {}
    if not recorded:
        for n in nodes:
            forget_files_dir(rig, n.name)
        assert rig.agent().run_once().applied == []
    moved = dataclasses.replace(rig, state=StateDir(tmp_path / "state2"))
    result = moved.agent().run_once()
    assert result.errors == {}
    assert [a.describe() for a in result.applied if isinstance(a, p.DefineDomain)] == [
        f"DefineDomain acme/{n.name}" for n in nodes
    ]
    for n in nodes:
        xml = rig.host.domain_xml(n.name)
        for path in (moved.state.overlay(n), moved.state.ignition(n), moved.state.log(n)):
            assert f"'{path}'" in xml, (path, xml)
        assert f"{rig.state.root}/" not in xml
    assert_converged(moved, nodes)
    moved.source.nodes = []
    assert moved.agent().run_once().errors == {}
    assert moved.files() == {}


def test_failure_is_isolated_per_node(rig: Rig) -> None:
    nodes = desired(ACME)
    broken = dataclasses.replace(nodes[1], image="nope")
    rig.source.nodes = [nodes[0], broken, nodes[2]]
    result = rig.agent().run_once()
    assert set(result.errors) == {broken.name}
    assert result.states == {
        nodes[0].name: "running",
        broken.name: "failed",
        nodes[2].name: "running",
    }
    report = rig.source.last_reports()[broken.name]
    assert (report.state, report.reason) == ("failed", "BaseImageMissing")
    assert report.message.startswith("base image `nope` is not present on host `h1`: run `")
    assert rig.source.last_reports()[nodes[0].name].reason == "Booting"
    agent = rig.agent()
    agent.register()
    assert [i.name for i in rig.source.registrations[-1].images or ()] == ["lab"]
    agent.run_once()
    rig.source.nodes = [nodes[0], nodes[2]]  # the broken node is no longer wanted here
    assert agent.run_once().errors == {}
    assert rig.source.last_reports()[broken.name].state == "deleted"  # nothing of it was left


def test_corrupt_base_image_is_never_used(rig: Rig) -> None:
    base = rig.images.dir / "lab-1.qcow2"
    base.chmod(0o644)
    with base.open("ab") as handle:
        handle.write(b"tampered")
    rig.source.nodes = desired(ACME)[:1]
    result = rig.agent().run_once()
    assert "fails its checksum" in result.errors["acme-master-0"]
    assert rig.source.last_reports()["acme-master-0"].reason == "BaseImageCorrupt"
    assert not rig.state.overlay(rig.source.nodes[0]).exists()
    assert set(rig.domains()) == {FOREIGN_DOMAIN}


def test_foreign_domain_with_a_wanted_name_is_not_touched(rig: Rig) -> None:
    rig.source.nodes = desired(ACME)
    rig.host.define_domain(
        "<domain type='test'><name>acme-worker-0</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    result = rig.agent().run_once()
    assert "not manage" in result.errors["acme-worker-0"]
    assert rig.host.domain_meta("acme-worker-0") is None
    assert result.states["acme-master-0"] == "running"
    rig.source.nodes = []
    rig.agent().run_once()
    assert set(rig.domains()) == {FOREIGN_DOMAIN, "acme-worker-0"}
    rig.host.connection().lookupByName("acme-worker-0").undefine()  # the test's own, not a leak


def leave_partial_write(rig: Rig, action: p.Action) -> None:
    """What a kill inside a file-writing action leaves: its temporary file."""
    if isinstance(action, p.CreateOverlay):
        path = rig.state.overlay(action.node)
    elif isinstance(action, p.WriteIgnition):
        path = rig.state.ignition(action.node)
    else:
        return
    rig.state.tenant_dir(action.node.tenant, create=True)
    path.with_name(path.name + TMP_SUFFIX).write_bytes(b"partial")


BETA = tenant_doc("beta", "10.101.0.0/24", 101, workers=0)
CRASH_SCENARIOS = {
    "create": ([], [tenant_doc("acme", "10.100.0.0/24", 100, workers=1), BETA]),
    # a scale-down, a spec change, a deleted tenant and a new one in one plan
    "change": (
        [ACME, BETA],
        [
            tenant_doc("acme", "10.100.0.0/24", 100, workers=1, worker_cpus=2),
            tenant_doc("gamma", "10.102.0.0/24", 102, workers=0),
        ],
    ),
}


@pytest.mark.parametrize("scenario", list(CRASH_SCENARIOS))
def test_agent_killed_after_each_action_converges(tmp_path: Path, scenario: str) -> None:
    """For every k: an agent killed right after the k-th action of its plan (and inside the
    next one, when that writes a file), then a new agent: it converges with no duplicate, no
    orphan, every removed node reported deleted, and later removes everything (no leak)."""
    first, then = (desired(*docs) for docs in CRASH_SCENARIOS[scenario])
    removed = {n.name for n in first} - {n.name for n in then}
    k, planned = 0, 1
    while k < planned:
        k += 1
        with open_rig(tmp_path / f"k{k}") as rig:
            rig.source.nodes = first
            assert rig.agent().run_once().errors == {}
            rig.source.nodes = then
            actions = p.plan(then, networks_for(then), observe(rig.host, rig.state))
            planned = len(actions)
            assert run_killed_after(rig.agent(), k) == actions[k - 1]
            if k < planned:
                leave_partial_write(rig, actions[k])
            result = rig.agent().run_once()
            assert result.errors == {}, (k, actions[k - 1])
            assert_converged(rig, then)
            last = rig.source.last_reports()
            assert {n: last[n].state for n in removed} == dict.fromkeys(removed, "deleted")
            assert {n.name: last[n.name].state for n in then} == {n.name: "running" for n in then}
    assert planned > 10, planned


def test_generated_xml_validates(rig: Rig, tmp_path: Path) -> None:
    require_peers("virt-xml-validate")
    image = rig.images.get("lab")
    for node in desired(ACME):
        data = Path("/d.qcow2") if node.role == "master" else None  # a master's data disk
        files = DomainFiles(
            image.kernel, image.initrd, image.cmdline, Path("/o.qcow2"), Path("/i.ign"), Path("/l"),
            data,
        )  # fmt: skip
        for domain_type in ("qemu", "kvm"):
            path = tmp_path / f"{node.name}-{domain_type}.xml"
            path.write_text(domain_xml(node, networks_for([node])[0], files, domain_type))
            run(["virt-xml-validate", path, "domain"])
    net = tmp_path / "net.xml"
    net.write_text(network_xml(networks_for(desired(ACME), ingress=True)[0]))
    run(["virt-xml-validate", net, "network"])
    assert "<forward" not in net.read_text()
    assert "10.100.0.2" not in net.read_text()  # the ingress address is held on the bridge
    for index, text in enumerate(nwfilters()):
        flt = tmp_path / f"filter-{index}.xml"
        flt.write_text(text)
        run(["virt-xml-validate", flt, "nwfilter"])


def test_unchanged_state_of_50_domains_is_a_noop(rig: Rig) -> None:
    """(bench/tenant_lifecycle.py times this pass.)"""
    docs = [tenant_doc(f"t{i}", f"10.{100 + i}.0.0/24", 100 + i, workers=4) for i in range(10)]
    rig.source.nodes = desired(*docs)
    assert len(rig.source.nodes) == 50
    rig.agent().run_once()
    agent = rig.agent()
    agent.run_once()  # first pass of a fresh agent reports every node
    reports = len(rig.source.reports)
    result = agent.run_once()
    assert result.applied == [] and result.errors == {}
    assert result.states == {n.name: "running" for n in rig.source.nodes}
    assert len(rig.source.reports) == reports  # nothing changed, nothing reported


def test_run_forever_reconciles_until_stopped(rig: Rig) -> None:
    rig.source.nodes = desired(ACME)[:1]
    agent = rig.agent()
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_forever, args=(0.05, stop), daemon=True)
    thread.start()
    try:
        wait_for("three passes (a heartbeat each)", lambda: len(rig.source.registrations) >= 3)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert rig.source.last_reports()["acme-master-0"].state == "running"


def test_a_temporary_error_abandons_the_pass_a_permanent_one_fails_its_node(rig: Rig) -> None:
    nodes = desired(ACME)
    rig.source.nodes = nodes
    broken = nodes[1].name
    rig.source.ignition_errors[broken] = ApiError("GET ...: 404 no such node", 404)
    result = rig.agent().run_once()
    assert set(result.errors) == {broken}
    assert result.states[broken] == "failed" and result.states[nodes[0].name] == "running"
    reported = len(rig.source.reports)
    rig.source.ignition_errors[broken] = ApiError("cannot reach ...", 503, temporary=True)
    with pytest.raises(ApiError):
        rig.agent().run_once()
    assert len(rig.source.reports) == reported  # an abandoned pass reports nothing
    del rig.source.ignition_errors[broken]
    assert rig.agent().run_once().errors == {}
    assert_converged(rig, nodes)


def _passes(rig: Rig, interval: float, error: Exception) -> list[float]:
    """run_forever with the first desired-state read failing; when the first two passes
    asked for desired state."""
    rig.source.nodes = desired(ACME)[:1]
    rig.source.fail_next = [error]
    stop = threading.Event()
    agent = rig.agent()
    thread = threading.Thread(
        target=agent.run_forever, args=(interval, stop), kwargs={"retry_s": 0.05}, daemon=True
    )
    thread.start()
    wait_for("the second pass", lambda: len(rig.source.asked) >= 2, 10, every=0.02)
    stop.set()
    agent.source.wake_event.set()
    thread.join(5)
    assert not thread.is_alive() and len(rig.source.asked) >= 2
    return rig.source.asked[:2]


def test_a_temporary_error_is_retried_after_a_short_delay(rig: Rig) -> None:
    first, second = _passes(rig, 30.0, ApiError("cannot reach ...", 503, temporary=True))
    assert second - first < 30.0


def test_a_permanent_error_waits_for_the_next_interval(rig: Rig) -> None:
    first, second = _passes(rig, 0.5, ApiError("GET ...: 403 forbidden", 403))
    assert second - first >= 0.5


def _scrape(port: int) -> Samples:
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return parse(response.text)


def test_metrics_endpoint_counts_passes_actions_domains_and_reconnects(rig: Rig) -> None:
    metrics = AgentMetrics(lambda: rig.host.reconnects)
    agent = Agent("h1", rig.host, rig.source, rig.state, rig.images, metrics=metrics)
    exporter = metrics.serve("127.0.0.1:0")
    port = exporter.server_port
    try:
        nodes = desired(ACME)
        rig.source.nodes = [nodes[0], dataclasses.replace(nodes[1], image="nope"), nodes[2]]
        assert set(agent.run_once().errors) == {nodes[1].name}
        rig.source.fail_next = [PeerUnavailable("the server is gone")]
        with pytest.raises(PeerUnavailable):
            agent.run_once()
        s = _scrape(port)
        assert value(s, "mayu_agent_reconciles_total", outcome="completed") == 1
        assert value(s, "mayu_agent_reconciles_total", outcome="abandoned") == 1
        assert value(s, "mayu_agent_reconcile_duration_seconds_count") == 2
        define = {"kind": "DefineDomain", "outcome": "succeeded"}
        assert value(s, "mayu_agent_actions_total", **define) == 2
        failed = [k for k, v in s.items() if k[0] == "mayu_agent_actions_total" and v and
                  ("outcome", "failed") in k[1]]  # fmt: skip
        assert len(failed) == 1  # the broken node's first action, nothing after it
        assert value(s, "mayu_agent_domains", state="running") == 2  # not the foreign one
        assert ("mayu_agent_domains", (("state", "shutoff"),)) in s  # every state, 0 or not
        assert value(s, "mayu_agent_domains", state="shutoff") == 0
        assert ("mayu_agent_libvirt_reconnects_total", ()) in s
        assert value(s, "mayu_agent_libvirt_reconnects_total") == 0

        rig.host.connection().close()  # the daemon dropped us
        rig.host.list_domains()
        assert value(_scrape(port), "mayu_agent_libvirt_reconnects_total") == 1
        with pytest.raises(ConfigError, match="cannot bind"):
            AgentMetrics(lambda: 0).serve(f"127.0.0.1:{port}")
    finally:
        exporter.shutdown()
        exporter.server_close()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


@pytest.mark.parametrize("listen", ["9100", "127.0.0.1:http", ""])
def test_metrics_listen_must_be_host_port(listen: str) -> None:
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        AgentMetrics(lambda: 0).serve(listen)


def test_each_pass_routes_the_ingress_to_the_desired_masters(rig: Rig) -> None:
    """With the real HAProxy (in a namespace of its own): the masters among the desired nodes
    are routed, a change that moves no master reloads nothing, a tenant gone is unrouted; an
    ingress that cannot reload fails no node and is brought in step by the next pass."""
    from mayu_py.agent.ingress import IngressController
    from tests.support.ingress import namespace

    beta = tenant_doc("beta", "10.101.0.0/24", 101, workers=1)
    with namespace("mayu-ingress-agent-") as ns:
        run(["ip", "-n", ns, "addr", "add", "10.218.0.1/32", "dev", "lo"])
        ingress = IngressController(rig.tmp / "ingress", "10.218.0.1:6443", "ing.test", netns=ns)
        ingress.start()
        try:
            metrics = AgentMetrics(lambda: 0)
            agent = Agent(
                "h1", rig.host, rig.source, rig.state, rig.images, metrics=metrics, ingress=ingress
            )
            rig.source.nodes = desired(ACME, beta)
            assert agent.run_once().errors == {}
            config = ingress.haproxy.config_file.read_text()
            assert "use_backend tenant-acme if { req_ssl_sni -i acme.api.ing.test }" in config
            assert "server acme-master-0 10.100.0.10:6443 check source 10.100.0.2" in config
            assert "server beta-master-0 10.101.0.10:6443 check source 10.101.0.2" in config
            assert "-worker-" not in config
            reloaded = ingress.haproxy.last_reload_s

            rig.source.nodes = desired(tenant_doc("acme", "10.100.0.0/24", 100, workers=1), beta)
            assert agent.run_once().errors == {}
            assert ingress.haproxy.last_reload_s is reloaded  # no master moved: no reload

            ingress.stop()  # HAProxy down: the pass carries on, its nodes fail nothing
            rig.source.nodes = desired(beta)
            assert agent.run_once().errors == {}
            assert "acme" in ingress.haproxy.config  # what HAProxy last loaded
            ingress.start()
            assert agent.run_once().errors == {}
            assert "acme" not in ingress.haproxy.config
            assert "acme" not in ingress.haproxy.config_file.read_text()
            sample = metrics.registry.get_sample_value
            assert sample("mayu_agent_ingress_updates_total", {"outcome": "reloaded"}) == 2
            assert sample("mayu_agent_ingress_updates_total", {"outcome": "failed"}) == 1
            assert sample("mayu_agent_ingress_reload_duration_seconds_count") == 2
        finally:
            ingress.stop()


def test_overlay_xml_validates(rig: Rig, tmp_path: Path) -> None:
    """On a host's overlay: the network only attaches VMs to the overlay bridge (no address,
    no DHCP); each VM has the server's address as `ip=` and an MTU of 1450."""
    require_peers("virt-xml-validate")
    image = rig.images.get("lab")
    tag = host_tag("h1")
    nodes = desired(ACME)
    net = networks_for(nodes, tag)[0]
    files = DomainFiles(
        image.kernel, image.initrd, image.cmdline, Path("/o.qcow2"), Path("/i.ign"), Path("/l")
    )
    path = tmp_path / "domain.xml"
    path.write_text(domain_xml(nodes[1], network_of(nodes[1], tag), files, "qemu", "h1"))
    run(["virt-xml-validate", path, "domain"])
    root = ET.parse(path).getroot()
    cmdline = root.findtext("os/cmdline", "")
    assert cmdline.endswith(f" ip={nodes[1].ip}:::255.255.255.0:{nodes[1].name}:eth0:none:1450")
    assert root.find("devices/interface/mtu").get("size") == "1450"  # type: ignore[union-attr]
    assert root.find("devices/interface/source").get("network") == net.name  # type: ignore[union-attr]
    path = tmp_path / "net.xml"
    path.write_text(network_xml(net))
    run(["virt-xml-validate", path, "network"])
    root = ET.parse(path).getroot()
    assert root.find("forward").get("mode") == "bridge"  # type: ignore[union-attr]
    assert root.find("bridge").get("name") == overlay_bridge(tag, 100)  # type: ignore[union-attr]
    assert root.find("ip") is None and net.name == f"mayu-tenant-acme.{tag}"


def test_agents_of_two_hosts_on_one_libvirtd_touch_only_their_own(rig: Rig) -> None:
    """Host h2's domain and overlay network, on the libvirtd h1's agent uses: h1's agent,
    which wants nothing, leaves them alone; the network on its own overlay it removes."""
    node = desired(ACME)[0]
    image = rig.images.get("lab")
    files = DomainFiles(
        image.kernel, image.initrd, image.cmdline, Path("/o.qcow2"), Path("/i.ign"), Path("/l")
    )
    theirs, mine = network_of(node, host_tag("h2")), network_of(node, host_tag("h1"))
    rig.host.define_domain(domain_xml(node, theirs, files, "qemu", "h2"))
    for net in (theirs, mine):
        rig.host.define_network(network_xml(net))
    try:
        actual = observe(rig.host, rig.state, HostScope("h1"))
        assert node.name in actual.foreign_domains and not actual.domains
        assert theirs.name in actual.foreign_networks and set(actual.networks) == {mine.name}
        assert rig.agent().run_once().errors == {}
        assert node.name in rig.domains() and theirs.name in rig.networks()
        assert mine.name not in rig.networks()
        # h2's own agent sees them as its own
        actual = observe(rig.host, rig.state, HostScope("h2"))
        assert set(actual.domains) == {node.name} and set(actual.networks) == {theirs.name}
    finally:
        rig.host.delete_domain(node.name)
        rig.host.delete_network(theirs.name)


def _drained_nodes(core: FakeCore) -> list[str]:
    """The nodes the drains cordoned, in order (PATCH /api/v1/nodes/<name>)."""
    return [path.rsplit("/", 1)[1] for method, path, _ in core.requests if method == "PATCH"]


def test_a_kube_source_rollout_replaces_one_node_at_a_time(tmp_path: Path) -> None:
    """The Kubernetes source (TenantCluster objects in a fake API server) drives the agent
    through a version change of a 3-master, 1-worker tenant: one node at a time, masters
    first, each drained through the tenant API (a fake core API) with the source's drain
    credential, the masters' data disks kept, progress in status.rollout; also when the agent
    loses its record of the tenant before the change and again during the rollout (it is
    restored from status.applied)."""
    doc = tenant_doc("acme", "10.100.0.0/24", 100, workers=1)
    doc["spec"].update(kubernetesVersion="1.36", masters=doc["spec"]["masters"] * 3)
    order = [f"acme-master-{i}" for i in range(3)] + ["acme-worker-0"]
    core = FakeCore()
    for name in order:
        core.add_node(name)
        core.pods.append(FakePod("default", f"app-{name}", name))
    with open_rig(tmp_path) as rig, serve_kube() as (kube, api), serve(core) as core_url:
        source = KubernetesSource("h1", api, pki_root=tmp_path / "tenant-pki", watch=False)

        def credential(tenant: str) -> str:  # this host's, aimed at the fake core API
            config = yaml.safe_load(source.drain_kubeconfig(tenant))
            assert config["users"][0]["name"] == "mayu:drainer:h1"
            config["clusters"][0]["cluster"] = {"server": core_url}
            return yaml.safe_dump(config)

        agent = Agent("h1", rig.host, source, rig.state, rig.images, drain=KubeDrain(credential))

        def restart_without_record() -> None:
            nonlocal source, agent
            (tmp_path / "tenant-pki" / "acme" / "record.json").unlink()
            source = KubernetesSource("h1", api, pki_root=tmp_path / "tenant-pki", watch=False)
            agent = Agent(
                "h1", rig.host, source, rig.state, rig.images, drain=KubeDrain(credential)
            )
            agent.register()

        def settle() -> int:
            """One pass, then the new VMs boot (their serial logs say so); how many of the
            tenant's nodes were not ready after the pass."""
            assert agent.run_once().errors == {}
            running = {d.name for d in rig.host.list_domains() if d.name in order}
            logs = {name: rig.state.tenant_dir("acme") / log_name(name) for name in order}
            down = sum(1 for name in order if name not in running or not logs[name].exists())
            for name in running:  # the agent removes a replaced VM's log with it
                if not logs[name].exists():
                    logs[name].write_text("Linux version 6\nMAYU-READY ip=10.100.0.1\n")
            return down

        agent.register()
        kube.create(doc)
        settle()
        while kube.get("acme")["status"].get("phase") != "Ready":
            settle()
        disks = {n: (rig.state.tenant_dir("acme") / f"{n}.data.qcow2").stat().st_ino
                 for n in order[:3]}  # fmt: skip
        restart_without_record()
        doc["spec"]["kubernetesVersion"] = "1.37"
        kube.update_spec("acme", doc["spec"])
        for step in range(40):
            assert settle() <= 1  # never more than one node down
            if step == 3:
                rollout = kube.get("acme")["status"]["rollout"]
                assert 0 < rollout["done"] < rollout["total"]  # under way
                restart_without_record()
            status = kube.get("acme")["status"]
            if "rollout" not in status and status.get("observedGeneration") == 2:
                break
        else:
            raise AssertionError(f"rollout stuck: {kube.get('acme')['status']}")
        assert _drained_nodes(core) == order
        evicted = [p for m, p, _ in core.requests if m == "POST" and p.endswith("/eviction")]
        assert len(evicted) == 4
        assert {n: (rig.state.tenant_dir("acme") / f"{n}.data.qcow2").stat().st_ino
                for n in order[:3]} == disks  # fmt: skip
        steps = [
            e["status"]["rollout"]["node"]
            for _, kind, e in kube.events
            if kind == "MODIFIED" and "rollout" in e.get("status", {})
        ]
        assert list(dict.fromkeys(steps)) == order
        kube.delete("acme")
        assert agent.run_once().errors == {}
