"""What `mayu lab up` and `mayu lab status` show: a table of machines and their states."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from mayu_py.lab.state import VmRecord

_STYLE = {
    "installed": "green",
    "running": "green",
    "failed": "red",
    "installing": "yellow",
    "configured": "cyan",
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


def rows(
    vms: list[VmRecord], machines: dict[str, dict[str, Any]], qemu: dict[int, str]
) -> list[Row]:
    """One row per VM: server-side state (or `powered on` before it asked), qemu's status."""
    now = time.time()
    result = []
    for vm in vms:
        record = machines.get(vm.mac, {})
        state = record.get("state") or ("powered on" if vm.started else "not started")
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
