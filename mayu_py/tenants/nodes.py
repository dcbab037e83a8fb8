"""A tenant's nodes: each node's deterministic identity and size, and its wire form.

`TenantNode` is the one node type: the server places it, the agent receives it (from
GET /api/v1/hosts/<host>/nodes, or straight from `tenant_nodes` in the Kubernetes source) and
turns it into a VM. Names, MACs and UUIDs derive from the tenant alone, addresses are the ones
stored in it (mayu_py.tenants.addresses), so every party computes the same node.
"""

from __future__ import annotations

import hashlib
import json
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from mayu_py.errors import BadRequest
from mayu_py.tenants.addresses import default_ingress, gateway_ip, legacy_addresses
from mayu_py.tenants.resource import Role, TenantCluster, gib, mib
from mayu_py.tenants.wire import OverlayPeer

NODE_UUID_NAMESPACE = uuidlib.UUID("5f1c0a52-6d2e-4b8e-9a51-6d61797521a1")
ROLES: tuple[Role, ...] = ("master", "worker")


@dataclass(frozen=True)
class TenantNode:
    """One VM of a tenant: identity, size, image, network, and the tenant generation it is of.

    `spec_hash` covers everything that needs the VM recreated when it changes."""

    tenant: str
    name: str
    role: Role
    generation: int
    spec_hash: str
    cpus: int
    memory_mib: int
    disk_gib: int
    image: str
    mac: str
    ip: str
    uuid: str
    cidr: str
    vni: int
    gateway: str
    ingress: str  # the tenant's ingress address (HAProxy's source toward its masters)
    # the other hosts carrying nodes of this tenant (the server fills them in per host)
    peers: tuple[OverlayPeer, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The wire form an agent fetches from GET /api/v1/hosts/<host>/nodes."""
        return {
            "tenant": self.tenant,
            "node": self.name,
            "role": self.role,
            "generation": self.generation,
            "spec_hash": self.spec_hash,
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "disk_gib": self.disk_gib,
            "image": self.image,
            "mac": self.mac,
            "ip": self.ip,
            "uuid": self.uuid,
            "network": {
                "cidr": self.cidr,
                "vni": self.vni,
                "gateway": self.gateway,
                "ingress": self.ingress,
                "peers": [p.to_json() for p in self.peers],
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TenantNode:
        """Read the wire form; BadRequest when a field is missing or of the wrong type."""
        try:
            net = data["network"]
            role = str(data["role"])
            if role not in ROLES:
                raise ValueError(f"role {role!r} is not one of {ROLES}")
            return cls(
                tenant=str(data["tenant"]),
                name=str(data["node"]),
                role=role,  # type: ignore[arg-type]  # checked above
                generation=int(data["generation"]),
                spec_hash=str(data["spec_hash"]),
                cpus=int(data["cpus"]),
                memory_mib=int(data["memory_mib"]),
                disk_gib=int(data["disk_gib"]),
                image=str(data["image"]),
                mac=str(data["mac"]).lower(),
                ip=str(data["ip"]),
                uuid=str(data["uuid"]),
                cidr=str(net["cidr"]),
                vni=int(net["vni"]),
                gateway=str(net["gateway"]),
                ingress=str(net.get("ingress") or default_ingress(str(net["cidr"]))),
                peers=tuple(OverlayPeer.from_json(p) for p in net.get("peers") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed tenant node: {exc!r}", {"node": data}) from exc


def node_mac(tenant: str, node: str) -> str:
    """A locally administered qemu MAC (52:54:00:xx:xx:xx) derived from tenant/node."""
    digest = hashlib.sha256(f"{tenant}/{node}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def node_uuid(tenant: str, node: str) -> str:
    return str(uuidlib.uuid5(NODE_UUID_NAMESPACE, f"{tenant}/{node}"))


def _spec_hash(tenant: TenantCluster, basis: dict[str, Any]) -> str:
    """Hash of a node's sized identity and the tenant-wide spec its VM is built from."""
    spec = tenant.spec
    basis = basis | {
        "image": spec.image,
        "kubernetesVersion": spec.kubernetesVersion,
        "network": [spec.network.cidr, spec.network.vni],
        "sshAuthorizedKeys": spec.sshAuthorizedKeys,
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def node_names(tenant: TenantCluster) -> list[tuple[Role, str]]:
    """(role, name) of every node of a tenant, masters first."""
    spec = tenant.spec
    return [("master", f"{tenant.name}-master-{i}") for i in range(len(spec.masters))] + [
        ("worker", f"{tenant.name}-worker-{i}") for i in range(len(spec.workers))
    ]


def tenant_nodes(tenant: TenantCluster) -> list[TenantNode]:
    """Every node of a tenant, masters first, each with its identity and stored address."""
    spec = tenant.spec
    cidr = spec.network.cidr
    gateway = gateway_ip(cidr)
    ingress = spec.network.ingress or default_ingress(cidr)
    names = node_names(tenant)
    addresses = spec.network.addresses or legacy_addresses(cidr, [n for _, n in names])
    sizes = [*spec.masters, *spec.workers]
    nodes: list[TenantNode] = []
    for (role, name), size in zip(names, sizes, strict=True):
        cpus, memory_mib, disk_gib = size.cpus, mib(size.memory), gib(size.disk)
        mac, ip = node_mac(tenant.name, name), addresses[name]
        sized_identity = {"node": name, "cpus": cpus, "memory_mib": memory_mib,
                          "disk_gib": disk_gib, "mac": mac, "ip": ip}  # fmt: skip
        nodes.append(
            TenantNode(
                tenant=tenant.name,
                name=name,
                role=role,
                generation=tenant.metadata.generation,
                spec_hash=_spec_hash(tenant, sized_identity),
                cpus=cpus,
                memory_mib=memory_mib,
                disk_gib=disk_gib,
                image=spec.image,
                mac=mac,
                ip=ip,
                uuid=node_uuid(tenant.name, name),
                cidr=cidr,
                vni=spec.network.vni or 0,  # 0: not allocated (invalid: never placed)
                gateway=gateway,
                ingress=ingress,
            )
        )
    return nodes
