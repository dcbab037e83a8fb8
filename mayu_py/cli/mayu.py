"""`mayu`: the server, the node agent, the lab, images and PKI maintenance."""

from __future__ import annotations

import click

from mayu_py.cli.agent import agent
from mayu_py.cli.entry import run
from mayu_py.cli.images import images
from mayu_py.cli.lab import lab
from mayu_py.cli.logging_setup import configure_logging
from mayu_py.cli.serve import serve
from mayu_py.cli.store_ops import store


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """mayu: PXE-boot racks into Kubernetes hosts, and run tenant clusters on them."""
    configure_logging(verbose)


cli.add_command(serve)
cli.add_command(lab)
cli.add_command(images)
cli.add_command(agent)
cli.add_command(store)


@cli.group()
def pki() -> None:
    """Cluster PKI maintenance."""


@pki.command("rotate")
@click.option("--config", "config_file", type=click.Path(dir_okay=False))
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option(
    "--within-days", default=30, show_default=True, help="Re-issue leaves expiring sooner."
)
@click.option("--force", is_flag=True, help="Re-issue every leaf certificate now.")
def pki_rotate(
    config_file: str | None, data_dir: str | None, within_days: int, force: bool
) -> None:
    """Re-issue leaf certificates before they expire; the CAs stay."""
    from mayu_py.config import load_settings
    from mayu_py.pki import ClusterPKI

    settings = load_settings(config_file, {("data_dir",): data_dir})
    name = settings.cluster.name
    ca = ClusterPKI.load_or_create(settings.data_path / "pki" / name, name)
    rotated = ca.rotate(within_days=within_days, force=force)
    click.echo(f"re-issued {len(rotated)} certificate(s)")
    for item in rotated:
        click.echo(f"  {item}")


def main() -> None:
    """Console entry point."""
    run(cli, "mayu")
