"""A filled inventory for backup, restore and migration tests: machines in every state with
hostnames, roles, events (refusals among them) and pending configs, agent credentials, a
host, a tenant, BMCs (one of a machine not seen yet) with actions, and alerts."""

from __future__ import annotations

from mayu_py.bmc.records import ActionKind, ActionState, BmcAction, StoredBmc
from mayu_py.model import AgentCredential, Event, Machine, MachineState, PendingConfig, User
from mayu_py.store import Store, Tx
from mayu_py.tenants import HostInfo, ImageInfo, TenantRecord, parse_tenant
from tests.support.tenants import acme

STATES = list(MachineState)
PER_TRANSACTION = 10  # machines: each with its events stays under etcd's --max-txn-ops


def mac_of(i: int) -> str:
    return f"52:54:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


def _machine(i: int) -> Machine:
    role = "controller" if i % 50 == 0 else "worker"
    return Machine(
        id=mac_of(i),
        mac=mac_of(i),
        state=STATES[i % len(STATES)],
        labels={"role": role, "rack": f"r{i % 7}"},
        hostname=f"node-{i:04d}" if i % 3 else None,
        created=1000.0 + i,
        updated=2000.0 + i,
        registered_from=f"10.0.{i >> 8 & 0xFF}.{i & 0xFF}",
    )


def _add_machine(tx: Tx, i: int, events_each: int) -> None:
    machine = _machine(i)
    tx.put_machine(machine)
    for n in range(events_each):
        kind = "ignition-refused" if n % 4 == 3 else "transition"
        tx.add_event(Event(machine.id, 3000.0 + i + n / 10, kind, f"step {n}", "10.0.0.1"))
    if i % 5 == 0:
        body = f'{{"ignition": {{"version": "3.4.0"}}, "n": {i}}}'.encode()
        tx.put_pending_config(PendingConfig(machine.id, f"t{i}", body, "s" * 128, "r", 1.0))


def fill(store: Store, machines: int, events_each: int = 3) -> None:
    """`machines` machines with `events_each` events each, and one of every other record."""
    for first in range(0, machines, PER_TRANSACTION):
        last = min(first + PER_TRANSACTION, machines)

        def txn(tx: Tx, first: int = first, last: int = last) -> None:
            for i in range(first, last):
                _add_machine(tx, i, events_each)

        store.atomically(txn)
    tenant = parse_tenant(acme(), {"lab": ImageInfo("lab")}, [])

    def others(tx: Tx) -> None:
        tx.put_agent_credential(AgentCredential("h1", "hash-1", "operator", False, 1.0, 2.0))
        tx.put_user(User("alice", "hash-alice", 1.0, 2.0))
        host = HostInfo("h1", 2, 4096, 7.0, "192.0.2.5")
        tx.put_host(host)
        tx.put_shared("replica-files", {"files": {"ca.crt": {"mode": 420, "data": "QQ=="}}})
        # with its conditions stored as of t=8 (as every API transaction stores them), so
        # their transition times are the same at every read, on either backend
        tx.put_tenant(TenantRecord(tenant, {"acme-master-0": "h1"}, {}).refreshed([host], 8.0))
        for mac in (mac_of(1), "52:54:00:ff:00:01"):  # the second machine never booted yet
            tx.put_bmc(StoredBmc(mac, {"protocol": "ipmi", "address": "10.9.0.1"}, "v1:s"))
        done = BmcAction(mac_of(1), ActionKind.POWER_ON, 5.0, "operator", "10.0.0.1")
        added = tx.add_action(done)
        tx.update_action(BmcAction(**{**added.__dict__, "state": ActionState.DONE}))
        tx.add_action(BmcAction("52:54:00:ff:00:01", ActionKind.REINSTALL, 6.0, "op", None))
        for n in range(3):
            tx.add_alert(Event("52:54:00:ee:00:01", 9.0 + n, "alert", f"unknown {n}", "10.1.1.1"))

    store.atomically(others)
