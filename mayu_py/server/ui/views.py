"""What the dashboard shows, as plain data: the machines board, one machine with its timeline
and the actions its state allows, hosts with capacity and the tenant nodes placed on them,
tenants with their nodes. Pure functions of store records; the templates only lay them out,
and the live panels' ETags are hashes of these (so an unchanged panel costs no rendering).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from mayu_py.bmc.records import BmcAction, StoredBmc
from mayu_py.model import Event, Machine, MachineState, transition_allowed
from mayu_py.server.machines import REINSTALLABLE
from mayu_py.tenants import HostInfo, TenantRecord, tenant_nodes

# Newest first, at most this many events on a machine's timeline (the store keeps 200).
TIMELINE_LENGTH = 100
BMC_ACTIONS_SHOWN = 10
# A board column shows this many machines; the others are counted.
COLUMN_CARDS = 200
POWER_ACTIONS = ("on", "off", "cycle")


def iso(seconds: float | None) -> str | None:
    """A Unix time as RFC 3339 in UTC (the browser shows it in local time)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def etag(*parts: Any) -> str:
    """A strong ETag of a panel's data (and whatever else its rendering depends on)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _card(machine: Machine) -> dict[str, Any]:
    return {
        "id": machine.id,
        "name": machine.hostname or machine.id,
        "role": machine.role,
        "ip": machine.ip,
        "since": iso(machine.updated),
    }


def board(machines: list[Machine]) -> dict[str, Any]:
    """Machines by state, in lifecycle order, each column newest change first (at most
    COLUMN_CARDS cards; the rest are counted)."""
    columns: dict[str, list[Machine]] = {str(state): [] for state in MachineState}
    for machine in machines:
        columns[str(machine.state)].append(machine)
    shown = []
    for state, found in columns.items():
        found.sort(key=lambda m: (-m.updated, m.id))
        shown.append(
            {
                "state": state,
                "count": len(found),
                "machines": [_card(m) for m in found[:COLUMN_CARDS]],
                "more": max(0, len(found) - COLUMN_CARDS),
            }
        )
    return {"total": len(machines), "columns": shown}


def _event(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "time": iso(event.time),
        "kind": event.kind,
        "cause": event.cause,
        "source": event.source,
        "from": event.from_state,
        "to": event.to_state,
    }


def _action(action: BmcAction) -> dict[str, Any]:
    return {
        "id": action.id,
        "kind": str(action.kind),
        "state": str(action.state),
        "requested": iso(action.requested),
        "source": action.source,
        "error": action.error,
    }


def machine_actions(state: MachineState, has_bmc: bool) -> dict[str, Any]:
    """Which operator actions the machine's state allows (the services check again)."""
    return {
        "approve": state == MachineState.DISCOVERED,
        "reinstall": state in REINSTALLABLE,
        "maintenance": state != MachineState.MAINTENANCE
        and transition_allowed(state, MachineState.MAINTENANCE),
        "power": list(POWER_ACTIONS) if has_bmc else [],
    }


def machine_page(
    machine: Machine,
    events: list[Event],
    bmc: StoredBmc | None,
    bmc_actions: list[BmcAction],
) -> dict[str, Any]:
    """One machine: identity, state, BMC, the actions its state allows, its timeline."""
    return {
        "id": machine.id,
        "name": machine.hostname or machine.id,
        "state": str(machine.state),
        "facts": {
            "MAC": machine.mac,
            "hostname": machine.hostname,
            "IP": machine.ip,
            "UUID": machine.uuid,
            "serial": machine.serial,
            "profile": machine.profile,
            "registered from": machine.registered_from,
            "created": iso(machine.created),
            "updated": iso(machine.updated),
        },
        "labels": dict(sorted(machine.labels.items())),
        "bmc": dict(bmc.settings) if bmc else None,
        "bmc_actions": [_action(a) for a in bmc_actions[:BMC_ACTIONS_SHOWN]],
        "actions": machine_actions(machine.state, bmc is not None),
        "timeline": [_event(e) for e in reversed(events[-TIMELINE_LENGTH:])],
    }


def _node_rows(
    records: list[TenantRecord], hosts: list[HostInfo], now: float
) -> list[dict[str, Any]]:
    """Every tenant node with its size, placement and state (`unknown` when its host
    stopped heartbeating)."""
    rows = []
    for record in records:
        states = {n.name: n for n in record.status(hosts, now).nodes}
        for node in tenant_nodes(record.tenant):
            status = states[node.name]
            rows.append(
                {
                    "tenant": record.name,
                    "node": node.name,
                    "role": node.role,
                    "cpus": node.cpus,
                    "memory_mib": node.memory_mib,
                    "host": status.host,
                    "state": str(status.state),
                    "ip": status.ip,
                    "deleting": record.deleting,
                }
            )
    return rows


def hosts_page(hosts: list[HostInfo], records: list[TenantRecord], now: float) -> dict[str, Any]:
    """Hosts with their capacity, what their placed nodes use, and those nodes; plus the
    nodes no host could take."""
    rows = _node_rows(records, hosts, now)
    shown = []
    for host in sorted(hosts, key=lambda h: h.name):
        placed = [r for r in rows if r["host"] == host.name]
        shown.append(
            {
                "name": host.name,
                "address": host.address,
                "alive": host.alive(now),
                "last_seen": iso(host.last_seen),
                "cpus": host.cpus,
                "memory_mib": host.memory_mib,
                "images": None if host.images is None else [i.name for i in host.images],
                "used_cpus": sum(r["cpus"] for r in placed),
                "used_memory_mib": sum(r["memory_mib"] for r in placed),
                "nodes": placed,
            }
        )
    return {"hosts": shown, "unplaced": [r for r in rows if r["host"] is None]}


def tenants_page(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Tenants as the API shows them (TenantCluster with status), with the conditions of the
    tenant and of each node when the status carries them."""
    tenants = []
    for doc in docs:
        spec, status = doc["spec"], doc.get("status") or {}
        tenants.append(
            {
                "name": doc["metadata"]["name"],
                "generation": doc["metadata"].get("generation"),
                "version": spec.get("kubernetesVersion"),
                "image": spec.get("image"),
                "cidr": spec.get("network", {}).get("cidr"),
                "phase": status.get("phase"),
                "conditions": status.get("conditions") or [],
                "nodes": [
                    node | {"conditions": node.get("conditions") or []}
                    for node in status.get("nodes") or []
                ],
            }
        )
    return {"tenants": tenants}
