"""The lab's server config names every lab machine by MAC: the first min(controller_count, N)
are controllers, the rest workers, whatever order they boot in (never by arrival order)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from mayu_py.cli.serving import load_tls
from mayu_py.config import load_settings
from mayu_py.errors import ConfigError
from mayu_py.lab import topology as topo
from mayu_py.lab.site import REPORT_DETAILS_MAX_BYTES, serve_config, site_dnsmasq_conf
from mayu_py.pki.x509 import load_certificate
from mayu_py.server.app import create_app
from mayu_py.server.urls import server_urls
from mayu_py.store import open_store

TOKEN = "lab-site-test-token"


def _settings(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _user_file(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_one_group_per_machine_by_mac(tmp_path: Path) -> None:
    machines = topo.lab_machines(5)
    config = serve_config(machines, "full", tmp_path / "data", None)
    settings = load_settings(_settings(tmp_path, config), environ={})
    assert [(g.name, g.profile, g.selector) for g in settings.groups] == [
        (m.name, "controller" if m.index <= 3 else "worker", {"mac": m.mac}) for m in machines
    ]
    controllers = machines[:3]
    assert [(e.name, e.address) for e in settings.cluster.etcd_members] == [
        (m.hostname, m.ip) for m in controllers
    ]
    assert settings.dhcp.reservations == {m.mac: m.ip for m in machines}


@pytest.mark.parametrize(("count", "machines", "controllers"), [(1, 3, 1), (5, 2, 2)])
def test_controller_count_from_the_users_file(
    tmp_path: Path, count: int, machines: int, controllers: int
) -> None:
    user = _user_file(tmp_path, {"cluster": {"controller_count": count}})
    config = serve_config(topo.lab_machines(machines), "full", tmp_path / "data", user)
    profiles = [g["profile"] for g in config["groups"]]
    assert profiles == ["controller"] * controllers + ["worker"] * (machines - controllers)
    assert len(config["cluster"]["etcd_members"]) == controllers


def test_the_users_etcd_members_win_and_proxy_drops_address_settings(tmp_path: Path) -> None:
    members = [{"name": "x", "address": "10.77.0.50"}]
    user = _user_file(
        tmp_path,
        {
            "cluster": {"etcd_members": members},
            "dhcp": {"range_start": "10.77.0.5", "lease_time": "2h"},
        },
    )
    config = serve_config(topo.lab_machines(2), "proxy", tmp_path / "data", user)
    assert config["cluster"]["etcd_members"] == members
    assert "range_start" not in config["dhcp"] and config["dhcp"]["lease_time"] == "2h"
    assert "reservations" not in config["dhcp"] and config["dhcp"]["mode"] == "proxy"


def test_manual_approval_names_no_group_and_keeps_the_users(tmp_path: Path) -> None:
    """`up --approve manual`: the lab's machines wait, discovered, for an operator; a group
    of the user's own file still approves what it selects."""
    mine = {"name": "rack-a", "profile": "worker", "selector": {"rack": "a"}}
    user = _user_file(tmp_path, {"groups": [mine]})
    machines = topo.lab_machines(2)
    config = serve_config(machines, "full", tmp_path / "data", user, approve_by_config=False)
    assert config["groups"] == [mine]
    assert "groups" not in serve_config(
        machines, "full", tmp_path / "data", None, approve_by_config=False
    )
    # the etcd members stay pinned to the machines the lab would name controllers
    assert config["cluster"]["etcd_members"] == [
        {"name": m.hostname, "address": m.ip} for m in machines
    ]


def test_a_bad_user_file_is_one_line(tmp_path: Path) -> None:
    user = _user_file(tmp_path, {"cluster": {"controller_count": 0}})
    with pytest.raises(ConfigError, match=r"^config error at cluster\.controller_count"):
        serve_config(topo.lab_machines(1), "full", tmp_path / "data", user)


def test_the_server_gives_each_machine_its_named_profile_in_any_boot_order(
    tmp_path: Path,
) -> None:
    """The lab's groups name each machine, so a machine booting first does not become a
    controller: each is approved by its own group at its first boot request."""
    machines = topo.lab_machines(4)
    config = serve_config(machines, "full", tmp_path / "data", None)
    settings = load_settings(_settings(tmp_path, config), environ={})
    leases = {m.mac: m.ip for m in machines}  # full DHCP: each asks from its leased address
    app = create_app(settings, open_store(settings.data_path), TOKEN, lease_of=leases.get)
    client = app.test_client()
    for m in reversed(machines):  # lab4 asks first
        response = client.get(
            "/ipxe",
            query_string={"mac": m.mac, "uuid": m.uuid},
            environ_base={"REMOTE_ADDR": m.ip},
        )
        assert response.status_code == 200, response.get_data(as_text=True)
    listed = client.get("/api/v1/machines", headers={"Authorization": f"Bearer {TOKEN}"})
    profiles = {m["mac"]: (m["profile"], m["state"]) for m in listed.get_json()["items"]}
    assert profiles == {
        m.mac: ("controller" if m.index <= 3 else "worker", "configured") for m in machines
    }


def test_site_dnsmasq_conf_has_reservations_and_no_boot_options(tmp_path: Path) -> None:
    machines = topo.lab_machines(2)
    conf = site_dnsmasq_conf(machines, tmp_path / "site.leases")
    assert all(f"dhcp-host={m.mac},{m.ip}" in conf for m in machines)
    assert "no-ping" in conf and f"dhcp-leasefile={tmp_path / 'site.leases'}" in conf
    assert "dhcp-boot" not in conf and "pxe" not in conf


@pytest.mark.parametrize("dhcp", ["full", "proxy"])
def test_https_listens_inside_the_namespace_and_the_certificate_names_it(
    tmp_path: Path, dhcp: str
) -> None:
    user = _user_file(tmp_path, {"server": {"tls": {"listen": "0.0.0.0:9443"}}})
    config = serve_config(topo.lab_machines(1), dhcp, tmp_path / "data", user)
    settings = load_settings(_settings(tmp_path, config), environ={})
    assert settings.server.tls_listen == f"{topo.SERVER_IP}:{topo.TLS_PORT}"  # the lab's wins
    assert server_urls(settings, f"{topo.SERVER_URL}/").https == topo.SERVER_TLS_URL
    certificate = load_certificate(load_tls(settings).cert_file.read_text())
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(topo.SERVER_IP) in sans.get_values_for_type(x509.IPAddress)
    assert settings.server.report_details_max_bytes == REPORT_DETAILS_MAX_BYTES
