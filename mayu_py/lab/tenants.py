"""Level 2 of the lab: the lab host's `mayu agent`, the demo tenants, and their libvirt cleanup.

The agent runs inside the lab namespace (the server listens only there; libvirtd's unix socket
is reachable from any namespace) and turns the demo tenants (`demo-N`, 1 master + 1 worker)
into libvirt networks and TCG/KVM domains on this machine. `remove_libvirt_objects` talks to
libvirt directly, so `mayu lab down` cleans up even when the server and the agent are dead:
it removes only domains named `demo-*` that carry the agent's metadata element and networks
`mayu-tenant-demo-*`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from mayu_py.agent.desired import NETWORK_PREFIX
from mayu_py.agent.images import BaseImage, install_lab_base_image
from mayu_py.agent.libvirt_xml import NS, parse_domain_meta
from mayu_py.api_client import ApiError
from mayu_py.errors import ConfigError
from mayu_py.images.lab import LabImage
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.tenants import NodeReport, NodeState

log = logging.getLogger(__name__)

LIBVIRT_URI = "qemu:///system"
AGENT_INTERVAL = 2.0
IMAGE = "lab"
ACCEL_ENV = {"tcg": "tcg", "kvm": "kvm"}


def check_libvirt(uri: str = LIBVIRT_URI) -> None:
    """Fail early, with what to do, when the agent could not reach libvirtd."""
    if shutil.which("qemu-img") is None:
        raise ConfigError("qemu-img not found: install qemu-utils (or pass --tenants 0)")
    try:
        import libvirt
    except ImportError:
        raise ConfigError("libvirt-python is not installed (or pass --tenants 0)") from None
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError as exc:
        raise ConfigError(
            f"libvirtd not reachable at {uri} ({exc}): start it (without systemd: "
            "`virtlogd -d; libvirtd -d`) or pass --tenants 0"
        ) from None


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
    ]  # fmt: skip


def start_agent(
    data_dir: Path, token: str, accel: str, log_path: Path, namespace: str = topo.NAMESPACE
) -> subprocess.Popen[bytes]:
    """`mayu agent` inside the namespace with the admin token and the lab's accelerator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAYU_")}
    env["MAYU_TOKEN"] = token
    env["MAYU_ACCEL"] = ACCEL_ENV.get(accel, "tcg")
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            ["ip", "netns", "exec", namespace, *agent_argv(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


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

    Only domains named `demo-*` carrying the agent's metadata and networks named
    `mayu-tenant-demo-*` are touched. libvirtd not running: nothing to remove (a warning).
    """
    try:
        import libvirt
    except ImportError:
        log.warning("libvirt-python is not installed: tenant VMs not checked")
        return []
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # no stderr noise
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        log.warning("libvirt %s not reachable (%s): tenant VMs not checked", uri, exc)
        return []
    done = []
    try:
        for dom in conn.listAllDomains():
            if not dom.name().startswith(f"{topo.TENANT_PREFIX}-") or not _ours(libvirt, dom):
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
            done.append(f"removed tenant VM {dom.name()}")
        for net in conn.listAllNetworks():
            name = net.name()
            if not (
                name.startswith(NETWORK_PREFIX)
                and topo.is_lab_tenant(name.removeprefix(NETWORK_PREFIX))
            ):
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if net.isActive():
                    net.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                net.undefine()
            done.append(f"removed tenant network {name}")
    finally:
        conn.close()
    return done


def _ours(libvirt: Any, dom: Any) -> bool:
    try:
        element = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, 0)
    except libvirt.libvirtError:
        return False
    meta = parse_domain_meta(element)
    return meta is not None and topo.is_lab_tenant(meta.tenant)


def remove_agent_state(data_dir: Path | str) -> bool:
    state_dir, _ = agent_dirs(data_dir)
    if not state_dir.exists():
        return False
    shutil.rmtree(state_dir, ignore_errors=True)
    return True
