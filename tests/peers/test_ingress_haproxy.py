"""The real HAProxy (Debian 2.6) as the agent's ingress controller runs it, inside a network
namespace this test makes: SNI routing to the masters among the desired nodes (each an
`openssl s_server` presenting the apiserver certificate and key taken from that master's real
Ignition), an unknown name refused, and a master move applied by a master-worker reload while a
TLS session stays open across it and still carries data after it. Everything lives on the
namespace's loopback: no packet can leave the machine."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mayu_py.agent.ingress import IngressController
from mayu_py.ingress import HaproxySupervisor, render_config
from mayu_py.pki import ClusterPKI
from mayu_py.render import IgnitionRenderer
from mayu_py.render.ignition import file_text
from mayu_py.tenants import ImageInfo, TenantCluster, TenantNode, parse_tenant, tenant_nodes
from mayu_py.tenants.ignition import render_tenant_node
from mayu_py.tenants.networking import TenantOptions, ingress_name
from tests.support.ingress import HeldConnection, handshake, namespace
from tests.support.tenants import tenant_doc
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

DOMAIN = "ingress-peer.test"
LISTEN = "10.219.0.1:6443"
OPTIONS = TenantOptions(ingress_domain=DOMAIN)
PKI_DIR = "/etc/kubernetes/pki"


def _tenant(name: str, cidr: str, vni: int, masters: int) -> TenantCluster:
    doc = tenant_doc(name, cidr, vni, workers=1)
    doc["spec"]["masters"] *= masters
    return parse_tenant(doc, {"lab": ImageInfo("lab")}, [])


def _master_files(tmp_path: Path, spec: TenantCluster, node: str) -> dict[str, Path]:
    """The apiserver certificate and key, and the cluster CA, as the master's Ignition has
    them."""
    pki = ClusterPKI.load_or_create(tmp_path / spec.name / "pki", spec.name)
    config = json.loads(render_tenant_node(spec, node, pki, IgnitionRenderer(), OPTIONS))
    out = {}
    for name in ("apiserver.crt", "apiserver.key", "ca.crt"):
        text = file_text(config, f"{PKI_DIR}/{name}")
        assert text is not None, name
        path = tmp_path / spec.name / f"{node}.{name}"
        path.write_text(text)
        path.chmod(0o600)
        out[name] = path
    return out


class Masters:
    """`openssl s_server -www` stand-ins for API servers, by address."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, address: str, files: dict[str, Path]) -> None:
        subprocess.run(["ip", "-n", self.ns, "addr", "add", f"{address}/32", "dev", "lo"])
        self.procs[address] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "openssl", "s_server", "-quiet", "-www",
             "-accept", f"{address}:6443", "-cert", str(files["apiserver.crt"]),
             "-key", str(files["apiserver.key"])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(f"s_server on {address}", lambda: self._listening(address), 10.0)

    def _listening(self, address: str) -> bool:
        out = subprocess.run(
            ["ip", "netns", "exec", self.ns, "ss", "-Hltn", f"src {address}:6443"],
            capture_output=True,
            text=True,
        ).stdout
        return "LISTEN" in out

    def stop(self, address: str) -> None:
        proc = self.procs.pop(address)
        proc.terminate()
        proc.wait(10)

    def stop_all(self) -> None:
        for address in list(self.procs):
            self.stop(address)


@pytest.fixture
def ns() -> Iterator[str]:
    with namespace("mayu-ingress-") as name:
        yield name


