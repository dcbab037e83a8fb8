"""`mayu lab up` decides from this run's events only: the reboot policy and the outcome."""

from __future__ import annotations

from typing import Any

import pytest

from mayu_py.lab import topology as topo
from mayu_py.lab.display import rows
from mayu_py.lab.state import Phase, VmRecord
from mayu_py.lab.watch import (
    MAX_BOOTS,
    Outcome,
    Snapshot,
    Watcher,
    installed_since,
    judge,
    to_reboot,
)

RUN_START = 1000.0
M1, M2 = topo.lab_machines(2)


def _event(to: str, time: float) -> dict[str, Any]:
    return {"kind": "transition", "to": to, "time": time}


class FakeClient:
    """The two admin reads the watcher makes, with a count of event reads."""

    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records
        self.event_reads: list[str] = []

    def machines(self) -> dict[str, dict[str, Any]]:
        return {mac: {"mac": mac, "state": r["state"]} for mac, r in self.records.items()}

    def machine(self, mac: str) -> dict[str, Any]:
        self.event_reads.append(mac)
        return self.records[mac]

    def tenants(self) -> list[dict[str, Any]]:
        return [{"metadata": {"name": "demo-1"}, "status": {"phase": "Ready"}}]


def test_installed_only_by_an_event_of_this_run() -> None:
    earlier = [_event("installing", 10.0), _event("installed", 20.0)]
    assert not installed_since(earlier, RUN_START)
    assert installed_since([*earlier, _event("installed", RUN_START + 5)], RUN_START)
    assert installed_since([_event("running", RUN_START)], RUN_START)
    assert not installed_since([_event("installing", RUN_START + 5)], RUN_START)


def test_a_record_left_installed_by_an_earlier_run_does_not_count() -> None:
    client = FakeClient(
        {
            M1.mac: {"state": "installed", "events": [_event("installed", 20.0)]},
            M2.mac: {"state": "installed", "events": [_event("installed", RUN_START + 3)]},
        }
    )
    watcher = Watcher(client, since=RUN_START)  # type: ignore[arg-type]
    snapshot = watcher.poll(with_tenants=False)
    assert snapshot.installed == {M2.mac} and snapshot.tenants is None
    assert judge(snapshot, [M1, M2], None, agent_exited=False, timed_out=False) is None
    # The earlier run's machine installs again during this run: now it counts.
    client.records[M1.mac]["events"].append(_event("installed", RUN_START + 9))
    snapshot = watcher.poll(with_tenants=True)
    assert snapshot.installed == {M1.mac, M2.mac}
    assert judge(snapshot, [M1, M2], ["demo-1"], agent_exited=False, timed_out=False) is (
        Outcome.DONE
    )
    assert client.event_reads == [M1.mac, M2.mac, M1.mac]  # confirmed machines: read once
    row = rows([VmRecord(1, M1.mac, "", "", "", "", "", started=RUN_START)], snapshot, {})
    assert row[0].state == "installed"


def test_display_marks_an_earlier_runs_state() -> None:
    vm = VmRecord(1, M1.mac, "", "", "", "", "", started=RUN_START)
    snapshot = Snapshot({M1.mac: {"state": "installed"}}, frozenset())
    assert rows([vm], snapshot, {})[0].state == "installed (earlier run)"


def _vm(index: int, exited: bool, boots: int) -> VmRecord:
    m = topo.LabMachine(index)
    return VmRecord(index, m.mac, m.uuid, m.serial, m.ip, m.tap, "log", boots=boots,
                    exited=RUN_START if exited else None)  # fmt: skip


def test_reboot_policy() -> None:
    running, exited, installed, worn_out = (
        _vm(1, False, 1),
        _vm(2, True, 1),
        _vm(3, True, 1),
        _vm(4, True, MAX_BOOTS),
    )
    chosen = to_reboot([running, exited, installed, worn_out], frozenset({installed.mac}))
    assert chosen == [exited]


@pytest.mark.parametrize(
    ("installed", "agent_exited", "timed_out", "outcome"),
    [
        ({M1.mac, M2.mac}, True, True, Outcome.DONE),
        ({M1.mac}, True, True, Outcome.AGENT_EXITED),
        ({M1.mac}, False, True, Outcome.TIMEOUT),
        ({M1.mac}, False, False, None),
    ],
)
def test_judge(
    installed: set[str], agent_exited: bool, timed_out: bool, outcome: Outcome | None
) -> None:
    snapshot = Snapshot({}, frozenset(installed))
    assert judge(snapshot, [M1, M2], None, agent_exited, timed_out) is outcome


def test_tenants_must_be_ready_once_watched() -> None:
    both = frozenset({M1.mac, M2.mac})
    provisioning = [{"metadata": {"name": "demo-1"}, "status": {"phase": "Provisioning"}}]
    snapshot = Snapshot({}, both, provisioning)
    assert judge(snapshot, [M1, M2], ["demo-1"], False, False) is None
    assert judge(Snapshot({}, both, []), [M1, M2], ["demo-1"], False, False) is None


def test_outcomes_become_phases() -> None:
    assert {o: o.phase for o in Outcome} == {
        Outcome.DONE: Phase.READY,
        Outcome.TIMEOUT: Phase.TIMEOUT,
        Outcome.AGENT_EXITED: Phase.AGENT_EXITED,
    }
    assert Phase.AGENT_EXITED == "agent-exited"  # what state files and `status` show
