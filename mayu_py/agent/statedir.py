"""The agent's state directory: per-tenant overlays, Ignition files and serial logs.

Layout: ROOT/tenants/<tenant>/<node>.<spec_hash>.qcow2, <node>.<spec_hash>.ign, <node>.log,
and for a master <node>.data.qcow2: its persistent data disk, which outlives the node's
replacement (its name has no spec hash) and goes with the node or the tenant;
ROOT/ingress/ holds the host's HAProxy configuration and pidfile (mayu_py.agent.ingress).
Directories are 0711 (qemu, running as libvirt-qemu, must traverse them), Ignition files 0600.
Every file is written to a temporary name and renamed (`mayu_py.files`), so a kill -9 leaves
either the old state or the new one plus a `.*.tmp` file, which the plan sees as an orphan and
deletes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mayu_py.tenants import TenantNode

DIR_MODE = 0o711
SECRET_MODE = 0o600


def overlay_name(node: TenantNode) -> str:
    return f"{node.name}.{node.spec_hash}.qcow2"


def ignition_name(node: TenantNode) -> str:
    return f"{node.name}.{node.spec_hash}.ign"


def log_name(node_name: str) -> str:
    return f"{node_name}.log"


def data_name(node: TenantNode) -> str:
    return f"{node.name}.data.qcow2"


def has_data_disk(node: TenantNode) -> bool:
    """Masters keep their data (etcd) on a disk of their own."""
    return node.role == "master"


def node_files(node: TenantNode) -> set[str]:
    """The file names a desired node keeps in its tenant directory."""
    names = {overlay_name(node), ignition_name(node), log_name(node.name)}
    return names | {data_name(node)} if has_data_disk(node) else names


class StateDir:
    """Paths and crash-safe file operations under one agent's state directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.tenants = self.root / "tenants"

    def ensure(self) -> None:
        for path in (self.root, self.tenants):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(DIR_MODE)

    def tenant_dir(self, tenant: str, create: bool = False) -> Path:
        path = self.tenants / tenant
        if create and not path.is_dir():
            self.ensure()
            path.mkdir(exist_ok=True)
            path.chmod(DIR_MODE)
        return path

    def overlay(self, node: TenantNode) -> Path:
        return self.tenant_dir(node.tenant) / overlay_name(node)

    def data_disk(self, node: TenantNode) -> Path:
        return self.tenant_dir(node.tenant) / data_name(node)

    def ignition(self, node: TenantNode) -> Path:
        return self.tenant_dir(node.tenant) / ignition_name(node)

    def log(self, node: TenantNode) -> Path:
        return self.tenant_dir(node.tenant) / log_name(node.name)

    @property
    def ingress(self) -> Path:
        return self.root / "ingress"

    @property
    def accel_cache(self) -> Path:
        return self.root / "accel.json"

    def scan(self) -> dict[str, frozenset[str]]:
        """Tenant -> the names of the files in its directory."""
        if not self.tenants.is_dir():
            return {}
        return {
            entry.name: frozenset(p.name for p in entry.iterdir())
            for entry in self.tenants.iterdir()
            if entry.is_dir()
        }

    def delete_files(self, tenant: str, names: list[str]) -> None:
        base = self.tenant_dir(tenant)
        for name in names:
            if "/" in name or name in ("", ".", ".."):
                continue
            (base / name).unlink(missing_ok=True)

    def delete_tenant(self, tenant: str) -> None:
        shutil.rmtree(self.tenant_dir(tenant), ignore_errors=True)
