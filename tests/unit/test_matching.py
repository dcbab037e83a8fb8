from __future__ import annotations

from mayu_py.config import Group
from mayu_py.server.matching import match_group

GROUPS = [
    Group(name="default", profile="worker"),
    Group(name="workers", profile="worker", selector={"role": "worker"}),
    Group(
        name="special",
        profile="controller",
        selector={"role": "worker", "mac": "52-54-00-00-00-09"},
    ),
]


def test_most_specific_match_wins() -> None:
    attrs = {"role": "worker", "mac": "52:54:00:00:00:09"}
    assert match_group(GROUPS, attrs).name == "special"
    assert match_group(GROUPS, {"role": "worker", "mac": "52:54:00:00:00:01"}).name == "workers"
    assert match_group(GROUPS, {"mac": "52:54:00:00:00:01"}).name == "default"


def test_no_match() -> None:
    assert match_group(GROUPS[1:], {"mac": "52:54:00:00:00:01"}) is None
