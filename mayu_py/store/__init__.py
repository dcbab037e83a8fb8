"""The inventory Store: one small protocol, one implementation per backend.

Nothing outside this package writes SQL or talks to etcd. Every read-modify-write goes
through `Store.atomically(fn)`, where `fn` receives a `Tx` and runs inside one transaction: the
SQLite backend serialises writers with BEGIN IMMEDIATE; the etcd backend runs the same `fn`
as an optimistic transaction (compare mod-revisions of what it read, run `fn` again on
conflict), so `fn` may run more than once and must not act outside the store.
Records come and go typed (`Machine`, `Event`, `TenantRecord`, `HostInfo`, `StoredBmc`,
`BmcAction`, `User`); how they are kept (columns, JSON) is the backend's business. A transaction
function only reads and writes the store: anything irreversible outside it (removing files)
happens after `atomically` returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from mayu_py.bmc.records import BmcAction, StoredBmc
from mayu_py.config import StoreConfig
from mayu_py.model import AgentCredential, Event, LabelTerm, Machine, PendingConfig, User
from mayu_py.tenants import HostInfo, TenantRecord

T = TypeVar("T")

# How a transaction ended: committed; rolled back by its function (any error but these);
# conflict (its function raised Conflict); busy (the write lock was not free in time); error
# (the store is unusable: corrupt, read-only, unreachable).
TxOutcome = Literal["committed", "rolled_back", "conflict", "busy", "error"]
# Told the duration (seconds, from asking for the lock to the end) and outcome of every
# transaction, after it ended (the server's metrics).
TxObserver = Callable[[float, TxOutcome], None]


def observed(
    observer: TxObserver | None,
    outcome_of: Callable[[BaseException], TxOutcome],
    transaction: Callable[[Callable[[Any], T]], T],
    fn: Callable[[Any], T],
) -> T:
    """transaction(fn), with its duration and outcome told to `observer` (if any) when it
    ends: both backends' `atomically`."""
    if observer is None:
        return transaction(fn)
    started = time.perf_counter()
    try:
        result = transaction(fn)
    except BaseException as exc:
        observer(time.perf_counter() - started, outcome_of(exc))
        raise
    observer(time.perf_counter() - started, "committed")
    return result


class Tx(Protocol):
    """Operations available inside one transaction."""

    def get_machine(self, machine_id: str) -> Machine | None: ...

    def put_machine(self, machine: Machine) -> None: ...

    def delete_machine(self, machine_id: str) -> None: ...

    def hostname_owner(self, hostname: str) -> str | None: ...

    def count_with_role(self, role: str) -> int: ...

    def registrations_since(self, since: float, source: str | None, limit: int) -> int:
        """Machines registered after `since` (from `source`, when given), counted up to
        `limit` at a cost that does not grow with the inventory; `since` is at most two
        minutes ago (the discovery rate limits ask about the last minute)."""
        ...

    def expired_windows(self, now: float, limit: int) -> list[Machine]: ...

    def stale_discovered(self, before: float, limit: int) -> list[str]:
        """Discovered machines not seen since `before` (never one an operator gave a BMC)."""
        ...

    def add_event(self, event: Event) -> None: ...

    def restore_event(self, event: Event) -> None:
        """Record an event from a backup keeping its `seq`, unless the machine already has
        an event at or after it (so restoring twice changes nothing)."""
        ...

    def add_alert(self, event: Event) -> None: ...

    def put_pending_config(self, pending: PendingConfig) -> None: ...

    def get_pending_config(self, machine_id: str) -> PendingConfig | None: ...

    def delete_pending_config(self, machine_id: str) -> None: ...

    def get_agent_credential(self, host: str) -> AgentCredential | None: ...

    def put_agent_credential(self, credential: AgentCredential) -> None: ...

    def list_agent_credentials(self) -> list[AgentCredential]: ...

    def delete_host(self, name: str) -> None: ...

    def machine_named(self, hostname: str) -> Machine | None: ...

    def get_tenant(self, name: str) -> TenantRecord | None: ...

    def put_tenant(self, record: TenantRecord) -> None: ...

    def delete_tenant(self, name: str) -> None: ...

    def list_tenants(self) -> list[TenantRecord]: ...

    def list_hosts(self) -> list[HostInfo]: ...

    def put_host(self, host: HostInfo) -> None: ...

    def get_shared(self, name: str) -> dict[str, Any] | None:
        """A named record every replica shares (the CAs, docs/store.md)."""
        ...

    def put_shared(self, name: str, record: dict[str, Any]) -> None: ...

    def delete_shared(self, name: str) -> None: ...

    def get_bmc(self, machine_id: str) -> StoredBmc | None: ...

    def put_bmc(self, bmc: StoredBmc) -> None: ...

    def delete_bmc(self, machine_id: str) -> None: ...

    def add_action(self, action: BmcAction) -> BmcAction: ...

    def restore_action(self, action: BmcAction) -> None:
        """Keep an action from a backup under its own id (later ids follow it)."""
        ...

    def get_action(self, action_id: int) -> BmcAction | None: ...

    def update_action(self, action: BmcAction) -> None: ...

    def open_actions(self, limit: int) -> list[BmcAction]: ...

    def machine_actions(self, machine_id: str, limit: int) -> list[BmcAction]: ...

    def get_user(self, name: str) -> User | None: ...

    def put_user(self, user: User) -> None: ...

    def delete_user(self, name: str) -> None: ...

    def list_users(self) -> list[User]: ...