def test_sni_routing_refusal_and_a_reload_that_keeps_connections(tmp_path: Path, ns: str) -> None:
    demo1 = _tenant("demo-1", "10.219.1.0/24", 201, masters=3)
    demo2 = _tenant("demo-2", "10.219.2.0/24", 202, masters=1)
    nodes = {n.name: n for n in tenant_nodes(demo1) + tenant_nodes(demo2)}
    files = {
        name: _master_files(tmp_path, demo1 if node.tenant == "demo-1" else demo2, name)
        for name, node in nodes.items()
        if name in ("demo-1-master-0", "demo-1-master-1", "demo-2-master-0")
    }
    ca = {
        "demo-1": files["demo-1-master-0"]["ca.crt"],
        "demo-2": files["demo-2-master-0"]["ca.crt"],
    }
    # the listen address, and each tenant network's ingress address HAProxy connects from
    for address in ["10.219.0.1", "10.219.1.2", "10.219.2.2"]:
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    masters = Masters(ns)
    ingress = IngressController(tmp_path / "ingress", LISTEN, DOMAIN, netns=ns)

    def desired(*names: str) -> list[TenantNode]:  # this host's nodes, workers included
        return [nodes[n] for n in (*names, "demo-1-worker-0", "demo-2-worker-0")]

    try:
        for name in ("demo-1-master-0", "demo-2-master-0"):
            masters.start(nodes[name].ip, files[name])
        ingress.start()
        assert ingress.update(desired("demo-1-master-0", "demo-2-master-0")) is True
        assert (tmp_path / "ingress" / "haproxy.cfg").stat().st_mode & 0o777 == 0o600

        # each name reaches its own tenant: the certificate verifies against that tenant's CA
        # for that name, and never against the other tenant's
        for tenant, other in (("demo-1", "demo-2"), ("demo-2", "demo-1")):
            name = ingress_name(tenant, DOMAIN)
            seen = handshake(ns, LISTEN, name, ca[tenant])
            assert seen.ok, seen.output
            assert "kube-apiserver" in seen.subject
            assert not handshake(ns, LISTEN, name, ca[other]).ok
        unknown = handshake(ns, LISTEN, f"demo-3.api.{DOMAIN}", None)
        assert not unknown.ok
        assert "no peer certificate available" in unknown.output, unknown.output

        # demo-1's master-0 leaves this host and master-1 arrives, while a session through
        # master-0 is open
        masters.start(nodes["demo-1-master-1"].ip, files["demo-1-master-1"])
        held = HeldConnection(ns, LISTEN, ingress_name("demo-1", DOMAIN), ca["demo-1"])
        held.wait_established()
        pid = ingress.haproxy.pid
        moved = desired("demo-1-master-1", "demo-2-master-0")
        assert ingress.update(moved) is True
        assert ingress.update(moved) is False  # unchanged: no reload
        assert ingress.haproxy.pid == pid  # the same master: reloaded, not restarted
        reload_s = ingress.haproxy.last_reload_s
        assert reload_s is not None
        print(f"\nhaproxy reload (SIGUSR2 -> 'Loading success.'): {reload_s * 1000:.0f} ms")
        assert held.established()
        finished = held.finish()  # the session opened before the reload still carries data
        assert finished.ok, finished.output

        # master-0's address is gone: a new session can only have reached master-1
        masters.stop(nodes["demo-1-master-0"].ip)
        after = handshake(ns, LISTEN, ingress_name("demo-1", DOMAIN), ca["demo-1"])
        assert after.ok, after.output
        assert handshake(ns, LISTEN, ingress_name("demo-2", DOMAIN), ca["demo-2"]).ok
    finally:
        ingress.stop()
        masters.stop_all()
    assert ingress.haproxy.pid is None


def test_a_master_left_by_a_killed_agent_is_ended(tmp_path: Path, ns: str) -> None:
    subprocess.run(["ip", "-n", ns, "addr", "add", "10.219.0.1/32", "dev", "lo"], check=True)
    config = render_config(LISTEN, [])
    sup = HaproxySupervisor(tmp_path / "ingress", config, netns=ns)
    sup.check()  # its files, as a start writes them
    # what kill -9 of an agent leaves: its master runs on, unsupervised, holding the port
    leftover = subprocess.Popen(sup.argv, stderr=subprocess.DEVNULL)
    try:
        wait_for("the leftover's pidfile", lambda: sup.pid_file.is_file(), 10)
        sup.start()  # would fail with "address in use" if the leftover still listened
        assert sup.pid not in (None, leftover.pid)
        assert leftover.wait(10) is not None
    finally:
        sup.stop()
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()
