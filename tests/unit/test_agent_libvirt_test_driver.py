"""The Agent against libvirt's in-process mock driver (test:///default).

Each open of test:///default is a fresh state, so every test keeps one LibvirtHost. The driver
ships a foreign running domain "test" and a foreign network "default": they must survive.
"""

from __future__ import annotations

import dataclasses
import stat
import threading
import time
from pathlib import Path

import pytest
import requests

from mayu_py.agent import plan as p
from mayu_py.agent.actual import observe
from mayu_py.agent.desired import networks_for
from mayu_py.agent.libvirt_xml import DomainFiles, domain_xml, network_xml, nwfilter_xml
from mayu_py.agent.loop import Agent
from mayu_py.agent.metrics import AgentMetrics
from mayu_py.agent.statedir import StateDir
from mayu_py.api_client import ApiError
from mayu_py.command import run
from mayu_py.errors import ConfigError, PeerUnavailable
from mayu_py.images.base import BaseImages, install_base_image
from mayu_py.tenants import ImageInfo, TenantNode, parse_tenant, tenant_nodes
from mayu_py.virt.host import LibvirtHost
from tests.support.prometheus import Samples, parse, value
from tests.support.sources import StaticSource
from tests.support.tenants import tenant_doc as support_tenant_doc

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


@pytest.fixture
def rig(tmp_path: Path):
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "initrd").write_bytes(b"initrd")
    install_base_image(tmp_path / "images", "lab", "1", tmp_path / "vmlinuz", tmp_path / "initrd")
    host = LibvirtHost("test:///default")
    yield Rig(
        host,
        StaticSource(),
        StateDir(tmp_path / "state"),
        BaseImages(tmp_path / "images"),
        tmp_path,
    )
    host.close()


ACME = tenant_doc("acme", "10.100.0.0/24", 100, workers=2)


def assert_converged(rig: Rig, nodes: list[TenantNode]) -> None:
    doms = rig.domains()
    assert FOREIGN_DOMAIN in doms and FOREIGN_NETWORK in rig.networks()
    assert set(doms) - {FOREIGN_DOMAIN} == {n.name for n in nodes}
    for n in nodes:
        assert doms[n.name] == n.uuid
    assert rig.networks() - {FOREIGN_NETWORK} == {net.name for net in networks_for(nodes)}
    expected: dict[str, set[str]] = {}
    for n in nodes:
        expected.setdefault(n.tenant, set()).update(
            {rig.state.overlay(n).name, rig.state.ignition(n).name}
        )
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
    agent = Agent(
        "h1", rig.host, rig.source, rig.state, rig.images, drain=lambda t, n: drained.append(n)
    )
    result = agent.run_once()
    assert drained == ["acme-worker-0"]
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
    assert report.state == "failed" and "unknown base image" in report.message


def test_corrupt_base_image_is_never_used(rig: Rig) -> None:
    base = rig.images.dir / "lab-1.qcow2"
    base.chmod(0o644)
    with base.open("ab") as handle:
        handle.write(b"tampered")
    rig.source.nodes = desired(ACME)[:1]
    result = rig.agent().run_once()
    assert "fails its checksum" in result.errors["acme-master-0"]
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


def test_crash_half_way_converges(rig: Rig) -> None:
    rig.source.nodes = desired(ACME, tenant_doc("beta", "10.101.0.0/24", 101, workers=1))
    first = rig.agent()
    actions = p.plan(rig.source.nodes, networks_for(rig.source.nodes), observe(rig.host, rig.state))
    for action in actions[: len(actions) // 2]:
        first.applier.apply(action)
    # a kill -9 inside a write leaves a temp file behind
    (rig.state.tenant_dir("acme") / "acme-worker-1.x.ign.tmp").write_bytes(b"{")
    result = rig.agent().run_once()
    assert result.errors == {}
    assert_converged(rig, rig.source.nodes)


def test_generated_xml_validates(rig: Rig, tmp_path: Path) -> None:
    image = rig.images.get("lab")
    for node in desired(ACME):
        files = DomainFiles(
            image.kernel, image.initrd, image.cmdline, Path("/o.qcow2"), Path("/i.ign"), Path("/l")
        )
        for domain_type in ("qemu", "kvm"):
            path = tmp_path / f"{node.name}-{domain_type}.xml"
            path.write_text(domain_xml(node, networks_for([node])[0], files, domain_type))
            run(["virt-xml-validate", path, "domain"])
    net = tmp_path / "net.xml"
    net.write_text(network_xml(networks_for(desired(ACME))[0]))
    run(["virt-xml-validate", net, "network"])
    flt = tmp_path / "filter.xml"
    flt.write_text(nwfilter_xml())
    run(["virt-xml-validate", flt, "nwfilter"])
    assert "<forward" not in net.read_text()


def test_unchanged_reconcile_of_50_domains_is_fast(rig: Rig) -> None:
    docs = [tenant_doc(f"t{i}", f"10.{100 + i}.0.0/24", 100 + i, workers=4) for i in range(10)]
    rig.source.nodes = desired(*docs)
    assert len(rig.source.nodes) == 50
    rig.agent().run_once()
    agent = rig.agent()
    agent.run_once()  # first pass of a fresh agent reports every node
    started = time.perf_counter()
    result = agent.run_once()
    elapsed = time.perf_counter() - started
    assert result.applied == [] and len(result.states) == 50
    print(f"\nunchanged reconcile of 50 domains (test:///default): {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0


def test_run_forever_reconciles_until_stopped(rig: Rig) -> None:
    rig.source.nodes = desired(ACME)[:1]
    agent = rig.agent()
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_forever, args=(0.05, stop), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(rig.source.registrations) < 3:
        time.sleep(0.02)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert len(rig.source.registrations) >= 3  # heartbeats every pass
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
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(rig.source.asked) < 2:
        time.sleep(0.02)
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
