"""An attacker on the provisioning network, knowing every MAC, against a real `mayu serve`.

Two sites, each a namespace with a bridge the test creates (RECIPES.md section 8: no packet
leaves the machine), serve bound to the bridge's address with its HTTP and HTTPS listeners:
- full DHCP: serve's own dnsmasq leases the legitimate machines their addresses (busybox
  udhcpc in their namespaces), so boot tokens are bound to the leased address;
- proxy DHCP: serve's dnsmasq in proxy mode (addresses are someone else's business: the
  machines have static ones), so a token is bound to the address that asked for the script.
The attacker is another namespace on the same bridge. Each attempt is one test that asserts
the refusal and that the store (machine records, their events, alerts, tenants, hosts, read
through the admin API) changed by nothing but the record of the refusal. The legitimate
machines still provision afterwards: stub over HTTP, real config over HTTPS, hash checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mayu_py.command import run
from tests.conftest import RunningServer, start_server
from tests.peers.netns_helpers import BRIDGE, NetHost, NetLab, net_lab, udhcpc
from tests.support.boot import boot_token
from tests.support.flask_app import file_of, has_private_key
from tests.support.tenants import tenant_doc

pytestmark = pytest.mark.peer

if os.geteuid() != 0 or not shutil.which("dnsmasq") or not shutil.which("busybox"):
    pytest.skip("needs root, dnsmasq and busybox", allow_module_level=True)

ATTACKER_MAC = "02:66:00:00:00:66"
CONTROLLER_MAC = "02:77:00:00:00:c1"  # a config group names it a controller
CONTROLLER_UUID = "5f1b8b1e-0c39-4b0b-9e5c-6a8c3f1d2ec1"
# Kinds of event a refused request may leave behind: the operator sees who tried what.
REPORT_TOKEN = "/etc/mayu/report.token"
REFUSAL_RECORDS = frozenset({"alert", "ignition-refused", "report-refused", "identity-mismatch"})


@dataclass
class Site:
    """A served network: its lab, the server inside it, the attacker's host on its bridge."""

    lab: NetLab
    server: RunningServer
    attacker: NetHost
    workdir: Path
    full_dhcp: bool

    def machine(self, mac: str, octet: int) -> NetHost:
        """A legitimate machine on the bridge: with a lease from serve's dnsmasq (full DHCP)
        or the static address prefix.octet (proxy DHCP)."""
        if not self.full_dhcp:
            ns, _ = self.lab.add_namespace(mac, f"{self.lab.prefix}.{octet}")
            return NetHost(ns, mac, f"{self.lab.prefix}.{octet}")
        ns, ifname = self.lab.add_namespace(mac)
        lease = udhcpc(ns, ifname, self.workdir)["ip"]
        leases = self.server.data_dir / "dhcp" / "leases"
        deadline = time.monotonic() + 10
        while f"{mac} {lease} " not in leases.read_text():
            assert time.monotonic() < deadline, f"no lease of {lease} to {mac} on file"
            time.sleep(0.1)
        return NetHost(ns, mac, lease)

    def enrolled(self, mac: str, octet: int, role: str = "worker") -> NetHost:
        """A machine that booted once (discovered) and that the operator approved."""
        host = self.machine(mac, octet)
        assert "waiting for approval" in self.ipxe(host).text
        approved = self.server.api("POST", f"/api/v1/machines/{mac}/approve", json={"role": role})
        assert approved.status_code == 200, approved.text
        return host

    def ipxe(self, host: NetHost, mac: str | None = None, **identity: str) -> requests.Response:
        """GET /ipxe from `host`, for its own MAC unless told another."""
        params = {"mac": mac or host.mac, **identity}
        return host.get(f"{self.server.url}/ipxe", params=params)

    def token(self, host: NetHost, **identity: str) -> str:
        response = self.ipxe(host, **identity)
        assert response.status_code == 200 and "kernel " in response.text, response.text
        return boot_token(response.text)

    def stub(self, host: NetHost, mac: str, token: str) -> requests.Response:
        return host.get(f"{self.server.url}/ignition", params={"mac": mac, "token": token})

    def secret(self, host: NetHost, mac: str, token: str) -> requests.Response:
        return host.get(
            f"{self.server.tls_url}/ignition",
            params={"mac": mac, "token": token},
            verify=str(self.server.ca_file),
        )

    def report(
        self, host: NetHost, mac: str, event: str, token: str = "", credential: str = ""
    ) -> requests.Response:
        params = {"mac": mac} | ({"token": token} if token else {})
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        return host.request(
            "POST",
            f"{self.server.tls_url}/report",
            params=params,
            json={"event": event},
            headers=headers,
            verify=str(self.server.ca_file),
        )

    def provision(self, host: NetHost, token: str | None = None) -> dict[str, Any]:
        """As the machine does: the stub over HTTP, the real config it names over HTTPS with
        the pinned CA and the SHA-512, then `installed`. Returns the real config."""
        token = token or self.token(host)
        stub = self.stub(host, host.mac, token)
        assert stub.status_code == 200, stub.text
        assert not has_private_key(stub.content) and b"PRIVATE" not in stub.content
        ignition = stub.json()["ignition"]
        merge = ignition["config"]["merge"][0]
        assert merge["source"].startswith(self.server.tls_url)
        secret = host.get(merge["source"], verify=str(self.server.ca_file))
        assert secret.status_code == 200, secret.text
        assert (
            merge["verification"]["hash"] == "sha512-" + hashlib.sha512(secret.content).hexdigest()
        )
        assert has_private_key(secret.content)
        assert self.report(host, host.mac, "installed", token=token).status_code == 200
        return json.loads(secret.content)


