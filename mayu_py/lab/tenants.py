"""Level 2 of the lab: the lab host's `mayu agent`, the demo tenants, and their libvirt cleanup.

The agent runs inside the lab namespace (the server listens only there; libvirtd's unix socket
is reachable from any namespace) and turns the demo tenants (`demo-N`, 1 master + 1 worker)
into libvirt networks and TCG/KVM domains on this machine. `remove_libvirt_objects` talks to
libvirt directly, so `mayu lab down` cleans up even when the server and the agent are dead,
through the agent's own deletions (`mayu_py.virt`) narrowed to the lab's tenants: only
domains whose mayu metadata names a `demo-N` tenant and networks `mayu-tenant-demo-N`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from mayu_py.api_client import ApiError
from mayu_py.errors import ConfigError, MayuError
from mayu_py.images.base import BaseImage, install_lab_base_image
from mayu_py.images.lab import LabImage
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.processes import child_env, spawn
from mayu_py.tenants import NodeReport, NodeState
from mayu_py.virt.cleanup import remove_owned
from mayu_py.virt.host import LibvirtHost
from mayu_py.virt.ownership import Ownership

log = logging.getLogger(__name__)

LIBVIRT_URI = "qemu:///system"
AGENT_INTERVAL = 2.0
# The lab image runs no kube-apiserver, so a drain (a rolling replacement, a scale down) can
# only find the tenant API unreachable: it says so after this long instead of the default 60 s.
DRAIN_TIMEOUT_S = 2.0
IMAGE = "lab"
ACCEL_ENV = {"tcg": "tcg", "kvm": "kvm"}
LAB_TENANTS = Ownership(name="a lab tenant's", tenant=topo.is_lab_tenant)


def check_libvirt(uri: str = LIBVIRT_URI) -> None:
    """Fail early, with what to do, when the agent could not reach libvirtd."""
    if shutil.which("qemu-img") is None:
        raise ConfigError("qemu-img not found: install qemu-utils (or pass --tenants 0)")
    host = LibvirtHost(uri, attempts=1)
    try:
        host.connection()
    except MayuError as exc:
        raise ConfigError(
            f"libvirtd not reachable at {uri} ({exc.message}): start it (without systemd: "
            "`virtlogd -d; libvirtd -d`) or pass --tenants 0"
        ) from None
    finally:
        host.close()


def agent_dirs(data_dir: Path | str) -> tuple[Path, Path]:
    """(state dir, images dir) of the lab's agent under the lab's data dir."""
    base = Path(data_dir) / "agent"
    return base / "state", base / "images"


def install_image(data_dir: Path, image: LabImage) -> BaseImage:
    """The lab node image as tenant base image `lab` (stays up after Ignition)."""
    _, images_dir = agent_dirs(data_dir)
    return install_lab_base_image(images_dir, image.kernel, image.initrd, image.version)


def agent_argv(data_dir: Path) -> list[str]:
    state_dir, images_dir = agent_dirs(data_dir)
    return [
        sys.executable, "-c", "from mayu_py.cli.mayu import main; main()",
        "agent", "--host-name", topo.AGENT_HOST, "--libvirt-uri", LIBVIRT_URI,
        "--server", topo.SERVER_URL, "--state-dir", str(state_dir),
        "--images-dir", str(images_dir), "--interval", str(AGENT_INTERVAL),
        "--drain-timeout", str(DRAIN_TIMEOUT_S),
    ]  # fmt: skip


def start_agent(
    data_dir: Path, token: str, accel: str, log_path: Path, namespace: str = topo.NAMESPACE
) -> subprocess.Popen[bytes]:
    """`mayu agent` inside the namespace with the admin token and the lab's accelerator."""
    env = child_env(token, MAYU_ACCEL=ACCEL_ENV.get(accel, "tcg"))
    return spawn(agent_argv(data_dir), namespace, log_path, env)


def tenant_doc(tenant: topo.LabTenant) -> dict[str, Any]:
    size = {"cpus": 1, "memory": "256Mi", "disk": "2Gi"}
    return {
        "apiVersion": "mayu.io/v1alpha1",
        "kind": "TenantCluster",
        "metadata": {"name": tenant.name},
        "spec": {
            "kubernetesVersion": "1.37",
            "image": IMAGE,
            "network": {"cidr": tenant.cidr, "vni": tenant.vni},
            "masters": [size],
            "workers": [size],
            "sshAuthorizedKeys": [],
        },
    }


def forget_stale_tenants(client: LabClient) -> list[str]:
    """Purge demo tenants a previous `up` left in the server's store (the data dir outlives
    `down`). `down` removed their VMs, so their recorded node states are stale: the lab tells
    the server, as the agent would, that each node is deleted. Returns the purged names."""
    purged = []
    for doc in client.tenants():
        name = doc["metadata"]["name"]
        if not topo.is_lab_tenant(name):
            continue
        client.delete_tenant(name)
        for node in doc.get("status", {}).get("nodes", []):
            deleted = NodeReport(name, node["name"], NodeState.DELETED, None, topo.AGENT_HOST)
            with contextlib.suppress(ApiError):  # 404 once the last report purged it
                client.report_node(deleted)
        purged.append(name)
    return purged


def create_tenants(client: LabClient, tenants: list[topo.LabTenant]) -> None:
    for tenant in tenants:
        client.create_tenant(tenant_doc(tenant))


def remove_libvirt_objects(uri: str = LIBVIRT_URI) -> list[str]:
    """Destroy and undefine the lab tenants' domains and networks; a line per removal.

    libvirtd not running: nothing to remove (a warning).
    """
    host = LibvirtHost(uri, attempts=1)
    try:
        return remove_owned(host, LAB_TENANTS, "tenant ")
    except MayuError as exc:
        log.warning("libvirt %s not reachable (%s): tenant VMs not checked", uri, exc.message)
        return []
    finally:
        host.close()


def remove_agent_state(data_dir: Path | str) -> bool:
    state_dir, _ = agent_dirs(data_dir)
    if not state_dir.exists():
        return False
    shutil.rmtree(state_dir, ignore_errors=True)
    return True
