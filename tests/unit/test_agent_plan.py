"""plan(desired, networks, actual) -> actions, without libvirt."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from mayu_py.agent import plan as p
from mayu_py.agent.actual import ActualDomain, ActualNetwork, ActualState
from mayu_py.agent.desired import networks_for
from mayu_py.agent.libvirt_xml import network_xml
from mayu_py.agent.statedir import node_files
from mayu_py.tenants import TenantNode
from mayu_py.virt.bridge_address import HeldAddress
from mayu_py.virt.ownership import parse_network


def dn(tenant: str, i: int, role: str = "worker", spec_hash: str = "h1") -> TenantNode:
    return TenantNode(
        tenant=tenant,
        name=f"{tenant}-{role}-{i}",
        role=role,
        generation=1,
        spec_hash=spec_hash,
        cpus=1,
        memory_mib=512,
        disk_gib=2,
        image="lab",
        mac=f"52:54:00:00:00:{i:02x}",
        ip=f"10.100.0.{10 + i}",
        uuid=f"00000000-0000-0000-0000-{i:012d}",
        cidr="10.100.0.0/24",
        vni=100,
        gateway="10.100.0.1",
        ingress="10.100.0.2",
    )


def converged(nodes: list[TenantNode], **overrides: object) -> ActualState:
    """The actual state that matches `nodes` exactly."""
    domains = {
        n.name: ActualDomain(n.name, n.uuid, n.tenant, n.role, n.spec_hash, 1, "running")
        for n in nodes
    }
    networks = {
        net.name: ActualNetwork(net.name, net.bridge, net.gateway, True, net.hosts)
        for net in networks_for(nodes)
    }
    files: dict[str, frozenset[str]] = {}
    for n in nodes:
        files[n.tenant] = files.get(n.tenant, frozenset()) | node_files(n)
    state = ActualState(domains=domains, networks=networks, files=files, nwfilter=True)
    return dataclasses.replace(state, **overrides)


def run(nodes: list[TenantNode], actual: ActualState) -> list[p.Action]:
    return p.plan(nodes, networks_for(nodes), actual)


def kinds(actions: list[p.Action]) -> list[str]:
    return [a.describe() for a in actions]


def test_create_from_nothing() -> None:
    nodes = [dn("acme", 0, "master"), dn("acme", 0)]
    actions = run(nodes, ActualState(nwfilter=False))
    assert kinds(actions) == [
        "EnsureFilter",
        "CreateNetwork acme",
        "CreateOverlay acme/acme-master-0",
        "CreateDataDisk acme/acme-master-0",  # a master's data disk of its own
        "WriteIgnition acme/acme-master-0",
        "DefineDomain acme/acme-master-0",
        "StartDomain acme/acme-master-0",
        "CreateOverlay acme/acme-worker-0",
        "WriteIgnition acme/acme-worker-0",
        "DefineDomain acme/acme-worker-0",
        "StartDomain acme/acme-worker-0",
    ]
    assert actions[1].network.hosts == tuple(sorted((n.mac, n.ip, n.name) for n in nodes))


def test_converged_is_a_noop() -> None:
    nodes = [dn("acme", 0, "master"), dn("acme", 0), dn("beta", 1)]
    assert run(nodes, converged(nodes)) == []


def test_scale_up_adds_node_and_reservation() -> None:
    before = [dn("acme", 0, "master"), dn("acme", 0)]
    after = before + [dn("acme", 1)]
    actions = run(after, converged(before))
    assert kinds(actions) == [
        "UpdateNetworkHosts acme",
        "CreateOverlay acme/acme-worker-1",
        "WriteIgnition acme/acme-worker-1",
        "DefineDomain acme/acme-worker-1",
        "StartDomain acme/acme-worker-1",
    ]
    added = after[2]
    assert actions[0].add == ((added.mac, added.ip, added.name),) and actions[0].remove == ()


def test_scale_down_drains_deletes_and_cleans_files() -> None:
    before = [dn("acme", 0, "master"), dn("acme", 0), dn("acme", 1)]
    after = before[:2]
    actions = run(after, converged(before))
    assert kinds(actions) == [
        "DrainNode acme/acme-worker-1",
        "DeleteDomain acme/acme-worker-1",
        "UpdateNetworkHosts acme",
        "DeleteFiles acme",
    ]
    assert set(actions[3].names) == node_files(before[2])


def test_spec_change_replaces_node() -> None:
    before = [dn("acme", 0, "master"), dn("acme", 0)]
    after = [before[0], dn("acme", 0, spec_hash="h2")]
    actions = run(after, converged(before))
    assert kinds(actions) == [
        "DrainNode acme/acme-worker-0",
        "DeleteDomain acme/acme-worker-0",
        "DeleteFiles acme",
        "CreateOverlay acme/acme-worker-0",
        "WriteIgnition acme/acme-worker-0",
        "DefineDomain acme/acme-worker-0",
        "StartDomain acme/acme-worker-0",
    ]
    old = before[1]
    assert set(actions[2].names) == node_files(old) - node_files(after[1])


def test_replacing_a_master_keeps_its_data_disk_and_scaling_it_away_drops_it() -> None:
    before = [dn("acme", 0, "master"), dn("acme", 1, "master")]
    after = [dn("acme", 0, "master", spec_hash="h2"), before[1]]
    actions = run(after, converged(before))
    assert kinds(actions) == [
        "DrainNode acme/acme-master-0",
        "DeleteDomain acme/acme-master-0",
        "DeleteFiles acme",
        "CreateOverlay acme/acme-master-0",  # a fresh root disk; the data disk stays
        "WriteIgnition acme/acme-master-0",
        "DefineDomain acme/acme-master-0",
        "StartDomain acme/acme-master-0",
    ]
    assert set(actions[2].names) == {"acme-master-0.h1.qcow2", "acme-master-0.h1.ign"}
    gone = run(before[:1], converged(before))
    assert "acme-master-1.data.qcow2" in next(a for a in gone if isinstance(a, p.DeleteFiles)).names


def test_delete_tenant_removes_domains_network_and_dir() -> None:
    acme = [dn("acme", 0, "master")]
    beta = [dn("beta", 1)]
    actions = run(beta, converged(acme + beta))
    assert kinds(actions) == [
        "DeleteDomain acme/acme-master-0",  # no drain: the whole tenant goes
        "DeleteNetwork acme",
        "DeleteTenantDir acme",
    ]


def test_foreign_objects_untouched_and_block_their_names() -> None:
    nodes = [dn("acme", 0, "master")]
    actual = converged(
        [], foreign_domains=frozenset({"vm-of-someone", "acme-master-0"}),
        foreign_networks=frozenset({"default"}),
    )  # fmt: skip
    actions = run(nodes, actual)
    assert kinds(actions) == ["CreateNetwork acme", "Blocked acme/acme-master-0"]
    assert run([], actual) == []


def test_foreign_network_with_our_name_blocks_tenant() -> None:
    nodes = [dn("acme", 0)]
    actions = run(nodes, converged([], foreign_networks=frozenset({"mayu-tenant-acme"})))
    assert kinds(actions) == ["Blocked acme/acme-worker-0"]


def test_stopped_domain_is_started_and_missing_files_restored() -> None:
    nodes = [dn("acme", 0)]
    state = converged(nodes)
    stopped = dataclasses.replace(state.domains["acme-worker-0"], state="crashed")
    actual = dataclasses.replace(state, domains={"acme-worker-0": stopped}, files={})
    assert kinds(run(nodes, actual)) == [
        "CreateOverlay acme/acme-worker-0",
        "WriteIgnition acme/acme-worker-0",
        "StartDomain acme/acme-worker-0",
    ]


def test_orphan_temp_files_and_inactive_network() -> None:
    nodes = [dn("acme", 0)]
    state = converged(nodes)
    net = dataclasses.replace(state.networks["mayu-tenant-acme"], active=False)
    files = {"acme": state.files["acme"] | {"acme-worker-0.h1.ign.tmp"}}
    actual = dataclasses.replace(state, networks={net.name: net}, files=files)
    actions = run(nodes, actual)
    assert kinds(actions) == ["StartNetwork acme", "DeleteFiles acme"]
    assert actions[1].names == ("acme-worker-0.h1.ign.tmp",)


def test_changed_network_address_is_recreated() -> None:
    nodes = [dn("acme", 0)]
    state = converged(nodes)
    net = dataclasses.replace(state.networks["mayu-tenant-acme"], gateway="10.99.0.1")
    actions = run(nodes, dataclasses.replace(state, networks={net.name: net}))
    assert kinds(actions) == ["RecreateNetwork acme"]


def test_whether_a_host_runs_an_ingress_never_changes_its_networks() -> None:
    """The ingress address is held on the bridge (`held`), in no network's definition: a
    host that starts or stops running an ingress leaves its networks (and the VMs' taps on
    them) as they are, also one an earlier version defined with the ingress as second `<ip>`
    (parsed: the gateway is its first)."""
    nodes = [dn("acme", 0)]
    wanted = networks_for(nodes, ingress=True)
    assert [n.held for n in wanted] == [
        HeldAddress("mayu-t100", "10.100.0.2/24", ("10.100.0.1/24",))
    ]
    assert [n.held.address for n in networks_for(nodes)] == [None]  # the address goes
    assert network_xml(wanted[0]) == network_xml(networks_for(nodes)[0])
    assert p.plan(nodes, wanted, converged(nodes)) == []
    legacy = ET.fromstring(network_xml(wanted[0]))
    ET.SubElement(legacy, "ip", address="10.100.0.2", netmask="255.255.255.0")
    facts = parse_network(ET.tostring(legacy, "unicode"))
    have = {facts.name: ActualNetwork(facts.name, facts.bridge, facts.gateway, True, facts.hosts)}
    legacy_state = converged(nodes, networks=have)
    for ingress in (True, False):
        assert p.plan(nodes, networks_for(nodes, ingress=ingress), legacy_state) == []
    assert [n.ingress for n in networks_for(nodes, "abcdef", ingress=True)] == [None]  # overlay


def test_an_obsolete_filter_no_domain_names_is_undefined() -> None:
    nodes = [dn("acme", 0)]
    stale = converged(nodes, obsolete_filters=("mayu-tenant",))
    assert kinds(run(nodes, stale)) == ["DeleteFilter mayu-tenant"]
    assert kinds(run([], stale))[0] == "DeleteFilter mayu-tenant"  # with no tenant too


def test_domain_defined_with_other_files_is_replaced() -> None:
    """Its definition names another state dir's files (an agent restarted with a new
    --state-dir): starting it would fail forever, so it is defined again like a changed spec."""
    nodes = [dn("acme", 0, "master"), dn("acme", 0)]
    state = converged(nodes)
    for status in ("shutoff", "running"):
        stale = dataclasses.replace(
            state.domains["acme-worker-0"], state=status, files_current=False
        )
        actual = dataclasses.replace(state, domains={**state.domains, stale.name: stale})
        assert kinds(run(nodes, actual)) == [
            "DrainNode acme/acme-worker-0",
            "DeleteDomain acme/acme-worker-0",
            "DefineDomain acme/acme-worker-0",
            "StartDomain acme/acme-worker-0",
        ], status
        missing = dataclasses.replace(actual, files={})
        assert kinds(run(nodes, missing)) == [
            "DrainNode acme/acme-worker-0",
            "DeleteDomain acme/acme-worker-0",
            "CreateOverlay acme/acme-worker-0",
            "WriteIgnition acme/acme-worker-0",
            "DefineDomain acme/acme-worker-0",
            "StartDomain acme/acme-worker-0",
        ]


def test_moving_to_the_overlay_replaces_network_and_domains() -> None:
    """The host's tenants go onto its overlay: the isolated network goes, the overlay one is
    created (no address, no reservations), and each domain is redefined onto it."""
    nodes = [dn("acme", 0, "master"), dn("acme", 0)]
    isolated = networks_for(nodes)[0]
    state = converged(nodes)
    state = dataclasses.replace(
        state,
        domains={
            n: dataclasses.replace(d, network=isolated.name) for n, d in state.domains.items()
        },
    )
    overlay = networks_for(nodes, "abc123")
    assert overlay[0].name == "mayu-tenant-acme.abc123" and overlay[0].hosts == ()
    actions = p.plan(nodes, overlay, state)
    assert p.CreateNetwork(overlay[0]) in actions
    assert p.DeleteNetwork(isolated.name, "acme") in actions
    for node in nodes:
        assert p.DeleteDomain("acme", node.name) in actions
        assert p.DefineDomain(node) in actions
    # converged on the overlay: nothing to do
    moved = dataclasses.replace(
        state,
        domains={
            n: dataclasses.replace(d, network=overlay[0].name) for n, d in state.domains.items()
        },
        networks={
            overlay[0].name: ActualNetwork(overlay[0].name, overlay[0].bridge, None, True, ())
        },
    )
    assert p.plan(nodes, overlay, moved) == []
