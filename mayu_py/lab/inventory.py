"""The lab machines' records in the lab server's inventory: the lab owns them.

`mayu lab down` forgets them (each record with its events) directly in the store of the lab's
data dir, once its server has stopped (or when it died), so that the next `up` starts every
machine from a fresh record instead of an earlier run's state. `up` does the same before its
server starts, for records a `down` did not reach (e.g. one given another data dir).
"""

from __future__ import annotations

from pathlib import Path

from mayu_py.lab import topology as topo
from mayu_py.store import Tx, inventory_path, open_store


def forget_lab_machines(data_dir: Path) -> int:
    """Delete every lab machine (lab MAC) from data_dir's inventory; how many there were."""
    if not inventory_path(data_dir).exists():
        return 0
    store = open_store(data_dir)
    try:
        macs = [m.id for m in store.list_machines() if topo.is_lab_mac(m.mac)]

        def forget(tx: Tx) -> None:
            for mac in macs:
                tx.delete_machine(mac)

        store.atomically(forget)
    finally:
        store.close()
    return len(macs)
