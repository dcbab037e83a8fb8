"""Tenant VMs on their VXLAN overlay across two "hosts" on this one machine.

Two network namespaces joined by an underlay veth pair are the hosts' underlays; one agent per
host (`mayu agent --underlay ADDR --overlay-netns NS`), both on this machine's libvirtd, runs
each tenant's bridge and VXLAN device in its namespace and attaches the tenant's libvirt
network (`<forward mode='bridge'>`, no DHCP) to an L2-only access bridge in the root namespace
veth'd into it. TCG VMs of the lab image get their address from the server through the
domain's `ip=` argument (MTU 1450). A tenant with its master on one host and its worker on
the other: the VMs ping each other both ways across the overlay; a second tenant on the same
two hosts reaches neither. Host a also runs the tenant API ingress (HAProxy on a loopback
port, the server's `tenants.ingress_domain`), so each tenant's ingress address is on its side
of the tenant's network (the only tenant address outside the VMs): from it a master's API port
answers, its port 22 does not (a node of the tenant reaches that one), another tenant's
ingress address reaches nothing of the tenant, and no ARP for it crosses the overlay. The
masters' API port is the lab image's TLS stand-in for kube-apiserver (`openssl s_server` with
the certificate and key Ignition wrote): `openssl s_client -servername <tenant>.api.<domain>`
through HAProxy gets the certificate in that master's Ignition, verified against the tenant's
CA from its admin kubeconfig (which points at that name) and never against the other
tenant's; an unknown name gets no certificate. Kill -9 of one agent and
its restart change nothing (same domains, same qemu processes, no action applied); deleting the
tenants leaves nothing.

Run under `flock /tmp/mayu-vm.lock` (VMs, namespaces, bridges).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest
import requests
import yaml
from pyroute2 import IPRoute

from mayu_py.render.ignition import file_text
from mayu_py.tenants.networking import API_PORT, ingress_name
from mayu_py.virt.ownership import host_tag, network_name, overlay_bridge
from tests.conftest import RunningServer, start_server
from tests.e2e import tenant_helpers as th
from tests.support.ingress import Handshake, handshake
from tests.support.tenants import tenant_doc

pytestmark = pytest.mark.e2e

SUFFIX = secrets.token_hex(2)
HOSTS = {"a": f"s18ov-a-{SUFFIX}", "b": f"s18ov-b-{SUFFIX}"}
UNDERLAY = {"a": "10.235.0.1", "b": "10.235.0.2"}
T1, T2 = f"s18ov-one-{SUFFIX}", f"s18ov-two-{SUFFIX}"
VNI0 = 9400 + secrets.randbelow(500) * 2
NETS = {T1: ("10.236.1.0/24", VNI0), T2: ("10.236.2.0/24", VNI0 + 1)}
READY_TIMEOUT_S = 180.0
INGRESS = {T1: "10.236.1.2", T2: "10.236.2.2"}  # the server's: .2 of each tenant network
DOMAIN = f"s19ov-{SUFFIX}.test"
LISTEN = "(nc -ll -p 22 -e /bin/cat </dev/null >/dev/null 2>&1 &)"  # 6443: the image's TLS
API_CERT = "/etc/kubernetes/pki/apiserver.crt"
FW_CFG_CONFIG = "opt/com.coreos/config"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


@dataclass
class Site:
    server: RunningServer
    conn: libvirt.virConnect
    work: Path
    ingress_port: int  # host a's HAProxy, on 127.0.0.1
    agents: dict[str, th.AgentProcess] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)

    def ns(self, host: str) -> str:
        return f"mayu-s18ov-{host}-{SUFFIX}"

    def start_agent(self, host: str, token: str) -> th.AgentProcess:
        self.metrics[host] = _free_port()
        extra = ("--underlay", UNDERLAY[host], "--overlay-netns", self.ns(host),
                 "--metrics-listen", f"127.0.0.1:{self.metrics[host]}")  # fmt: skip
        if host == "a":  # the tenants' ingress addresses are on host a's side only
            extra += ("--ingress-listen", f"127.0.0.1:{self.ingress_port}",
                      "--ingress-domain", DOMAIN)  # fmt: skip
        agent = th.AgentProcess(
            self.server.url, token, self.work / f"state-{host}", self.work / "images",
            self.work / f"agent-{host}.log", host_name=HOSTS[host], extra=extra,
        ).start()  # fmt: skip
        self.agents[host] = agent
        return agent

    def nodes(self, tenant: str) -> dict[str, dict]:
        out = self.server.mayuctl("tenants", "show", tenant, "-o", "json")
        assert out.returncode == 0, out.stderr
        return th.tenant_nodes(out.stdout)

    def console(self, node: str, command: str) -> tuple[int, str]:
        return th.console_run(th.serial_pty(self.conn, node), command, 30.0)

    def pings(self, node: str, ip: str) -> bool:
        return self.console(node, f"ping -c1 -W2 {ip} >/dev/null 2>&1")[0] == 0

    def metric(self, host: str, pattern: str) -> float:
        """The sum of the agent's samples whose line matches `pattern` (-1: not serving yet)."""
        try:
            text = requests.get(f"http://127.0.0.1:{self.metrics[host]}/metrics", timeout=5).text
        except requests.ConnectionError:
            return -1.0
        lines = [
            ln for ln in text.splitlines() if not ln.startswith("#") and re.search(pattern, ln)
        ]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def _root_links(prefixes: tuple[str, ...]) -> dict[str, int]:
    """name -> index of the root namespace's links starting with one of `prefixes`."""
    with IPRoute() as ipr:
        links = {str(link.get("IFLA_IFNAME")): int(link["index"]) for link in ipr.get_links()}
    return {name: index for name, index in links.items() if name.startswith(prefixes)}


