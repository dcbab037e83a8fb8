"""Where the Ignition and static-manifest templates live.

A source checkout keeps them at the repository root beside the package; an installed wheel may
ship them as package data inside `mayu_py/`. The first directory that exists wins.
"""

from __future__ import annotations

from pathlib import Path

from mayu_py.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent.parent


def _resource_dir(name: str) -> Path:
    candidates = (_PACKAGE / name, _PACKAGE.parent / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"template directory {name!r} not found (tried {tried})")


def default_templates_dir() -> Path:
    """The directory of the shipped Ignition templates (`ignition_templates/`)."""
    return _resource_dir("ignition_templates")


def default_manifests_dir() -> Path:
    """The directory of the shipped static pod manifest templates (`static_manifests/`)."""
    return _resource_dir("static_manifests")
