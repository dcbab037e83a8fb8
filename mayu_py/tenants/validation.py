"""Validating a TenantCluster document against the known base images and the other tenants."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mayu_py.errors import Conflict, Unprocessable
from mayu_py.kubernetes_releases import unsupported_reason
from mayu_py.tenants.addresses import (
    FIRST_NODE_OFFSET,
    allocate,
    check_addresses,
    default_ingress,
)
from mayu_py.tenants.nodes import node_names, tenant_nodes
from mayu_py.tenants.resource import MAX_VNI, TenantCluster, TenantSpec, gib, mib

MIN_PREFIX, MAX_PREFIX = 16, 28
FIRST_AUTO_VNI = 100  # where the server starts when it allocates a tenant's VNI
MAX_MEMORY_MIB = 4 << 20  # 4 TiB
MAX_DISK_GIB = 64 << 10  # 64 TiB
MAX_NAME = 40  # leaves room for "-worker-NNN" inside a 63-character DNS label
DNS1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1123 = re.compile(DNS1123_LABEL_PATTERN)


@dataclass(frozen=True)
class ImageInfo:
    """A base image the agents know: its name and the smallest memory it boots in."""

    name: str
    min_memory_mib: int = 256


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def is_tenant_name(name: object) -> bool:
    """A DNS-1123 label of at most MAX_NAME characters (safe as a directory name, too)."""
    return isinstance(name, str) and len(name) <= MAX_NAME and bool(_DNS1123.fullmatch(name))


def _check_name(name: str, errors: dict[str, str]) -> None:
    if not is_tenant_name(name):
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
    names = {name for _, name in node_names(tenant)}
    given = spec.network.addresses or {}
    errors.update(check_addresses(spec.network.cidr, names, given, spec.network.ingress))
    for other in existing:
        if other.name == tenant.name:
            continue
        if other.network.overlaps(net):
            errors["spec.network.cidr"] = (
                f"overlaps tenant {other.name!r} ({other.spec.network.cidr})"
            )


def _with_vni(tenant: TenantCluster, existing: list[TenantCluster]) -> TenantCluster:
    """The tenant with its VNI: the one it asks for (Conflict when another tenant has it), or
    the lowest free one from FIRST_AUTO_VNI when it names none."""
    others = [t for t in existing if t.name != tenant.name]
    vni = tenant.spec.network.vni
    if vni is None:
        vni = free_vni({t.spec.network.vni for t in others})
    elif owner := next((t.name for t in others if t.spec.network.vni == vni), None):
        raise Conflict("VNI taken", {"spec.network.vni": f"{vni} is used by tenant {owner!r}"})
    network = tenant.spec.network.model_copy(update={"vni": vni})
    spec = tenant.spec.model_copy(update={"network": network})
    return tenant.model_copy(update={"spec": spec})


def _with_addresses(tenant: TenantCluster, held: Collection[str]) -> TenantCluster:
    """The tenant with its ingress address and every node's address (those it names kept,
    the others allocated around `held`: mayu_py.tenants.addresses)."""
    network = tenant.spec.network
    ingress = network.ingress or default_ingress(network.cidr)
    names = [name for _, name in node_names(tenant)]
    addresses = allocate(network.cidr, names, network.addresses or {}, held, ingress)
    network = network.model_copy(update={"addresses": addresses, "ingress": ingress})
    return tenant.model_copy(update={"spec": tenant.spec.model_copy(update={"network": network})})


def kept_addresses(tenant: TenantCluster, network: dict[str, Any]) -> dict[str, Any]:
    """A spec.network document with the addresses `tenant` (as it was) has that it does not
    name, when its CIDR is the same: the address of every node it names none for (a tenant
    stored before addresses were: what its nodes have), unless it gives that address to
    another node, and the ingress address. `parse_tenant` then keeps them, so naming some
    nodes' addresses moves no other node."""
    kept = dict(network)
    named = kept.get("addresses")
    if kept.get("cidr") != tenant.spec.network.cidr or not isinstance(named, dict | None):
        return kept  # another network (all allocated afresh), or malformed (parse_tenant says)
    named = named or {}
    nodes = tenant_nodes(tenant)
    given = {a for a in named.values() if isinstance(a, str)}
    old = {n.name: n.ip for n in nodes if n.name not in named and n.ip not in given}
    kept["addresses"] = old | named
    if kept.get("ingress") is None and nodes:
        kept["ingress"] = nodes[0].ingress
    return kept


def free_vni(used: set[int | None], first: int = FIRST_AUTO_VNI) -> int:
    """The lowest VNI from `first` that is not `used`; Conflict when none is left."""
    vni = next((v for v in range(first, MAX_VNI + 1) if v not in used), None)
    if vni is None:
        raise Conflict("no free VNI left", {"spec.network.vni": "every VNI is taken"})
    return vni


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
                memory = mib(size.memory)
                if image is not None and memory < image.min_memory_mib:
                    errors[f"{where}.memory"] = (
                        f"{size.memory} is below the minimum of image {image.name!r} "
                        f"({image.min_memory_mib}Mi)"
                    )
                elif memory > MAX_MEMORY_MIB:
                    errors[f"{where}.memory"] = f"at most {MAX_MEMORY_MIB >> 20}Ti"
            except ValueError as exc:
                errors[f"{where}.memory"] = str(exc)
            try:
                disk = gib(size.disk)
                if not 1 <= disk <= MAX_DISK_GIB:
                    errors[f"{where}.disk"] = f"from 1Gi to {MAX_DISK_GIB >> 10}Ti"
            except ValueError as exc:
                errors[f"{where}.disk"] = str(exc)


def parse_tenant(
    doc: dict[str, Any],
    known_images: dict[str, ImageInfo],
    existing: list[TenantCluster],
    held: Collection[str] = (),
) -> TenantCluster:
    """Validate a TenantCluster document; raise Unprocessable with field-level detail, or
    Conflict when its VNI is another tenant's. A tenant without a VNI gets a free one, nodes
    without an address get free ones (never one of `held`: removed nodes' that still exist)."""
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
    return _with_addresses(_with_vni(tenant, existing), held)
