"""The per-app bundle of services the blueprints use (no globals: it lives on the Flask app)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from mayu_py.config import Settings
from mayu_py.server.boot_front import BootReads
from mayu_py.server.boot_service import BootService
from mayu_py.server.delivery import Delivery
from mayu_py.server.hosts import HostService
from mayu_py.server.machines import MachineService
from mayu_py.server.metrics import ServerMetrics
from mayu_py.server.power import PowerService
from mayu_py.server.provisioning import Provisioner
from mayu_py.server.tenant_service import TenantService
from mayu_py.server.users import UserService
from mayu_py.store import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    boot: BootService
    boot_reads: BootReads
    delivery: Delivery
    machines: MachineService
    power: PowerService
    provisioner: Provisioner
    tenants: TenantService
    hosts: HostService
    users: UserService
    assets_root: Path
    admin_token: str
    metrics: ServerMetrics


def services() -> Services:
    return current_app.extensions["mayu"]
