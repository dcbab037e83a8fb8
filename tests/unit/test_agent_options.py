"""`mayu agent`'s flags reach `AgentOptions`: the lab's agent drains with its short timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mayu_py.agent import loop
from mayu_py.agent.loop import AgentOptions
from mayu_py.agent.source import DesiredSource
from mayu_py.cli.agent import agent
from mayu_py.lab.tenants import DRAIN_TIMEOUT_S, agent_argv


def _options(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> AgentOptions:
    seen: list[AgentOptions] = []

    def run_agent(options: AgentOptions, source: DesiredSource) -> None:
        seen.append(options)

    monkeypatch.setattr(loop, "run_agent", run_agent)
    result = CliRunner().invoke(agent, args, env={"MAYU_TOKEN": "t"})
    assert result.exit_code == 0, result.output
    (options,) = seen
    return options


def test_the_lab_agent_drains_with_a_short_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    argv = agent_argv(tmp_path)
    args = argv[argv.index("agent") + 1 :] + ["--once"]
    options = _options(monkeypatch, args)
    assert (options.drain, options.drain_timeout) == ("kube", DRAIN_TIMEOUT_S)
    assert DRAIN_TIMEOUT_S < 60.0
    default = _options(monkeypatch, ["--host-name", "h1", "--once"])
    assert (default.drain, default.drain_timeout) == ("kube", 60.0)
    none = _options(monkeypatch, ["--host-name", "h1", "--once", "--drain", "none"])
    assert none.drain == "none"