class Store(Protocol):
    """The inventory: machines with their event history, tenant clusters, agent hosts,
    operators (users)."""

    alerts_kept: int  # how many alerts `alerts` can list

    def atomically(self, fn: Callable[[Tx], T]) -> T: ...

    def get_machine(self, machine_id: str) -> Machine | None: ...

    def state_version(self) -> Hashable | None:
        """A value that changes whenever anyone commits anything to the store, read before
        what it vouches for (an answer read after it is valid while it stays the same);
        None when the backend has no cheap one (then nothing may be cached)."""
        ...

    def list_machines(self, state: str | None = None) -> list[Machine]: ...

    def machines_after(
        self,
        after: str | None,
        limit: int,
        state: str | None = None,
        selector: Sequence[LabelTerm] = (),
    ) -> list[Machine]:
        """Up to `limit` machines (in `state`, whose labels match every term of `selector`)
        whose id sorts after `after`, in id order: a page of the inventory (SQLite: at a cost
        that does not grow with it, a label selector answered by an index of the labels)."""
        ...

    def machine_counts(self) -> dict[str, int]:
        """How many machines are in each state (states with none are left out)."""
        ...

    def machines_with_role(self, role: str) -> list[Machine]: ...

    def alerts(self, limit: int = 100) -> list[Event]: ...

    def events(self, machine_id: str) -> list[Event]: ...

    def get_pending_config(self, machine_id: str) -> PendingConfig | None: ...

    def machine_and_pending(self, machine_id: str) -> tuple[Machine | None, PendingConfig | None]:
        """A machine and its pending secret config, read at one snapshot (on etcd: one
        round trip; the stub and secret steps read both before deciding)."""
        ...

    def get_agent_credential(self, host: str) -> AgentCredential | None: ...

    def list_agent_credentials(self) -> list[AgentCredential]: ...

    def machine_named(self, hostname: str) -> Machine | None: ...

    def list_tenants(self) -> list[TenantRecord]: ...

    def get_tenant(self, name: str) -> TenantRecord | None: ...

    def list_hosts(self) -> list[HostInfo]: ...

    def get_bmc(self, machine_id: str) -> StoredBmc | None: ...

    def get_action(self, action_id: int) -> BmcAction | None: ...

    def machine_actions(self, machine_id: str, limit: int = 50) -> list[BmcAction]: ...

    def get_shared(self, name: str) -> dict[str, Any] | None: ...

    def shared_names(self) -> list[str]: ...

    def bmc_ids(self) -> list[str]:
        """Every machine id with a BMC record (also machines not seen yet), in order."""
        ...

    def action_ids(self) -> list[int]:
        """Every BMC action's id, in order (backups)."""
        ...

    def get_user(self, name: str) -> User | None: ...

    def list_users(self) -> list[User]: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def inventory_path(data_dir: Path) -> Path:
    """The default backend's file in data_dir."""
    return data_dir / "inventory.sqlite3"


def open_store(
    data_dir: Path,
    events_kept: int = 200,
    alerts_kept: int = 1000,
    config: StoreConfig | None = None,
    observer: TxObserver | None = None,
) -> Store:
    """Open the store `config.url` names (default: SQLite in data_dir); ConfigError for a
    malformed URL, StoreUnavailable (one line) if it cannot be opened. `observer` is told
    each transaction's outcome and duration (metrics)."""
    from mayu_py.store.url import SqliteLocation, parse_store_url

    config = config or StoreConfig()
    if config.url:
        location = parse_store_url(config.url, config)
    else:
        location = SqliteLocation(inventory_path(data_dir))
    if isinstance(location, SqliteLocation):
        from mayu_py.store.sqlite import SqliteStore

        return SqliteStore(location.path, events_kept, alerts_kept, observer)
    from mayu_py.store.etcd import EtcdStore

    return EtcdStore(
        location,
        events_kept,
        alerts_kept,
        request_timeout=config.request_timeout_seconds,
        unavailable_after=config.unavailable_after_seconds,
        max_attempts=config.max_attempts,
        observer=observer,
    )
