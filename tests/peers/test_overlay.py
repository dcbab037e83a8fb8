"""The per-tenant VXLAN overlay between two "hosts": two network namespaces joined by an
underlay veth pair (addresses only inside them), each running `HostOverlay` through pyroute2
and iptables inside its namespace. A "VM" of a tenant is a namespace of its own veth'd onto its
host's tenant bridge. Tenant A's VMs ping each other across the overlay both ways; tenant B,
on the same two hosts and the same subnet, reaches neither; VXLAN from an address that is not
the peer's enrolled one is dropped; a restarted agent (new `HostOverlay`) keeps what is wanted
and removes what is not; at the end nothing is left, in the namespaces or the root one.

Run under `flock /tmp/mayu-vm.lock` (namespaces and bridges).
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from mayu_py.agent.loop import Agent
from mayu_py.command import run
from mayu_py.errors import MayuError
from mayu_py.tenants.wire import OverlayPeer
from mayu_py.virt.overlay import HostOverlay, TenantOverlay, Vtep
from tests.peers.test_agent_libvirt_test_driver import ACME, desired, open_rig
from tests.support.leaks import assert_no_leaks, snapshot
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

UNDERLAY = {"a": "10.231.0.1", "b": "10.231.0.2"}
SUBNET = "10.232.1"  # both tenants use it: only the overlay keeps them apart
VMS = {  # (tenant, host): (address, MAC)
    ("one", "a"): (f"{SUBNET}.10", "52:54:00:0e:00:0a"),
    ("one", "b"): (f"{SUBNET}.11", "52:54:00:0e:00:0b"),
    ("two", "a"): (f"{SUBNET}.20", "52:54:00:0e:00:1a"),
    ("two", "b"): (f"{SUBNET}.21", "52:54:00:0e:00:1b"),
}
VNIS = {"one": 4301, "two": 4302}
INGRESS = f"{SUBNET}.2"  # tenant one's ingress address, as the server gives it


@dataclass
class Site:
    suffix: str = field(default_factory=lambda: secrets.token_hex(2))
    namespaces: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"mayu-overlay-{name}-{self.suffix}"

    def add(self, name: str) -> str:
        ns = self.ns(name)
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns


@pytest.fixture
def site() -> Iterator[Site]:
    before = snapshot(None)
    s = Site()
    try:
        a, b = s.add("a"), s.add("b")
        run(["ip", "-n", a, "link", "add", "under0", "type", "veth", "peer", "name", "under0",
             "netns", b])  # fmt: skip
        for host, ns in (("a", a), ("b", b)):
            run(["ip", "-n", ns, "addr", "add", f"{UNDERLAY[host]}/24", "dev", "under0"])
            run(["ip", "-n", ns, "link", "set", "under0", "up"])
        yield s
    finally:
        for host in UNDERLAY:  # what a failed test left of the overlays (root namespace too)
            with suppress(MayuError):
                overlay(s, host).sync([])
        for ns in reversed(s.namespaces):
            run(["ip", "netns", "del", ns], check=False)
    assert_no_leaks(before, snapshot(None))


def overlay(site: Site, host: str) -> HostOverlay:
    return HostOverlay(f"host-{host}", UNDERLAY[host], site.ns(host))


def tenant(name: str, host: str, accept_from: str | None = None) -> TenantOverlay:
    """The tenant as host `host` sees it: one peer, the other host."""
    other = "b" if host == "a" else "a"
    vtep = Vtep(UNDERLAY[other], accept_from or UNDERLAY[other], (VMS[(name, other)][1],))
    return TenantOverlay(VNIS[name], (vtep,))


def add_vm(site: Site, name: str, host: str, bridge: str) -> str:
    """A namespace with one interface on the host's tenant bridge."""
    ip, mac = VMS[(name, host)]
    vm = site.add(f"{name}{host}")
    host_ns, port = site.ns(host), f"vm{name}{host}"
    run(["ip", "-n", host_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0",
         "netns", vm])  # fmt: skip
    run(["ip", "-n", host_ns, "link", "set", port, "master", bridge, "up"])
    run(["ip", "-n", vm, "link", "set", "eth0", "address", mac, "mtu", "1450"])
    run(["ip", "-n", vm, "addr", "add", f"{ip}/24", "dev", "eth0"])
    run(["ip", "-n", vm, "link", "set", "eth0", "up"])
    return vm


