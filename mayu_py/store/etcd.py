"""etcd backend of the Store (HA): records as JSON under one key prefix, secondary indexes
kept in the same transactions, optimistic transactions retried on conflict.

`atomically(fn)` runs fn against an `EtcdTx` (snapshot reads, buffered writes, see
etcd_txn) and commits with one etcd txn; a commit that loses a race runs fn again after a
jittered backoff, up to `max_attempts` times, then raises StoreContention (503). Key layout,
which reads are checked at commit and which are advisory: docs/store.md.

Every query stays bounded: the boot path reads single keys and index ranges with a limit;
only the admin listings (machines, tenants, hosts, agents) page through a whole prefix.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mayu_py.bmc.records import BmcAction, StoredBmc
from mayu_py.errors import Conflict
from mayu_py.model import (
    REFUSAL_EVENTS,
    AgentCredential,
    Event,
    LabelTerm,
    Machine,
    PendingConfig,
    User,
    labels_selected,
)
from mayu_py.store import TxObserver, TxOutcome, observed
from mayu_py.store.errors import StoreContention, StoreUnavailable
from mayu_py.store.etcd_bmc import BmcKeys
from mayu_py.store.etcd_gateway import EtcdGateway, SnapshotGone
from mayu_py.store.etcd_keys import KeyLayout, last_segment
from mayu_py.store.etcd_records import (
    credential_data,
    credential_of,
    event_data,
    event_of,
    machine_data,
    machine_of,
    pending_data,
    pending_of,
)
from mayu_py.store.etcd_txn import OptimisticTxn
from mayu_py.store.etcd_users import UserRecords
from mayu_py.store.url import EtcdLocation
from mayu_py.tenants import HostInfo, TenantRecord

T = TypeVar("T")
log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
AGENTS, HOSTS, TENANTS, SHARED = "agents", "hosts", "tenants", "shared"
# A sweep (expired windows, stale discoveries) hands out at most this many records per
# transaction, however many it is asked for: the transaction that acts on them then stays
# under etcd's default --max-txn-ops of 128 (each record costs ~6 operations); the rest
# are swept by the next requests.
SWEEP_CAP = 10
BACKOFF_BASE_S = 0.005
BACKOFF_CAP_S = 0.25
# Readiness answers quickly: a cluster that cannot commit within this long is not ready.
PING_TIMEOUT_S = 1.0
# A page filtered by state or labels reads machines in range reads of at least this many.
FILTER_BATCH = 500


class EtcdTx(BmcKeys, UserRecords):
    """The Tx protocol over one optimistic transaction."""

    def __init__(
        self, txn: OptimisticTxn, keys: KeyLayout, events_kept: int, alerts_kept: int
    ) -> None:
        self.txn = txn
        self.keys = keys
        self._events_kept = events_kept
        self._alerts_kept = alerts_kept
        self._new_alerts: list[str] = []

    # -- machines ---------------------------------------------------------------------------

    def get_machine(self, machine_id: str) -> Machine | None:
        # The event counter comes along: most transactions that read a machine add an event.
        # So does its BMC key (whether it has one decides its place in the discovered index)
        # and its pending config (the stub and secret steps read it next): one round trip.
        machine_key = self.keys.machine(machine_id)
        keys = [
            machine_key,
            self.keys.event_seq(machine_id),
            self.keys.bmc(machine_id),
            self.keys.pending(machine_id),
        ]
        data = self.txn.get_many(keys)[machine_key]
        return machine_of(data) if data is not None else None

    def _has_bmc(self, machine_id: str) -> bool:
        return self.txn.get(self.keys.bmc(machine_id)) is not None

    def _machines(self, ids: list[str]) -> list[Machine]:
        found = self.txn.get_many([self.keys.machine(i) for i in ids])
        return [machine_of(data) for data in found.values() if data is not None]

    def put_machine(self, machine: Machine) -> None:
        """Insert or update by id; a hostname another machine has is a Conflict (409)."""
        old = self.get_machine(machine.id)
        if machine.hostname and (old is None or old.hostname != machine.hostname):
            owner = self.hostname_owner(machine.hostname)
            if owner is not None and owner != machine.id:
                raise Conflict("hostname taken by another machine", {"hostname": machine.hostname})
        self._reindex(old, machine, self._has_bmc(machine.id))
        self.txn.put(self.keys.machine(machine.id), machine_data(machine))

    def _reindex(self, old: Machine | None, new: Machine | None, has_bmc: bool) -> None:
        before = self.keys.machine_index(old, has_bmc)
        after = self.keys.machine_index(new, has_bmc)
        for key in before.keys() - after.keys():
            self.txn.delete(key)
        for key, data in after.items():
            if before.get(key) != data:
                self.txn.put(key, data)

    def delete_machine(self, machine_id: str) -> None:
        """Forget a machine: its record, indexes, events, pending config, BMC and actions."""
        self._reindex(self.get_machine(machine_id), None, self._has_bmc(machine_id))
        self.txn.delete(self.keys.machine(machine_id))
        self.txn.delete_range(*self.keys.machine_data(machine_id))
        self._forget_bmc_of(machine_id)

    def hostname_owner(self, hostname: str) -> str | None:
        owner: str | None = self.txn.get(self.keys.hostname(hostname))
        return owner

    def machine_named(self, hostname: str) -> Machine | None:
        owner = self.hostname_owner(hostname)
        return self.get_machine(owner) if owner is not None else None

    def count_with_role(self, role: str) -> int:
        """Exact and checked at commit: a machine given this role meanwhile fails the commit
        (the controller count holds across replicas)."""
        return len(self.txn.scan(*self.keys.role(role), keys_only=True, checked=True))

    def machines_with_role(self, role: str) -> list[Machine]:
        entries = self.txn.scan(*self.keys.role(role), keys_only=True)
        return self._machines([last_segment(e.key) for e in entries])

    def registrations_since(self, since: float, source: str | None, limit: int) -> int:
        """Machines registered after `since` (from `source`), counted up to `limit`, with the
        ones this transaction registered. Advisory (not checked at commit): concurrent
        registrations may overshoot a rate limit by the number of transactions in flight."""
        # Counted by etcd (count_only): a storm's minute of registrations never travels.
        return min(limit, self.txn.count(*self.keys.created_after(since, source)))

    def expired_windows(self, now: float, limit: int) -> list[Machine]:
        range_ = self.keys.windows_until(now)
        entries = self.txn.scan(*range_, limit=min(limit, SWEEP_CAP), keys_only=True)
        machines = self._machines([last_segment(e.key) for e in entries])
        return sorted(machines, key=lambda m: (m.window_expires or 0.0, m.id))

    def stale_discovered(self, before: float, limit: int) -> list[str]:
        range_ = self.keys.discovered_before(before)
        entries = self.txn.scan(*range_, limit=min(limit, SWEEP_CAP), keys_only=True)
        return [last_segment(e.key) for e in entries]

    # -- events and alerts ------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        """Record an event of a machine; only its newest `events_kept` are kept, counted
        apart for refusals (REFUSAL_EVENTS) and for the rest, so refusals anyone can cause
        never push the machine's own history out. The counter holds the next number in each
        budget (`next`, `refusals`) and the machine's event order (`order`, the seq)."""
        counter = self._event_counter(event.machine_id)
        self._record_event(event, counter.get("order", counter["next"]), counter)

    def restore_event(self, event: Event) -> None:
        assert event.seq is not None
        counter = self._event_counter(event.machine_id)
        if counter.get("order", counter["next"]) <= event.seq:
            self._record_event(event, event.seq, counter)

    def _event_counter(self, machine_id: str) -> dict[str, int]:
        counter: dict[str, int] = self.txn.get(self.keys.event_seq(machine_id)) or {"next": 1}
        return counter

    def _record_event(self, event: Event, seq: int, counter: dict[str, int]) -> None:
        budget = "refusals" if event.kind in REFUSAL_EVENTS else "next"
        refusal = budget == "refusals"
        number_ = counter.get(budget, 1)
        self.txn.put(self.keys.event(event.machine_id, number_, refusal), event_data(event, seq))
        self.txn.put(
            self.keys.event_seq(event.machine_id), counter | {budget: number_ + 1, "order": seq + 1}
        )
        oldest_kept = number_ + 1 - self._events_kept
        if oldest_kept > 1:
            range_ = self.keys.events_before(event.machine_id, oldest_kept, refusal)
            self.txn.delete_range(*range_)

    def add_alert(self, event: Event) -> None:
        """Record an event about no enrolled machine; only the newest `alerts_kept` are
        listed. Alert keys are ordered by wall-clock time (no shared counter for replicas to
        fight over); the list is trimmed at commit when it outgrows its cap by a tenth."""
        position = len(self._new_alerts)
        key = self.keys.alert(time.time_ns() // 1000, self.txn.txid, position)
        self._new_alerts.append(key)
        self.txn.put(key, event_data(event))
        self.txn.before_commit(self._trim_alerts)

    def _trim_alerts(self) -> None:
        start, end = self.keys.alerts
        excess = self.txn.count(start, end) - self._alerts_kept  # new alerts included
        if excess <= self._alerts_kept // 10:
            return
        stored = [e.key for e in self.txn.scan(start, end, limit=excess, keys_only=True)]
        doomed = sorted(set(stored) | set(self._new_alerts))[:excess]
        self.txn.delete_range(start, doomed[-1] + "\0")

    # -- pending secret configs -------------------------------------------------------------

    def put_pending_config(self, pending: PendingConfig) -> None:
        self.txn.put(self.keys.pending(pending.machine_id), pending_data(pending))

    def get_pending_config(self, machine_id: str) -> PendingConfig | None:
        data = self.txn.get(self.keys.pending(machine_id))
        return pending_of(data) if data is not None else None

    def delete_pending_config(self, machine_id: str) -> None:
        self.txn.delete(self.keys.pending(machine_id))

    # -- named records: agent credentials, hosts, tenants -----------------------------------

    def _get_record(self, kind: str, name: str) -> dict[str, Any] | None:
        data: dict[str, Any] | None = self.txn.get(self.keys.record(kind, name))
        return data

    def _put_record(self, kind: str, name: str, data: dict[str, Any]) -> None:
        self.txn.put(self.keys.record(kind, name), data)

    def _list_records(self, kind: str) -> list[dict[str, Any]]:
        """Every record of a kind, in name order; checked at commit (a record created or
        changed meanwhile fails it)."""
        return [e.data for e in self.txn.scan(*self.keys.records(kind), checked=True)]

    def get_agent_credential(self, host: str) -> AgentCredential | None:
        data = self._get_record(AGENTS, host)
        return credential_of(data) if data is not None else None

    def put_agent_credential(self, credential: AgentCredential) -> None:
        self._put_record(AGENTS, credential.host, credential_data(credential))

    def list_agent_credentials(self) -> list[AgentCredential]:
        return [credential_of(d) for d in self._list_records(AGENTS)]

    def delete_host(self, name: str) -> None:
        self.txn.delete(self.keys.record(HOSTS, name))

    def get_tenant(self, name: str) -> TenantRecord | None:
        data = self._get_record(TENANTS, name)
        return TenantRecord.from_json(data) if data is not None else None

    def put_tenant(self, record: TenantRecord) -> None:
        self._put_record(TENANTS, record.name, record.to_json())

    def delete_tenant(self, name: str) -> None:
        self.txn.delete(self.keys.record(TENANTS, name))

    def list_tenants(self) -> list[TenantRecord]:
        return [TenantRecord.from_json(d) for d in self._list_records(TENANTS)]

    def list_hosts(self) -> list[HostInfo]:
        return [HostInfo.from_json(d) for d in self._list_records(HOSTS)]

    def put_host(self, host: HostInfo) -> None:
        self._put_record(HOSTS, host.name, host.to_json())

    def get_shared(self, name: str) -> dict[str, Any] | None:
        return self._get_record(SHARED, name)

    def put_shared(self, name: str, record: dict[str, Any]) -> None:
        self._put_record(SHARED, name, record)

    def delete_shared(self, name: str) -> None:
        self.txn.delete(self.keys.record(SHARED, name))

    def probe(self) -> None:
        """A write that proves the cluster can commit (readiness)."""
        self.txn.put(self.keys.probe, {"time": time.time()})


def _outcome(exc: BaseException) -> TxOutcome:
    """How a transaction that raised `exc` ended (for the observer)."""
    if isinstance(exc, Conflict):
        return "conflict"
    if isinstance(exc, StoreContention):
        return "busy"
    if isinstance(exc, StoreUnavailable):
        return "error"
    return "rolled_back"


class EtcdStore:
    """The HA Store backend: one etcd cluster, every record under `location.prefix`."""

    def __init__(
        self,
        location: EtcdLocation,
        events_kept: int = 200,
        alerts_kept: int = 1000,
        *,
        request_timeout: float = 5.0,
        unavailable_after: float = 15.0,
        max_attempts: int = 8,
        observer: TxObserver | None = None,
    ) -> None:
        self.location = location
        self._observer = observer
        self.keys = KeyLayout(location.prefix)
        self.events_kept = events_kept
        self.alerts_kept = alerts_kept
        self.max_attempts = max_attempts
        self.gateway = EtcdGateway(location, request_timeout, unavailable_after)
        self._ping_gateway = EtcdGateway(location, PING_TIMEOUT_S, 2 * PING_TIMEOUT_S)
        self._check_schema()

    def _check_schema(self) -> None:
        def txn(tx: EtcdTx) -> int:
            found = tx.txn.get(self.keys.schema)
            if found is None:
                tx.txn.put(self.keys.schema, {"version": SCHEMA_VERSION})
                return SCHEMA_VERSION
            return int(found["version"])

        version = self.atomically(txn)
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"store {self.location.describe()}: schema version {version} is newer than "
                f"this mayu ({SCHEMA_VERSION}); upgrade mayu",
                {"prefix": self.location.prefix},
            )

    def _tx(self, gateway: EtcdGateway | None = None) -> EtcdTx:
        txn = OptimisticTxn(gateway or self.gateway)
        return EtcdTx(txn, self.keys, self.events_kept, self.alerts_kept)

    def atomically(self, fn: Callable[[EtcdTx], T]) -> T:
        return observed(self._observer, _outcome, self._transaction, fn)

    def _transaction(self, fn: Callable[[EtcdTx], T]) -> T:
        for attempt in range(1, self.max_attempts + 1):
            tx = self._tx()
            try:
                result = fn(tx)
                if tx.txn.commit():
                    return result
            except SnapshotGone:
                pass  # the snapshot went away under the transaction: start over
            if attempt < self.max_attempts:
                time.sleep(random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)))
        log.warning("store transaction gave up after %d conflicting attempts", self.max_attempts)
        raise StoreContention(
            "the store is busy with conflicting changes to the same records; try again",
            {"attempts": self.max_attempts},
        )

    def _read(self, fn: Callable[[EtcdTx], T]) -> T:
        """A read outside any transaction: one fresh snapshot, nothing to commit."""
        for _ in range(self.max_attempts):
            try:
                return fn(self._tx())
            except SnapshotGone:
                continue
        raise StoreContention("the store's snapshot kept moving; try again")

    def get_machine(self, machine_id: str) -> Machine | None:
        return self._read(lambda tx: tx.get_machine(machine_id))

    def state_version(self) -> None:
        """No cheap version here: the cluster's revision is a round trip, as costly as the
        read it would save, so nothing read from etcd is cached."""
        return None

    def list_machines(self, state: str | None = None) -> list[Machine]:
        entries = self._read(lambda tx: tx.txn.scan(*self.keys.machines))
        machines = [machine_of(e.data) for e in entries]
        return [m for m in machines if state is None or str(m.state) == state]

    def machines_after(
        self,
        after: str | None,
        limit: int,
        state: str | None = None,
        selector: Sequence[LabelTerm] = (),
    ) -> list[Machine]:
        """A range read from the key after `after`: machine keys are their canonical MACs,
        which need no quoting, so key order is id order. A state or label filter (applied
        here, in Python) reads on in batches of at least FILTER_BATCH until the page is full
        or the range ends."""
        start, end = self.keys.machines
        if after is not None:
            start = self.keys.machine(after) + "\x00"  # the first key after `after`'s
        batch_size = limit if state is None and not selector else max(limit, FILTER_BATCH)
        shown: list[Machine] = []
        while len(shown) < limit:
            entries = self._read(lambda tx, start=start: tx.txn.scan(start, end, limit=batch_size))
            batch = [machine_of(e.data) for e in entries]
            shown += [
                m
                for m in batch
                if (state is None or str(m.state) == state) and labels_selected(selector, m.labels)
            ]
            if len(entries) < batch_size:
                break
            start = entries[-1].key + "\x00"
        return shown[:limit]

    def machine_counts(self) -> dict[str, int]:
        return dict(Counter(str(m.state) for m in self.list_machines()))

    def machines_with_role(self, role: str) -> list[Machine]:
        machines = self._read(lambda tx: tx.machines_with_role(role))
        return sorted(machines, key=lambda m: (m.created, m.id))

    def alerts(self, limit: int = 100) -> list[Event]:
        """The newest events about no enrolled machine, newest first; `seq` is the etcd
        revision that wrote an alert, times 1000, plus its position in that transaction."""
        shown = min(limit, self.alerts_kept)
        entries = self._read(
            lambda tx: tx.txn.scan(*self.keys.alerts, limit=shown, descending=True)
        )
        return [
            event_of(e.data, e.create_revision * 1000 + int(e.key.rsplit("-", 1)[1]))
            for e in entries
        ]

    def events(self, machine_id: str) -> list[Event]:
        """Both budgets of a machine's events, in the order they were recorded."""
        entries = self._read(lambda tx: tx.txn.scan(*self.keys.events(machine_id)))
        return sorted((event_of(e.data) for e in entries), key=lambda e: e.seq or 0)

    def get_pending_config(self, machine_id: str) -> PendingConfig | None:
        return self._read(lambda tx: tx.get_pending_config(machine_id))

    def machine_and_pending(self, machine_id: str) -> tuple[Machine | None, PendingConfig | None]:
        def both(tx: EtcdTx) -> tuple[Machine | None, PendingConfig | None]:
            return tx.get_machine(machine_id), tx.get_pending_config(machine_id)

        return self._read(both)

    def get_agent_credential(self, host: str) -> AgentCredential | None:
        return self._read(lambda tx: tx.get_agent_credential(host))

    def list_agent_credentials(self) -> list[AgentCredential]:
        return self._read(lambda tx: tx.list_agent_credentials())

    def machine_named(self, hostname: str) -> Machine | None:
        return self._read(lambda tx: tx.machine_named(hostname))

    def list_tenants(self) -> list[TenantRecord]:
        return self._read(lambda tx: tx.list_tenants())

    def get_tenant(self, name: str) -> TenantRecord | None:
        return self._read(lambda tx: tx.get_tenant(name))

    def list_hosts(self) -> list[HostInfo]:
        return self._read(lambda tx: tx.list_hosts())

    def get_user(self, name: str) -> User | None:
        return self._read(lambda tx: tx.get_user(name))

    def list_users(self) -> list[User]:
        return self._read(lambda tx: tx.list_users())

    def get_bmc(self, machine_id: str) -> StoredBmc | None:
        return self._read(lambda tx: tx.get_bmc(machine_id))

    def get_action(self, action_id: int) -> BmcAction | None:
        return self._read(lambda tx: tx.get_action(action_id))

    def machine_actions(self, machine_id: str, limit: int = 50) -> list[BmcAction]:
        return self._read(lambda tx: tx.machine_actions(machine_id, limit))

    def get_shared(self, name: str) -> dict[str, Any] | None:
        return self._read(lambda tx: tx.get_shared(name))

    def shared_names(self) -> list[str]:
        entries = self._read(lambda tx: tx.txn.scan(*self.keys.records(SHARED), keys_only=True))
        return [last_segment(e.key) for e in entries]

    def bmc_ids(self) -> list[str]:
        entries = self._read(lambda tx: tx.txn.scan(*self.keys.bmcs, keys_only=True))
        return [last_segment(e.key) for e in entries]

    def action_ids(self) -> list[int]:
        entries = self._read(lambda tx: tx.txn.scan(*self.keys.actions, keys_only=True))
        return [int(last_segment(e.key)) for e in entries]

    def ping(self) -> None:
        """Raise StoreUnavailable unless the cluster can commit a write within ~2 s."""
        tx = self._tx(self._ping_gateway)
        tx.probe()
        tx.txn.commit()  # a blind write: no compare can fail

    def close(self) -> None:
        self.gateway.close()
        self._ping_gateway.close()