def _tag_prefixes() -> tuple[str, ...]:
    return tuple(f"mo{host_tag(h)}" for h in HOSTS.values())


def _echoes(source: str, address: str, port: int) -> bool:
    """A TCP connection from `source` (an address of this namespace) that carries data."""
    with socket.socket() as s:
        s.settimeout(3.0)
        s.bind((source, 0))
        try:
            s.connect((address, port))
            s.sendall(b"mayu\n")
            return s.recv(16) == b"mayu\n"
        except OSError:
            return False


def _tls_certificate(source: str, address: str) -> str | None:
    """The certificate (PEM) a TLS handshake from `source` to `address`:6443 gets, unverified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.socket() as raw:
        raw.settimeout(3.0)
        raw.bind((source, 0))
        try:
            raw.connect((address, API_PORT))
            with context.wrap_socket(raw) as tls:
                der = tls.getpeercert(binary_form=True)
        except OSError:
            return None
    return ssl.DER_cert_to_PEM_cert(der) if der else None


def _ignition_api_cert(site: Site, node: str) -> str:
    """The apiserver certificate in the Ignition config the node's domain hands it (fw_cfg)."""
    xml = ET.fromstring(site.conn.lookupByName(node).XMLDesc(0))
    entry = xml.find(f"sysinfo/entry[@name='{FW_CFG_CONFIG}']")
    assert entry is not None and entry.get("file"), "no Ignition config in the domain"
    text = file_text(json.loads(Path(str(entry.get("file"))).read_text()), API_CERT)
    assert text, f"no {API_CERT} in {node}'s Ignition"
    return text


def _tenant_ca(site: Site, tenant: str) -> Path:
    """The CA of the tenant's admin kubeconfig (written out), which must point at the ingress."""
    out = site.server.mayuctl("tenants", "kubeconfig", tenant)
    assert out.returncode == 0, out.stderr
    cluster = yaml.safe_load(out.stdout)["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://{ingress_name(tenant, DOMAIN)}:{site.ingress_port}"
    path = site.work / f"{tenant}-ca.crt"
    path.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return path


def _verified(api: str, tenant: str, ca: Path) -> Handshake | None:
    seen = handshake(None, api, ingress_name(tenant, DOMAIN), ca)
    return seen if seen.ok else None


def _cleanup(site: Site | None, conn: libvirt.virConnect) -> None:
    if site is not None:
        for agent in site.agents.values():
            agent.kill(signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError):  # the HAProxy host a's agent left
            pidfile = site.work / "state-a" / "ingress" / "haproxy.pid"
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
    th.cleanup_libvirt(conn, [T1, T2])
    with IPRoute() as ipr:
        for index in _root_links(_tag_prefixes()).values():
            with contextlib.suppress(Exception):
                ipr.link("del", index=index)
    for host in HOSTS:
        subprocess.run(["ip", "netns", "del", f"mayu-s18ov-{host}-{SUFFIX}"], capture_output=True)


@pytest.fixture
def site() -> Iterator[Site]:
    th.ensure_daemons()
    work = th.make_workdir("mayu-s18ov")
    conn = libvirt.open(th.URI)
    server = None
    site = None
    try:
        th.install_lab_image(work / "images")
        port = _free_port()
        tenants = {"ingress_domain": DOMAIN, "ingress_port": port}
        server = start_server(work / "data", config={"tenants": tenants})
        site = Site(server, conn, work, ingress_port=port)
        a, b = site.ns("a"), site.ns("b")
        for ns in (a, b):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", a, "link", "add", "under0", "type", "veth", "peer", "name", "under0",
             "netns", b)  # fmt: skip
        for host, ns in (("a", a), ("b", b)):
            _run("ip", "-n", ns, "addr", "add", f"{UNDERLAY[host]}/24", "dev", "under0")
            _run("ip", "-n", ns, "link", "set", "under0", "up")
            answer = server.api(
                "POST", f"/api/v1/hosts/{HOSTS[host]}/approve", json={"underlay": UNDERLAY[host]}
            )
            assert answer.status_code == 201, answer.text
            site.start_agent(host, answer.json()["token"])
        yield site
    finally:
        _cleanup(site, conn)
        conn.close()
        if server is not None:
            server.kill()
        th.remove_tree(work)


