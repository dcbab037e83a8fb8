"""The lab image builder's inputs, without building anything: kernel choice and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mayu_py.errors import ConfigError
from mayu_py.images.lab import LabInputs, build_lab_image, default_kernel_version


def test_default_kernel_version_picks_the_newest_with_a_kernel(tmp_path: Path) -> None:
    boot, mods = tmp_path / "boot", tmp_path / "modules"
    for v in ("6.1.0-9-amd64", "6.1.0-56-amd64", "6.10.0-1-amd64"):
        (mods / v).mkdir(parents=True)
    boot.mkdir()
    for v in ("6.1.0-9-amd64", "6.1.0-56-amd64"):  # 6.10 has modules but no vmlinuz
        (boot / f"vmlinuz-{v}").write_bytes(b"k")
    inputs = LabInputs(boot_dir=boot, modules_root=mods)
    assert default_kernel_version(inputs) == "6.1.0-56-amd64"


def test_missing_kernel_is_a_config_error_naming_the_package(tmp_path: Path) -> None:
    inputs = LabInputs(boot_dir=tmp_path, modules_root=tmp_path)
    with pytest.raises(ConfigError, match="linux-image-amd64"):
        build_lab_image(tmp_path / "out", inputs=inputs)
