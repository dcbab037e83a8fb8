"""The lab's state file: what `up` started, so `status` and `down` work from another process.

Written atomically (mode 0600: it holds the admin token) after every step of `up`, so a
crash at any point leaves enough for `down`. `down` does not need it: it also kills every
process inside the namespace and deletes the namespace.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from mayu_py.files import atomic_write

DEFAULT_STATE_FILE = Path("/run/mayu-lab/state.json")
DEFAULT_DATA_DIR = Path("/var/lib/mayu-lab")


def work_dir(data_dir: Path) -> Path:
    return data_dir / "lab"


def state_path() -> Path:
    return Path(os.environ.get("MAYU_LAB_STATE", str(DEFAULT_STATE_FILE)))


class Phase(StrEnum):
    """Where `mayu lab up` is, or how it ended."""

    STARTING = "starting"
    BOOTING = "booting"  # level 1: machines boot until each is installed
    TENANTS = "tenants"  # level 2: the agent brings the demo tenants to Ready
    READY = "ready"
    TIMEOUT = "timeout"
    AGENT_EXITED = "agent-exited"


@dataclass
class VmRecord:
    index: int
    mac: str
    uuid: str
    serial: str
    ip: str
    tap: str
    log: str
    pid: int | None = None
    started: float | None = None  # wall clock of the (last) qemu start
    first_started: float | None = None
    boots: int = 0
    exited: float | None = None
    exit_code: int | None = None


@dataclass
class LabState:
    namespace: str
    data_dir: str
    url: str
    token: str
    accel: str = "tcg"
    up_pid: int | None = None
    serve_pid: int | None = None
    serve_log: str = ""
    agent_pid: int | None = None
    agent_log: str = ""
    tenants: list[str] = field(default_factory=list)  # names of the demo tenants
    dhcp: str = "full"  # or proxy: site_dhcp_pid is then the site's own DHCP server
    firmware: str = "bios"  # or uefi: every VM (also one `mayu lab restart` starts again)
    vm_driver: str = "qemu"  # or libvirt: domains with a Redfish BMC each (`--vms`)
    bmc_protocol: str = "redfish"  # libvirt: or ipmi (`--bmc`)
    bmc_pid: int | None = None  # libvirt: the lab's sushy-emulator or vbmcd
    bmc_log: str = ""
    site_dhcp_pid: int | None = None
    # `--store etcd`: the lab's etcd members, its replicas (the first is serve_pid, its log
    # serve_log) and the balancer in front of them, which `url` names (lab.replicas)
    store: str = "sqlite"
    store_url: str = ""
    etcd_pids: list[int] = field(default_factory=list)
    replica_pids: list[int] = field(default_factory=list)
    replica_urls: list[str] = field(default_factory=list)
    replica_logs: list[str] = field(default_factory=list)
    balancer_pid: int | None = None
    balancer_log: str = ""
    site_dhcp_log: str = ""
    phase: str = Phase.STARTING
    created: float = 0.0
    vms: list[VmRecord] = field(default_factory=list)

    @property
    def work_dir(self) -> Path:
        """Where the lab keeps its consoles, logs and generated configs."""
        return work_dir(Path(self.data_dir))

    def save(self, path: Path | None = None) -> None:
        path = path or state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(asdict(self), indent=2), 0o600)

    @classmethod
    def load(cls, path: Path | None = None) -> LabState | None:
        path = path or state_path()
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        vms = [VmRecord(**vm) for vm in data.pop("vms", [])]
        known = {f for f in cls.__dataclass_fields__ if f != "vms"}
        return cls(**{k: v for k, v in data.items() if k in known}, vms=vms)


def remove(path: Path | None = None) -> None:
    (path or state_path()).unlink(missing_ok=True)
