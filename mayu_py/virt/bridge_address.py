"""The one address a host holds on a bridge it runs for a tenant (its ingress address), set
through pyroute2 and idempotent: each call makes the bridge's IPv4 addresses, beyond the ones
kept (libvirt's gateway on an isolated network), exactly the wanted one or none.

An address held this way is not in any libvirt network's definition, so whether a host runs an
ingress never changes a network's XML: holding or dropping the address leaves the network,
and the VMs' taps on its bridge, as they are.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mayu_py.errors import MayuError


@dataclass(frozen=True)
class HeldAddress:
    """`address` (ADDRESS/PREFIX; None: none) on `bridge`, next to the `keep` ones."""

    bridge: str
    address: str | None
    keep: tuple[str, ...] = ()


def sync_address(ipr: IPRoute, index: int, wanted: str | None, keep: Collection[str] = ()) -> None:
    """The device's IPv4 addresses other than `keep`: exactly `wanted`, or none."""
    have = {f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=2, index=index)}
    for found in have - {wanted} - set(keep):
        address, prefix = found.split("/")
        ipr.addr("del", index=index, address=address, prefixlen=int(prefix))
    if wanted is not None and wanted not in have:
        address, prefix = wanted.split("/")
        ipr.addr("add", index=index, address=address, prefixlen=int(prefix))


def hold(wanted: Iterable[HeldAddress]) -> None:
    """Each bridge's held address as wanted; a bridge not there (its network not up yet) is
    skipped: the next call sees it."""
    try:
        with IPRoute() as ipr:
            for held in wanted:
                for index in ipr.link_lookup(ifname=held.bridge):
                    sync_address(ipr, index, held.address, held.keep)
    except NetlinkError as exc:
        raise MayuError(f"bridge address netlink error: {exc}") from exc