def _serve_config(lab: NetLab, full_dhcp: bool) -> dict[str, Any]:
    dhcp: dict[str, Any] = {
        "mode": "full" if full_dhcp else "proxy",
        "interface": BRIDGE,
        "server_ip": lab.server_ip,
        "subnet": lab.subnet,
    }
    if full_dhcp:
        dhcp |= {"range_start": f"{lab.prefix}.100", "range_end": f"{lab.prefix}.199"}
    groups = [
        {"name": "controllers", "profile": "controller", "selector": {"role": "controller"}},
        {"name": "workers", "profile": "worker", "selector": {"role": "worker"}},
        {
            "name": "c1",
            "profile": "controller",
            "selector": {"mac": CONTROLLER_MAC, "uuid": CONTROLLER_UUID},
        },
    ]
    return {"dhcp": dhcp, "groups": groups}


@contextmanager
def served_site(full_dhcp: bool) -> Iterator[Site]:
    """A lab with `mayu serve --dhcp full|proxy` on its bridge and the attacker's host."""
    workdir = Path(tempfile.mkdtemp(prefix="mayu-hostile-"))
    workdir.chmod(0o755)  # dnsmasq drops to nobody and must reach its TFTP root under it
    try:
        with net_lab() as lab:
            attacker_ns, _ = lab.add_namespace(ATTACKER_MAC, f"{lab.prefix}.66")
            server = start_server(
                workdir / "data",
                config=_serve_config(lab, full_dhcp),
                listen=f"{lab.server_ip}:8080",
                tls_listen=f"{lab.server_ip}:8443",
                extra_args=("--dhcp", "full" if full_dhcp else "proxy"),
                namespace=lab.server_ns,
            )
            try:
                attacker = NetHost(attacker_ns, ATTACKER_MAC, f"{lab.prefix}.66")
                yield Site(lab, server, attacker, workdir, full_dhcp)
            finally:
                # SIGTERM to serve alone: serve itself stops its dnsmasq (a signal to the
                # whole group would have the supervisor start it again).
                server.process.send_signal(signal.SIGTERM)
                server.process.wait(timeout=30)
                left = run(["ip", "netns", "pids", lab.server_ns], check=False).stdout.split()
                server.kill()
            assert not left, f"processes outlived mayu serve: {left}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def full() -> Iterator[Site]:
    with served_site(full_dhcp=True) as site:
        yield site