def _hosts_alive(site: Site) -> bool:
    items = site.server.api("GET", "/api/v1/hosts").json()["items"]
    return {i["name"] for i in items if i.get("alive") and i.get("underlay")} >= set(HOSTS.values())


def _ready(site: Site, tenant: str) -> dict[str, dict] | None:
    nodes = site.nodes(tenant)
    return nodes if all(n["state"] == "ready" for n in nodes.values()) else None


def _interface(site: Site, node: str) -> ET.Element:
    iface = ET.fromstring(site.conn.lookupByName(node).XMLDesc(0)).find("devices/interface")
    assert iface is not None
    return iface


def test_tenant_vms_across_two_hosts_on_the_overlay(site: Site) -> None:
    th.wait_for("both agents' heartbeats", lambda: _hosts_alive(site), 30.0, 0.5)
    started = time.monotonic()
    for tenant, (cidr, vni) in NETS.items():
        path = th.write_tenant(site.work / f"{tenant}.yaml", tenant_doc(tenant, cidr, vni))
        out = site.server.mayuctl("tenants", "create", "-f", str(path))
        assert out.returncode == 0, out.stderr
    nodes = {t: th.wait_for(f"{t} ready", lambda t=t: _ready(site, t), READY_TIMEOUT_S, 1.0)
             for t in NETS}  # fmt: skip
    print(f"\n4 overlay nodes ready {time.monotonic() - started:.1f}s after create")

    for tenant, members in nodes.items():
        master, worker = members[f"{tenant}-master-0"], members[f"{tenant}-worker-0"]
        assert {master["host"], worker["host"]} == set(HOSTS.values())  # one on each host
        base = NETS[tenant][0].rsplit(".", 1)[0]
        assert (master["ip"], worker["ip"]) == (f"{base}.10", f"{base}.11")
        for name, info in members.items():
            tag = host_tag(info["host"])
            iface = _interface(site, name)
            source, mtu = iface.find("source"), iface.find("mtu")
            assert source is not None and source.get("network") == network_name(tenant, tag)
            assert mtu is not None and mtu.get("size") == "1450"
            rc, out = site.console(name, "ip -o -4 addr show eth0; cat /sys/class/net/eth0/mtu")
            assert rc == 0 and f"inet {info['ip']}/24" in out and out.split()[-1] == "1450", out
            net = ET.fromstring(site.conn.networkLookupByName(network_name(tenant, tag)).XMLDesc())
            assert net.find("ip") is None  # no address of the host, no DHCP
            forward, bridge = net.find("forward"), net.find("bridge")
            assert forward is not None and forward.get("mode") == "bridge"
            assert bridge is not None and bridge.get("name") == overlay_bridge(tag, NETS[tenant][1])

    # across the overlay inside a tenant, both ways; never across tenants (an on-link route
    # to the other tenant's subnet: only the overlay keeps them apart, and the nwfilter)
    m1, w1, m2, w2 = (f"{t}-{r}-0" for t in (T1, T2) for r in ("master", "worker"))
    ip = {n: info["ip"] for members in nodes.values() for n, info in members.items()}
    assert site.pings(m1, ip[w1]) and site.pings(w1, ip[m1])
    assert site.pings(m2, ip[w2]) and site.pings(w2, ip[m2])
    for node, other in ((m1, T2), (m2, T1)):
        assert site.console(node, f"ip route add {NETS[other][0]} dev eth0")[0] == 0
    assert not site.pings(m1, ip[m2]) and not site.pings(m1, ip[w2])
    assert not site.pings(m2, ip[m1]) and not site.pings(m2, ip[w1])

    # no address of a tenant in the hosts' namespaces (L2 only), and in the root namespace
    # only the tenants' ingress addresses, on host a's access bridges
    for h in HOSTS:
        assert "10.236." not in _run("ip", "-n", site.ns(h), "-o", "-4", "addr")
    found = re.findall(r"^\d+: (\S+)\s+inet (10\.236\.\S+)", _run("ip", "-o", "-4", "addr"), re.M)
    tag = host_tag(HOSTS["a"])
    assert sorted(found) == sorted(
        (overlay_bridge(tag, NETS[t][1]), f"{INGRESS[t]}/24") for t in NETS
    ), found

    # through host a's HAProxy (both masters are on host a: routes go to the host's own),
    # each tenant's API name reaches its master, which presents the certificate its Ignition
    # wrote: verified for that name against the tenant's CA, never the other's; an unknown
    # name gets no certificate
    assert {nodes[t][f"{t}-master-0"]["host"] for t in NETS} == {HOSTS["a"]}
    tls_started = time.monotonic()
    api = f"127.0.0.1:{site.ingress_port}"
    ca = {t: _tenant_ca(site, t) for t in NETS}
    issued = {t: _ignition_api_cert(site, f"{t}-master-0") for t in NETS}
    assert issued[T1] != issued[T2]
    for tenant, other in ((T1, T2), (T2, T1)):
        seen = th.wait_for(f"{tenant}'s API through the ingress",
                           lambda t=tenant: _verified(api, t, ca[t]), 30.0, 0.5)  # fmt: skip
        assert seen.certificate == issued[tenant], seen.output
        assert "kube-apiserver" in seen.subject
        assert not handshake(None, api, ingress_name(tenant, DOMAIN), ca[other]).ok
    unknown = handshake(None, api, ingress_name(f"s18ov-none-{SUFFIX}", DOMAIN), None)
    assert not unknown.ok and "no peer certificate available" in unknown.output, unknown.output
    print(f"TLS through the ingress checked in {time.monotonic() - tls_started:.1f}s")

    # the ingress address reaches a master's API port and nothing else of it; another
    # tenant's ingress address reaches nothing of the tenant (port 22: busybox nc)
    assert site.console(m1, LISTEN)[0] == 0
    th.wait_for("the master's listener (from its tenant)", lambda: "mayu" in site.console(
        w1, f"echo mayu | timeout 3 nc {ip[m1]} 22")[1], 15.0, 0.5)  # fmt: skip
    assert _tls_certificate(INGRESS[T1], ip[m1]) == issued[T1]
    assert not _echoes(INGRESS[T1], ip[m1], 22)
    assert _tls_certificate(INGRESS[T2], ip[m1]) is None

    # ARP for the ingress address never crosses the overlay (fenced off the VXLAN): each
    # node's is answered by its own host's access bridge alone (here b's too, as both hosts'
    # access bridges are in the root namespace, which holds a's address)
    with IPRoute() as ipr:
        macs = {str(link.get("IFLA_IFNAME")): link.get("IFLA_ADDRESS") for link in ipr.get_links()}
    for name, info in nodes[T1].items():
        out = site.console(name, f"arping -c2 -w3 -I eth0 {INGRESS[T1]}")[1]
        own = macs[overlay_bridge(host_tag(info["host"]), NETS[T1][1])]
        assert re.findall(r"reply from \S+ \[(\S+)\]", out) == [own, own], out

    # kill -9 of host a's agent, then a new one: nothing changes, nothing is applied
    before = (th.domains(site.conn, "s18ov-"), th.networks(site.conn, "mayu-tenant-s18ov-"),
              _root_links(_tag_prefixes()))  # fmt: skip
    assert len(before[0]) == 4 and all(d.pid for d in before[0].values())
    token = site.agents["a"].token
    site.agents["a"].kill(signal.SIGKILL)
    site.start_agent("a", token)
    th.wait_for(
        "two passes of the restarted agent",
        lambda: site.metric("a", r'^mayu_agent_reconciles_total\{outcome="completed"\}') >= 2,
        60.0, 0.5,
    )  # fmt: skip
    assert site.metric("a", r"^mayu_agent_actions_total\{") == 0
    after = (th.domains(site.conn, "s18ov-"), th.networks(site.conn, "mayu-tenant-s18ov-"),
             _root_links(_tag_prefixes()))  # fmt: skip
    assert after == before

    # deleting the tenants leaves nothing of them: domains, networks, bridges, veths
    for tenant in NETS:
        assert site.server.mayuctl("tenants", "delete", tenant).returncode == 0

    def gone() -> bool:
        return not (
            th.domains(site.conn, "s18ov-")
            or th.networks(site.conn, "mayu-tenant-s18ov-")
            or _root_links(_tag_prefixes())
        )

    th.wait_for("the tenants' objects gone", gone, 60.0, 0.5)
    for h in HOSTS:
        with IPRoute(netns=site.ns(h)) as ipr:
            names = {str(link.get("IFLA_IFNAME")) for link in ipr.get_links()}
        assert not {n for n in names if n.startswith(_tag_prefixes())}, names
