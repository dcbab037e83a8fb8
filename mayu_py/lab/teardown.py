"""`mayu lab down`: stop everything the lab started and delete its network; idempotent.

Works from the state file when there is one and without it too: every process inside the
lab namespace (VMs, agent, server, its gunicorn workers, dnsmasq) is ended, the demo tenants'
libvirt domains and networks are removed through libvirt itself (no server or agent needed),
then the namespace goes and takes the bridge and taps with it, and the agent's state dir goes.
With `--dhcp proxy` the site namespace goes too: its dnsmasq (by pid, then every process in
it) and the namespace, which takes its end of the veth pair and so the pair.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from mayu_py.lab import netns, tenants
from mayu_py.lab import topology as topo
from mayu_py.lab.state import DEFAULT_DATA_DIR, LabState, remove, state_path

log = logging.getLogger(__name__)


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if _alive(p)]
    return left


def _stop(pids: list[int], grace: float) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL what is left and wait for it."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    left = _wait_gone(pids, grace)
    for pid in left:
        _signal(pid, signal.SIGKILL)
    stuck = _wait_gone(left, 10.0)
    if stuck:
        log.warning("processes still alive after SIGKILL: %s", stuck)


def lab_down(
    namespace: str = topo.NAMESPACE,
    state_file: Path | None = None,
    site_namespace: str = topo.SITE_NAMESPACE,
) -> list[str]:
    """Tear the lab down; returns a line per thing that was removed (empty: nothing was up)."""
    state_file = state_file or state_path()
    state = LabState.load(state_file)
    done: list[str] = []
    own = os.getpid()
    up_pid = state.up_pid if state else None
    if up_pid and up_pid != own and "lab" in _cmdline(up_pid) and _alive(up_pid):
        # A still-running `mayu lab up` would restart the VMs we stop: end it first.
        _stop([up_pid], 15.0)
        done.append(f"stopped mayu lab up (pid {up_pid})")
    if state:
        vm_pids = [vm.pid for vm in state.vms if vm.pid and "qemu" in _cmdline(vm.pid)]
        if vm_pids:
            _stop(vm_pids, 0.0)
            done.append(f"killed {len(vm_pids)} VM(s)")
        if state.agent_pid and "agent" in _cmdline(state.agent_pid) and _alive(state.agent_pid):
            # Before libvirt is cleaned: a live agent would recreate the tenants' VMs.
            _stop([state.agent_pid], 10.0)
            done.append(f"stopped mayu agent (pid {state.agent_pid})")
        if state.serve_pid and "serve" in _cmdline(state.serve_pid) and _alive(state.serve_pid):
            # SIGTERM first: serve stops its dnsmasq on the way out.
            _stop([state.serve_pid], 10.0)
            done.append(f"stopped mayu serve (pid {state.serve_pid})")
        site_pid = state.site_dhcp_pid
        if site_pid and "dnsmasq" in _cmdline(site_pid) and _alive(site_pid):
            _stop([site_pid], 5.0)
            done.append(f"stopped the site's dnsmasq (pid {site_pid})")
    site_rest = [p for p in netns.pids(site_namespace) if p != own]
    if site_rest:
        _stop(site_rest, 5.0)
        done.append(f"ended {len(site_rest)} process(es) in {site_namespace}")
    if netns.exists(site_namespace):
        netns.delete(site_namespace)
        done.append(f"deleted network namespace {site_namespace} (site DHCP server, veth)")
    rest = [p for p in netns.pids(namespace) if p != own]
    if rest:
        _stop(rest, 5.0)
        done.append(f"ended {len(rest)} other process(es) in {namespace}")
    done += tenants.remove_libvirt_objects()
    if netns.exists(namespace):
        netns.delete(namespace)
        done.append(f"deleted network namespace {namespace} (bridge, taps)")
    data_dir = Path(state.data_dir) if state else DEFAULT_DATA_DIR
    if tenants.remove_agent_state(data_dir):
        done.append(f"removed the agent's state dir {tenants.agent_dirs(data_dir)[0]}")
    if state_file.exists():
        remove(state_file)
        done.append(f"removed {state_file}")
    return done
