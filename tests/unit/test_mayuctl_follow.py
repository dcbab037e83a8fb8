"""mayuctl following a BMC action and printing events, against a scripted client."""

from __future__ import annotations

from typing import Any

import pytest

from mayu_py.cli.follow import FollowError, event_line, follow_action

QUEUED = {"id": 7, "machine_id": "52:54:00:00:00:01", "action": "power-on", "state": "queued"}


class Scripted:
    """Answers GET /api/v1/actions/7 with the next state of a script."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)

    def action(self, action_id: int) -> dict[str, Any]:
        assert action_id == 7
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_an_action_is_followed_until_done() -> None:
    done = QUEUED | {"state": "done", "result": {"state": "on"}}
    client = Scripted(QUEUED | {"state": "running"}, done)
    naps: list[float] = []
    assert follow_action(client, QUEUED, 10, naps.append) == done  # type: ignore[arg-type]
    assert len(naps) == 2


def test_a_failed_action_is_its_one_line_error() -> None:
    failed = QUEUED | {"state": "failed", "error": "BMC ipmi 10.0.0.9: power on: unreachable"}
    with pytest.raises(FollowError) as caught:
        follow_action(Scripted(failed), QUEUED, 10, lambda _s: None)  # type: ignore[arg-type]
    assert caught.value.message == "52:54:00:00:00:01: BMC ipmi 10.0.0.9: power on: unreachable"


def test_an_action_that_never_ends_times_out_naming_where_to_look() -> None:
    with pytest.raises(FollowError, match=r"power-on still running after 0.2 s .*actions/7"):
        follow_action(Scripted(QUEUED | {"state": "running"}), QUEUED, 0.2)  # type: ignore[arg-type]


def test_event_lines_carry_time_kind_state_change_and_source() -> None:
    event = {"time": 0.25, "kind": "transition", "cause": "report installed", "from": "installing",
             "to": "installed", "source": "10.0.0.7"}  # fmt: skip
    line = event_line(event)
    assert line.endswith(
        "transition             report installed (installing -> installed)  [10.0.0.7]"
    )
    assert line[:23].count(":") == 2 and line[19:23] == ".250"
    same = event | {"kind": "power-acknowledged", "from": None, "to": None}
    assert "->" not in event_line(same)
