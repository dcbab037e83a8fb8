"""What `mayu lab down` forgets, and which data dir it works on."""

from __future__ import annotations

from pathlib import Path

import pytest

from mayu_py.errors import ConfigError
from mayu_py.lab import topology as topo
from mayu_py.lab.inventory import forget_lab_machines
from mayu_py.lab.state import DEFAULT_DATA_DIR, LabState
from mayu_py.lab.teardown import lab_data_dir
from mayu_py.model import Event, Machine
from mayu_py.store import Tx, inventory_path, open_store

OTHER = "52:54:00:12:34:56"


def test_forget_lab_machines_keeps_other_machines(tmp_path: Path) -> None:
    assert forget_lab_machines(tmp_path) == 0
    assert not inventory_path(tmp_path).exists()  # no inventory: none is created
    store = open_store(tmp_path)
    macs = [m.mac for m in topo.lab_machines(3)] + [OTHER]

    def fill(tx: Tx) -> None:
        for mac in macs:
            tx.put_machine(Machine(id=mac, mac=mac))
            tx.add_event(Event(mac, 1.0, "registered", "test"))

    store.atomically(fill)
    assert forget_lab_machines(tmp_path) == 3
    assert [m.id for m in store.list_machines()] == [OTHER]
    assert all(store.events(mac) == [] for mac in macs[:3])
    assert forget_lab_machines(tmp_path) == 0
    store.close()


def _state(data_dir: Path) -> LabState:
    return LabState(namespace=topo.NAMESPACE, data_dir=str(data_dir), url="u", token="t")


def test_down_works_on_the_running_labs_data_dir(tmp_path: Path) -> None:
    lab = tmp_path / "lab-data"
    assert lab_data_dir(None, None) == DEFAULT_DATA_DIR
    assert lab_data_dir(None, tmp_path) == tmp_path  # no state file: --data-dir says where
    assert lab_data_dir(_state(lab), None) == lab
    assert lab_data_dir(_state(lab), lab) == lab
    with pytest.raises(ConfigError, match=f"uses data dir {lab}, not {tmp_path}: run"):
        lab_data_dir(_state(lab), tmp_path)
