"""Layers only import downward (DESIGN section 6): cli > lab > server | agent > store | api_client
> tenants > images | render | dhcp | pki | bmc > model | config | command > kubernetes_releases >
errors. No sideways imports.

`tenants` sits above render and pki (a tenant node's Ignition needs both) and below the two
that keep or fetch its types: `store` (typed tenant records) and `api_client` (the agent's wire
types)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mayu_py"
LAYERS = [
    {"cli"},
    {"lab"},
    {"server", "agent"},
    {"store", "api_client"},
    {"tenants"},
    {"images", "render", "dhcp", "pki", "bmc"},
    {"model", "config", "command"},
    {"kubernetes_releases"},
    {"errors"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _component(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mayu_py" else None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem in RANK)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_downward(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    own = relative.parts[0].removesuffix(".py")
    assert own in RANK, f"{relative}: component {own!r} has no layer"
    for module in _imports(path):
        other = _component(module)
        if other is None or other == own:
            continue
        assert other in RANK, f"{relative} imports {module}: no layer for {other!r}"
        assert RANK[other] > RANK[own], (
            f"{relative} ({own}, layer {RANK[own]}) imports {module} (layer {RANK[other]})"
        )
