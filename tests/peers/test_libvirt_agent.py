"""The Agent against the real qemu:///system: isolated network, TCG domains, crash recovery.

Uses the lab image (mayu_py.images.lab) when it builds, else the Debian kernel with a trivial
busybox initramfs. VM files live under /var/tmp in 0711 directories: qemu runs as libvirt-qemu
and cannot enter pytest's 0700 tmp_path.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from mayu_py.agent import plan as p
from mayu_py.agent.actual import observe
from mayu_py.agent.desired import networks_for
from mayu_py.agent.loop import Agent
from mayu_py.agent.probe import detect_domain_type
from mayu_py.agent.statedir import StateDir
from mayu_py.command import run
from mayu_py.errors import MayuError
from mayu_py.images.base import BaseImages, install_base_image
from mayu_py.tenants import ImageInfo, TenantNode, parse_tenant, tenant_nodes
from mayu_py.virt.host import LibvirtHost
from tests.support.sources import StaticSource

pytestmark = pytest.mark.peer
URI = "qemu:///system"
TENANT = "peer-" + uuid.uuid4().hex[:6]
CIDR, VNI = "10.231.0.0/24", 9231  # bridge mayu-t9231; nothing is sent to these addresses


def _ensure_daemons() -> None:
    if shutil.which("libvirtd") is None or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("libvirtd or qemu-system-x86_64 not installed")
    for daemon in ("virtlogd", "libvirtd"):
        if subprocess.run(["pgrep", "-x", daemon], capture_output=True).returncode != 0:
            run([daemon, "-d"])
    time.sleep(0.5)


def _trivial_initrd(work: Path) -> Path:
    root = work / "initramfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "init").write_text(
        "#!/bin/busybox sh\n/bin/busybox mkdir -p /proc\n/bin/busybox mount -t proc p /proc\n"
        "echo MAYU-READY ip=none\nwhile :; do /bin/busybox sleep 3600; done\n"
    )
    (root / "init").chmod(0o755)
    out = work / "trivial.cpio"
    files = run(["sh", "-c", f"cd {root} && find . | cpio -o -H newc -R 0:0 > {out}"])
    assert files.returncode == 0
    return out


def _base_image(work: Path, images_dir: Path) -> None:
    try:
        from mayu_py.images.lab import build_lab_image

        lab = build_lab_image(work / "lab")
        kernel, initrd, version = lab.kernel, lab.initrd, lab.version.replace("+", "-")
    except (ImportError, MayuError, OSError):
        kernels = sorted(Path("/boot").glob("vmlinuz-*"))
        if not kernels:
            pytest.skip("no kernel in /boot")
        kernel, initrd, version = kernels[-1], _trivial_initrd(work), "trivial"
    install_base_image(
        images_dir, "lab", version, kernel, initrd,
        cmdline="console=ttyS0 mayu.after=stay", min_memory_mib=256,
    )  # fmt: skip


def _cleanup(host: LibvirtHost) -> None:
    for dom in host.list_domains():
        if dom.meta is not None and dom.meta.tenant.startswith("peer-"):
            host.delete_domain(dom.name)
    for net in host.list_networks():
        if net.facts.owned and net.facts.name.startswith("mayu-tenant-peer-"):
            host.delete_network(net.facts.name)


@pytest.fixture(scope="module")
def env():
    _ensure_daemons()
    work = Path(f"/var/tmp/mayu-peer-{uuid.uuid4().hex[:8]}")
    work.mkdir(mode=0o711)
    work.chmod(0o711)
    host = LibvirtHost(URI)
    try:
        _base_image(work, work / "images")
        yield host, work
    finally:
        try:
            _cleanup(host)
        finally:
            host.close()
            shutil.rmtree(work, ignore_errors=True)


def _nodes() -> list[TenantNode]:
    size = {"cpus": 1, "memory": "256Mi", "disk": "1Gi"}
    doc = {
        "apiVersion": "mayu.io/v1alpha1",
        "kind": "TenantCluster",
        "metadata": {"name": TENANT},
        "spec": {
            "kubernetesVersion": "1.37",
            "image": "lab",
            "network": {"cidr": CIDR, "vni": VNI},
            "masters": [size],
            "workers": [size],
        },
    }
    tenant = parse_tenant(doc, {"lab": ImageInfo("lab", 256)}, [])
    return tenant_nodes(tenant)


def _ours(host: LibvirtHost) -> dict[str, str]:
    return {
        d.name: d.uuid
        for d in host.list_domains()
        if d.meta is not None and d.meta.tenant == TENANT
    }


def _agent(host: LibvirtHost, work: Path, source: StaticSource) -> Agent:
    return Agent("peer", host, source, StateDir(work / "state"), BaseImages(work / "images"))


def _wait_for(path: Path, marker: bytes, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and marker in path.read_bytes():
            return True
        time.sleep(1)
    return False


def test_probe_picks_tcg_here(env) -> None:
    host, work = env
    image = BaseImages(work / "images").get("lab")
    started = time.monotonic()
    kind = detect_domain_type(host, work / "accel.json", image.kernel, image.initrd, env={})
    print(f"\nKVM probe: {kind} in {time.monotonic() - started:.1f}s")
    assert kind == "qemu"  # RECIPES 1: KVM here triple-faults stock kernels
    assert detect_domain_type(host, work / "accel.json", env={}) == "qemu"  # cached
    assert detect_domain_type(host, work / "accel.json", env={"MAYU_ACCEL": "kvm"}) == "kvm"
    assert not host.is_active("mayu-kvm-probe")


def test_create_noop_delete_and_crash_recovery(env) -> None:
    host, work = env
    nodes = _nodes()
    source = StaticSource(nodes)
    state = StateDir(work / "state")

    result = _agent(host, work, source).run_once()
    assert result.errors == {}
    assert result.states == {n.name: "running" for n in nodes}
    assert _ours(host) == {n.name: n.uuid for n in nodes}
    net = observe(host, state).networks[f"mayu-tenant-{TENANT}"]
    assert net.active and net.bridge == f"mayu-t{VNI}"
    assert _wait_for(state.log(nodes[0]), b"MAYU-READY", 120), state.log(nodes[0]).read_bytes()[
        -2000:
    ]

    again = _agent(host, work, source).run_once()
    assert again.applied == []  # no redefine, no restart
    assert _ours(host) == {n.name: n.uuid for n in nodes}

    source.nodes = []
    gone = _agent(host, work, source).run_once()
    assert gone.errors == {}
    assert _ours(host) == {}
    assert f"mayu-tenant-{TENANT}" not in {n.facts.name for n in host.list_networks()}
    assert state.scan() == {}

    # kill -9 half-way: a first agent applies half the plan, a new one must converge
    source.nodes = nodes
    actions = p.plan(nodes, networks_for(nodes), observe(host, state))
    first = _agent(host, work, source)
    for action in actions[: len(actions) // 2]:
        first.applier.apply(action)
    converge = _agent(host, work, source).run_once()
    assert converge.errors == {}
    assert _ours(host) == {n.name: n.uuid for n in nodes}
    files = {f for f in state.scan()[TENANT] if not f.endswith(".log")}
    assert files == {state.overlay(n).name for n in nodes} | {state.ignition(n).name for n in nodes}
    assert _agent(host, work, source).run_once().applied == []

    source.nodes = []
    _agent(host, work, source).run_once()
    assert _ours(host) == {} and state.scan() == {}
