"""`--vms libvirt`: every lab machine's BMC, in the server's inventory, powering it on.

Redfish (`--bmc redfish`, the default): one `sushy-emulator` (libvirt driver) inside the lab
namespace serves the lab's domains, each as its own Redfish system (its UUID), on the
namespace's loopback: only the server's BMC runner, which lives there too, reaches it.
IPMI (`--bmc ipmi`): one `vbmcd` there, with one IPMI BMC per domain on UDP port
IPMI_PORT_BASE + N of the same loopback (cipher suite 3: virtualbmc speaks SHA-1 only).

The lab registers each machine's BMC through the admin API (`PUT /api/v1/machines/MAC/bmc`,
so the password is sealed by the server and never shown) and powers the machines on through
it (`POST .../power`), as an operator would with `mayuctl bmc set` and `mayuctl power on`.
The emulator outlives `up` (like the server); its pid is in the state file and `down` ends
it (and every other process of the namespace).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from mayu_py.bmc.coordinates import IPMI_PASSWORD_MAX, BmcCoordinates
from mayu_py.errors import ConfigError
from mayu_py.lab import topology as topo
from mayu_py.lab.api import LabClient
from mayu_py.lab.bmc_emulators import IpmiEmulators, RedfishEmulator

ACTION_TIMEOUT = 60.0


def bmc_dir(work: Path) -> Path:
    return work / "bmc"


def _password() -> str:
    return secrets.token_urlsafe(IPMI_PASSWORD_MAX)[:IPMI_PASSWORD_MAX]  # IPMI's limit, ASCII


def start(
    work: Path, machines: list[topo.LabMachine], protocol: str
) -> tuple[RedfishEmulator | IpmiEmulators, dict[str, BmcCoordinates]]:
    """The lab's BMC emulator for `machines`, serving once this returns, and each machine's
    BMC coordinates by MAC."""
    if protocol == "ipmi":
        ipmi = IpmiEmulators(
            bmc_dir(work), control_port=topo.IPMI_CONTROL_PORT, netns=topo.NAMESPACE
        )
        coordinates = {
            m.mac: ipmi.add_domain(
                m.domain,
                address=topo.BMC_IP,
                port=topo.IPMI_PORT_BASE + m.index,
                username=topo.BMC_USER,
                password=_password(),
            )
            for m in machines
        }
        ipmi.start()
        return ipmi, coordinates
    redfish = RedfishEmulator(
        bmc_dir(work),
        listen_ip=topo.BMC_IP,
        port=topo.BMC_PORT,
        username=topo.BMC_USER,
        password=_password(),
        allowed=[m.uuid for m in machines],
        netns=topo.NAMESPACE,
    )
    redfish.start()
    return redfish, {m.mac: redfish.coordinates(m.uuid) for m in machines}


def register(client: LabClient, mac: str, coordinates: BmcCoordinates) -> None:
    """The machine's BMC coordinates in the server's inventory."""
    client.set_bmc(mac, coordinates.public() | {"password": coordinates.password})


def finish(client: LabClient, queued: dict[str, Any], timeout: float = ACTION_TIMEOUT) -> None:
    """Wait until the server's BMC runner carried out a queued action; ConfigError if not."""
    action_id = int(queued["id"])
    deadline = time.monotonic() + timeout
    while True:
        action = client.action(action_id)
        if action["state"] == "done":
            return
        if action["state"] == "failed" or time.monotonic() > deadline:
            raise ConfigError(
                f"BMC action {action['action']} for {action['machine_id']} {action['state']}: "
                f"{action.get('error') or 'no answer within the timeout'}"
            )
        time.sleep(0.2)


def power_on(client: LabClient, m: topo.LabMachine) -> None:
    """Power the machine on through its BMC (queued on the server, acknowledged by it)."""
    finish(client, client.power(m.mac, "on"))
