"""Agent hosts and the placement of tenant nodes on them (pure: the caller gives the clock)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from mayu_py.tenants.nodes import TenantNode
from mayu_py.tenants.wire import HostImage, HostRegistration

HEARTBEAT_LAPSE_S = 60.0


@dataclass(frozen=True)
class HostInfo:
    """An agent host as it registered: capacity, addresses, base images and the time of its
    last heartbeat (`underlay`: its VXLAN endpoint, as the host says; `images` None: the
    host did not say, and is taken to have any)."""

    name: str
    cpus: int
    memory_mib: int
    last_seen: float
    address: str = ""
    underlay: str = ""
    images: tuple[HostImage, ...] | None = None

    def alive(self, now: float, lapse_s: float = HEARTBEAT_LAPSE_S) -> bool:
        return now - self.last_seen <= lapse_s

    def lapsed_at(self, lapse_s: float = HEARTBEAT_LAPSE_S) -> float:
        """When its heartbeat lapsed (or will)."""
        return self.last_seen + lapse_s

    def has_image(self, name: str) -> bool:
        return self.images is None or any(i.name == name for i in self.images)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["images"] = None if self.images is None else [i.to_json() for i in self.images]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostInfo:
        images = data.get("images")
        return cls(
            name=data["name"],
            cpus=data["cpus"],
            memory_mib=data["memory_mib"],
            last_seen=data["last_seen"],
            address=data.get("address", ""),
            underlay=data.get("underlay", ""),
            images=None if images is None else tuple(HostImage(**i) for i in images),
        )

    @classmethod
    def seen(cls, host: HostRegistration, now: float) -> HostInfo:
        """The host as of its heartbeat at `now`."""
        return cls(
            host.name, host.cpus, host.memory_mib, now, host.address, host.underlay, host.images
        )


def lapsed_nodes(
    assignments: dict[str, str],
    hosts: list[HostInfo],
    now: float | None = None,
    lapse_s: float = HEARTBEAT_LAPSE_S,
) -> set[str]:
    """Nodes assigned to a host whose heartbeat lapsed: their state is `unknown`."""
    now = time.time() if now is None else now
    dead = {h.name for h in hosts if not h.alive(now, lapse_s)}
    return {node for node, host in assignments.items() if host in dead}


def place(
    nodes: list[TenantNode],
    hosts: list[HostInfo],
    existing_assignments: dict[str, str],
    *,
    now: float | None = None,
    lapse_s: float = HEARTBEAT_LAPSE_S,
    cpu_overcommit: float = 4.0,
) -> dict[str, str]:
    """Assign nodes (every tenant's, so usage is known) to hosts; return node name -> host.

    Existing assignments to known hosts are kept, also on a lapsed host (its nodes are not
    moved: see `lapsed_nodes`). New nodes go to a live host with their base image and room,
    masters of a tenant on hosts without another master of it while there are such hosts, then
    the host with the most free memory. A node that fits nowhere is left out (pending: see
    `why_unplaced`).
    """
    now = time.time() if now is None else now
    by_name = {h.name: h for h in hosts}
    free_cpu = {h.name: h.cpus * cpu_overcommit for h in hosts}
    free_mem = {h.name: float(h.memory_mib) for h in hosts}
    masters_on: dict[tuple[str, str], int] = {}
    result: dict[str, str] = {}

    def take(node: TenantNode, host: str) -> None:
        result[node.name] = host
        free_cpu[host] -= node.cpus
        free_mem[host] -= node.memory_mib
        if node.role == "master":
            masters_on[(node.tenant, host)] = masters_on.get((node.tenant, host), 0) + 1

    pending: list[TenantNode] = []
    for node in nodes:
        host = existing_assignments.get(node.name)
        if host in by_name:
            take(node, host)
        else:
            pending.append(node)
    live = [h.name for h in hosts if h.alive(now, lapse_s)]
    pending.sort(key=lambda n: (n.role != "master", -n.memory_mib, -n.cpus, n.name))
    for node in pending:
        fits = [
            h
            for h in live
            if by_name[h].has_image(node.image)
            and free_cpu[h] >= node.cpus
            and free_mem[h] >= node.memory_mib
        ]
        if node.role == "master":
            spread = [h for h in fits if masters_on.get((node.tenant, h), 0) == 0]
            fits = spread or fits
        if fits:
            take(node, min(fits, key=lambda h: (-free_mem[h], -free_cpu[h], h)))
    return result


def why_unplaced(
    node: TenantNode, hosts: list[HostInfo], now: float, lapse_s: float = HEARTBEAT_LAPSE_S
) -> tuple[str, str]:
    """The reason and message of a node `place` left out: no live host, none with its base
    image, or none with room."""
    live = [h for h in hosts if h.alive(now, lapse_s)]
    if not live:
        return "NoLiveHost", "no agent host is sending heartbeats"
    if not any(h.has_image(node.image) for h in live):
        return (
            "NoHostWithImage",
            f"no live host has base image `{node.image}`: run `mayu images build-lab "
            f"--tenant-images DIR` (image lab) or install `{node.image}` into an agent's "
            "images dir; hosts report their images in their heartbeats",
        )
    return (
        "Unschedulable",
        f"no live host with base image `{node.image}` has room for {node.cpus} CPUs and "
        f"{node.memory_mib} MiB",
    )
