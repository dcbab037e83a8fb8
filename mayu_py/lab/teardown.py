"""`mayu lab down`: stop everything the lab started, delete its network, forget its machines.

Works from the state file when there is one and without it too: every process inside the
lab namespace (VMs, agent, server, its gunicorn workers, dnsmasq) is ended, the demo tenants'
libvirt domains and networks are removed through libvirt itself (no server or agent needed),
then the namespace goes and takes the bridge and taps with it. In the lab's data dir the lab
machines' inventory records (with their events), their UEFI variable stores and the agent's
state dir go, so the next `up` starts every machine afresh. With `--dhcp proxy` the site
namespace goes too: its dnsmasq (by pid, then every process in it) and the namespace, which
takes its end of the veth pair and so the pair. `--vms libvirt`: the lab's domains (by their
metadata, lab.domains) and their disks, the BMC emulator (by pid, and as a process of the
namespace), and the host's lab bridge and veth end (by name) go too; all of them are found
without the state file, so `down` cleans up after a SIGKILLed `up`. `--store etcd`: the further
replicas, the balancer and the etcd members (by pid, and as processes of the namespace),
then the etcd data and the further replicas' data dirs (lab.replicas). Idempotent.
"""

from __future__ import annotations

import os
from pathlib import Path

from mayu_py.errors import ConfigError
from mayu_py.lab import domains, netns, replicas, tenants, vm
from mayu_py.lab import topology as topo
from mayu_py.lab.inventory import forget_lab_machines
from mayu_py.lab.state import DEFAULT_DATA_DIR, LabState, remove, state_path, work_dir
from mayu_py.pids import running, stop
from mayu_py.store import inventory_path

KEPT = (
    "the server's CA and cluster PKI, the lab image, the tenant base image, the logs, and "
    "tenant records until the next up purges them"
)
REMOVED = "machine records and events, UEFI variables, the agent's state"


def lab_data_dir(state: LabState | None, data_dir: Path | None) -> Path:
    """The data dir `down` cleans: the running lab's; `--data-dir` must name the same one."""
    if state is None:
        return data_dir or DEFAULT_DATA_DIR
    recorded = Path(state.data_dir)
    if data_dir is not None and data_dir.resolve() != recorded.resolve():
        raise ConfigError(
            f"the lab that is up uses data dir {recorded}, not {data_dir}: "
            f"run `mayu lab down --data-dir {recorded}` (or without --data-dir)"
        )
    return recorded


def _stop_processes(state: LabState, own: int) -> list[str]:
    done: list[str] = []
    if state.up_pid and state.up_pid != own and running(state.up_pid, "lab"):
        # A still-running `mayu lab up` would restart the VMs we stop: end it first.
        stop([state.up_pid], 15.0)
        done.append(f"stopped mayu lab up (pid {state.up_pid})")
    vm_pids = [r.pid for r in state.vms if r.pid and running(r.pid, "qemu")]
    if vm_pids:
        stop(vm_pids, 0.0)
        done.append(f"killed {len(vm_pids)} VM(s)")
    if running(state.agent_pid, "agent"):
        # Before libvirt is cleaned: a live agent would recreate the tenants' VMs.
        stop([state.agent_pid or 0], 10.0)
        done.append(f"stopped mayu agent (pid {state.agent_pid})")
    if running(state.serve_pid, "serve"):
        # SIGTERM first: serve stops its dnsmasq on the way out.
        stop([state.serve_pid or 0], 10.0)
        done.append(f"stopped mayu serve (pid {state.serve_pid})")
    done += replicas.stop_processes(state)
    if running(state.bmc_pid, "sushy-emulator") or running(state.bmc_pid, "vbmcd"):
        stop([state.bmc_pid or 0], 5.0)
        done.append(f"stopped the lab's BMC emulator (pid {state.bmc_pid})")
    if running(state.site_dhcp_pid, "dnsmasq"):
        stop([state.site_dhcp_pid or 0], 5.0)
        done.append(f"stopped the site's dnsmasq (pid {state.site_dhcp_pid})")
    return done


def _end_namespace(namespace: str, own: int) -> list[str]:
    done: list[str] = []
    rest = [p for p in netns.pids(namespace) if p != own]
    if rest:
        stop(rest, 5.0)
        done.append(f"ended {len(rest)} other process(es) in {namespace}")
    return done


def _forget_machines(data_dir: Path) -> list[str]:
    done: list[str] = []
    forgotten = forget_lab_machines(data_dir)
    if forgotten:
        done.append(f"forgot {forgotten} lab machine(s) in {inventory_path(data_dir)}")
    stores = sorted(work_dir(data_dir).glob(f"lab*{vm.UEFI_VARS_SUFFIX}"))
    for path in stores:
        path.unlink(missing_ok=True)
    if stores:
        done.append(f"removed {len(stores)} UEFI variable store(s) in {work_dir(data_dir)}")
    if tenants.remove_agent_state(data_dir):
        done.append(f"removed the agent's state dir {tenants.agent_dirs(data_dir)[0]}")
    return done


def lab_down(
    namespace: str = topo.NAMESPACE,
    state_file: Path | None = None,
    site_namespace: str = topo.SITE_NAMESPACE,
    data_dir: Path | None = None,
) -> list[str]:
    """Tear the lab down; returns a line per thing that was removed (empty: nothing was up).
    `data_dir`: where the lab's data is when there is no state file (default
    /var/lib/mayu-lab); with a state file it must be the lab's own (else ConfigError)."""
    state_file = state_file or state_path()
    state = LabState.load(state_file)
    data = lab_data_dir(state, data_dir)
    own = os.getpid()
    done = _stop_processes(state, own) if state else []
    done += _end_namespace(site_namespace, own)
    if netns.exists(site_namespace):
        netns.delete(site_namespace)
        done.append(f"deleted network namespace {site_namespace} (site DHCP server, veth)")
    done += _end_namespace(namespace, own)
    done += tenants.remove_libvirt_objects()
    done += domains.remove_lab_domains(work_dir(data))
    if netns.exists(namespace):
        netns.delete(namespace)
        done.append(f"deleted network namespace {namespace} (bridge, taps)")
    done += netns.unlink_host_bridge()
    done += _forget_machines(data)
    done += replicas.remove_files(data)
    if state_file.exists():
        remove(state_file)
        done.append(f"removed {state_file}")
    return done
