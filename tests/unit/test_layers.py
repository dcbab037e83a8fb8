"""Layers only import downward (DESIGN section 6): cli > server | agent | lab > store | api_client
> tenants > images | render | dhcp | pki | bmc | virt | ingress > model | config | command |
supervisor | pids > kubernetes_releases > errors | files. No sideways imports, absolute or relative.

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
    {"server", "agent", "lab"},
    {"store", "api_client"},
    {"tenants"},
    {"images", "render", "dhcp", "pki", "bmc", "virt", "ingress"},
    {"model", "config", "command", "supervisor", "pids"},
    {"kubernetes_releases"},
    {"errors", "files"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _component(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mayu_py" else None


def _absolute(path: Path, node: ast.ImportFrom) -> list[str]:
    """The modules a relative `from ... import` names, as absolute names."""
    package = list(path.relative_to(PACKAGE.parent).parts[:-1])  # a module's or __init__'s
    base = package[: len(package) - (node.level - 1)]
    if node.module:
        return [".".join([*base, node.module])]
    return [".".join([*base, alias.name]) for alias in node.names]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.update(_absolute(path, node))
            elif node.module:
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


@pytest.mark.parametrize(
    ("file", "source", "expected"),
    [
        ("lab/runner.py", "from ..server import provisioning", {"mayu_py.server"}),
        ("lab/runner.py", "from ..agent.host import X", {"mayu_py.agent.host"}),
        ("lab/runner.py", "from . import vm", {"mayu_py.lab.vm"}),
        ("lab/__init__.py", "from .state import X", {"mayu_py.lab.state"}),
        ("config.py", "from .errors import X", {"mayu_py.errors"}),
    ],
)
def test_relative_imports_are_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, source: str, expected: set[str]
) -> None:
    """A relative import is checked like the absolute one it stands for."""
    fake = tmp_path / "mayu_py"
    (fake / file).parent.mkdir(parents=True, exist_ok=True)
    (fake / file).write_text(source + "\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    assert _imports(fake / file) == expected
