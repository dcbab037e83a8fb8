"""Validating a TenantCluster document against the known base images and the other tenants."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mayu_py.errors import Unprocessable
from mayu_py.kubernetes_releases import unsupported_reason
from mayu_py.tenants.nodes import FIRST_NODE_OFFSET
from mayu_py.tenants.resource import TenantCluster, TenantSpec, gib, mib

MIN_PREFIX, MAX_PREFIX = 16, 28
MAX_MEMORY_MIB = 4 << 20  # 4 TiB
MAX_DISK_GIB = 64 << 10  # 64 TiB
MAX_NAME = 40  # leaves room for "-worker-NNN" inside a 63-character DNS label
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


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
