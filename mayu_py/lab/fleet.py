"""The lab's VMs as processes: boot (again), reap, and keep their records in the state file."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from mayu_py.lab import topology as topo
from mayu_py.lab import vm
from mayu_py.lab.processes import spawn
from mayu_py.lab.state import LabState, VmRecord


class Fleet:
    """One qemu process per lab machine, started inside the lab namespace."""

    def __init__(self, state: LabState, work: Path) -> None:
        self.state = state
        self.work = work
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def record(self, m: topo.LabMachine) -> VmRecord:
        for record in self.state.vms:
            if record.index == m.index:
                return record
        record = VmRecord(
            index=m.index,
            mac=m.mac,
            uuid=m.uuid,
            serial=m.serial,
            ip=m.ip,
            tap=m.tap,
            log=str(self.work / f"{m.name}.console.log"),
        )
        self.state.vms.append(record)
        return record

    def boot(self, m: topo.LabMachine) -> None:
        """Start the machine's qemu; an earlier boot's console log is kept as `.log.N`."""
        record = self.record(m)
        console_log = Path(record.log)
        if record.boots and console_log.exists():
            console_log.replace(console_log.with_name(f"{console_log.name}.{record.boots}"))
        elif console_log.exists():
            console_log.unlink()
        argv = vm.qemu_argv(m, self.state.accel, console_log, self.state.firmware)
        proc = spawn(argv, self.state.namespace, self.work / f"{m.name}.qemu.log")
        self.procs[m.index] = proc
        record.pid = proc.pid
        record.started = time.time()
        record.first_started = record.first_started or record.started
        record.boots += 1
        record.exited = record.exit_code = None
        self.state.save()

    def reap(self) -> dict[int, str]:
        """Record VMs that exited; returns index -> `running` / `exited N`."""
        status = {}
        for record in self.state.vms:
            proc = self.procs.get(record.index)
            if proc is None:
                continue
            code = proc.poll()
            if code is not None and record.exited is None:
                record.exited, record.exit_code = time.time(), code
                self.state.save()
            status[record.index] = "running" if code is None else f"exited {code}"
        return status
