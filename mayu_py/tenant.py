"""Tenant clusters: the TenantCluster resource, its validation, node identities and placement.

A TenantCluster is written like the CRD in static_manifests/crds/tenantcluster.yaml. Everything
here is pure: `parse_tenant` validates a document against the known base images and the other
tenants, `tenant_nodes` derives each node's name, MAC, IP and UUID deterministically, and
`place` assigns nodes to agent hosts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import time
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mayu_py.errors import Unprocessable
from mayu_py.kubernetes_releases import unsupported_reason

API_VERSION = "mayu.io/v1alpha1"
KIND = "TenantCluster"
NODE_UUID_NAMESPACE = uuidlib.UUID("5f1c0a52-6d2e-4b8e-9a51-6d61797521a1")
GATEWAY_OFFSET = 1  # .1 is the host's address on the tenant network
FIRST_NODE_OFFSET = 10  # nodes get .10, .11, ...
MIN_PREFIX, MAX_PREFIX = 16, 28
MAX_VNI = 16_777_215  # 24 bits; `mayu-t<vni>` stays within the 15-character bridge limit
MAX_NAME = 40  # leaves room for "-worker-NNN" inside a 63-character DNS label
HEARTBEAT_LAPSE_S = 60.0
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
Role = Literal["master", "worker"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSize(_Strict):
    cpus: int = Field(ge=1, le=64)
    memory: str
    disk: str


class TenantNetwork(_Strict):
    cidr: str
    vni: int = Field(ge=1, le=MAX_VNI)


class TenantSpec(_Strict):
    kubernetesVersion: str = Field(pattern=r"^1\.[0-9]+(\.[0-9]+)?$")
    image: str = Field(min_length=1)
    network: TenantNetwork
    masters: list[NodeSize]
    workers: list[NodeSize] = Field(default_factory=list)
    sshAuthorizedKeys: list[str] = Field(default_factory=list)


class Metadata(BaseModel):
    """Object metadata; fields Kubernetes adds (uid, labels, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str
    generation: int = Field(default=1, ge=1)


class Condition(_Strict):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    lastTransitionTime: str | None = None


class NodeStatus(_Strict):
    name: str
    role: Role
    host: str | None = None
    state: str = "pending"
    ip: str | None = None


class TenantStatus(_Strict):
    phase: str = "Pending"
    observedGeneration: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    nodes: list[NodeStatus] = Field(default_factory=list)


class TenantCluster(_Strict):
    apiVersion: Literal["mayu.io/v1alpha1"]
    kind: Literal["TenantCluster"]
    metadata: Metadata
    spec: TenantSpec
    status: TenantStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.spec.network.cidr)


@dataclass(frozen=True)
class ImageInfo:
    """A base image the agents know: its name and the smallest memory it boots in."""

    name: str
    min_memory_mib: int = 256


@dataclass(frozen=True)
class TenantNode:
    """One VM of a tenant with its deterministic identity and size."""

    tenant: str
    name: str
    role: Role
    index: int
    cpus: int
    memory_mib: int
    disk_gib: int
    mac: str
    ip: str
    uuid: str


