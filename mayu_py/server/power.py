"""The admin side of BMC power: a machine's BMC in the inventory, and BMC actions queued.

Nothing here talks to a BMC. A request is checked at once (a machine with no BMC is a 409,
an unknown one a 404), queued in the store in the same transaction as its `*-requested`
events, and the runner process (power_runner) is rung; the API answers 202 with the action,
which the client polls. The reinstall and the "disk again once installed" rule queue their
actions inside the transactions of MachineService.reinstall and Delivery.report.

A BMC may be registered for a MAC that never booted yet (an operator registers a rack, then
powers the machines on); its events are the machine's events once it is discovered. The
password is sealed (bmc.sealing) before it reaches the store and is never returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mayu_py.bmc.coordinates import BmcCoordinates, BmcProtocol
from mayu_py.bmc.records import ActionKind, BmcAction, StoredBmc
from mayu_py.bmc.sealing import PasswordSealer
from mayu_py.errors import BadRequest, Conflict, NotFound
from mayu_py.model import Event, canonical_mac
from mayu_py.server import doorbell
from mayu_py.store import Store, Tx

log = logging.getLogger(__name__)

NO_BMC = "no BMC configured for this machine (set one with `mayuctl bmc set`)"
POWER_ACTIONS = {
    "on": ActionKind.POWER_ON,
    "off": ActionKind.POWER_OFF,
    "cycle": ActionKind.POWER_CYCLE,
    "status": ActionKind.POWER_STATUS,
}
BOOT_DEVICES = {"pxe": ActionKind.BOOTDEV_PXE, "disk": ActionKind.BOOTDEV_DISK}
MAX_ACTION_ID = (1 << 63) - 1  # the store's integer ids
DISK_AGAIN = "installed after a reinstall set PXE: boot from disk again"


def public_bmc(stored: StoredBmc) -> dict[str, Any]:
    """What the API shows of a BMC: everything but the password."""
    return dict(stored.settings) | {"updated": stored.updated}


def queue(
    tx: Tx, mac: str, kind: ActionKind, cause: str, source: str | None, now: float
) -> BmcAction:
    """Queue an action with one `<family>-requested` event per step that changes the
    machine (a status read records none)."""
    action = tx.add_action(BmcAction(mac, kind, now, cause, source))
    for step in action.steps:
        if step.recorded:
            tx.add_event(
                Event(
                    mac,
                    now,
                    f"{step.family}-requested",
                    f"{step.words} requested ({cause})",
                    source,
                    details={"action_id": action.id, "action": str(kind)},
                )
            )
    return action


class PowerService:
    """BMC coordinates in the inventory and BMC actions queued for the runner."""

    def __init__(
        self,
        store: Store,
        sealer: PasswordSealer,
        data_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.data_dir = data_dir
        self.clock = clock

    # -- the BMC in the inventory -----------------------------------------------------------

    def set_bmc(self, machine_id: str, body: Any, source: str | None) -> dict[str, Any]:
        """Set (or replace) a machine's BMC; 422 naming the field when invalid."""
        mac = canonical_mac(machine_id)
        coordinates = BmcCoordinates.from_dict(body)
        settings = coordinates.public()
        sealed = self.sealer.seal(mac, coordinates.password)

        def txn(tx: Tx) -> StoredBmc:
            now = self.clock()
            before = tx.get_bmc(mac)
            stored = StoredBmc(
                mac,
                settings,
                sealed,
                disk_after_install=before.disk_after_install if before else False,
                updated=now,
            )
            tx.put_bmc(stored)
            tx.add_event(
                Event(
                    mac,
                    now,
                    "bmc-set",
                    f"BMC {'replaced' if before else 'set'}: {coordinates.label}",
                    source,
                    details={"bmc": settings},
                )
            )
            return stored

        stored = self.store.atomically(txn)
        log.info("BMC of %s set: %s", mac, coordinates.label)
        return public_bmc(stored)

    def get_bmc(self, machine_id: str) -> dict[str, Any]:
        mac = canonical_mac(machine_id)
        stored = self.store.get_bmc(mac)
        if stored is None:
            raise NotFound(NO_BMC, {"id": mac})
        return public_bmc(stored)

    def delete_bmc(self, machine_id: str, source: str | None) -> None:
        mac = canonical_mac(machine_id)

        def txn(tx: Tx) -> None:
            if tx.get_bmc(mac) is None:
                raise NotFound(NO_BMC, {"id": mac})
            tx.delete_bmc(mac)
            tx.add_event(Event(mac, self.clock(), "bmc-deleted", "BMC removed", source))

        self.store.atomically(txn)

    def known(self, machine_id: str) -> bool:
        """True when the MAC has a BMC (a machine registered before it ever booted)."""
        return self.store.get_bmc(canonical_mac(machine_id)) is not None

    def coordinates(self, stored: StoredBmc) -> BmcCoordinates:
        """The full coordinates, password opened (for the runner only)."""
        password = self.sealer.open(stored.machine_id, stored.sealed_password)
        return BmcCoordinates.from_dict(stored.settings | {"password": password})

    # -- actions ----------------------------------------------------------------------------

    def power(self, machine_id: str, action: Any, source: str | None) -> BmcAction:
        if action not in POWER_ACTIONS:
            raise BadRequest('body must be {"action": "on"|"off"|"cycle"|"status"}')
        return self.request(machine_id, POWER_ACTIONS[action], "operator", source)

    def boot_device(self, machine_id: str, device: Any, source: str | None) -> BmcAction:
        if device not in BOOT_DEVICES:
            raise BadRequest('body must be {"device": "pxe"|"disk"}')
        return self.request(machine_id, BOOT_DEVICES[device], "operator", source)

    def request(
        self, machine_id: str, kind: ActionKind, cause: str, source: str | None
    ) -> BmcAction:
        """Queue one action for the runner; 404/409 when the machine or its BMC is missing."""
        mac = canonical_mac(machine_id)

        def txn(tx: Tx) -> BmcAction:
            if tx.get_bmc(mac) is None:
                if tx.get_machine(mac) is None:
                    raise NotFound("no such machine", {"id": mac})
                raise Conflict(NO_BMC, {"id": mac})
            return queue(tx, mac, kind, cause, source, self.clock())

        action = self.store.atomically(txn)
        self.ring()
        return action

    def action(self, action_id: int) -> BmcAction:
        found = self.store.get_action(action_id) if 0 <= action_id <= MAX_ACTION_ID else None
        if found is None:
            raise NotFound("no such action", {"id": action_id})
        return found

    def machine_actions(self, machine_id: str) -> list[BmcAction]:
        return self.store.machine_actions(canonical_mac(machine_id))

    def ring(self) -> None:
        """Tell the runner to look at the queue now (after the queueing transaction)."""
        doorbell.ring(self.data_dir)

    # -- the reinstall's actions (inside other services' transactions) ----------------------

    def queue_reinstall(self, tx: Tx, mac: str, source: str | None, now: float) -> BmcAction | None:
        """With a BMC: next boot PXE, then a power cycle; the disk comes back once the
        machine reports installed. None without a BMC (the operator power-cycles)."""
        stored = tx.get_bmc(mac)
        if stored is None:
            return None
        tx.put_bmc(replace(stored, disk_after_install=True, updated=now))
        return queue(tx, mac, ActionKind.REINSTALL, "reinstall", source, now)

    @staticmethod
    def queue_disk_after_install(tx: Tx, mac: str, now: float) -> BmcAction | None:
        """A machine whose reinstall set PXE reported installed: boot from disk again
        (both emulators, and many BMCs, keep a PXE override for every later boot).

        Redfish: the boot device alone. The emulator's PXE override keeps the disk after
        the NIC, so the installer's reboot reaches the disk through the local-boot script.
        IPMI: the boot device, then a power cycle. An IPMI boot device applies at the next
        power-on, and virtualbmc's PXE override leaves the NIC as the only boot device:
        the machine powered on by the reinstall has no BIOS disk (SeaBIOS boots strictly
        from the list), so the local-boot script's `sanboot` fails and its reboot loops on
        the network; the installer has synced the disk before it reports `installed`."""
        stored = tx.get_bmc(mac)
        if stored is None or not stored.disk_after_install:
            return None
        tx.put_bmc(replace(stored, disk_after_install=False, updated=now))
        ipmi = stored.settings.get("protocol") == str(BmcProtocol.IPMI)
        kind = ActionKind.DISK_BOOT if ipmi else ActionKind.BOOTDEV_DISK
        return queue(tx, mac, kind, DISK_AGAIN, "server", now)
