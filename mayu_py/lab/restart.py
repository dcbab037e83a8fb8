"""`mayu lab restart`: network-boot lab machines again, as their reset button would.

Each named machine's VM (every machine when none is named) is killed if it still runs
(recognised by pid and command line) and started afresh inside the lab namespace with the
lab's firmware and accelerator. Its firmware PXE-boots and the server alone decides what the
machine gets: an installed machine its local-boot script, a machine an operator asked to
reinstall a new provisioning window. The earlier console log is kept as `labN.console.log.K`.
Refused while `mayu lab up` still runs: it owns the VMs until it ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from mayu_py.errors import ConfigError
from mayu_py.lab import netns
from mayu_py.lab import topology as topo
from mayu_py.lab.fleet import Fleet
from mayu_py.lab.state import LabState, VmRecord, state_path
from mayu_py.pids import running, stop

QEMU_MARK = "qemu"
STOP_GRACE_S = 5.0


def _chosen(state: LabState, names: Sequence[str]) -> list[VmRecord]:
    by_name = {topo.LabMachine(r.index).name: r for r in state.vms}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(
            f"no lab machine {', '.join(unknown)}: this lab has {', '.join(by_name) or 'none'}"
        )
    return [by_name[n] for n in dict.fromkeys(names)] if names else list(state.vms)


def lab_restart(names: Sequence[str]) -> list[str]:
    """Start the named machines' VMs again (all when `names` is empty); a line per machine."""
    state = LabState.load()
    if state is None or not netns.exists(state.namespace):
        raise ConfigError(f"no lab is up (no state file {state_path()} or namespace)")
    if state.vm_driver == "libvirt":
        raise ConfigError(
            "the lab's machines are libvirt domains with BMCs: power-cycle them through the "
            "BMC, e.g. `mayu lab ctl power cycle MAC`"
        )
    if state.up_pid and running(state.up_pid, "lab"):
        raise ConfigError(
            f"`mayu lab up` (pid {state.up_pid}) still runs and owns the VMs: wait until it ends"
        )
    records = _chosen(state, names)
    stop([r.pid for r in records if r.pid and running(r.pid, QEMU_MARK)], STOP_GRACE_S)
    fleet = Fleet(state, state.work_dir)
    lines = []
    for record in records:
        machine = topo.LabMachine(record.index)
        fleet.boot(machine)
        lines.append(
            f"{machine.name}: VM started again (boot {record.boots}, pid {record.pid}, "
            f"console {record.log})"
        )
    return lines
