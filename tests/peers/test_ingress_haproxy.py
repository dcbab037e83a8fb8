"""The real HAProxy (Debian 2.6) as the agent runs it, inside a network namespace this test
makes: SNI routing to each tenant's "master" (an `openssl s_server` presenting the apiserver
certificate and key taken from that master's real Ignition), an unknown name refused, and a
master move applied by a master-worker reload while a TLS session stays open across it.
Everything lives on the namespace's loopback: no packet can leave the machine."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mayu_py.ingress import HaproxySupervisor, Route, render_config
from mayu_py.pki import ClusterPKI
from mayu_py.render import IgnitionRenderer
from mayu_py.render.ignition import file_text
from mayu_py.tenants import ImageInfo, parse_tenant
from mayu_py.tenants.ignition import render_tenant_node
from mayu_py.tenants.networking import TenantOptions, ingress_name
from tests.support.ingress import HeldConnection, handshake, namespace
from tests.support.tenants import tenant_doc
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

DOMAIN = "ingress-peer.test"
LISTEN = "10.219.0.1:6443"
OPTIONS = TenantOptions(ingress_domain=DOMAIN)
TENANTS = {"demo-1": "10.219.1", "demo-2": "10.219.2"}
PKI_DIR = "/etc/kubernetes/pki"


def _master_files(tmp_path: Path, tenant: str, prefix: str) -> dict[str, Path]:
    """The apiserver certificate and key, and the cluster CA, as the master's Ignition has
    them."""
    doc = tenant_doc(tenant, f"{prefix}.0/24", 100 + int(prefix.rsplit(".", 1)[1]), workers=0)
    spec = parse_tenant(doc, {"lab": ImageInfo("lab")}, [])
    pki = ClusterPKI.load_or_create(tmp_path / tenant / "pki", tenant)
    config = json.loads(
        render_tenant_node(spec, f"{tenant}-master-0", pki, IgnitionRenderer(), OPTIONS)
    )
    out = {}
    for name in ("apiserver.crt", "apiserver.key", "ca.crt"):
        text = file_text(config, f"{PKI_DIR}/{name}")
        assert text is not None, name
        path = tmp_path / tenant / name
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
    with namespace("mayu-ing") as name:
        yield name


def _route(tenant: str, servers: list[tuple[str, str]]) -> Route:
    return Route(tenant, ingress_name(tenant, DOMAIN), f"{TENANTS[tenant]}.2", tuple(servers))


def test_sni_routing_refusal_and_a_reload_that_keeps_connections(tmp_path: Path, ns: str) -> None:
    files = {t: _master_files(tmp_path, t, prefix) for t, prefix in TENANTS.items()}
    for address in ["10.219.0.1", "10.219.1.2", "10.219.2.2"]:
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    masters = Masters(ns)
    sup = None
    try:
        masters.start("10.219.1.10", files["demo-1"])
        masters.start("10.219.2.10", files["demo-2"])
        routes = [
            _route("demo-1", [("demo-1-master-0", "10.219.1.10")]),
            _route("demo-2", [("demo-2-master-0", "10.219.2.10")]),
        ]
        sup = HaproxySupervisor(tmp_path / "ingress", render_config(LISTEN, routes), netns=ns)
        sup.start()
        assert (tmp_path / "ingress" / "haproxy.cfg").stat().st_mode & 0o777 == 0o600

        # each name reaches its own tenant: the certificate verifies against that tenant's CA
        # for that name, and never against the other tenant's
        for tenant in TENANTS:
            name = ingress_name(tenant, DOMAIN)
            seen = handshake(ns, LISTEN, name, files[tenant]["ca.crt"])
            assert seen.ok, seen.output
            assert "kube-apiserver" in seen.subject
            other = next(t for t in TENANTS if t != tenant)
            assert not handshake(ns, LISTEN, name, files[other]["ca.crt"]).ok
        unknown = handshake(ns, LISTEN, f"demo-3.api.{DOMAIN}", None)
        assert not unknown.ok
        assert "no peer certificate available" in unknown.output, unknown.output

        # demo-1's master moves (.10 -> .11) while a session through .10 is open
        masters.start("10.219.1.11", files["demo-1"])
        held = HeldConnection(ns, LISTEN, ingress_name("demo-1", DOMAIN), files["demo-1"]["ca.crt"])
        held.wait_established()
        moved = [_route("demo-1", [("demo-1-master-0", "10.219.1.11")]), routes[1]]
        pid = sup.pid
        assert sup.apply(render_config(LISTEN, moved)) is True
        assert sup.apply(render_config(LISTEN, moved)) is False  # unchanged: no reload
        assert sup.pid == pid  # the same master: reloaded, not restarted
        assert sup.last_reload_s is not None
        print(
            f"\nhaproxy reload (SIGUSR2 -> 'Loading success.'): {sup.last_reload_s * 1000:.0f} ms"
        )
        assert held.established()
        finished = held.finish()
        assert finished.ok, finished.output  # the session opened before the reload completed

        # the old address is gone: a new session can only have reached the moved master
        masters.stop("10.219.1.10")
        after = handshake(ns, LISTEN, ingress_name("demo-1", DOMAIN), files["demo-1"]["ca.crt"])
        assert after.ok, after.output
        assert handshake(ns, LISTEN, ingress_name("demo-2", DOMAIN), files["demo-2"]["ca.crt"]).ok
    finally:
        if sup is not None:
            sup.stop()
        masters.stop_all()
    assert sup.pid is None


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
