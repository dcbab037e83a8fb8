"""The overlays an agent runs, from the desired nodes and the peers the server put in them."""

from __future__ import annotations

from dataclasses import replace

from mayu_py.agent.overlay import overlays_for
from mayu_py.tenants.resource import MAX_VNI
from mayu_py.tenants.wire import OverlayPeer
from mayu_py.virt.overlay import HostOverlay, TenantOverlay, Vtep
from tests.unit.test_agent_plan import dn

B = OverlayPeer("host-b", "192.0.2.2", "192.0.2.2", ("52:54:00:00:00:0b",))
UNTRUSTED = OverlayPeer("host-c", "192.0.2.3", None, ("52:54:00:00:00:0c",))
SILENT = OverlayPeer("host-d", "", "192.0.2.4", ())


def test_one_overlay_per_tenant_with_trusted_reachable_peers_only() -> None:
    peers = (B, UNTRUSTED, SILENT)
    nodes = [
        replace(dn("acme", 0, "master"), peers=peers),
        replace(dn("acme", 1), peers=peers),
        replace(dn("beta", 2, "master"), vni=101),
    ]
    assert overlays_for(nodes) == [
        TenantOverlay(100, (Vtep("192.0.2.2", "192.0.2.2", ("52:54:00:00:00:0b",)),)),
        TenantOverlay(101, ()),
    ]
    assert overlays_for([]) == []


def test_device_and_chain_names_fit_and_belong_to_their_host() -> None:
    a, b = HostOverlay("host-a", "192.0.2.1"), HostOverlay("host-b", "192.0.2.2")
    assert len(a.bridge(MAX_VNI)) == len(a.vxlan(MAX_VNI)) == 15  # IFNAMSIZ - 1
    assert a.bridge(100) != b.bridge(100) and a.bridge(100) != a.vxlan(100)
    assert a.bridge(100) != a.bridge(101)
    assert len(a.firewall.tenant_chain(MAX_VNI)) <= 28  # iptables' chain name limit
    assert a.firewall.tenant_chain(100) != b.firewall.tenant_chain(100)