@pytest.fixture(scope="module")
def proxy() -> Iterator[Site]:
    with served_site(full_dhcp=False) as site:
        yield site


# -- the store, as the operator sees it -------------------------------------------------------


def inventory(server: RunningServer) -> dict[str, Any]:
    """Machines with their events, alerts, tenants and hosts, read through the admin API."""
    auth = {"Authorization": f"Bearer {server.token}"}

    def read() -> dict[str, Any]:
        def get(path: str) -> Any:
            response = requests.get(server.url + path, headers=auth, timeout=30)
            assert response.status_code == 200, response.text
            return response.json()

        machines = {m["id"]: m for m in get("/api/v1/machines")["items"]}
        return {
            "machines": machines,
            "events": {i: get(f"/api/v1/machines/{i}/events")["items"] for i in machines},
            "alerts": get("/api/v1/events")["items"],
            "tenants": get("/api/v1/tenants")["items"],
            "hosts": [h | {"alive": None} for h in get("/api/v1/hosts")["items"]],
        }

    return server.inside(read)


def unchanged_but_refusals(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Assert that nothing changed but refusals recorded as events; return those events."""
    assert after["machines"] == before["machines"]
    assert after["tenants"] == before["tenants"] and after["hosts"] == before["hosts"]
    new: list[dict[str, Any]] = []
    for machine, events in after["events"].items():
        seen = {e["seq"] for e in before["events"][machine]}
        assert {e["seq"] for e in events} >= seen, f"events of {machine} were dropped"
        new += [e for e in events if e["seq"] not in seen]
    seen_alerts = {e["seq"] for e in before["alerts"]}
    new += [e for e in after["alerts"] if e["seq"] not in seen_alerts]
    assert {e["kind"] for e in new} <= REFUSAL_RECORDS, new
    return new


def no_secret(response: requests.Response) -> None:
    """A refusal carries no config, key or token."""
    assert b"PRIVATE KEY" not in response.content and b"storage" not in response.content
    assert "token=" not in response.text


# -- outside any window -----------------------------------------------------------------------


@pytest.mark.parametrize("site_name", ["full", "proxy"])
def test_no_secret_for_a_discovered_machine(site_name: str, request: pytest.FixtureRequest) -> None:
    site: Site = request.getfixturevalue(site_name)
    victim = site.machine("02:77:00:00:01:01" if site.full_dhcp else "02:78:00:00:01:01", 11)
    assert "waiting for approval" in site.ipxe(victim).text
    before = inventory(site.server)
    script = site.ipxe(site.attacker, victim.mac)
    assert script.status_code == 200 and "kernel" not in script.text
    no_secret(script)
    for fetch in (site.stub, site.secret):
        response = fetch(site.attacker, victim.mac, "A" * 32)
        assert response.status_code == 403
        no_secret(response)
    unchanged_but_refusals(before, inventory(site.server))


def test_no_secret_for_a_running_machine(full: Site) -> None:
    victim = full.enrolled("02:77:00:00:02:01", 12)
    credential = file_of(full.provision(victim), REPORT_TOKEN).strip()
    assert full.report(victim, victim.mac, "running", credential=credential).status_code == 200
    before = inventory(full.server)
    assert before["machines"][victim.mac]["state"] == "running"
    script = full.ipxe(full.attacker, victim.mac)
    assert script.status_code == 200 and "kernel" not in script.text
    no_secret(script)
    for token in ("A" * 32, ""):
        assert full.stub(full.attacker, victim.mac, token).status_code == 403
        assert full.secret(full.attacker, victim.mac, token).status_code == 403
    unchanged_but_refusals(before, inventory(full.server))


def test_no_secret_from_the_admin_plane_or_assets_without_a_token(full: Site) -> None:
    before = inventory(full.server)
    base = full.server.url
    for path in (
        "/api/v1/kubeconfig",
        "/api/v1/machines",
        "/api/v1/tenants/acme/kubeconfig",
        "/api/v1/tenants/acme/nodes/acme-master-0/ignition",
    ):
        for headers in ({}, {"Authorization": "Bearer " + "A" * 43}):
            response = full.attacker.get(base + path, headers=headers)
            assert response.status_code == 401, path
            assert response.headers["Content-Type"] == "application/problem+json"
            no_secret(response)
    for path in (
        "/assets/../pki/server/ca.key",
        "/assets/%2e%2e/admin.token",
        "/assets/..%2fagent.key",
    ):
        response = full.attacker.get(base + path)
        assert response.status_code == 404, path
        assert b"PRIVATE" not in response.content
    unchanged_but_refusals(before, inventory(full.server))


# -- inside a window --------------------------------------------------------------------------


def test_full_dhcp_window_is_bound_to_the_leased_address(full: Site) -> None:
    victim = full.enrolled("02:77:00:00:03:01", 13)
    token = full.token(victim)
    before = inventory(full.server)
    script = full.ipxe(full.attacker, victim.mac)
    assert script.status_code == 200 and "token=" not in script.text
    # Even the real token (sniffed off the wire) is no good from another address.
    for fetch in (full.stub, full.secret):
        response = fetch(full.attacker, victim.mac, token)
        assert response.status_code == 403
        no_secret(response)
    for event in ("failed", "installed"):
        assert full.report(full.attacker, victim.mac, event, token=token).status_code == 403
    new = unchanged_but_refusals(before, inventory(full.server))
    assert any(e["kind"] == "alert" and f"leased to {victim.address}" in e["cause"] for e in new)
    full.provision(victim, token)


def test_proxy_second_requester_inside_the_window_is_refused_and_alerted(proxy: Site) -> None:
    victim = proxy.enrolled("02:78:00:00:03:01", 13)
    token = proxy.token(victim)
    before = inventory(proxy.server)
    script = proxy.ipxe(proxy.attacker, victim.mac)
    assert script.status_code == 200 and "token=" not in script.text
    for fetch in (proxy.stub, proxy.secret):
        response = fetch(proxy.attacker, victim.mac, token)
        assert response.status_code == 403
        no_secret(response)
    for event in ("failed", "installed"):
        assert proxy.report(proxy.attacker, victim.mac, event, token=token).status_code == 403
    new = unchanged_but_refusals(before, inventory(proxy.server))
    alerts = [e for e in new if e["kind"] == "alert"]
    assert alerts and alerts[0]["source"] == proxy.attacker.address
    assert "second requester" in alerts[0]["cause"]
    proxy.provision(victim, token)


# -- becoming a controller, an agent host; pulling tenant nodes ------------------------------


@pytest.mark.parametrize("site_name", ["full", "proxy"])
def test_no_controller_by_arrival_or_by_asking(
    site_name: str, request: pytest.FixtureRequest
) -> None:
    site: Site = request.getfixturevalue(site_name)
    tag = 1 if site.full_dhcp else 2
    for i in range(5):
        mac = f"02:66:00:00:{i + 1:02x}:{tag:02x}"
        params = {"role": "controller", "labels": "role=controller", "profile": "controller"}
        response = site.attacker.get(f"{site.server.url}/ipxe", params={"mac": mac, **params})
        assert response.status_code == 200 and "token=" not in response.text
    before = inventory(site.server)
    for mac in (f"02:66:00:00:01:{tag:02x}", CONTROLLER_MAC):
        for headers in ({}, {"Authorization": "Bearer attacker." + "0" * 64}):
            response = site.attacker.request(
                "POST",
                f"{site.server.url}/api/v1/machines/{mac}/approve",
                json={"role": "controller"},
                headers=headers,
            )
            assert response.status_code == 401
    unchanged_but_refusals(before, inventory(site.server))
    machines = inventory(site.server)["machines"].values()
    assert not [m for m in machines if m["labels"].get("role") == "controller"]
    assert all(m["state"] == "discovered" for m in machines if m["id"].startswith("02:66"))


def test_full_dhcp_a_named_controller_mac_from_another_address_changes_nothing(full: Site) -> None:
    before = inventory(full.server)
    response = full.ipxe(full.attacker, CONTROLLER_MAC, uuid=CONTROLLER_UUID)
    assert response.status_code == 200 and "token=" not in response.text
    new = unchanged_but_refusals(before, inventory(full.server))
    assert [e["kind"] for e in new] == ["alert"] and CONTROLLER_MAC not in before["machines"]
    # The real machine, from its leased address, is approved by its group and provisions.
    real = full.machine(CONTROLLER_MAC, 0)
    config = full.provision(real, full.token(real, uuid=CONTROLLER_UUID))
    assert "/etc/kubernetes/pki/ca.key" in {f["path"] for f in config["storage"]["files"]}


def test_no_agent_host_and_no_tenant_nodes_without_a_token(full: Site) -> None:
    """A running machine is an agent host (its agent token came in its config) with a tenant
    placed on it; the attacker, without a token of its own, gets none of it."""
    host = full.enrolled("02:77:00:00:09:01", 19)
    config = full.provision(host)
    credential = file_of(config, REPORT_TOKEN).strip()
    assert full.report(host, host.mac, "running", credential=credential).status_code == 200
    name = f"node-{host.mac.replace(':', '')}"
    agent = {"Authorization": "Bearer " + file_of(config, "/etc/mayu/agent.token").strip()}
    heartbeat = {"name": name, "cpus": 4, "memory_mib": 8192, "address": host.address}
    url = full.server.url
    assert host.request("POST", f"{url}/api/v1/hosts", json=heartbeat, headers=agent).ok
    doc = tenant_doc("acme", "10.100.0.0/24", 100)
    assert full.server.api("POST", "/api/v1/tenants", json=doc).status_code == 201
    before = inventory(full.server)
    assert {n["host"] for n in before["tenants"][0]["status"]["nodes"]} == {name}
    greedy = {"name": "attacker", "cpus": 4096, "memory_mib": 1 << 24}
    for headers in ({}, {"Authorization": "Bearer attacker." + "0" * 64}):
        for body in (greedy, heartbeat):
            response = full.attacker.request(
                "POST", f"{url}/api/v1/hosts", json=body, headers=headers
            )
            assert response.status_code == 401
        for path in (
            f"/api/v1/hosts/{name}/nodes",
            "/api/v1/hosts/attacker/nodes",
            "/api/v1/tenants/acme/nodes/acme-master-0/ignition",
            "/api/v1/tenants/acme/kubeconfig",
            f"/api/v1/hosts/{name}/tenants/acme/drain-kubeconfig",
        ):
            response = full.attacker.get(url + path, headers=headers)
            assert response.status_code == 401, path
            no_secret(response)
    unchanged_but_refusals(before, inventory(full.server))


# -- moving a machine's state or identity -----------------------------------------------------


@pytest.mark.parametrize("site_name", ["full", "proxy"])
def test_no_change_of_state_or_identity_by_unauthenticated_requests(
    site_name: str, request: pytest.FixtureRequest
) -> None:
    site: Site = request.getfixturevalue(site_name)
    victim = site.enrolled("02:77:00:00:04:01" if site.full_dhcp else "02:78:00:00:04:01", 14)
    site.provision(victim)
    before = inventory(site.server)
    assert before["machines"][victim.mac]["ip"] == victim.address
    spoof = {"uuid": "00000000-0000-0000-0000-000000000001", "serial": "EVIL"}
    assert "token=" not in site.ipxe(site.attacker, victim.mac, **spoof).text
    assert "token=" not in site.ipxe(site.attacker, victim.mac).text
    for event in ("failed", "running", "booted"):
        for token, credential in (("A" * 32, ""), ("", "A" * 32), ("", "")):
            response = site.report(site.attacker, victim.mac, event, token, credential)
            assert response.status_code == 403, response.text
    unchanged_but_refusals(before, inventory(site.server))


def test_reports_for_another_machine_are_refused(proxy: Site) -> None:
    """The attacker owns an enrolled machine of its own: its credentials reach only that."""
    own = NetHost(proxy.attacker.namespace, proxy.attacker.mac, proxy.attacker.address)
    assert "waiting" in proxy.ipxe(own).text
    assert (
        proxy.server.api(
            "POST", f"/api/v1/machines/{own.mac}/approve", json={"role": "worker"}
        ).status_code
        == 200
    )
    own_token = proxy.token(own)
    credential = file_of(proxy.provision(own, own_token), REPORT_TOKEN).strip()
    victim = proxy.enrolled("02:78:00:00:05:01", 15)
    victim_token = proxy.token(victim)
    before = inventory(proxy.server)
    for token, cred in ((own_token, ""), ("", credential), (own_token, credential)):
        response = proxy.report(proxy.attacker, victim.mac, "failed", token, cred)
        assert response.status_code == 403
    unchanged_but_refusals(before, inventory(proxy.server))
    proxy.provision(victim, victim_token)


# -- replay, HEAD -----------------------------------------------------------------------------


@pytest.mark.parametrize("site_name", ["full", "proxy"])
def test_a_spent_token_is_refused(site_name: str, request: pytest.FixtureRequest) -> None:
    site: Site = request.getfixturevalue(site_name)
    victim = site.enrolled("02:77:00:00:06:01" if site.full_dhcp else "02:78:00:00:06:01", 16)
    token = site.token(victim)
    site.provision(victim, token)
    before = inventory(site.server)
    for host in (victim, site.attacker):
        for fetch in (site.stub, site.secret):
            response = fetch(host, victim.mac, token)
            assert response.status_code == 403
            no_secret(response)
        assert site.report(host, victim.mac, "failed", token=token).status_code == 403
    unchanged_but_refusals(before, inventory(site.server))


def test_head_has_no_side_effects(full: Site) -> None:
    victim = full.enrolled("02:77:00:00:07:01", 17)
    token = full.token(victim)
    before = inventory(full.server)
    url = full.server.url
    for host in (victim, full.attacker):
        for path, params in (
            ("/ipxe", {"mac": victim.mac}),
            ("/ipxe", {"mac": "02:66:00:00:07:01"}),
            ("/ignition", {"mac": victim.mac, "token": token}),
        ):
            response = host.request("HEAD", url + path, params=params)
            assert response.status_code == 405 and response.headers["Allow"] == "GET"
        assert host.request("HEAD", url + "/report", params={"mac": victim.mac}).status_code == 405
    assert inventory(full.server) == before
    full.provision(victim, token)  # the token HEAD was shown is still good


# -- the legitimate machines still provision ------------------------------------------------


@pytest.mark.parametrize("site_name", ["full", "proxy"])
def test_a_legitimate_machine_still_provisions(
    site_name: str, request: pytest.FixtureRequest
) -> None:
    site: Site = request.getfixturevalue(site_name)
    machine = site.enrolled("02:77:00:00:08:01" if site.full_dhcp else "02:78:00:00:08:01", 18)
    config = site.provision(machine)
    assert file_of(config, REPORT_TOKEN).strip()
    events = site.server.api("GET", f"/api/v1/machines/{machine.mac}/events").json()["items"]
    assert events[-1]["to"] == "installed"
    assert not [e for e in events if e["kind"] in REFUSAL_RECORDS]
