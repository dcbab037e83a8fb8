"""`mayu images`: build the images machines boot."""

from __future__ import annotations

from pathlib import Path

import click

from mayu_py.config import load_settings
from mayu_py.images.lab import build_lab_image
from mayu_py.server.provisioning import assets_root


@click.group("images")
def images() -> None:
    """Build boot images into the asset root."""


@images.command("build-lab")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="State directory.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (default: ASSET_ROOT/lab, what the default profiles boot).",
)
@click.option("--kernel-version", help="Kernel from /lib/modules (default: the newest).")
def build_lab(
    config_file: str | None, data_dir: str | None, out: Path | None, kernel_version: str | None
) -> None:
    """Build the lab node image (Debian kernel + busybox initramfs + real Ignition)."""
    if out is None:
        settings = load_settings(config_file, {("data_dir",): data_dir})
        out = assets_root(settings) / "lab"
    image = build_lab_image(out, kernel_version)
    click.echo(f"kernel {image.kernel}")
    click.echo(f"initrd {image.initrd}")
    click.echo(f"version {image.version}")
