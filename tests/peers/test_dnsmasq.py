"""dnsmasq driven by mayu_py.dhcp, against real DHCP clients in throw-away network namespaces.

Topology (all inside namespaces this module creates, nothing routes out): a server namespace
with bridge mayu-br0 (10.77.N.1/24) where our dnsmasq runs, and client namespaces attached by
veth pairs. Clients: busybox udhcpc (full mode) and the small PXE probe in netns_helpers.py
(proxy mode, where two servers answer and a PXE boot-server request on port 4011 is needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mayu_py.config import DhcpConfig
from mayu_py.dhcp import (
    DnsmasqSupervisor,
    live_provider,
    prepare_tftp_root,
    read_leases,
    render_dnsmasq_conf,
    validate_dhcp,
)
from mayu_py.errors import ConfigError
from tests.peers.netns_helpers import BRIDGE, NetLab, net_lab, ns_run, udhcpc
from tests.support.peers import require_peers
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

HELPERS = Path(__file__).with_name("netns_helpers.py").resolve()
CLIENT_MAC = "02:77:00:00:00:31"
IPXE = Path("/usr/lib/ipxe")


@pytest.fixture(autouse=True, scope="module")
def _peers() -> None:
    require_peers("dnsmasq", "busybox", root=True)


@pytest.fixture
def workdir(open_tmp: Path) -> Path:
    """dnsmasq drops to nobody and must reach the TFTP root under it."""
    return open_tmp


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with net_lab(ipv6=True) as lab:
        yield lab


def _start(lab: NetLab, workdir: Path, cfg: DhcpConfig, **kwargs: object) -> DnsmasqSupervisor:
    conf = render_dnsmasq_conf(
        cfg,
        boot_url=f"http://{lab.server_ip}:8080/boot.ipxe",
        tftp_root=prepare_tftp_root(workdir / "tftp"),
        lease_file=workdir / "leases",
        pid_file=workdir / "dnsmasq.pid",
        addresses=live_provider(lab.server_ns),
        log_dhcp=True,
    )
    (workdir / "dnsmasq.conf").write_text(conf)
    sup = DnsmasqSupervisor(workdir / "dnsmasq.conf", netns=lab.server_ns, **kwargs)  # type: ignore[arg-type]
    sup.start()
    return sup


def _full_cfg(lab: NetLab) -> DhcpConfig:
    return DhcpConfig(
        mode="full",
        interface=BRIDGE,
        server_ip=lab.server_ip,
        subnet=lab.subnet,
        range_start=f"{lab.prefix}.100",
        range_end=f"{lab.prefix}.199",
        reservations={CLIENT_MAC.upper().replace(":", "-"): f"{lab.prefix}.50"},
    )


def _first_menu_item(opt43_hex: str) -> int:
    """The boot item type of the first entry of a PXE menu (option 43, sub-option 9)."""
    data = bytes.fromhex(opt43_hex)
    i = 0
    while i + 1 < len(data) and data[i] != 255:
        tag, length = data[i], data[i + 1]
        if tag == 9:
            return int.from_bytes(data[i + 2 : i + 4], "big")
        i += 2 + length
    raise AssertionError(f"no PXE menu in option 43 {opt43_hex}")


def _probe(ns: str, ifname: str, arch: int, *extra: str, servers: int = 1) -> list[dict]:
    """The replies of the first `servers` DHCP/PXE servers to answer (within 20 s)."""
    argv = [sys.executable, str(HELPERS), ifname, CLIENT_MAC, str(arch), "--wait", "20"]
    argv += ["--servers", str(servers)]
    proc = ns_run(ns, [*argv, *extra], timeout=30)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


BIOS = "PXEClient:Arch:00000:UNDI:002001"
UEFI = "PXEClient:Arch:00007:UNDI:003016"


@pytest.mark.parametrize(
    ("udhcpc_args", "boot_file"),
    [
        (["-V", BIOS], "undionly.kpxe"),
        (["-V", UEFI, "-x", "93:0007"], "ipxe.efi"),
        (["-V", "PXEClient:Arch:00009:UNDI:003016", "-x", "93:0009"], "ipxe.efi"),
        # iPXE sends option 77 raw ("iPXE"); busybox takes unknown numeric options as hex.
        (["-V", BIOS, "-x", "77:69505845"], "http://{server}:8080/boot.ipxe"),
        # iPXE's own encapsulated option 175 alone is enough to be recognised too.
        (["-V", UEFI, "-x", "93:0007", "-x", "175:b10101"], "http://{server}:8080/boot.ipxe"),
    ],
    ids=["bios", "uefi-7", "uefi-9", "ipxe-userclass", "ipxe-opt175"],
)
def test_full_mode_reserved_address_and_boot_file(
    lab: NetLab, workdir: Path, udhcpc_args: list[str], boot_file: str
) -> None:
    ns, ifname = lab.add_namespace(CLIENT_MAC)
    sup = _start(lab, workdir, _full_cfg(lab))
    try:
        env = udhcpc(ns, ifname, workdir, *udhcpc_args)
        assert env["ip"] == f"{lab.prefix}.50"
        assert env["siaddr"] == lab.server_ip
        assert env["boot_file"] == boot_file.format(server=lab.server_ip)
        assert read_leases(workdir / "leases") == {CLIENT_MAC: f"{lab.prefix}.50"}
    finally:
        sup.stop()
    assert sup.pid is None


def test_full_mode_dynamic_range_tftp_and_ra(lab: NetLab, workdir: Path) -> None:
    other_mac = "02:77:00:00:00:99"
    ns, ifname = lab.add_namespace(other_mac)
    sup = _start(lab, workdir, _full_cfg(lab))
    try:
        env = udhcpc(ns, ifname, workdir, "-V", BIOS)
        ip = env["ip"]
        assert ip.startswith(f"{lab.prefix}.1") and 100 <= int(ip.rsplit(".", 1)[1]) <= 199
        assert read_leases(workdir / "leases")[other_mac] == ip
        # TFTP from the client over the bridge, with the address udhcpc's script configured.
        out = workdir / "got.kpxe"
        ns_run(
            ns,
            [
                "curl",
                "-s",
                "--max-time",
                "10",
                "-o",
                str(out),
                f"tftp://{lab.server_ip}/undionly.kpxe",
            ],
        )
        assert out.read_bytes() == (IPXE / "undionly.kpxe").read_bytes()

        # The RA block is live: the client autoconfigures an fd77::/64 address (SLAAC).
        def addresses() -> str:
            return ns_run(ns, ["ip", "-6", "addr", "show", "dev", ifname]).stdout

        wait_for(
            "an fd77::/64 address from our router advertisement",
            lambda: "fd77:" in addresses(),
            15,
            every=0.5,
        )
    finally:
        sup.stop()


def test_supervisor_restarts_killed_dnsmasq(lab: NetLab, workdir: Path) -> None:
    ns, ifname = lab.add_namespace(CLIENT_MAC)
    sup = _start(lab, workdir, _full_cfg(lab), backoff_initial=0.2, backoff_max=1.0)
    try:
        first = sup.pid
        assert first is not None and sup.restarts == 0
        os.kill(first, 9)
        wait_for("a restarted dnsmasq", lambda: sup.pid not in (None, first))
        assert sup.restarts == 1
        env = udhcpc(ns, ifname, workdir, "-V", BIOS)
        assert env["ip"] == f"{lab.prefix}.50"
        assert env["boot_file"] == "undionly.kpxe"
    finally:
        sup.stop()
    assert sup.pid is None


def test_start_reports_dnsmasq_startup_error_in_one_line(lab: NetLab, workdir: Path) -> None:
    # Valid syntax, but the interface is not in the namespace: dnsmasq exits at once.
    conf = workdir / "bad.conf"
    conf.write_text(
        "port=0\ninterface=mayu-nope0\nbind-interfaces\npid-file=\n"
        f"dhcp-range={lab.prefix}.100,{lab.prefix}.199,1h\n"
    )
    sup = DnsmasqSupervisor(conf, netns=lab.server_ns)
    with pytest.raises(ConfigError) as info:  # not a warning after the start-up timeout
        sup.start()
    assert "unknown interface mayu-nope0" in info.value.message
    assert "\n" not in info.value.message
    assert sup.pid is None


def test_start_reports_syntax_error_in_one_line(workdir: Path) -> None:
    conf = workdir / "bad.conf"
    conf.write_text("port=0\nno-such-option=1\n")
    with pytest.raises(ConfigError) as info:
        DnsmasqSupervisor(conf).start()
    assert "bad option at line 2" in info.value.message
    assert "\n" not in info.value.message


def test_validate_against_live_interfaces(lab: NetLab) -> None:
    addresses = live_provider(lab.server_ns)
    validate_dhcp(_full_cfg(lab), addresses=addresses)
    missing = _full_cfg(lab).model_copy(update={"interface": "mayu-nope0"})
    with pytest.raises(ConfigError, match="no interface 'mayu-nope0'"):
        validate_dhcp(missing, addresses=addresses)
    wrong_ip = _full_cfg(lab).model_copy(update={"server_ip": "10.78.0.1"})
    with pytest.raises(ConfigError, match="not an address of mayu-br0"):
        validate_dhcp(wrong_ip, addresses=addresses)


def test_proxy_mode_beside_site_dhcp_server(lab: NetLab, workdir: Path) -> None:
    # The site's own DHCP server: a plain dnsmasq in its own namespace, on the bridge.
    site_ns, site_if = lab.add_namespace("02:77:00:00:00:02", f"{lab.prefix}.2")
    site_conf = workdir / "site.conf"
    site_conf.write_text(
        f"port=0\ninterface={site_if}\nbind-interfaces\nexcept-interface=lo\npid-file=\n"
        f"dhcp-authoritative\nno-ping\ndhcp-leasefile={workdir}/site.leases\n"
        f"dhcp-range={lab.prefix}.150,{lab.prefix}.160,255.255.255.0,1h\n"
    )
    site = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            site_ns,
            "dnsmasq",
            "--keep-in-foreground",
            "--log-facility=-",
            f"--conf-file={site_conf}",
        ],
        stderr=subprocess.DEVNULL,
    )
    ns, ifname = lab.add_namespace(CLIENT_MAC)
    sup = _start(lab, workdir, DhcpConfig(mode="proxy", interface=BRIDGE))
    try:
        bios = _probe(ns, ifname, 0, servers=2)
        by_server = {r["server"]: r for r in bios}
        site_offer, proxy_offer = by_server[f"{lab.prefix}.2"], by_server[lab.server_ip]
        assert site_offer["yiaddr"].startswith(f"{lab.prefix}.15")
        assert proxy_offer["yiaddr"] == "0.0.0.0" and proxy_offer["opt60"] == "PXEClient"
        assert b"chainload iPXE".hex() in proxy_offer["opt43"]
        # Configure the site's address, then ask our boot server (port 4011) for the file,
        # as the PXE ROM does after the proxy menu (boot item type from the menu).
        ns_run(ns, ["ip", "addr", "add", f"{site_offer['yiaddr']}/24", "dev", ifname])
        boot = _probe(
            ns,
            ifname,
            0,
            "--boot-request",
            lab.server_ip,
            "--boot-item",
            str(_first_menu_item(proxy_offer["opt43"])),
            "--ciaddr",
            site_offer["yiaddr"],
        )
        assert [r["file"] for r in boot] == ["undionly.kpxe"]
        offers = {r["server"]: r for r in _probe(ns, ifname, 0, "--user-class", "iPXE", servers=2)}
        ipxe_item = _first_menu_item(offers[lab.server_ip]["opt43"])
        ipxe_boot = _probe(
            ns,
            ifname,
            0,
            "--user-class",
            "iPXE",
            "--boot-request",
            lab.server_ip,
            "--boot-item",
            str(ipxe_item),
            "--ciaddr",
            site_offer["yiaddr"],
        )
        assert [r["file"] for r in ipxe_boot] == [f"http://{lab.server_ip}:8080/boot.ipxe"]
        # UEFI: the proxy offer has no menu (dnsmasq's UEFI workaround), only next-server;
        # the client asks port 4011 for the service (types number the pxe-service lines
        # in order: 0x8001 is the BC_EFI "chainload iPXE EFI" one).
        uefi = {r["server"]: r for r in _probe(ns, ifname, 7, servers=2)}
        assert uefi[lab.server_ip]["siaddr"] == lab.server_ip
        assert uefi[lab.server_ip]["opt60"] == "PXEClient"
        efi_boot = _probe(
            ns,
            ifname,
            7,
            "--boot-request",
            lab.server_ip,
            "--boot-item",
            str(0x8001),
            "--ciaddr",
            site_offer["yiaddr"],
        )
        assert [r["file"] for r in efi_boot] == ["ipxe.efi"]
    finally:
        sup.stop()
        site.terminate()
        site.wait(5)
