"""One contract suite for every Store backend. A tier imports it (`from
tests.support.store_contract import *`) and defines `open_backend(events_kept, alerts_kept)`,
a fixture that opens a new store on the same data each time it is called (SQLite: one file;
etcd: one key prefix on a real cluster) and closes them all at teardown, and
`empty_backend()`, which opens another, empty store of the same backend."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from mayu_py.bmc.records import ACTIONS_KEPT, ActionKind, ActionState, BmcAction, StoredBmc
from mayu_py.errors import Conflict
from mayu_py.model import (
    AgentCredential,
    Event,
    LabelTerm,
    Machine,
    MachineState,
    PendingConfig,
    User,
)
from mayu_py.store import Store, Tx
from mayu_py.store.transfer import Summary, migrate, records, restore, write_backup
from mayu_py.tenants import (
    HostInfo,
    ImageInfo,
    NodeReport,
    NodeState,
    ReportedNode,
    TenantRecord,
    parse_tenant,
)
from mayu_py.tenants.wire import HostImage
from tests.support.inventory import fill, mac_of
from tests.support.tenants import acme

OpenBackend = Callable[..., Store]


@pytest.fixture
def store(open_backend: OpenBackend) -> Store:
    return open_backend()


def _machine(mac: str, role: str = "worker") -> Machine:
    return Machine(id=mac, mac=mac, labels={"role": role}, created=1.0, updated=1.0)


def test_put_get_list(store: Store) -> None:
    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine("52:54:00:00:00:02"))
        tx.put_machine(_machine("52:54:00:00:00:01", "controller"))

    store.atomically(txn)
    assert [m.id for m in store.list_machines()] == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
    got = store.get_machine("52:54:00:00:00:01")
    assert got is not None and got.labels == {"role": "controller"}
    assert got.state == MachineState.DISCOVERED
    assert [m.id for m in store.machines_with_role("controller")] == ["52:54:00:00:00:01"]


def test_machines_after_pages_in_id_order(store: Store) -> None:
    macs = [f"52:54:00:00:01:{n:02x}" for n in range(7)]

    def txn(tx):  # type: ignore[no-untyped-def]
        for n, mac in enumerate(reversed(macs)):
            state = MachineState.RUNNING if n % 2 else MachineState.DISCOVERED
            tx.put_machine(replace(_machine(mac), state=state))

    store.atomically(txn)
    assert [m.id for m in store.machines_after(None, 3)] == macs[:3]
    assert [m.id for m in store.machines_after(macs[2], 3)] == macs[3:6]
    assert [m.id for m in store.machines_after(macs[5], 3)] == macs[6:]
    running = [m.id for m in store.list_machines("running")]
    assert [m.id for m in store.machines_after(running[0], 10, "running")] == running[1:]
    # A sparse state fills its page from several batches; `after` need not be stored.
    assert [m.id for m in store.machines_after(None, 2, "running")] == running[:2]
    assert [m.id for m in store.machines_after("52:54:00:00:01:00", 7)] == macs[1:]


def test_machines_after_selects_by_labels(store: Store) -> None:
    """Every term of a selector (=, != also for an unset label, exists, !exists) with a state
    and paging, and labels that change or go with their machine."""
    macs = [f"52:54:00:00:02:{n:02x}" for n in range(30)]

    def labels(n: int) -> dict[str, str]:
        found = {"rack": f"r{n % 3}"}
        if n % 4 == 0:
            found["gpu"] = "yes" if n % 8 == 0 else "no"
        return found

    def txn(tx):  # type: ignore[no-untyped-def]
        for n, mac in enumerate(macs):
            state = MachineState.RUNNING if n % 2 else MachineState.INSTALLED
            tx.put_machine(replace(_machine(mac), labels=labels(n), state=state))

    store.atomically(txn)

    def selected(*terms: LabelTerm, state: str | None = None, limit: int = 100) -> list[str]:
        return [m.id for m in store.machines_after(None, limit, state, terms)]

    def expected(holds: Callable[[int], bool]) -> list[str]:
        return [mac for n, mac in enumerate(macs) if holds(n)]

    rack1 = LabelTerm("rack", "=", "r1")
    assert selected(rack1) == expected(lambda n: n % 3 == 1)
    assert selected(LabelTerm("rack", "!=", "r1")) == expected(lambda n: n % 3 != 1)
    assert selected(LabelTerm("gpu", "exists")) == expected(lambda n: n % 4 == 0)
    assert selected(LabelTerm("gpu", "!exists")) == expected(lambda n: n % 4 != 0)
    no_gpu = LabelTerm("gpu", "!=", "yes")  # unset counts as different
    assert selected(no_gpu) == expected(lambda n: n % 8 != 0)
    assert selected(LabelTerm("gpu", "exists"), rack1, state="installed") == expected(
        lambda n: n % 4 == 0 and n % 3 == 1 and n % 2 == 0
    )
    assert selected(LabelTerm("gpu", "=", "no"), LabelTerm("rack", "!exists")) == []
    assert selected(LabelTerm("nowhere", "=", "x")) == []
    # Pages: from `after` on, `limit` at a time, in id order.
    first = store.machines_after(None, 3, None, (no_gpu, rack1))
    rest = store.machines_after(first[-1].id, 100, None, (no_gpu, rack1))
    assert [m.id for m in first + rest] == expected(lambda n: n % 8 != 0 and n % 3 == 1)
    assert len(first) == 3
    # Labels follow their machine: changed, removed, deleted with it.
    changed = replace(store.get_machine(macs[1]), labels={"gpu": "yes"})  # type: ignore[arg-type]
    store.atomically(lambda tx: tx.put_machine(changed))
    store.atomically(lambda tx: tx.delete_machine(macs[4]))
    assert selected(rack1) == expected(lambda n: n % 3 == 1 and n not in (1, 4))
    assert selected(LabelTerm("gpu", "=", "yes")) == [macs[0], macs[1], macs[8], macs[16], macs[24]]
    assert macs[4] not in selected(LabelTerm("rack", "exists"))


def test_machine_counts_by_state(store: Store) -> None:
    assert store.machine_counts() == {}

    def txn(tx):  # type: ignore[no-untyped-def]
        for i, state in enumerate(["running", "running", "failed", "discovered"]):
            machine = _machine(f"52:54:00:00:01:0{i}")
            tx.put_machine(replace(machine, state=MachineState(state)))

    store.atomically(txn)
    assert store.machine_counts() == {"running": 2, "failed": 1, "discovered": 1}


def test_failed_transaction_leaves_nothing(store: Store) -> None:
    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine("52:54:00:00:00:03"))
        tx.add_event(Event("52:54:00:00:00:03", 1.0, "registered", "test"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.atomically(txn)
    assert store.get_machine("52:54:00:00:00:03") is None
    assert store.events("52:54:00:00:00:03") == []


def test_events_are_ordered_and_keep_details(store: Store) -> None:
    mac = "52:54:00:00:00:04"

    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine(mac))
        for i in range(3):
            tx.add_event(
                Event(mac, float(i), "transition", f"step {i}", "10.0.0.1", "a", "b", {"i": i})
            )

    store.atomically(txn)
    events = store.events(mac)
    assert [e.details["i"] for e in events] == [0, 1, 2]
    assert events[0].seq < events[1].seq < events[2].seq
    assert events[2].source == "10.0.0.1"


def test_delete_machine_forgets_its_record_and_events_only(store: Store) -> None:
    gone, kept = "52:54:00:00:00:06", "52:54:00:00:00:07"

    def txn(tx):  # type: ignore[no-untyped-def]
        for mac in (gone, kept):
            tx.put_machine(_machine(mac))
            tx.add_event(Event(mac, 1.0, "registered", "test"))

    store.atomically(txn)
    store.atomically(lambda tx: tx.delete_machine(gone))
    assert store.get_machine(gone) is None and store.events(gone) == []
    assert [m.id for m in store.list_machines()] == [kept]
    assert [e.kind for e in store.events(kept)] == ["registered"]
    assert store.alerts() == []  # no orphaned events of the deleted machine
    store.atomically(lambda tx: tx.delete_machine(gone))  # deleting twice is fine


def test_count_by_role_inside_transaction(store: Store) -> None:
    store.atomically(lambda tx: tx.put_machine(_machine("52:54:00:00:00:05", "controller")))
    store.atomically(lambda tx: tx.put_machine(_machine("52:54:00:00:00:06", "worker")))
    assert store.atomically(lambda tx: tx.count_with_role("controller")) == 1


def test_delete_machine_takes_its_events_and_pending_config(store: Store) -> None:
    mac = "52:54:00:00:00:07"
    pending = PendingConfig(mac, "h", b"{}", "s" * 128, "r", 1.0)

    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine(mac))
        tx.add_event(Event(mac, 1.0, "x", "test"))
        tx.put_pending_config(pending)

    store.atomically(txn)
    assert store.get_pending_config(mac) == pending
    assert store.machine_and_pending(mac) == (_machine(mac), pending)
    store.atomically(lambda tx: tx.delete_machine(mac))
    assert store.get_machine(mac) is None and store.events(mac) == []
    assert store.get_pending_config(mac) is None
    assert store.machine_and_pending(mac) == (None, None)


def test_hostnames_are_unique(store: Store) -> None:
    first = replace(_machine("52:54:00:00:00:08"), hostname="same")
    store.atomically(lambda tx: tx.put_machine(first))
    assert store.atomically(lambda tx: tx.hostname_owner("same")) == first.id
    with pytest.raises(Conflict, match="hostname"):
        store.atomically(
            lambda tx: tx.put_machine(replace(_machine("52:54:00:00:00:09"), hostname="same"))
        )


def test_bounded_queries(store: Store) -> None:
    def txn(tx):  # type: ignore[no-untyped-def]
        for i in range(6):
            machine = replace(
                _machine(f"52:54:00:00:01:{i:02x}"),
                registered_from="10.0.0.1" if i < 4 else "10.0.0.2",
                created=100.0 + i,
                updated=100.0 + i,
                window_expires=200.0 + i if i % 2 else None,
            )
            tx.put_machine(machine)

    store.atomically(txn)
    count = store.atomically(lambda tx: tx.registrations_since(101.5, "10.0.0.1", 10))
    assert count == 2
    assert store.atomically(lambda tx: tx.registrations_since(0, None, 3)) == 3  # capped
    expired = store.atomically(lambda tx: tx.expired_windows(203.5, 10))
    assert [m.id for m in expired] == ["52:54:00:00:01:01", "52:54:00:00:01:03"]
    stale = store.atomically(lambda tx: tx.stale_discovered(102.5, 10))
    assert sorted(stale) == ["52:54:00:00:01:00", "52:54:00:00:01:01", "52:54:00:00:01:02"]


def test_event_and_alert_retention(open_backend: OpenBackend) -> None:
    store = open_backend(events_kept=3, alerts_kept=2)
    mac = "52:54:00:00:00:0a"

    def txn(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine(mac))
        for i in range(5):
            tx.add_event(Event(mac, float(i), "e", f"event {i}"))
            tx.add_alert(Event("52:54:00:00:00:ff", float(i), "a", f"alert {i}"))

    store.atomically(txn)
    assert [e.cause for e in store.events(mac)] == ["event 2", "event 3", "event 4"]
    assert [e.cause for e in store.alerts()] == ["alert 4", "alert 3"]


def test_tenants_and_hosts_records(store: Store) -> None:
    tenant = parse_tenant(acme(), {"lab": ImageInfo("lab")}, [])
    report = NodeReport(
        "acme", "acme-master-0", NodeState.READY, "10.100.0.10", "h1", "", 1, "Ready"
    )
    reported = ReportedNode(report, 5.0)
    host = HostInfo("h1", 2, 4096, 7.0, "192.0.2.5", images=(HostImage("lab", "1", "a" * 64),))
    record = TenantRecord(tenant, {"acme-master-0": "h1"}, {"acme-master-0": reported})
    record = record.refreshed([host], 7.0)  # with its conditions
    store.atomically(lambda tx: tx.put_tenant(record))
    store.atomically(lambda tx: tx.put_host(host))
    assert store.get_tenant("acme") == record and record.conditions
    assert store.atomically(lambda tx: tx.list_tenants()) == [record]
    assert store.list_hosts() == [host]
    deleting = dataclasses.replace(record, deleting=True)
    store.atomically(lambda tx: tx.put_tenant(deleting))
    assert store.get_tenant("acme") == deleting
    store.atomically(lambda tx: tx.delete_tenant("acme"))
    assert store.list_tenants() == [] and store.get_tenant("acme") is None


def test_agent_credentials(store: Store) -> None:
    first = AgentCredential("h1", "hash-1", "operator", False, 1.0, 1.0)
    store.atomically(lambda tx: tx.put_agent_credential(first))
    assert store.get_agent_credential("h1") == first
    revoked = replace(first, revoked=True, updated=2.0)
    store.atomically(lambda tx: tx.put_agent_credential(revoked))
    assert store.list_agent_credentials() == [revoked]
    assert store.get_agent_credential("h2") is None
    approved = AgentCredential("h2", "hash-2", "operator", False, 3.0, 3.0, underlay="192.0.2.7")
    store.atomically(lambda tx: tx.put_agent_credential(approved))
    assert store.get_agent_credential("h2") == approved


def test_users(open_backend: OpenBackend) -> None:
    """Users are named records: put replaces, a transaction reads its own writes, a listing is
    in name order, delete forgets, and another store on the same data sees the same."""
    store, other = open_backend(), open_backend()
    alice, bob = User("alice", "hash-a", 1.0, 1.0), User("bob", "hash-b", 2.0, 2.0)
    assert store.get_user("alice") is None and store.list_users() == []

    def add_both(tx: Tx) -> list[User]:
        tx.put_user(bob)
        tx.put_user(alice)
        return tx.list_users()

    assert store.atomically(add_both) == [alice, bob]
    rotated = replace(alice, token_hash="hash-a2", updated=3.0)
    store.atomically(lambda tx: tx.put_user(rotated))
    assert other.get_user("alice") == rotated
    assert store.atomically(lambda tx: tx.get_user("alice")) == rotated

    def remove_bob(tx: Tx) -> User | None:
        tx.delete_user("bob")
        return tx.get_user("bob")

    assert store.atomically(remove_bob) is None
    assert other.list_users() == [rotated] and other.get_user("bob") is None


def test_index_follows_changes(store: Store) -> None:
    """Every secondary query answers from the current records: a changed hostname frees the
    old one, a new role moves the count, a closed window and a machine that moved on from
    discovered leave the sweeps."""
    mac = "52:54:00:00:02:01"
    first = replace(_machine(mac), hostname="alpha", window_expires=50.0, updated=1.0)
    store.atomically(lambda tx: tx.put_machine(first))
    renamed = replace(first, hostname="beta", labels={"role": "controller"}, window_expires=None)
    store.atomically(lambda tx: tx.put_machine(renamed))
    assert store.machine_named("alpha") is None
    named = store.machine_named("beta")
    assert named is not None and named.id == mac
    assert store.atomically(lambda tx: tx.count_with_role("worker")) == 0
    assert store.atomically(lambda tx: tx.count_with_role("controller")) == 1
    assert store.atomically(lambda tx: tx.expired_windows(100.0, 10)) == []
    assert store.atomically(lambda tx: tx.stale_discovered(10.0, 10)) == [mac]
    moved = replace(renamed, state=MachineState.CONFIGURED)
    store.atomically(lambda tx: tx.put_machine(moved))
    assert store.atomically(lambda tx: tx.stale_discovered(10.0, 10)) == []
    other = replace(_machine("52:54:00:00:02:02"), hostname="alpha")
    store.atomically(lambda tx: tx.put_machine(other))  # the freed name is free
    assert store.atomically(lambda tx: tx.hostname_owner("alpha")) == other.id
    store.atomically(lambda tx: tx.delete_machine(mac))
    assert store.machine_named("beta") is None and store.machines_with_role("controller") == []


def test_transaction_reads_its_own_writes(store: Store) -> None:
    mac = "52:54:00:00:02:03"

    def txn(tx: Tx) -> tuple[Machine | None, str | None, int, list[str]]:
        tx.put_machine(replace(_machine(mac, "controller"), hostname="own"))
        tx.put_host(HostInfo("h-own", 1, 512, 1.0))
        tx.delete_pending_config(mac)
        return (
            tx.get_machine(mac),
            tx.hostname_owner("own"),
            tx.count_with_role("controller"),
            [h.name for h in tx.list_hosts()],
        )

    machine, owner, controllers, hosts = store.atomically(txn)
    assert machine is not None and machine.hostname == "own"
    assert (owner, controllers, hosts) == (mac, 1, ["h-own"])


def test_delete_and_recreate_in_one_transaction(store: Store) -> None:
    mac = "52:54:00:00:02:04"

    def first(tx: Tx) -> None:
        tx.put_machine(_machine(mac))
        tx.add_event(Event(mac, 1.0, "old", "before"))

    def again(tx: Tx) -> None:
        tx.delete_machine(mac)
        tx.put_machine(replace(_machine(mac), hostname="fresh"))
        tx.add_event(Event(mac, 2.0, "new", "after"))

    store.atomically(first)
    store.atomically(again)
    got = store.get_machine(mac)
    assert got is not None and got.hostname == "fresh"
    assert [e.kind for e in store.events(mac)] == ["new"]


def test_pending_config_of_realistic_size(store: Store) -> None:
    """A controller's secret config is 30-60 KiB of JSON; its exact bytes come back."""
    mac = "52:54:00:00:02:05"
    body = bytes(range(256)) * 256  # 64 KiB, every byte value
    pending = PendingConfig(mac, "h", body, "s" * 128, "r", 1.0, "a")
    store.atomically(lambda tx: (tx.put_machine(_machine(mac)), tx.put_pending_config(pending)))
    assert store.get_pending_config(mac) == pending


