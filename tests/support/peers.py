"""Guards for tests that drive real peers: a missing one fails the test that needs it.

A guard runs when a test (or its fixture) runs, never at import: a module of peer tests must
still be collectable on a machine without the peer, so `make test-fast` can deselect it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def require_peers(*tools: str, root: bool = False, files: tuple[Path, ...] = ()) -> None:
    """Fail (never skip) unless every tool is on PATH, every file exists and, if asked, we
    are root."""
    missing = [t for t in tools if shutil.which(t) is None]
    missing += [str(f) for f in files if not f.exists()]
    if root and os.geteuid() != 0:
        missing.append("root")
    if missing:
        pytest.fail(f"missing peer: {', '.join(missing)}", pytrace=False)
