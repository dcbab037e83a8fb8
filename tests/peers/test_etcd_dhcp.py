"""The DHCP leader key and the lease records (store.etcd_dhcp) against the session's real
3-member etcd cluster: one claim wins, renewals report the TTL, a revoked lease takes the key
with it and renews as expired; lease changes land in order, a MAC's last change winning."""

from __future__ import annotations

import uuid

import pytest

from mayu_py.dhcp.leases import Lease, LeaseChange
from mayu_py.lab.etcd import EtcdCluster
from mayu_py.store.etcd_dhcp import CHANGES_PER_TXN, EtcdDhcpLeases, EtcdLeaderKey
from mayu_py.store.etcd_gateway import EtcdGateway
from mayu_py.store.etcd_keys import KeyLayout
from mayu_py.store.url import EtcdLocation, parse_store_url

pytestmark = pytest.mark.peer


def _parts(cluster: EtcdCluster) -> tuple[EtcdGateway, KeyLayout]:
    location = parse_store_url(cluster.url(f"/mayu-s18dl-{uuid.uuid4().hex[:8]}/"))
    assert isinstance(location, EtcdLocation)
    return EtcdGateway(location), KeyLayout(location.prefix)


def test_one_claim_wins_and_the_key_lives_as_long_as_its_lease(etcd_cluster: EtcdCluster) -> None:
    gateway, keys = _parts(etcd_cluster)
    a, b = EtcdLeaderKey(gateway, keys, "replica a"), EtcdLeaderKey(gateway, keys, "replica b")
    assert a.holder() is None
    lease_a, lease_b = a.grant(5), b.grant(5)
    assert a.claim(lease_a) and not b.claim(lease_b)
    assert b.holder() == "replica a"
    assert a.keepalive(lease_a) == 5
    a.revoke(lease_a)
    assert b.holder() is None and a.keepalive(lease_a) == 0
    a.revoke(lease_a)  # gone already: no error
    assert b.claim(lease_b) and a.holder() == "replica b"
    b.revoke(lease_b)


def test_lease_changes_land_in_order_in_batches(etcd_cluster: EtcdCluster) -> None:
    gateway, keys = _parts(etcd_cluster)
    leases = EtcdDhcpLeases(gateway, keys)
    many = [
        LeaseChange(
            "add",
            Lease(
                f"02:5d:00:00:{i // 256:02x}:{i % 256:02x}", f"10.9.{i // 200}.{i % 200 + 1}", 2000
            ),
        )
        for i in range(CHANGES_PER_TXN + 30)
    ]
    first = many[0].lease
    renewed = Lease(first.mac, first.ip, 3000, "node0", "01:aa")
    leases.record([*many, LeaseChange("old", renewed), LeaseChange("del", many[1].lease)])
    stored = {lease.mac: lease for lease in leases.all()}
    assert len(stored) == len(many) - 1
    assert stored[first.mac] == renewed
    assert many[1].lease.mac not in stored
    assert leases.address_of(first.mac) == first.ip
    assert leases.address_of("02:5d:ff:ff:ff:ff") is None
