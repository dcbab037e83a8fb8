"""The example TenantCluster of DESIGN section 3, as shipped in docs/examples/tenant.yaml."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "tenant.yaml"
_ACME: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())


def acme() -> dict[str, Any]:
    """A fresh deep copy of the example tenant `acme` (1 master, 2 workers)."""
    return copy.deepcopy(_ACME)
