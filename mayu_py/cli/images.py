"""`mayu images`: build the images machines boot."""

from __future__ import annotations

from pathlib import Path

import click

from mayu_py.config import load_settings
from mayu_py.images.base import install_lab_base_image
from mayu_py.images.lab import build_lab_image


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
@click.option(
    "--tenant-images",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also install it as tenant base image `lab` into this agent images dir.",
)
def build_lab(
    config_file: str | None,
    data_dir: str | None,
    out: Path | None,
    kernel_version: str | None,
    tenant_images: Path | None,
) -> None:
    """Build the lab node image (Debian kernel + busybox initramfs + real Ignition) and the
    bootable disk image the lab installer writes (disk.img, disk.img.sha256)."""
    if out is None:
        settings = load_settings(config_file, {("data_dir",): data_dir})
        out = settings.assets_root / "lab"
    image = build_lab_image(out, kernel_version)
    click.echo(f"kernel {image.kernel}")
    click.echo(f"initrd {image.initrd}")
    click.echo(f"disk {image.disk} sha256 {image.disk_sha256}")
    click.echo(f"version {image.version}")
    if tenant_images is not None:
        base = install_lab_base_image(tenant_images, image.kernel, image.initrd, image.version)
        click.echo(f"tenant base image {base.name} {base.version} in {tenant_images}")


@images.command("fetch")
@click.argument("name")
@click.option("--version", "version", help="A pinned version (default: the catalog's default).")
@click.option(
    "--catalog",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Pinned image catalog (default: qemu_images/pins.yaml).",
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="State directory.")
@click.option(
    "--assets-root",
    "assets_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Asset store (default: the configured assets.root or DATA_DIR/assets).",
)
@click.option("--mirror", help="Base URL replacing upstream (http://, https://, file://).")
@click.option(
    "--keyring",
    type=click.Path(dir_okay=False, path_type=Path),
    help="OpenPGP keyring (binary or armored) that must have signed the files.",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
def fetch(
    name: str,
    version: str | None,
    catalog: Path | None,
    config_file: str | None,
    data_dir: str | None,
    assets_dir: Path | None,
    mirror: str | None,
    keyring: Path | None,
    progress: bool,
) -> None:
    """Download a pinned production image (flatcar, fedora-coreos), verified, into the store."""
    from mayu_py.images.fetch import fetch_image
    from mayu_py.images.pins import DEFAULT_CATALOG

    if assets_dir is None:
        settings = load_settings(config_file, {("data_dir",): data_dir})
        assets_dir = settings.assets_root
    paths = fetch_image(
        catalog or DEFAULT_CATALOG,
        name,
        version,
        assets_dir,
        mirror=mirror,
        keyring=keyring,
        progress=progress,
    )
    for path in paths:
        click.echo(str(path))