def test_refusals_cannot_push_a_machines_history_out(open_backend: OpenBackend) -> None:
    store = open_backend(events_kept=3)
    mac = "52:54:00:00:00:0a"

    def history(tx):  # type: ignore[no-untyped-def]
        tx.put_machine(_machine(mac))
        for i in range(3):
            tx.add_event(Event(mac, float(i), "transition", f"step {i}"))

    def flood(first: int) -> Callable[[Tx], None]:
        def txn(tx: Tx) -> None:
            for i in range(first, first + 10):
                tx.add_event(Event(mac, 10.0 + i, "ignition-refused", f"flood {i}"))

        return txn

    store.atomically(history)
    for first in range(0, 50, 10):  # each refused request is its own transaction
        store.atomically(flood(first))
    store.atomically(lambda tx: tx.add_event(Event(mac, 99.0, "transition", "step 3")))
    causes = [e.cause for e in store.events(mac)]
    assert causes == ["step 1", "step 2", "flood 47", "flood 48", "flood 49", "step 3"]
    seqs = [e.seq for e in store.events(mac)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_many_events_stay_bounded_and_ordered(open_backend: OpenBackend) -> None:
    store = open_backend(events_kept=10)
    mac = "52:54:00:00:02:06"
    store.atomically(lambda tx: tx.put_machine(_machine(mac)))
    for i in range(25):
        store.atomically(lambda tx, i=i: tx.add_event(Event(mac, float(i), "e", f"event {i}")))
    events = store.events(mac)
    assert [e.cause for e in events] == [f"event {i}" for i in range(15, 25)]
    assert [e.seq for e in events] == sorted({e.seq for e in events})


ROUNDS = 5
RACERS = 2


def test_racing_writers_one_winner_per_step_no_lost_update(open_backend: OpenBackend) -> None:
    """Two writers (two store instances, like two replicas) race on one machine: each round
    mints a one-time token and both try to spend it; exactly one spends it, and every
    writer's increment of a counter label survives."""
    mac = "52:54:00:00:02:07"
    stores = [open_backend() for _ in range(RACERS)]
    stores[0].atomically(lambda tx: tx.put_machine(replace(_machine(mac), labels={"n": "0"})))
    barrier = threading.Barrier(RACERS, timeout=60)
    wins: list[list[int]] = [[] for _ in range(RACERS)]
    failures: list[BaseException] = []

    def spend(tx: Tx, token: str) -> bool:
        machine = tx.get_machine(mac)
        assert machine is not None
        won = machine.token_hash == token and not machine.token_consumed
        count = {"n": str(int(machine.labels["n"]) + 1)}
        tx.put_machine(replace(machine, token_consumed=machine.token_consumed or won, labels=count))
        tx.add_event(Event(mac, 1.0, "spent" if won else "refused", token))
        return won

    def racer(index: int) -> None:
        try:
            for round_ in range(ROUNDS):
                barrier.wait()
                if index == 0:  # one writer opens the round with a fresh token
                    token = f"token-{round_}"
                    stores[0].atomically(
                        lambda tx, t=token: tx.put_machine(
                            replace(tx.get_machine(mac), token_hash=t, token_consumed=False)
                        )
                    )
                barrier.wait()
                if stores[index].atomically(lambda tx, t=f"token-{round_}": spend(tx, t)):
                    wins[index].append(round_)
        except BaseException as exc:  # surfaced below, with the other thread released
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sorted(wins[0] + wins[1]) == list(range(ROUNDS))  # one winner per round
    final = stores[0].get_machine(mac)
    assert final is not None and final.labels["n"] == str(RACERS * ROUNDS)  # no lost update
    kinds = [e.kind for e in stores[1].events(mac)]
    assert kinds.count("spent") == ROUNDS and kinds.count("refused") == ROUNDS


def test_hostname_claimed_by_two_writers_goes_to_one(open_backend: OpenBackend) -> None:
    first, second = open_backend(), open_backend()
    barrier = threading.Barrier(2, timeout=60)
    outcome: dict[str, str] = {}

    def claim(store: Store, mac: str) -> None:
        barrier.wait()
        try:
            store.atomically(lambda tx: tx.put_machine(replace(_machine(mac), hostname="one")))
            outcome[mac] = "won"
        except Conflict:
            outcome[mac] = "conflict"

    threads = [
        threading.Thread(target=claim, args=(first, "52:54:00:00:02:08")),
        threading.Thread(target=claim, args=(second, "52:54:00:00:02:09")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcome.values()) == ["conflict", "won"]
    winner = next(mac for mac, result in outcome.items() if result == "won")
    assert first.atomically(lambda tx: tx.hostname_owner("one")) == winner


def test_bmc_records_and_actions(store: Store) -> None:
    mac, other = "52:54:00:00:00:31", "52:54:00:00:00:32"
    bmc = StoredBmc(mac, {"protocol": "ipmi", "address": "10.0.0.9"}, "v1:sealed", False, 5.0)
    store.atomically(lambda tx: tx.put_bmc(bmc))
    assert store.get_bmc(mac) == bmc
    store.atomically(lambda tx: tx.put_bmc(replace(bmc, disk_after_install=True)))
    assert store.get_bmc(mac) == replace(bmc, disk_after_install=True)

    def queue(tx):  # type: ignore[no-untyped-def]
        return [
            tx.add_action(BmcAction(m, kind, 1.0 + i, "operator", "10.0.0.1"))
            for i, (m, kind) in enumerate(
                [
                    (mac, ActionKind.POWER_ON),
                    (other, ActionKind.REINSTALL),
                    (mac, ActionKind.BOOTDEV_DISK),
                ]
            )  # fmt: skip
        ]

    queued = store.atomically(queue)
    assert [a.id for a in queued] == sorted({a.id for a in queued})
    assert store.get_action(queued[1].id) == queued[1]
    done = replace(queued[0], state=ActionState.DONE, started=2.0, finished=3.0,
                   result={"state": "on"})  # fmt: skip
    store.atomically(lambda tx: tx.update_action(done))
    assert store.get_action(done.id) == done
    opened = store.atomically(lambda tx: tx.open_actions(10))
    assert [a.id for a in opened] == [queued[1].id, queued[2].id]
    assert [a.id for a in store.machine_actions(mac)] == [queued[2].id, done.id]

    store.atomically(lambda tx: tx.delete_machine(mac))
    assert store.get_bmc(mac) is None and store.machine_actions(mac) == []
    assert store.get_action(queued[1].id) == queued[1]  # another machine's stays
    store.atomically(lambda tx: tx.delete_bmc(other))
    assert store.get_bmc(other) is None


def test_finished_actions_are_trimmed_open_ones_kept(store: Store) -> None:
    mac = "52:54:00:00:00:33"
    waiting = store.atomically(
        lambda tx: tx.add_action(BmcAction(mac, ActionKind.POWER_OFF, 0.5, "operator"))
    )
    for i in range(ACTIONS_KEPT + 5):

        def txn(tx, i=i):  # type: ignore[no-untyped-def]
            action = tx.add_action(BmcAction(mac, ActionKind.POWER_STATUS, 1.0 + i, "operator"))
            tx.update_action(replace(action, state=ActionState.DONE))

        store.atomically(txn)
    kept = store.machine_actions(mac, 1000)
    assert waiting.id in {a.id for a in kept}
    # Trimmed when one is added: the newest ACTIONS_KEPT finished ones, plus the one added.
    finished = [a for a in kept if a.id != waiting.id]
    assert len(finished) == ACTIONS_KEPT + 1
    assert [a.requested for a in finished] == [1.0 + i for i in range(ACTIONS_KEPT + 4, 3, -1)]


def test_discovered_machines_with_a_bmc_are_never_stale(store: Store) -> None:
    mac = "52:54:00:00:00:34"
    store.atomically(lambda tx: tx.put_machine(replace(_machine(mac), labels={})))
    assert store.atomically(lambda tx: tx.stale_discovered(10.0, 10)) == [mac]
    store.atomically(lambda tx: tx.put_bmc(StoredBmc(mac, {}, "v1:x")))
    assert store.atomically(lambda tx: tx.stale_discovered(10.0, 10)) == []


def test_backup_restore_and_migrate_keep_every_record(
    open_backend: OpenBackend, empty_backend: OpenBackend, tmp_path: Path
) -> None:
    source = open_backend()
    fill(source, 40, events_each=5)
    summary = Summary.of(records(source))
    assert summary.counts["machine"] == 40 and summary.counts["event"] == 200
    assert summary.counts["user"] == 1 and summary.counts["shared"] == 1
    assert write_backup(source, tmp_path / "backup.jsonl") == summary
    assert (tmp_path / "backup.jsonl").stat().st_mode & 0o777 == 0o600
    target = empty_backend()
    for _ in range(2):  # a second restore changes nothing
        assert restore(target, tmp_path / "backup.jsonl") == summary
        assert Summary.of(records(target)) == summary
    assert migrate(source, target) == summary  # already there: verified, nothing added
    mac = mac_of(7)
    assert target.events(mac) == source.events(mac)
    assert [replace(a, seq=None) for a in target.alerts()] == [
        replace(a, seq=None) for a in source.alerts()
    ]
    # what is added after a restore follows what was restored
    last = source.events(mac)[-1].seq or 0
    target.atomically(lambda tx: tx.add_event(Event(mac, 9e9, "transition", "after")))
    assert (target.events(mac)[-1].seq or 0) > last
    action = BmcAction(mac, ActionKind.POWER_OFF, 9.0, "operator")
    added = target.atomically(lambda tx: tx.add_action(action))
    assert (added.id or 0) > max(source.action_ids())


def test_shared_records(store: Store) -> None:
    record = {"files": {"ca.crt": {"data": "QQ=="}}, "key": "abc"}
    store.atomically(lambda tx: tx.put_shared("tenant-pki:a/b", record))
    store.atomically(lambda tx: tx.put_shared("replica-files", record | {"key": "x"}))
    assert store.get_shared("tenant-pki:a/b") == record
    assert store.shared_names() == ["replica-files", "tenant-pki:a/b"]
    store.atomically(lambda tx: tx.delete_shared("tenant-pki:a/b"))
    assert store.get_shared("tenant-pki:a/b") is None and store.shared_names() == ["replica-files"]