def pings(vm: str, address: str, size: int = 56, wait_s: float = 8.0) -> bool:
    """Whether `vm` gets an answer from `address` within `wait_s` (ARP across the overlay
    and a bridge port coming up take a moment: retried, one second per try)."""
    deadline = time.monotonic() + wait_s
    argv = ["ip", "netns", "exec", vm, "busybox", "ping", "-c1", "-W1", "-s", str(size), address]
    while True:
        if run(argv, check=False).returncode == 0:
            return True
        if time.monotonic() > deadline:
            return False


def links(ns: str) -> set[str]:
    with IPRoute(netns=ns) as ipr:
        return {str(link.get("IFLA_IFNAME")) for link in ipr.get_links()}


def rules(ns: str) -> str:
    return run(["ip", "netns", "exec", ns, "iptables", "-S"]).stdout


def tables(ns: str) -> str:
    return run(["ip", "netns", "exec", ns, "nft", "list", "tables"]).stdout


def mac(device: str) -> str:
    """The MAC of a device of the root namespace."""
    with IPRoute() as ipr:
        return str(ipr.get_links(ifname=device)[0].get("IFLA_ADDRESS"))


def neighbour(where: str, device: str, address: str) -> str | None:
    """The MAC `device` has resolved `address` to (None: no entry); `where`: `ip` options
    naming the namespace ("": the root one)."""
    out = run(["ip", *where.split(), "neigh", "show", "dev", device, "to", address]).stdout
    found = re.search(r"lladdr (\S+)", out)
    return found.group(1) if found else None


