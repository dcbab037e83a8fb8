"""The inventory Store: one small protocol, one implementation per backend.

Nothing outside this package writes SQL (or, later, talks to etcd). Every read-modify-write goes
through `Store.atomically(fn)`, where `fn` receives a `Tx` and runs inside one transaction: the
SQLite backend serialises writers with BEGIN IMMEDIATE; an etcd backend can run the same `fn`
as a software transaction (compare mod-revisions of what it read, retry on conflict).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mayu_py.model import Event, Machine

T = TypeVar("T")


class Tx(Protocol):
    """Operations available inside one transaction."""

    def get_machine(self, machine_id: str) -> Machine | None: ...

    def put_machine(self, machine: Machine) -> None: ...

    def delete_machine(self, machine_id: str) -> None:
        """Forget a machine: its record and its events (nothing when it has none)."""

    def add_event(self, event: Event) -> None: ...

    def count_machines_with_label(self, key: str, value: str) -> int: ...

    def get_tenant(self, name: str) -> dict[str, Any] | None: ...

    def put_tenant(self, name: str, record: dict[str, Any]) -> None: ...

    def delete_tenant(self, name: str) -> None: ...

    def list_tenants(self) -> list[dict[str, Any]]: ...

    def list_hosts(self) -> list[dict[str, Any]]: ...

    def put_host(self, record: dict[str, Any]) -> None: ...


class Store(Protocol):
    """The inventory: machines with their event history, tenant clusters, agent hosts."""

    def atomically(self, fn: Callable[[Tx], T]) -> T: ...

    def get_machine(self, machine_id: str) -> Machine | None: ...

    def find_machine(
        self, *, uuid: str | None = None, serial: str | None = None
    ) -> Machine | None: ...

    def list_machines(self) -> list[Machine]: ...

    def machines_with_label(self, key: str, value: str) -> list[Machine]: ...

    def unknown_events(self, limit: int = 100) -> list[Event]: ...

    def events(self, machine_id: str) -> list[Event]: ...

    def list_tenants(self) -> list[dict[str, Any]]: ...

    def get_tenant(self, name: str) -> dict[str, Any] | None: ...

    def list_hosts(self) -> list[dict[str, Any]]: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def inventory_path(data_dir: Path) -> Path:
    """The default backend's file in data_dir."""
    return data_dir / "inventory.sqlite3"


def open_store(data_dir: Path) -> Store:
    """Open the default backend (SQLite) in data_dir."""
    from mayu_py.store.sqlite import SqliteStore

    return SqliteStore(inventory_path(data_dir))
