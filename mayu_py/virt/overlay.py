"""A tenant's VXLAN overlay on one host, flannel's vxlan backend done with pyroute2: per tenant
a Linux bridge (L2 only: no address of the host on it) and a VXLAN device (the tenant's VNI,
the host's underlay address as local end, dstport 4789, no learning, no multicast) enslaved to
it, static FDB entries to the other hosts' VTEPs (the all-zero MAC to each, for broadcast and
unknown unicast, and each remote node's MAC to its host), and firewall rules that accept the
tenant's VXLAN only from those hosts' enrolled addresses (`vxlan_firewall`).

With an ingress on the host, the tenant's ingress address is on the host's side of the
tenant's network (the bridge, or the access bridge below), and every host running an ingress
holds the same address: rules at the VXLAN device keep each copy local to its host's side
(`ingress_fence`, which says why one address per tenant network stays right).

Names are owned by host and tenant: `mo<tag>b<vni hex>` (bridge) and `mo<tag>x<vni hex>`
(VXLAN), tag = 6 hex digits of sha256(host name) (`ownership.host_tag`), at most 15
characters. With the overlay in a network namespace of its own (`netns`: e.g. two "hosts" on
one machine, or an underlay kept apart from the host's routing), libvirt's VMs, which attach in
the agent's namespace, reach it through an L2-only access bridge of the same name there, joined
to the namespace's bridge by a veth pair (`mo<tag>v<vni hex>` here, `mo<tag>p<vni hex>` there);
no address of the tenant is on either side. `sync` makes the
host's overlays exactly the wanted ones, so an agent restarted after kill -9 removes what it
owned and nothing else. Every operation is idempotent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mayu_py.errors import MayuError
from mayu_py.virt.bridge_address import sync_address
from mayu_py.virt.ingress_fence import IngressFence
from mayu_py.virt.ownership import host_tag, overlay_bridge
from mayu_py.virt.vxlan_firewall import VXLAN_PORT, VxlanFirewall

log = logging.getLogger(__name__)

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Vtep:
    """Another host of the tenant: `address` receives our tunnels (it said so in its
    heartbeat), `accept_from` is its enrolled address, the only one we take VXLAN from."""

    address: str
    accept_from: str
    macs: tuple[str, ...] = ()  # the tenant's node MACs behind it


@dataclass(frozen=True)
class TenantOverlay:
    vni: int
    peers: tuple[Vtep, ...] = ()
    ingress: str | None = None  # ADDRESS/PREFIX: the tenant's ingress address, on this host


class HostOverlay:
    """The overlays of host `host` whose underlay address is `local`, in network namespace
    `netns` (None: the caller's)."""

    def __init__(self, host: str, local: str, netns: str | None = None) -> None:
        self.tag = host_tag(host)
        self.local = local
        self.netns = netns
        self.firewall = VxlanFirewall(self.tag, netns)
        self.fence = IngressFence(self.tag, netns)
        self._owned = re.compile(rf"^mo{self.tag}[bxvp]([0-9a-f]+)$")

    def bridge(self, vni: int) -> str:
        return overlay_bridge(self.tag, vni)

    def vxlan(self, vni: int) -> str:
        return f"mo{self.tag}x{vni:x}"

    def ensure(self, tenant: TenantOverlay) -> str:
        """Bridge, VXLAN device, FDB entries, firewall rules and ingress fence of the tenant
        as wanted (the fence before the address); returns the bridge's name (where the
        tenant's VMs attach)."""
        self.fence.fence(self.vxlan(tenant.vni), _address(tenant))
        with self._ipr() as ipr:
            bridge = self._devices(ipr, tenant)
        self.firewall.allow(tenant.vni, _sources(tenant))
        return bridge

    def _devices(self, ipr: IPRoute, tenant: TenantOverlay) -> str:
        mtu = self._underlay_mtu(ipr) - VXLAN_OVERHEAD
        bridge = self._link(ipr, self.bridge(tenant.vni), mtu, kind="bridge")
        vxlan = self._link(
            ipr, self.vxlan(tenant.vni), mtu,
            kind="vxlan", vxlan_id=tenant.vni, vxlan_local=self.local,
            vxlan_port=VXLAN_PORT, vxlan_learning=0,
        )  # fmt: skip
        ipr.link("set", index=vxlan, master=bridge, state="up")
        ipr.link("set", index=bridge, state="up")
        self._sync_fdb(ipr, vxlan, tenant.peers)
        if self.netns:
            access = self._access(ipr, tenant.vni, bridge, mtu)
            with self._ipr(here=True) as here:
                sync_address(here, access, tenant.ingress)
        else:
            sync_address(ipr, bridge, tenant.ingress)
        return self.bridge(tenant.vni)

    def _access(self, ipr: IPRoute, vni: int, bridge: int, mtu: int) -> int:
        """The access bridge in the agent's namespace, veth'd to the namespace's bridge; its
        index."""
        outer, inner = f"mo{self.tag}v{vni:x}", f"mo{self.tag}p{vni:x}"
        with self._ipr(here=True) as here:
            access = self._link(here, self.bridge(vni), mtu, kind="bridge")
            if not here.link_lookup(ifname=outer):
                for index in ipr.link_lookup(ifname=inner):  # half of a pair: start again
                    ipr.link("del", index=index)
                here.link(
                    "add",
                    ifname=outer,
                    kind="veth",
                    peer={"ifname": inner, "net_ns_fd": self.netns},
                )
            port = here.link_lookup(ifname=outer)[0]
            here.link("set", index=port, mtu=mtu, master=access, state="up")
            here.link("set", index=access, state="up")
        peer = ipr.link_lookup(ifname=inner)[0]
        ipr.link("set", index=peer, mtu=mtu, master=bridge, state="up")
        return access

    def remove(self, vni: int) -> None:
        """Firewall rules, ingress fence, VXLAN device (its FDB entries go with it) and
        bridge; missing pieces are fine."""
        self.firewall.forget(vni)
        self.fence.fence(self.vxlan(vni), None)
        with self._ipr() as ipr:
            for name in (self.vxlan(vni), self.bridge(vni)):
                for index in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=index)
        if self.netns:  # the access bridge and the pair's outer end (the inner one goes too)
            with self._ipr(here=True) as here:
                for name in (f"mo{self.tag}v{vni:x}", self.bridge(vni)):
                    for index in here.link_lookup(ifname=name):
                        here.link("del", index=index)

    def owned_vnis(self) -> set[int]:
        """The VNIs with any device, firewall chain or fence rule of this host."""
        return self._owned_vnis(self.fence.current())

    def _owned_vnis(self, fenced: Iterable[str]) -> set[int]:
        """The VNIs with any device or firewall chain of this host, or among `fenced`."""
        with self._ipr() as ipr:
            names = [link.get("IFLA_IFNAME") for link in ipr.get_links()]
        if self.netns:
            with self._ipr(here=True) as here:
                names += [link.get("IFLA_IFNAME") for link in here.get_links()]
        names += list(fenced)
        found = {int(m.group(1), 16) for n in names if n and (m := self._owned.match(n))}
        return found | self.firewall.owned_vnis()

    def sync(self, wanted: list[TenantOverlay]) -> dict[int, str]:
        """Exactly the wanted overlays on this host: what this host owns beyond them goes.
        The firewall and the fence are set in one step each for all of them. Returns
        {vni: bridge}."""
        keep = {t.vni for t in wanted}
        rules = self.fence.rules()  # one listing for what this host owns and what to change
        gone = sorted(self._owned_vnis(self.fence.current(rules)) - keep)
        for vni in gone:
            log.info("removing overlay of VNI %d", vni, extra={"vni": vni})
            self.remove(vni)
        fenced = {self.vxlan(t.vni): a for t in wanted if (a := _address(t)) is not None}
        self.fence.set_all(fenced, None if gone else rules)  # a removal changed them
        with self._ipr() as ipr:  # one netlink socket in the namespace for all of them
            bridges = {t.vni: self._devices(ipr, t) for t in wanted}
        self.firewall.set_all({t.vni: _sources(t) for t in wanted})
        return bridges

    @contextmanager
    def _ipr(self, here: bool = False) -> Iterator[IPRoute]:
        """A netlink socket in the overlay's namespace, or (here) in the agent's own."""
        netns = None if here else self.netns
        try:
            with IPRoute(netns=netns) if netns else IPRoute() as ipr:
                yield ipr
        except NetlinkError as exc:
            raise MayuError(f"overlay netlink error: {exc}", {"netns": netns}) from exc

    def _underlay_mtu(self, ipr: IPRoute) -> int:
        addrs = ipr.get_addr(address=self.local)
        if not addrs:
            raise MayuError(
                f"underlay address {self.local} is not on this host", {"underlay": self.local}
            )
        return int(ipr.get_links(addrs[0]["index"])[0].get("IFLA_MTU"))

    @staticmethod
    def _link(ipr: IPRoute, name: str, mtu: int, **kind: object) -> int:
        """The index of link `name`, created when missing; its MTU set."""
        found = ipr.link_lookup(ifname=name)
        if not found:
            ipr.link("add", ifname=name, mtu=mtu, **kind)
            found = ipr.link_lookup(ifname=name)
        ipr.link("set", index=found[0], mtu=mtu)
        return int(found[0])

    @staticmethod
    def _sync_fdb(ipr: IPRoute, vxlan: int, peers: tuple[Vtep, ...]) -> None:
        want = {(ZERO_MAC, p.address) for p in peers}
        want |= {(mac.lower(), p.address) for p in peers for mac in p.macs}
        have = {
            (str(e.get("NDA_LLADDR")), str(e.get("NDA_DST")))
            for e in ipr.fdb("dump", ifindex=vxlan)
            if e.get("NDA_DST")
        }
        for mac, dst in have - want:
            ipr.fdb("del", ifindex=vxlan, lladdr=mac, dst=dst)
        for mac, dst in sorted(want - have):
            ipr.fdb("append", ifindex=vxlan, lladdr=mac, dst=dst)


def _address(tenant: TenantOverlay) -> str | None:
    """The tenant's ingress address on this host, without its prefix (None: no ingress)."""
    return tenant.ingress.split("/")[0] if tenant.ingress else None


def _sources(tenant: TenantOverlay) -> set[str]:
    return {p.accept_from for p in tenant.peers}