@contextmanager
def listening(vm: str) -> Iterator[None]:
    """An echo server on port 6443 of the VM stand-in while the block runs."""
    argv = ["ip", "netns", "exec", vm, "busybox", "nc", "-ll", "-p", "6443", "-e", "/bin/cat"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("the echo listener", lambda: ":6443 " in run(
            ["ip", "netns", "exec", vm, "ss", "-Htln"]).stdout, 5.0, 0.05)  # fmt: skip
        yield
    finally:
        server.kill()
        server.wait()


def echoes(device: str, address: str, timeout_s: float = 3.0) -> bool:
    """A TCP connection from the ingress address on `device` (root namespace, which holds
    one copy per host: the socket is bound to the device) to `address`'s echo server."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        s.settimeout(timeout_s)
        s.bind((INGRESS, 0))
        try:
            s.connect((address, 6443))
            s.sendall(b"mayu\n")
            return s.recv(16) == b"mayu\n"
        except OSError:
            return False


def test_two_tenants_across_two_hosts(site: Site) -> None:
    hosts = {h: overlay(site, h) for h in ("a", "b")}
    timings = []
    bridges: dict[tuple[str, str], str] = {}
    for name in ("one", "two"):
        for host, ov in hosts.items():
            start = time.perf_counter()
            bridges[(name, host)] = ov.ensure(tenant(name, host))
            timings.append(time.perf_counter() - start)
    print(f"overlay setup per tenant and host: max {max(timings) * 1000:.1f} ms")
    assert max(timings) < 1.0
    vms = {key: add_vm(site, *key, bridges[key]) for key in VMS}

    # devices as flannel's vxlan backend makes them
    with IPRoute(netns=site.ns("a")) as ipr:
        (vx,) = ipr.get_links(ipr.link_lookup(ifname=hosts["a"].vxlan(VNIS["one"]))[0])
        data = vx.get("IFLA_LINKINFO").get("IFLA_INFO_DATA")
        assert data.get("IFLA_VXLAN_ID") == VNIS["one"]
        assert data.get("IFLA_VXLAN_PORT") == 4789
        assert data.get("IFLA_VXLAN_LEARNING") == 0
        assert data.get("IFLA_VXLAN_LOCAL") == UNDERLAY["a"]
        assert vx.get("IFLA_MTU") == 1500 - 50
        fdb = {
            (e.get("NDA_LLADDR"), e.get("NDA_DST")) for e in ipr.fdb("dump", ifindex=vx["index"])
        }
        assert ("00:00:00:00:00:00", UNDERLAY["b"]) in fdb
        assert (VMS[("one", "b")][1], UNDERLAY["b"]) in fdb

    one_a, one_b, two_a, two_b = (vms[k] for k in VMS)
    # across the overlay both ways, with packets as large as the reduced MTU (the VM's
    # interface has it, as the tenant network will tell it)
    assert pings(one_a, VMS[("one", "b")][0], size=1450 - 28)
    assert pings(one_b, VMS[("one", "a")][0])
    assert pings(two_b, VMS[("two", "a")][0])
    # tenants never meet, although they share the hosts and the subnet
    for vm, other in ((one_a, ("two", "b")), (one_b, ("two", "a")), (two_a, ("one", "a"))):
        assert not pings(vm, VMS[other][0], wait_s=2.0)

    # idempotent: ensure again changes nothing
    before = (links(site.ns("a")), rules(site.ns("a")))
    hosts["a"].ensure(tenant("one", "a"))
    assert (links(site.ns("a")), rules(site.ns("a"))) == before

    # b accepts tenant one's VXLAN only from a's enrolled address: another one cuts it off
    hosts["b"].ensure(tenant("one", "b", accept_from="10.231.0.99"))
    assert not pings(one_a, VMS[("one", "b")][0], wait_s=2.0)
    hosts["b"].ensure(tenant("one", "b"))
    assert pings(one_a, VMS[("one", "b")][0])

    # a restarted agent (kill -9: nothing in memory) keeps tenant one, removes tenant two
    restarted = overlay(site, "a")
    assert restarted.owned_vnis() == set(VNIS.values())
    restarted.sync([tenant("one", "a")])
    assert restarted.owned_vnis() == {VNIS["one"]}
    assert pings(one_b, VMS[("one", "a")][0])
    assert hosts["a"].bridge(VNIS["two"]) not in links(site.ns("a"))

    # another host's overlay in the same namespace is not ours to remove
    stranger = HostOverlay("host-c", UNDERLAY["a"], site.ns("a"))
    stranger.sync([])
    assert restarted.owned_vnis() == {VNIS["one"]}

    # teardown leaves nothing: no device, no FDB entry, no chain, no INPUT jump
    for host, ov in hosts.items():
        ov.sync([])
        ns = site.ns(host)
        assert not {n for n in links(ns) if n.startswith(f"mo{ov.tag}")}
        assert f"MO-{ov.tag}" not in rules(ns)
        assert ov.owned_vnis() == set()
        assert f"mayu_{ov.tag}" not in tables(ns)


def test_each_hosts_ingress_address_stays_on_its_side(site: Site) -> None:
    """Both hosts run an ingress, so both hold tenant one's ingress address on their side of
    its network (the access bridges, in the root namespace here). ARP for it from b's VM is
    answered by b's access bridge alone and never reaches a; b's ingress address reaches b's
    VM over TCP while a's holds the same address; a's reaches only a's own VM (no frame of it
    crosses the VXLAN); the VMs still reach each other; without its ingress a host drops the
    address and its fence, and the teardown leaves no table."""
    hosts = {h: overlay(site, h) for h in ("a", "b")}
    with_ingress = {h: replace(tenant("one", h), ingress=f"{INGRESS}/24") for h in hosts}
    access = {h: hosts[h].ensure(with_ingress[h]) for h in hosts}
    vm = {h: add_vm(site, "one", h, access[h]) for h in hosts}
    ip = {h: VMS[("one", h)][0] for h in hosts}
    for h in hosts:
        assert f"inet {INGRESS}/24" in run(["ip", "-4", "addr", "show", "dev", access[h]]).stdout
    assert pings(vm["a"], ip["b"]) and pings(vm["b"], ip["a"])  # the overlay carries the rest

    # (no ping to the address while both hold it: the root namespace here, holding both
    # copies, would route its answers by the first of two equal routes)
    answers = run(["ip", "netns", "exec", vm["b"], "busybox", "arping", "-c", "2", "-w", "2",
                   "-I", "eth0", INGRESS], check=False).stdout  # fmt: skip
    replies = re.findall(r"reply from \S+ \[(\S+)\]", answers)
    assert replies == [mac(access["b"])] * 2, answers  # one per request: b's, not a's too
    assert neighbour("", access["a"], ip["b"]) is None  # a never saw b's VM ask for it
    hosts["b"].ensure(with_ingress["b"])  # idempotent: nothing changes
    assert hosts["b"].fence.current() == {hosts["b"].vxlan(VNIS["one"]): INGRESS}

    with listening(vm["a"]), listening(vm["b"]):
        assert echoes(access["b"], ip["b"])  # both hosts hold the address
        assert echoes(access["a"], ip["a"])
        assert not echoes(access["a"], ip["b"], 1.0)  # a's ingress never crosses the VXLAN
    assert neighbour(f"-n {vm['b']}", "eth0", INGRESS) == mac(access["b"])

    hosts["a"].ensure(tenant("one", "a"))  # a stops its ingress
    assert f"{SUBNET}." not in run(["ip", "-4", "addr", "show", "dev", access["a"]]).stdout
    assert hosts["a"].fence.current() == {}
    assert pings(vm["b"], INGRESS) and pings(vm["a"], ip["b"])
    for h, ov in hosts.items():  # as an agent restarted after kill -9, with nothing wanted
        overlay(site, h).sync([])
        assert f"mayu_{ov.tag}" not in tables(site.ns(h))


def test_the_agent_runs_the_overlays_of_its_desired_nodes(site: Site, tmp_path: Path) -> None:
    """Agent + libvirt's test driver + a real overlay in host namespace a: a pass creates the
    tenant's overlay from the peers in its nodes; a restarted agent with nothing desired
    removes it (devices, FDB entries, chains)."""
    peer = OverlayPeer("host-b", UNDERLAY["b"], UNDERLAY["b"], ("52:54:00:0e:00:0b",))
    untrusted = OverlayPeer("host-c", "10.231.0.3", None, ())
    ns = site.ns("a")
    with open_rig(tmp_path) as rig:
        rig.source.nodes = [replace(n, peers=(peer, untrusted)) for n in desired(ACME)]
        vni = rig.source.nodes[0].vni

        def agent() -> Agent:
            overlay = HostOverlay("host-a", UNDERLAY["a"], ns)
            return Agent("host-a", rig.host, rig.source, rig.state, rig.images, overlay=overlay)

        assert agent().run_once().errors == {}
        ov = overlay(site, "a")
        assert {ov.bridge(vni), ov.vxlan(vni)} <= links(ns)
        with IPRoute(netns=ns) as ipr:
            index = ipr.link_lookup(ifname=ov.vxlan(vni))[0]
            dsts = {e.get("NDA_DST") for e in ipr.fdb("dump", ifindex=index) if e.get("NDA_DST")}
        assert dsts == {UNDERLAY["b"]}  # host-c is not enrolled: no tunnel to it
        assert f"-s {UNDERLAY['b']}/32" in rules(ns) and "10.231.0.3" not in rules(ns)
        rig.source.nodes = []
        assert agent().run_once().errors == {}
        assert ov.owned_vnis() == set()
        assert "MO-" not in rules(ns)
