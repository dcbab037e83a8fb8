"""What `mayu lab up` and `mayu lab status` show: machines (level 1) and tenant nodes (level 2).

On a terminal, `up` shows a live table; otherwise one line per change. A machine whose
inventory state says done but was not installed during this run shows `(earlier run)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from mayu_py.lab.state import VmRecord
from mayu_py.lab.watch import Snapshot

_STYLE = {
    "installed": "green",
    "running": "green",
    "failed": "red",
    "installing": "yellow",
    "configured": "cyan",
    "ready": "green",
    "Ready": "green",
    "Degraded": "red",
    "crashed": "red",
    "unknown": "red",
    "Provisioning": "yellow",
    "pending": "yellow",
}


@dataclass(frozen=True)
class Row:
    name: str
    mac: str
    ip: str
    qemu: str
    state: str
    boots: int
    elapsed: str


def _state(vm: VmRecord, record: dict[str, Any], snapshot: Snapshot) -> str:
    state = record.get("state") or ("powered on" if vm.started else "not started")
    if state in snapshot.done_states and vm.mac not in snapshot.installed:
        return f"{state} (earlier run)"
    return str(state)


def rows(vms: list[VmRecord], snapshot: Snapshot, qemu: dict[int, str]) -> list[Row]:
    """One row per VM: server-side state (or `powered on` before it asked), qemu's status."""
    now = time.time()
    result = []
    for vm in vms:
        record = snapshot.machines.get(vm.mac, {})
        state = _state(vm, record, snapshot)
        since = vm.first_started or now
        result.append(
            Row(
                name=f"lab{vm.index}",
                mac=vm.mac,
                ip=record.get("ip") or "-",
                qemu=qemu.get(vm.index, "-"),
                state=state,
                boots=vm.boots,
                elapsed=f"{now - since:.0f}s" if vm.first_started else "-",
            )
        )
    return result


def table(title: str, items: list[Row]) -> Table:
    t = Table(title=title)
    for column in ("machine", "mac", "ip", "qemu", "state", "boots", "elapsed"):
        t.add_column(column)
    for r in items:
        style = _STYLE.get(r.state, "")
        state = f"[{style}]{r.state}[/{style}]" if style else r.state
        t.add_row(r.name, r.mac, r.ip, r.qemu, state, str(r.boots), r.elapsed)
    return t


def line(r: Row) -> str:
    """A plain progress line, for output that is not a terminal."""
    return f"{r.name} {r.mac} ip={r.ip} qemu={r.qemu} state={r.state} boots={r.boots}"


@dataclass(frozen=True)
class TenantRow:
    tenant: str
    phase: str
    node: str
    role: str
    host: str
    state: str
    ip: str


def tenant_rows(tenants: list[dict[str, Any]], names: list[str]) -> list[TenantRow]:
    """One row per node of the named tenants (a tenant not created yet: one `-` row)."""
    by_name = {t["metadata"]["name"]: t for t in tenants}
    result = []
    for name in names:
        doc = by_name.get(name)
        status = (doc or {}).get("status") or {}
        phase = status.get("phase") or ("-" if doc is None else "Provisioning")
        nodes = status.get("nodes") or []
        if not nodes:
            result.append(TenantRow(name, phase, "-", "-", "-", "-", "-"))
        for n in nodes:
            result.append(
                TenantRow(
                    tenant=name,
                    phase=phase,
                    node=n.get("name") or "-",
                    role=n.get("role") or "-",
                    host=n.get("host") or "-",
                    state=n.get("state") or "-",
                    ip=n.get("ip") or "-",
                )
            )
    return result


def _styled(value: str) -> str:
    style = _STYLE.get(value, "")
    return f"[{style}]{value}[/{style}]" if style else value


def tenant_table(title: str, items: list[TenantRow]) -> Table:
    t = Table(title=title)
    for column in ("tenant", "phase", "node", "role", "host", "state", "ip"):
        t.add_column(column)
    for r in items:
        t.add_row(r.tenant, _styled(r.phase), r.node, r.role, r.host, _styled(r.state), r.ip)
    return t


def tenant_line(r: TenantRow) -> str:
    return (
        f"tenant {r.tenant} phase={r.phase} node={r.node} role={r.role} host={r.host} "
        f"state={r.state} ip={r.ip}"
    )


def both(machines: Table, tenants: Table | None) -> Group | Table:
    """The live view: the machines' table, and the tenants' below it once they exist."""
    return machines if tenants is None else Group(machines, tenants)


class Progress:
    """`up`'s view of the lab: a live table on a terminal, else one line per change."""

    def __init__(self, console: Console, tenant_title: str) -> None:
        self.console = console
        self.tenant_title = tenant_title
        self.live: Live | None = None
        self._last: dict[str, str] = {}

    def show(
        self, vms: list[VmRecord], snapshot: Snapshot, qemu: dict[int, str], tenants: list[str]
    ) -> None:
        items = rows(vms, snapshot, qemu)
        nodes = tenant_rows(snapshot.tenants, tenants) if snapshot.tenants is not None else []
        if self.live is None and self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4)
            self.live.start()
        if self.live is not None:
            tables = (
                tenant_table(self.tenant_title, nodes) if snapshot.tenants is not None else None
            )
            self.live.update(both(table(f"mayu lab: {len(items)} machine(s)", items), tables))
            return
        lines = [(r.mac, line(r)) for r in items]
        lines += [(f"{n.tenant}/{n.node}", tenant_line(n)) for n in nodes]
        for key, text in lines:
            if self._last.get(key) != text:
                self._last[key] = text
                self.console.print(text, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
