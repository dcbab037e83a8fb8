"""Tenant lifecycle under TCG: create -> all nodes ready -> deleted, against a floor.

For tenants of 1, 3 and 6 nodes (1 master + workers, 256 MiB each) on one `mayu agent`
(interval 30 s, the default; its 0.5 s ETag watch wakes it on a change) against qemu:///system: seconds from `mayuctl tenants create` to every node
`ready` (the guest printed MAYU-READY), and from `mayuctl tenants delete` to the tenant gone
from the API with no domain left; the agent's CPU seconds and peak RSS; qemu RSS per VM.
The floor, in the same run: the same lab image and a real node Ignition booted by N bare
`qemu-system-x86_64 -accel tcg` processes at once (fw_cfg Ignition, user-mode NIC for DHCP),
time to MAYU-READY on their serial output. Last, the reconcile time of an unchanged state of
50 domains: test:///default (50 running mock domains) and qemu:///system (50 real qemu
processes started paused, so they cost no CPU). With --rolling N: a tenant of 1 master and
N-1 workers changes its Kubernetes version, replaced one node at a time (the agent runs with
`--drain none`: no tenant API to drain through); the time per node against a fresh 1-node
tenant's create->ready (sizes must hold 1).

    .venv/bin/python bench/tenant_lifecycle.py [--sizes 1,3,6] [--reconcile-domains 50] \
        [--rolling 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import libvirt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mayu_py.agent import plan as p  # noqa: E402
from mayu_py.agent.actual import observe  # noqa: E402
from mayu_py.agent.desired import networks_for  # noqa: E402
from mayu_py.agent.loop import Agent  # noqa: E402
from mayu_py.agent.statedir import StateDir  # noqa: E402
from mayu_py.images.base import BaseImages  # noqa: E402
from mayu_py.tenants import ImageInfo, TenantNode, parse_tenant, tenant_nodes  # noqa: E402
from mayu_py.virt.host import LibvirtHost  # noqa: E402
from tests.conftest import start_server  # noqa: E402
from tests.e2e import tenant_helpers as th  # noqa: E402
from tests.support.sources import StaticSource  # noqa: E402
from tests.support.tenants import tenant_doc  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def lifecycle(rig: dict, size: int, idx: int) -> dict:
    server, agent, conn, work = rig["server"], rig["agent"], rig["conn"], rig["work"]
    name = f"bench{idx}{os.getpid() % 1000}"
    rig["tenants"].append(name)
    doc = tenant_doc(name, f"10.210.{40 + idx}.0/24", 9240 + idx, workers=size - 1)
    path = th.write_tenant(work / f"{name}.yaml", doc)
    cpu0 = cpu_seconds(agent.pid)
    t0 = time.monotonic()
    out = server.mayuctl("tenants", "create", "-f", str(path))
    assert out.returncode == 0, out.stderr

    def ready() -> bool:  # the API, not a mayuctl process per poll: no CPU stolen from VMs
        nodes = th.tenant_nodes(server.api("GET", f"/api/v1/tenants/{name}").text)
        return len(nodes) == size and all(n["state"] == "ready" for n in nodes.values())

    th.wait_for(f"{name} ready", ready, 600, 0.1)
    t_ready = time.monotonic() - t0
    cpu_ready = cpu_seconds(agent.pid) - cpu0
    doms = th.domains(conn, name + "-")
    qemu_rss = [status_kib(d.pid, "VmRSS") / 1024 for d in doms.values() if d.pid]
    t1 = time.monotonic()
    assert server.mayuctl("tenants", "delete", name).returncode == 0

    def gone() -> bool:
        return server.api("GET", f"/api/v1/tenants/{name}").status_code == 404 and not th.domains(
            conn, name + "-"
        )

    th.wait_for(f"{name} gone", gone, 300, 0.1)
    t_deleted = time.monotonic() - t1
    return {
        "nodes": size,
        "ready_s": t_ready,
        "deleted_s": t_deleted,
        "agent_cpu_s": cpu_seconds(agent.pid) - cpu0,
        "agent_cpu_to_ready_s": cpu_ready,
        "qemu_rss_mib": statistics.mean(qemu_rss) if qemu_rss else 0.0,
    }


def rolling(rig: dict, size: int) -> dict:
    """Seconds of a rolling version change of a ready tenant of `size` nodes, and per node."""
    server = rig["server"]
    name = f"roll{os.getpid() % 1000}"
    rig["tenants"].append(name)
    doc = tenant_doc(name, "10.210.70.0/24", 9270, workers=size - 1)
    doc["spec"]["kubernetesVersion"] = "1.36"
    assert server.api("POST", "/api/v1/tenants", json=doc).status_code == 201

    def settled(generation: int) -> bool:
        status = server.api("GET", f"/api/v1/tenants/{name}").json()["status"]
        return (
            all(n["state"] == "ready" for n in status["nodes"])
            and status["observedGeneration"] == generation
            and "rollout" not in status
        )

    th.wait_for(f"{name} ready", lambda: settled(1), 600, 0.1)
    t0 = time.monotonic()
    patch = {"spec": {"kubernetesVersion": "1.37"}}
    assert server.api("PATCH", f"/api/v1/tenants/{name}", json=patch).status_code == 200
    th.wait_for(f"{name} rolled", lambda: settled(2), 900, 0.1)
    took = time.monotonic() - t0
    assert server.api("DELETE", f"/api/v1/tenants/{name}").status_code == 202
    th.wait_for(f"{name} gone", lambda: not th.domains(rig["conn"], name + "-"), 300, 0.2)
    return {"nodes": size, "rollout_s": took, "per_node_s": took / size}


def node_ignition(rig: dict) -> Path:
    """A real worker Ignition of a throw-away tenant (the floor boots with it)."""
    server, work = rig["server"], rig["work"]
    name = f"floor{os.getpid() % 1000}"
    doc = tenant_doc(name, "10.210.60.0/24", 9260, workers=1)
    resp = server.api("POST", "/api/v1/tenants", json=doc)
    assert resp.status_code in (200, 201), resp.text
    ign = server.api("GET", f"/api/v1/tenants/{name}/nodes/{name}-worker-0/ignition")
    server.api("DELETE", f"/api/v1/tenants/{name}")
    path = work / "floor.ign"
    path.write_bytes(ign.content)
    return path


def floor(images: BaseImages, ignition: Path, count: int) -> float:
    """Seconds until `count` bare qemu processes, started at once, all print MAYU-READY."""
    image = images.get("lab")
    procs = []
    done: dict[int, float] = {}
    t0 = time.monotonic()
    for _ in range(count):
        args = [
            "qemu-system-x86_64", "-accel", "tcg,tb-size=32", "-machine", "pc", "-m", "256",
            "-smp", "1", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", image.cmdline, "-fw_cfg", f"name=opt/com.coreos/config,file={ignition}",
            "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-display", "none", "-no-reboot", "-nodefaults", "-serial", "stdio",
        ]  # fmt: skip
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL))

    def watch(i: int, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"MAYU-READY ip=" in line:
                done[i] = time.monotonic() - t0
                return

    threads = [
        threading.Thread(target=watch, args=(i, pr), daemon=True) for i, pr in enumerate(procs)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for proc in procs:
        proc.kill()
        proc.wait()
    assert len(done) == count, f"only {len(done)}/{count} bare VMs printed MAYU-READY"
    return max(done.values())


def _bench_nodes(count: int, cidr: str, vni: int, tenant: str) -> list[TenantNode]:
    size = {"cpus": 1, "memory": "128Mi", "disk": "1Gi"}
    doc = tenant_doc(tenant, cidr, vni, workers=count - 1)
    doc["spec"]["masters"] = [size]
    doc["spec"]["workers"] = [size] * (count - 1)
    tenant_obj = parse_tenant(doc, {"lab": ImageInfo("lab", 64)}, [])
    return tenant_nodes(tenant_obj)


def reconcile_unchanged(uri: str, work: Path, images_dir: Path, count: int, paused: bool) -> dict:
    """Median/max seconds of Agent.run_once over an unchanged state of `count` domains."""
    tenant = f"rec{'p' if paused else 't'}{os.getpid() % 1000}"
    nodes = _bench_nodes(count, "10.210.80.0/24", 9280, tenant)
    host = LibvirtHost(uri)
    state = StateDir(work / f"state-{tenant}")
    source = StaticSource(nodes)
    agent = Agent("bench", host, source, state, BaseImages(images_dir))
    try:
        if paused:  # everything but StartDomain, then start each domain paused
            for action in p.plan(nodes, networks_for(nodes), observe(host, state)):
                if not isinstance(action, p.StartDomain):
                    agent.applier.apply(action)
            conn = host.connection()
            for node in nodes:
                conn.lookupByName(node.name).createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        else:
            agent.run_once()
        first = agent.run_once()
        assert first.applied == [] and first.errors == {}, (first.applied[:3], first.errors)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            result = agent.run_once()
            times.append(time.perf_counter() - t0)
            assert result.applied == []
        return {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}
    finally:
        source.nodes = []
        try:
            agent.run_once()
        finally:
            th.cleanup_libvirt(host.connection(), [tenant])
            host.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,6")
    parser.add_argument("--reconcile-domains", type=int, default=50)
    parser.add_argument("--rolling", type=int, default=0, help="nodes of the rolling case")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    th.ensure_daemons()
    work = th.make_workdir("mayu-bench-tenants")
    conn = libvirt.open(th.URI)
    rig: dict = {"work": work, "conn": conn, "tenants": []}
    try:
        th.install_lab_image(work / "images")
        images = BaseImages(work / "images")
        rig["server"] = server = start_server(work / "data")
        ignition = node_ignition(rig)  # before any agent registers: the tenant stays unplaced
        # the production default interval: changes reach the agent through its 0.5 s watch
        rig["agent"] = agent = th.AgentProcess(
            server.url,
            server.token,
            work / "state",
            work / "images",
            work / "agent.log",
            interval=30.0,
            extra=("--drain", "none"),
        ).start()
        th.wait_for(
            "agent registered", lambda: server.api("GET", "/api/v1/hosts").json()["items"], 30
        )

        print(f"lab image cmdline: {images.get('lab').cmdline!r}")
        print(
            "\n| nodes | create->ready | floor (N bare qemu) | overhead/node | create->deleted "
            "| agent CPU | qemu RSS/VM |"
        )
        print("|---|---|---|---|---|---|---|")
        fresh: dict[int, float] = {}
        for idx, size in enumerate(sizes):
            bare = floor(images, ignition, size)
            r = lifecycle(rig, size, idx)
            fresh[size] = r["ready_s"]
            over = (r["ready_s"] - bare) / size
            print(f"| {size} | {r['ready_s']:.1f} s | {bare:.1f} s | {over:+.2f} s | "
                  f"{r['deleted_s']:.1f} s | {r['agent_cpu_s']:.2f} s | {r['qemu_rss_mib']:.0f} MiB |",
                  flush=True)  # fmt: skip
        if args.rolling:
            roll = rolling(rig, args.rolling)
            ratio = roll["per_node_s"] / fresh[1]
            print(f"\nrolling version change of {args.rolling} nodes: {roll['rollout_s']:.1f} s, "
                  f"{roll['per_node_s']:.1f} s per node = {ratio:.2f}x a fresh 1-node tenant's "
                  f"create->ready ({fresh[1]:.1f} s)", flush=True)  # fmt: skip
        agent_peak = status_kib(agent.pid, "VmHWM") / 1024
        print(f"\nagent peak RSS (VmHWM over the whole run): {agent_peak:.0f} MiB; "
              f"agent CPU total: {cpu_seconds(agent.pid):.1f} s")  # fmt: skip
        agent.kill()

        n = args.reconcile_domains
        mock = reconcile_unchanged("test:///default", work, work / "images", n, paused=False)
        print(f"\nunchanged reconcile, {n} domains, test:///default: "
              f"median {mock['median_ms']:.1f} ms, max {mock['max_ms']:.1f} ms")  # fmt: skip
        t0 = time.monotonic()
        real = reconcile_unchanged(th.URI, work, work / "images", n, paused=True)
        print(f"unchanged reconcile, {n} domains, qemu:///system (paused qemus): "
              f"median {real['median_ms']:.1f} ms, max {real['max_ms']:.1f} ms "
              f"(setup+teardown {time.monotonic() - t0:.0f} s)")  # fmt: skip
        print(json.dumps({"agent_peak_rss_mib": agent_peak, "mock": mock, "real": real}))
    finally:
        if "agent" in rig:
            rig["agent"].kill(signal.SIGKILL)
        th.cleanup_libvirt(conn, rig["tenants"])
        conn.close()
        if "server" in rig:
            rig["server"].kill()
        th.remove_tree(work)


if __name__ == "__main__":
    main()
