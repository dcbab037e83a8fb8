"""`mayu lab status`: the lab's server, site DHCP server, agent, machines and tenant nodes.

A machine's state is the inventory's, marked `(earlier run)` unless one of its events since
this lab's `up` started says it installed; the same rule `up` decides by (`watch`).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from mayu_py.errors import MayuError
from mayu_py.lab import display, domains, netns, replicas
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.state import LabState, state_path
from mayu_py.lab.teardown import KEPT, REMOVED
from mayu_py.lab.watch import EMPTY, Watcher, done_states
from mayu_py.pids import running
from mayu_py.pki import server_tls
from mayu_py.virt.host import LibvirtHost


def domain_status(state: LabState) -> dict[int, str]:
    """`--vms libvirt`: each machine's domain state."""
    host = LibvirtHost(domains.LIBVIRT_URI, attempts=1)
    try:
        states = domains.domain_states(host)
    except MayuError as exc:
        return {r.index: f"libvirt: {exc.message}" for r in state.vms}
    finally:
        host.close()
    return {r.index: states.get(topo.LabMachine(r.index).domain, "undefined") for r in state.vms}


def _print(console: Console, text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def lab_status(console: Console | None = None) -> int:
    """Print the lab's machines and states; 1 when no lab is up."""
    console = console or Console()
    state = LabState.load()
    if state is None or not netns.exists(state.namespace):
        console.print(f"no lab is up (no state file {state_path()} or namespace {topo.NAMESPACE})")
        return 1
    snapshot = EMPTY
    with netns.InNamespace(state.namespace) as ns:
        try:
            client = LabClient(ns, state.url, state.token)
            watcher = Watcher(client, state.created, done_states(state.vm_driver))
            snapshot = watcher.poll(with_tenants=bool(state.tenants))
        except Exception as exc:  # noqa: BLE001 - shown, the rest of the status still helps
            console.print(f"server at {state.url} not answering: {exc}")
    if state.vm_driver == "libvirt":
        qemu = domain_status(state)
    else:
        qemu = {r.index: "running" if running(r.pid, "qemu") else "exited" for r in state.vms}
    items = display.rows(state.vms, snapshot, qemu)
    ca = server_tls.server_dir(Path(state.data_dir)) / server_tls.CA_FILE
    _print(
        console,
        f"lab phase {state.phase}, server {state.url} (pid {state.serve_pid}), HTTPS "
        f"{topo.SERVER_TLS_URL} (server CA {ca}), accel {state.accel}, firmware "
        f"{state.firmware}, dhcp {state.dhcp}, vms {state.vm_driver}, data dir {state.data_dir}",
    )
    _print(console, f"kept across runs: {KEPT}; `mayu lab down` removes the lab's {REMOVED}")
    for line in replicas.status_lines(state):
        _print(console, line)
    if state.dhcp == "proxy":
        alive = "running" if running(state.site_dhcp_pid, "dnsmasq") else "not running"
        _print(
            console,
            f"site DHCP server {alive} (pid {state.site_dhcp_pid}, {topo.SITE_IP} in "
            f"{topo.SITE_NAMESPACE}, log {state.site_dhcp_log})",
        )
    nodes = display.tenant_rows(snapshot.tenants or [], state.tenants)
    if state.agent_pid:
        alive = "running" if running(state.agent_pid, "agent") else "not running"
        _print(
            console,
            f"mayu agent {alive} (pid {state.agent_pid}, host {topo.AGENT_HOST}, "
            f"log {state.agent_log})",
        )
    if console.is_terminal:
        console.print(display.table("mayu lab", items))
        if state.tenants:
            console.print(display.tenant_table("tenants", nodes))
    else:
        for r in items:
            _print(console, display.line(r))
        for n in nodes:
            _print(console, display.tenant_line(n))
    return 0
