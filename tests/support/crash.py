"""An agent pass that dies after its k-th action, as a kill -9 would end it."""

from __future__ import annotations

import pytest

from mayu_py.agent import plan as p
from mayu_py.agent.loop import Agent


class Killed(BaseException):
    """The agent process dies here: nothing after this point runs."""


def run_killed_after(agent: Agent, k: int) -> p.Action:
    """agent.run_once(), killed right after the k-th action took effect, before the loop
    recorded or reported anything about it; returns that action."""
    done: list[p.Action] = []
    apply = agent.applier.apply

    def apply_then_die(action: p.Action) -> None:
        apply(action)
        done.append(action)
        if len(done) == k:
            raise Killed

    agent.applier.apply = apply_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        agent.run_once()
    return done[-1]