def parse_quantity(text: str) -> int:
    """Bytes in a Kubernetes-style quantity ("512Mi", "2Gi", "1G", "1048576")."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"not a quantity: {text!r} (use e.g. 512Mi or 2Gi)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _mib(text: str) -> int:
    return math.ceil(parse_quantity(text) / 2**20)


def _gib(text: str) -> int:
    return math.ceil(parse_quantity(text) / 2**30)


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _check_name(name: str, errors: dict[str, str]) -> None:
    if len(name) > MAX_NAME or not _DNS1123.match(name):
        errors["metadata.name"] = (
            f"must be a DNS-1123 label of at most {MAX_NAME} characters "
            "(lower-case letters, digits and '-', starting and ending with a letter or digit)"
        )


def _check_network(
    tenant: TenantCluster, existing: list[TenantCluster], errors: dict[str, str]
) -> None:
    spec = tenant.spec
    try:
        net = ipaddress.IPv4Network(spec.network.cidr, strict=True)
    except ValueError as exc:
        errors["spec.network.cidr"] = f"not an IPv4 network: {exc}"
        return
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        errors["spec.network.cidr"] = f"prefix must be /{MIN_PREFIX} to /{MAX_PREFIX}"
        return
    count = len(spec.masters) + len(spec.workers)
    if FIRST_NODE_OFFSET + count > net.num_addresses - 1:
        errors["spec.network.cidr"] = f"too small for {count} nodes (nodes start at .10)"
    for other in existing:
        if other.name == tenant.name:
            continue
        if other.network.overlaps(net):
            errors["spec.network.cidr"] = (
                f"overlaps tenant {other.name!r} ({other.spec.network.cidr})"
            )
        if other.spec.network.vni == spec.network.vni:
            errors["spec.network.vni"] = f"already used by tenant {other.name!r}"


def _check_nodes(
    spec: TenantSpec, known_images: dict[str, ImageInfo], errors: dict[str, str]
) -> None:
    image = known_images.get(spec.image)
    if image is None:
        known = ", ".join(sorted(known_images)) or "none"
        errors["spec.image"] = f"unknown image {spec.image!r} (known: {known})"
    if not spec.masters:
        errors["spec.masters"] = "at least one master"
    for role, sizes in (("masters", spec.masters), ("workers", spec.workers)):
        for i, size in enumerate(sizes):
            where = f"spec.{role}[{i}]"
            try:
                memory = _mib(size.memory)
                if image is not None and memory < image.min_memory_mib:
                    errors[f"{where}.memory"] = (
                        f"{size.memory} is below the minimum of image {image.name!r} "
                        f"({image.min_memory_mib}Mi)"
                    )
            except ValueError as exc:
                errors[f"{where}.memory"] = str(exc)
            try:
                if _gib(size.disk) < 1:
                    errors[f"{where}.disk"] = "at least 1Gi"
            except ValueError as exc:
                errors[f"{where}.disk"] = str(exc)


def parse_tenant(
    doc: dict[str, Any], known_images: dict[str, ImageInfo], existing: list[TenantCluster]
) -> TenantCluster:
    """Validate a TenantCluster document; raise Unprocessable with field-level detail."""
    if not isinstance(doc, dict):
        raise Unprocessable("invalid TenantCluster", {"": "must be a mapping"})
    try:
        tenant = TenantCluster.model_validate(doc)
    except ValidationError as exc:
        detail = {_field_path(tuple(e["loc"])): e["msg"] for e in exc.errors()}
        raise Unprocessable("invalid TenantCluster", detail) from exc
    errors: dict[str, str] = {}
    _check_name(tenant.name, errors)
    _check_network(tenant, existing, errors)
    _check_nodes(tenant.spec, known_images, errors)
    if reason := unsupported_reason(tenant.spec.kubernetesVersion):
        errors["spec.kubernetesVersion"] = reason
    if errors:
        raise Unprocessable("invalid TenantCluster", errors)
    return tenant


def node_mac(tenant: str, node: str) -> str:
    """A locally administered qemu MAC (52:54:00:xx:xx:xx) derived from tenant/node."""
    digest = hashlib.sha256(f"{tenant}/{node}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def node_uuid(tenant: str, node: str) -> str:
    return str(uuidlib.uuid5(NODE_UUID_NAMESPACE, f"{tenant}/{node}"))


def gateway_ip(cidr: str) -> str:
    return str(ipaddress.IPv4Network(cidr)[GATEWAY_OFFSET])


def tenant_nodes(tenant: TenantCluster) -> list[TenantNode]:
    """Every node of a tenant, masters first, each with its deterministic identity."""
    net = tenant.network
    nodes: list[TenantNode] = []
    sized = [("master", s) for s in tenant.spec.masters]
    sized += [("worker", s) for s in tenant.spec.workers]
    counters = {"master": 0, "worker": 0}
    for offset, (role, size) in enumerate(sized):
        index = counters[role]
        counters[role] += 1
        name = f"{tenant.name}-{role}-{index}"
        nodes.append(
            TenantNode(
                tenant=tenant.name,
                name=name,
                role=role,  # type: ignore[arg-type]
                index=index,
                cpus=size.cpus,
                memory_mib=_mib(size.memory),
                disk_gib=_gib(size.disk),
                mac=node_mac(tenant.name, name),
                ip=str(net[FIRST_NODE_OFFSET + offset]),
                uuid=node_uuid(tenant.name, name),
            )
        )
    return nodes


def node_spec_hash(tenant: TenantCluster, node: TenantNode) -> str:
    """Hash of everything that needs the VM recreated when it changes (size, image, identity)."""
    spec = tenant.spec
    basis = {
        "node": node.name,
        "cpus": node.cpus,
        "memory_mib": node.memory_mib,
        "disk_gib": node.disk_gib,
        "mac": node.mac,
        "ip": node.ip,
        "image": spec.image,
        "kubernetesVersion": spec.kubernetesVersion,
        "network": [spec.network.cidr, spec.network.vni],
        "sshAuthorizedKeys": spec.sshAuthorizedKeys,
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def desired_node_json(tenant: TenantCluster, node: TenantNode) -> dict[str, Any]:
    """The wire form an agent fetches from GET /api/v1/hosts/<host>/nodes."""
    return {
        "tenant": tenant.name,
        "node": node.name,
        "role": node.role,
        "generation": tenant.metadata.generation,
        "spec_hash": node_spec_hash(tenant, node),
        "cpus": node.cpus,
        "memory_mib": node.memory_mib,
        "disk_gib": node.disk_gib,
        "image": tenant.spec.image,
        "mac": node.mac,
        "ip": node.ip,
        "uuid": node.uuid,
        "network": {
            "cidr": tenant.spec.network.cidr,
            "vni": tenant.spec.network.vni,
            "gateway": gateway_ip(tenant.spec.network.cidr),
        },
    }


@dataclass(frozen=True)
class HostInfo:
    """An agent host as it registered: capacity and the time of its last heartbeat."""

    name: str
    cpus: int
    memory_mib: int
    last_seen: float

    def alive(self, now: float, lapse_s: float = HEARTBEAT_LAPSE_S) -> bool:
        return now - self.last_seen <= lapse_s


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
    moved: see `lapsed_nodes`). New nodes go to a live host with room, masters of a tenant on
    hosts without another master of it while there are such hosts, then the host with the most
    free memory. A node that fits nowhere is left out (pending).
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
        fits = [h for h in live if free_cpu[h] >= node.cpus and free_mem[h] >= node.memory_mib]
        if node.role == "master":
            spread = [h for h in fits if masters_on.get((node.tenant, h), 0) == 0]
            fits = spread or fits
        if fits:
            take(node, min(fits, key=lambda h: (-free_mem[h], -free_cpu[h], h)))
    return result
