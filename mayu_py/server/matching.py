"""Group matching: the most specific group whose every selector matches a machine wins."""

from __future__ import annotations

from mayu_py.config import Group
from mayu_py.model import canonical_mac


def _selector_matches(selector: dict[str, str], attributes: dict[str, str]) -> bool:
    for key, wanted in selector.items():
        have = attributes.get(key)
        if have is None:
            return False
        if key == "mac":
            if canonical_mac(wanted) != have:
                return False
        elif have != wanted:
            return False
    return True


def match_group(groups: list[Group], attributes: dict[str, str]) -> Group | None:
    """Return the matching group with the most selector keys (ties are refused at start-up)."""
    best: Group | None = None
    for group in groups:
        if _selector_matches(group.selector, attributes) and (
            best is None or len(group.selector) > len(best.selector)
        ):
            best = group
    return best
