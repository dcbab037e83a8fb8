"""`mayu lab restart`: which machines it boots again, and when it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from mayu_py.errors import ConfigError
from mayu_py.lab import topology as topo
from mayu_py.lab.restart import _chosen, lab_restart
from mayu_py.lab.state import LabState, VmRecord


def _state(count: int) -> LabState:
    vms = [
        VmRecord(m.index, m.mac, m.uuid, m.serial, m.ip, m.tap, f"/x/{m.name}.console.log")
        for m in topo.lab_machines(count)
    ]
    return LabState(namespace=topo.NAMESPACE, data_dir="/x", url="u", token="t", vms=vms)


def test_none_named_is_every_machine_and_names_keep_their_order_once() -> None:
    state = _state(3)
    assert [r.index for r in _chosen(state, [])] == [1, 2, 3]
    assert [r.index for r in _chosen(state, ["lab3", "lab1", "lab3"])] == [3, 1]


def test_an_unknown_machine_is_one_line_naming_the_labs_machines() -> None:
    with pytest.raises(ConfigError, match=r"^no lab machine lab4, vm1: this lab has lab1, lab2$"):
        _chosen(_state(2), ["lab1", "lab4", "vm1"])


def test_without_a_lab_nothing_is_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAYU_LAB_STATE", str(tmp_path / "state.json"))
    with pytest.raises(ConfigError, match="^no lab is up"):
        lab_restart(["lab1"])
