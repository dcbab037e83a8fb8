"""`--vms libvirt`: the lab's machines as libvirt domains, powered on through their BMCs.

`start` defines every machine's domain (lab.domains), starts the BMC emulator for them
and registers each machine's BMC with the server (lab.bmcs); `boot` powers a machine on
through the server's BMC runner, the way `mayuctl power on` does. A domain restarts by
itself when its guest reboots (the installer's reboot into the disk), so nothing is booted
again by the lab: `reap` only reports the domains' libvirt states.
"""

from __future__ import annotations

import time
from pathlib import Path

from mayu_py.lab import bmcs, domains
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.fleet import Fleet
from mayu_py.lab.state import LabState
from mayu_py.virt.host import LibvirtHost


class LibvirtFleet(Fleet):
    """One libvirt domain and one BMC (Redfish system or IPMI BMC) per lab machine."""

    def __init__(self, state: LabState, work: Path, client: LabClient) -> None:
        super().__init__(state, work)
        self.client = client
        self.host = LibvirtHost(domains.LIBVIRT_URI, attempts=1)

    def start(self, machines: list[topo.LabMachine]) -> None:
        """Define the domains (powered off), start their BMC emulator, register the BMCs."""
        for m in machines:
            domains.define_machine(self.host, m, self.state.accel, self.work, self.state.firmware)
            self.record(m)
        self.state.save()
        emulator, coordinates = bmcs.start(self.work, machines, self.state.bmc_protocol)
        self.state.bmc_pid = emulator.pid
        self.state.bmc_log = str(emulator.log_file)
        self.state.save()
        for mac, coords in coordinates.items():
            bmcs.register(self.client, mac, coords)

    def boot(self, m: topo.LabMachine) -> None:
        """Power the machine on through its BMC."""
        record = self.record(m)
        record.started = time.time()
        record.first_started = record.first_started or record.started
        record.boots += 1
        self.state.save()
        bmcs.power_on(self.client, m)

    def reap(self) -> dict[int, str]:
        """The machines' domain states (running, shutoff, ...), by index."""
        states = domains.domain_states(self.host)
        return {
            r.index: states.get(topo.LabMachine(r.index).domain, "undefined")
            for r in self.state.vms
        }

    def close(self) -> None:
        self.host.close()
