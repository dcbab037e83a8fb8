"""The lab installer's shell helpers (qemu_images/lab/mayu-disk-lib), run by busybox sh as
the lab image runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mayu_py.command import run
from mayu_py.images.lab import LabInputs

BUSYBOX = Path("/bin/busybox")
LIB = LabInputs().recipe_dir / "mayu-disk-lib"

pytestmark = pytest.mark.peer


def _drop(config: str, tmp_path: Path) -> str:
    cache = tmp_path / "ignition.json"
    cache.write_text(config)
    script = f'. "{LIB}"; drop_config_references "$1"'
    return run([BUSYBOX, "sh", "-c", script, "sh", cache]).stdout


def _compact(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def test_the_merged_cache_loses_its_references_and_nothing_else(tmp_path: Path) -> None:
    # As Ignition 2.14 writes its cache: one line, `config` first in `ignition`. Strings
    # with braces and escaped quotes must not end the object early.
    config = {
        "ignition": {
            "config": {
                "merge": [
                    {
                        "source": 'https://10.0.2.2:8443/ignition?mac=x&token=t{"}\\',
                        "verification": {"hash": "sha512-abc"},
                    }
                ],
                "replace": {"verification": {}},
            },
            "proxy": {},
            "security": {"tls": {"certificateAuthorities": [{"source": "data:,ca"}]}},
            "version": "3.4.0-experimental",
        },
        "storage": {"files": [{"path": "/etc/config", "contents": {"source": "data:,{}"}}]},
    }
    out = json.loads(_drop(_compact(config), tmp_path))
    expected = json.loads(_compact(config))
    del expected["ignition"]["config"]
    assert out == expected


def test_a_config_without_references_passes_unchanged(tmp_path: Path) -> None:
    config = _compact({"ignition": {"version": "3.3.0"}, "storage": {"files": []}})
    assert _drop(config, tmp_path).strip() == config


def test_a_large_config_is_handled(tmp_path: Path) -> None:
    config = {
        "ignition": {"config": {"merge": [{"source": "https://h/x"}]}, "version": "3.3.0"},
        "storage": {"files": [{"path": "/big", "contents": {"source": "data:," + "a" * 300_000}}]},
    }
    out = json.loads(_drop(_compact(config), tmp_path))
    assert out["ignition"] == {"version": "3.3.0"} and out["storage"] == config["storage"]
