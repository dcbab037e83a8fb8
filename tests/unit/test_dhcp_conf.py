"""mayu_py.dhcp without dnsmasq: rendering, validation (fake interfaces), leases, TFTP root."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mayu_py.config import DhcpConfig
from mayu_py.dhcp import (
    prepare_tftp_root,
    read_leases,
    render_dnsmasq_conf,
    validate_dhcp,
)
from mayu_py.dhcp.addresses import InterfaceAddresses, parse_ip_addr_json
from mayu_py.errors import BadRequest, ConfigError
from mayu_py.model import canonical_mac

URL = "http://10.77.0.1:8080/boot.ipxe"


def fake(ipv6: bool = False) -> InterfaceAddresses:
    addrs = [ipaddress.ip_interface("10.77.0.1/24"), ipaddress.ip_interface("fe80::1/64")]
    if ipv6:
        addrs.append(ipaddress.ip_interface("fd77::1/64"))
    return {"lo": [ipaddress.ip_interface("127.0.0.1/8")], "mayu-br0": addrs}


def full(**changes: object) -> DhcpConfig:
    base = {
        "mode": "full",
        "interface": "mayu-br0",
        "server_ip": "10.77.0.1",
        "subnet": "10.77.0.0/24",
        "range_start": "10.77.0.100",
        "range_end": "10.77.0.199",
        "reservations": {"52-54-00-77-00-31": "10.77.0.31"},
    }
    return DhcpConfig(**{**base, **changes})


def render(cfg: DhcpConfig, ipv6: bool = False, **kwargs: object) -> list[str]:
    text = render_dnsmasq_conf(
        cfg,
        boot_url=URL,
        tftp_root=Path("/var/lib/mayu/tftp"),
        lease_file=Path("/var/lib/mayu/dnsmasq.leases"),
        addresses=lambda: fake(ipv6),
        **kwargs,  # type: ignore[arg-type]
    )
    return text.splitlines()


def test_full_mode_lines() -> None:
    lines = render(full(), pid_file=Path("/run/mayu/dnsmasq.pid"))
    for expected in [
        "port=0",
        "interface=mayu-br0",
        "bind-interfaces",
        "except-interface=lo",
        "pid-file=/run/mayu/dnsmasq.pid",
        "dhcp-authoritative",
        "dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h",
        "dhcp-leasefile=/var/lib/mayu/dnsmasq.leases",
        "enable-tftp",
        "tftp-root=/var/lib/mayu/tftp",
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:ipxe,175",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
        "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi",
        f"dhcp-boot=tag:ipxe,{URL}",
        "dhcp-option-force=tag:ipxe,175,b0:01:01",  # iPXE's no-pxedhcp: no ProxyDHCP wait
        "dhcp-host=52:54:00:77:00:31,10.77.0.31",
        "no-ping",
    ]:
        assert expected in lines
    assert not any(line.startswith("pxe-service") for line in lines)
    assert "enable-ra" not in lines
    assert any("ip -6 addr add fd77::1/64 dev mayu-br0 nodad" in line for line in lines)


def test_pid_file_defaults_to_none() -> None:
    assert "pid-file=" in render(full())


def test_full_mode_router_advertisements_when_interface_has_ipv6() -> None:
    lines = render(full(), ipv6=True)
    assert "enable-ra" in lines
    assert "dhcp-range=::,constructor:mayu-br0,ra-only" in lines
    assert "ra-param=mayu-br0,10,0" in lines
    assert "enable-ra" not in render(full(), ipv6=True, router_advertisements=False)


def test_forcing_router_advertisements_without_ipv6_is_an_error() -> None:
    with pytest.raises(ConfigError, match="need an IPv6 address on mayu-br0"):
        render(full(), router_advertisements=True)


def test_proxy_mode_lines() -> None:
    lines = render(DhcpConfig(mode="proxy", interface="mayu-br0"))
    assert "dhcp-range=10.77.0.0,proxy,255.255.255.0" in lines
    assert 'pxe-service=tag:!ipxe,x86PC,"chainload iPXE",undionly.kpxe' in lines
    assert 'pxe-service=tag:!ipxe,BC_EFI,"chainload iPXE EFI",ipxe.efi' in lines
    assert 'pxe-service=tag:!ipxe,x86-64_EFI,"chainload iPXE EFI",ipxe.efi' in lines
    for csa in ("x86PC", "BC_EFI", "x86-64_EFI"):
        assert f'pxe-service=tag:ipxe,{csa},"iPXE script",{URL}' in lines
    assert "dhcp-authoritative" not in lines
    assert not any(line.startswith("dhcp-option-force=tag:ipxe,175") for line in lines)
    assert not any(line.startswith("dhcp-boot") for line in lines)
    assert "no-ping" in lines
    assert "enable-ra" not in render(DhcpConfig(mode="proxy", interface="mayu-br0"), ipv6=True)


def test_proxy_mode_ignores_reservations_with_a_comment() -> None:
    cfg = DhcpConfig(
        mode="proxy", interface="mayu-br0", reservations={"52:54:00:00:00:01": "10.77.0.5"}
    )
    lines = render(cfg)
    assert not any(line.startswith("dhcp-host") for line in lines)
    assert any("reservations ignored" in line for line in lines)


def test_server_ip_and_subnet_default_from_the_interface() -> None:
    lines = render(full(server_ip=None, subnet=None))
    assert "dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h" in lines


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"interface": "mayu-nope0"}, "dhcp.interface: no interface 'mayu-nope0' on this host"),
        ({"interface": None}, "dhcp.interface is required"),
        ({"interface": "lo"}, "dhcp.server_ip: 10.77.0.1 is not an address of lo"),
        ({"server_ip": "10.77.0.2"}, "dhcp.server_ip: 10.77.0.2 is not an address of mayu-br0"),
        ({"server_ip": "nope"}, "dhcp.server_ip: 'nope' is not an IPv4 address"),
        ({"subnet": "10.78.0.0/24"}, "dhcp.subnet: 10.78.0.0/24 is not the subnet of mayu-br0"),
        ({"range_start": "10.78.0.100"}, "dhcp.range_start: 10.78.0.100 is outside"),
        ({"range_end": "10.77.0.255"}, "dhcp.range_end: 10.77.0.255 is outside"),
        ({"range_start": "10.77.0.200"}, "dhcp.range_start 10.77.0.200 is after"),
        ({"range_start": None}, "dhcp.range_start and dhcp.range_end are required"),
        ({"range_start": "10.77.0.1"}, "contains dhcp.server_ip 10.77.0.1"),
        ({"reservations": {"52:54:00:00:00:01": "10.78.0.5"}}, "10.78.0.5 is outside"),
        ({"reservations": {"zz:54:00:00:00:01": "10.77.0.5"}}, "'zz:54:00:00:00:01' is not a MAC"),
        ({"reservations": {"52:54:00:00:00:01": "10.77.0.1"}}, "is the server's own address"),
        (
            {"reservations": {"52:54:00:00:00:01": "10.77.0.5", "52:54:00:00:00:02": "10.77.0.5"}},
            "10.77.0.5 is already reserved for 52:54:00:00:00:01",
        ),
        (
            {"reservations": {"52:54:00:00:00:01": "10.77.0.5", "52-54-00-00-00-01": "10.77.0.6"}},
            "MAC 52:54:00:00:00:01 is listed twice",
        ),
        ({"lease_time": "forever"}, "dhcp.lease_time: 'forever' is not a duration"),
    ],
)
def test_validation_errors_are_one_line(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_dhcp(full(**changes), addresses=fake)
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_validation_passes_and_mode_off_needs_nothing() -> None:
    validate_dhcp(full(), addresses=fake)
    validate_dhcp(DhcpConfig(mode="proxy", interface="mayu-br0"), addresses=fake)

    def boom() -> InterfaceAddresses:
        raise AssertionError("mode off must not look at interfaces")

    validate_dhcp(DhcpConfig(), addresses=boom)


def test_interface_without_ipv4_is_an_error() -> None:
    def v6_only() -> InterfaceAddresses:
        return {"mayu-br0": [ipaddress.ip_interface("fd77::1/64")]}

    with pytest.raises(ConfigError, match="mayu-br0 has no IPv4 address"):
        validate_dhcp(full(), addresses=v6_only)


@pytest.mark.parametrize("url", ["ftp://x/boot", "http://a b/boot.ipxe", "http://x/a,b"])
def test_bad_boot_url_is_rejected(url: str) -> None:
    with pytest.raises(ConfigError, match="boot URL"):
        render_dnsmasq_conf(
            full(), boot_url=url, tftp_root=Path("/t"), lease_file=Path("/l"), addresses=fake
        )


def test_render_mode_off_is_an_error() -> None:
    with pytest.raises(ConfigError, match="dhcp.mode is off"):
        render(DhcpConfig())


def test_parse_ip_addr_json() -> None:
    text = (
        '[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},'
        '{"ifname":"mayu-br0","addr_info":[{"family":"inet","local":"10.77.0.1","prefixlen":24},'
        '{"family":"inet6","local":"fd77::1","prefixlen":64}]},{"ifname":"eth9"}]'
    )
    parsed = parse_ip_addr_json(text)
    assert parsed["mayu-br0"] == [
        ipaddress.ip_interface("10.77.0.1/24"),
        ipaddress.ip_interface("fd77::1/64"),
    ]
    assert parsed["eth9"] == []


def test_read_leases(tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    assert read_leases(leases) == {}
    leases.write_text(
        "1795617250 02:77:00:00:00:31 10.77.0.50 * 01:02:77:00:00:00:31\n"
        "1795617251 52:54:00:AA:BB:CC 10.77.0.101 node1 *\n"
        "duid 00:01:00:01:2c:00:00:00:02:77:00:00:00:01\n"
        "1795617252 12345678 fd77::10 * 00:01:00:01\n"
        "garbage\n"
    )
    assert read_leases(leases) == {
        "02:77:00:00:00:31": "10.77.0.50",
        "52:54:00:aa:bb:cc": "10.77.0.101",
    }


@pytest.mark.parametrize("value", ["52-54-00-AA-BB-CC", "525400aabbcc", "52:54:00:aa:bb:cc"])
def test_canonical_mac(value: str) -> None:
    assert canonical_mac(value) == "52:54:00:aa:bb:cc"


@pytest.mark.parametrize(
    "value",
    [
        "52:54:00:aa:bb",
        "52:54-00:aa:bb:cc",
        "zz5400aabbcc",
        "",
        " 52:54:00:aa:bb:cc",
        "525400aabbcc\n",
    ],
)
def test_canonical_mac_rejects(value: str) -> None:
    with pytest.raises(BadRequest):
        canonical_mac(value)


def test_prepare_tftp_root(tmp_path: Path) -> None:
    source = tmp_path / "ipxe"
    source.mkdir()
    for name in ("undionly.kpxe", "ipxe.efi", "snponly.efi"):
        (source / name).write_bytes(name.encode() * 3)
    root = prepare_tftp_root(tmp_path / "tftp", source=source)
    for name in ("undionly.kpxe", "ipxe.efi", "snponly.efi"):
        assert (root / name).read_bytes() == name.encode() * 3
        assert (root / name).stat().st_mode & 0o777 == 0o644
    assert root.stat().st_mode & 0o777 == 0o755
    (source / "snponly.efi").unlink()
    with pytest.raises(ConfigError, match="snponly.efi is missing: install the ipxe package"):
        prepare_tftp_root(tmp_path / "tftp2", source=source)
