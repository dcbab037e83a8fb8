"""Render dnsmasq's configuration for full DHCP or proxyDHCP, plus TFTP with iPXE.

The lines follow RECIPES.md section 4 (measured on this machine): iPXE is recognised by user
class `iPXE` or option 175 and sent to the HTTP boot script; other PXE clients chainload iPXE
over TFTP (BIOS: undionly.kpxe, UEFI arch 7/9: ipxe.efi). `no-ping` keeps boot storms from
timing out; an IPv6 router advertisement stops iPXE waiting ~13 s for autoconfiguration.
In full mode iPXE is told it will get no ProxyDHCP offer (iPXE's option 175.176, `no-pxedhcp`):
otherwise it sits on our offer for ~3 s at every network boot waiting for one.
"""

from __future__ import annotations

import re
from pathlib import Path

from mayu_py.config import DhcpConfig
from mayu_py.dhcp.addresses import AddressProvider
from mayu_py.dhcp.plan import DhcpPlan, resolve_dhcp
from mayu_py.errors import ConfigError

_URL_RE = re.compile(r"^https?://[^\s,\"'#]+$")
# dnsmasq CSA names (dnsmasq/option.c): BC_EFI is client arch 7, x86-64_EFI is 9.
_UEFI_CSAS = ("BC_EFI", "x86-64_EFI")
# Option 175 (iPXE's encapsulated options) holding suboption 176 `no-pxedhcp` = 1, as raw
# bytes; forced, since dnsmasq sends only requested options otherwise.
_IPXE_NO_PROXYDHCP = "dhcp-option-force=tag:ipxe,175,b0:01:01"


def _path_value(name: str, path: Path) -> str:
    text = str(path)
    if not text or any(c in text for c in "\n\r,#"):
        raise ConfigError(f"{name}: {text!r} cannot be written into a dnsmasq configuration")
    return text


def render_dnsmasq_conf(
    cfg: DhcpConfig,
    *,
    boot_url: str,
    tftp_root: Path,
    lease_file: Path,
    pid_file: Path | None = None,
    addresses: AddressProvider | None = None,
    router_advertisements: bool | None = None,
    log_dhcp: bool = False,
    user: str | None = None,
    lease_script: Path | None = None,
) -> str:
    """The dnsmasq configuration file text for `cfg` (mode full or proxy).

    `addresses` supplies interface addresses (default: the live ones of this namespace).
    `router_advertisements`: None renders the RA block in full mode when the interface has a
    non-link-local IPv6 address (else a comment on how to enable it); True/False force it.
    `user` sets the account dnsmasq drops to (default: dnsmasq's own, usually nobody), which
    must be able to read `tftp_root`. `lease_script` (full mode) is run by dnsmasq on each
    lease change, renewals included (lease_journal.py).
    """
    if not _URL_RE.match(boot_url):
        raise ConfigError(f"boot URL {boot_url!r} must be an http(s) URL without spaces or commas")
    plan = resolve_dhcp(cfg, addresses=addresses)
    if router_advertisements and not plan.ipv6:
        raise ConfigError(
            f"router advertisements need an IPv6 address on {plan.interface} "
            f"(e.g. ip -6 addr add fd77::1/64 dev {plan.interface} nodad)"
        )
    lines = [
        f"# dnsmasq configuration for mayu_py, mode {plan.mode}; generated, do not edit",
        "port=0",
        f"interface={plan.interface}",
        "bind-interfaces",
        "except-interface=lo",
        f"pid-file={_path_value('pid_file', pid_file) if pid_file else ''}",
    ]
    if user:
        lines.append(f"user={user}")
    if log_dhcp:
        lines.append("log-dhcp")
    lines += [
        "enable-tftp",
        f"tftp-root={_path_value('tftp_root', tftp_root)}",
        f"dhcp-leasefile={_path_value('lease_file', lease_file)}",
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:ipxe,175",
        "no-ping",
    ]
    if plan.mode == "full":
        lines += _full_lines(plan, boot_url)
        if lease_script:
            script = _path_value("lease_script", lease_script)
            lines += [f"dhcp-script={script}", "script-on-renewal"]
        want_ra = plan.ipv6 if router_advertisements is None else router_advertisements
    else:
        lines += _proxy_lines(plan, boot_url)
        want_ra = bool(router_advertisements)
    lines += _ra_lines(plan, want_ra)
    return "\n".join(lines) + "\n"


def _full_lines(plan: DhcpPlan, boot_url: str) -> list[str]:
    lines = [
        "dhcp-authoritative",
        f"dhcp-range={plan.range_start},{plan.range_end},{plan.network.netmask},{plan.lease_time}",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
        "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi",
        f"dhcp-boot=tag:ipxe,{boot_url}",
        _IPXE_NO_PROXYDHCP,
    ]
    lines += [f"dhcp-host={mac},{ip}" for mac, ip in plan.reservations]
    return lines


def _proxy_lines(plan: DhcpPlan, boot_url: str) -> list[str]:
    lines = [
        f"dhcp-range={plan.network.network_address},proxy,{plan.network.netmask}",
        'pxe-service=tag:!ipxe,x86PC,"chainload iPXE",undionly.kpxe',
    ]
    lines += [f'pxe-service=tag:!ipxe,{csa},"chainload iPXE EFI",ipxe.efi' for csa in _UEFI_CSAS]
    lines += [
        f'pxe-service=tag:ipxe,{csa},"iPXE script",{boot_url}' for csa in ("x86PC", *_UEFI_CSAS)
    ]
    if plan.reservations:
        lines.append(
            "# dhcp.reservations ignored: in proxy mode the site's DHCP server assigns addresses"
        )
    return lines


def _ra_lines(plan: DhcpPlan, enabled: bool) -> list[str]:
    if enabled:
        return [
            "enable-ra",
            f"dhcp-range=::,constructor:{plan.interface},ra-only",
            f"ra-param={plan.interface},10,0",
        ]
    return [
        "# IPv6 router advertisements off: iPXE then waits ~13 s for IPv6 autoconfiguration.",
        f"# To enable: ip -6 addr add fd77::1/64 dev {plan.interface} nodad, then re-render",
        "# (full mode adds enable-ra, dhcp-range=::,constructor:IF,ra-only, ra-param=IF,10,0).",
    ]
