"""Full DHCP on etcd (docs/ha.md): the key the DHCP leader holds under an etcd lease
(`dhcp/leader`, a `LeaderKey` for store.election) and the leases dnsmasq handed out
(`dhcp/leases/<mac>`), so a new leader starts from them and any replica binds a boot token
to the address leased to a MAC."""

from __future__ import annotations

import json

from mayu_py.dhcp.leases import Lease, LeaseChange
from mayu_py.store.etcd_gateway import EtcdGateway, b64
from mayu_py.store.etcd_keys import KeyLayout, last_segment

# Lease changes per etcd transaction (etcd's default --max-txn-ops is 128).
CHANGES_PER_TXN = 100


class EtcdLeaderKey:
    """The DHCP leader's key, holding `identity` (who leads, for operators)."""

    def __init__(self, gateway: EtcdGateway, keys: KeyLayout, identity: str) -> None:
        self.gateway = gateway
        self.key = keys.dhcp_leader
        self.identity = identity

    def holder(self) -> str | None:
        found = self.gateway.range(self.key).kvs
        return found[0].value.decode() if found else None

    def grant(self, ttl: int) -> int:
        return self.gateway.lease_grant(ttl)[0]

    def claim(self, lease: int) -> bool:
        absent = {"key": b64(self.key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}
        put = {"request_put": {"key": b64(self.key), "value": b64(self.identity), "lease": lease}}
        return self.gateway.txn([absent], [put])

    def keepalive(self, lease: int) -> int:
        return self.gateway.lease_keepalive(lease)

    def revoke(self, lease: int) -> None:
        self.gateway.lease_revoke(lease)


def _lease_of(key: str, value: bytes) -> Lease:
    data = json.loads(value)
    return Lease(last_segment(key), data["ip"], data["expires"], data["hostname"], data["client"])


class EtcdDhcpLeases:
    """The DHCPv4 leases of the subnet, one key per MAC."""

    def __init__(self, gateway: EtcdGateway, keys: KeyLayout) -> None:
        self.gateway = gateway
        self.keys = keys

    def record(self, changes: list[LeaseChange]) -> None:
        """Write dnsmasq's lease changes (in order: a MAC's last change wins)."""
        latest = {change.lease.mac: change for change in changes}
        ops = []
        for mac, change in latest.items():
            key = b64(self.keys.dhcp_lease(mac))
            if change.action == "del":
                ops.append({"request_delete_range": {"key": key}})
                continue
            lease = change.lease
            data = {
                "ip": lease.ip,
                "expires": lease.expires,
                "hostname": lease.hostname,
                "client": lease.client_id,
            }
            ops.append({"request_put": {"key": key, "value": b64(json.dumps(data))}})
        for start in range(0, len(ops), CHANGES_PER_TXN):
            self.gateway.txn([], ops[start : start + CHANGES_PER_TXN])

    def all(self) -> list[Lease]:
        found = self.gateway.range(*self.keys.dhcp_leases).kvs
        return [_lease_of(kv.key, kv.value) for kv in found]

    def address_of(self, mac: str) -> str | None:
        """The IPv4 address leased to the canonical MAC, or None."""
        found = self.gateway.range(self.keys.dhcp_lease(mac)).kvs
        return _lease_of(found[0].key, found[0].value).ip if found else None
