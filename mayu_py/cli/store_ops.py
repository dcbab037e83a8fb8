"""`mayu store migrate|backup|restore`: copy a whole inventory between backends, to a file
and back (store/transfer.py; docs/store.md). Stop the servers first: a store that changes
during a migration fails its verification."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from mayu_py.config import Settings, load_settings
from mayu_py.errors import ConfigError
from mayu_py.store import Store, open_store
from mayu_py.store.transfer import migrate, restore, write_backup
from mayu_py.store.url import SqliteLocation, parse_store_url


def _settings(config_file: str | None, data_dir: str | None) -> Settings:
    return load_settings(config_file, {("data_dir",): data_dir})


@contextmanager
def _opened(settings: Settings, url: str | None, existing: bool = False) -> Iterator[Store]:
    """The store `url` names (default: the configured one), closed afterwards; `existing`:
    an SQLite file that is not there is an error (not a new, empty store)."""
    config = settings.store if url is None else settings.store.model_copy(update={"url": url})
    location = parse_store_url(config.url) if config.url else None
    if existing and isinstance(location, SqliteLocation) and not location.path.is_file():
        raise ConfigError(f"store {config.url}: no such SQLite file")
    server = settings.server
    store = open_store(settings.data_path, server.events_per_machine, server.alerts_kept, config)
    try:
        yield store
    finally:
        store.close()


_config = click.option("--config", "config_file", type=click.Path(dir_okay=False))
_data_dir = click.option("--data-dir", type=click.Path(file_okay=False))
_store = click.option(
    "--store", "store_url", help="sqlite:PATH or etcd://... (default: the configured store)."
)


@click.group("store")
def store() -> None:
    """Inventory store maintenance: migrate between backends, back up, restore."""


@store.command("migrate")
@click.option("--from", "source_url", required=True, help="sqlite:PATH or etcd://...")
@click.option("--to", "target_url", required=True, help="sqlite:PATH or etcd://...")
@_config
@_data_dir
def store_migrate(
    source_url: str, target_url: str, config_file: str | None, data_dir: str | None
) -> None:
    """Copy every record from one store to another and verify it (idempotent)."""
    settings = _settings(config_file, data_dir)
    with (
        _opened(settings, source_url, existing=True) as source,
        _opened(settings, target_url) as target,
    ):
        summary = migrate(source, target)
    click.echo(f"migrated and verified: {summary.describe()}")


@store.command("backup")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False))
@_store
@_config
@_data_dir
def store_backup(
    output: str, store_url: str | None, config_file: str | None, data_dir: str | None
) -> None:
    """Write every record of the store to a file (JSON lines, mode 0600)."""
    settings = _settings(config_file, data_dir)
    with _opened(settings, store_url, existing=True) as opened:
        summary = write_backup(opened, Path(output))
    click.echo(f"backed up to {output}: {summary.describe()}")


@store.command("restore")
@click.option("--input", "-i", "input_", required=True, type=click.Path(dir_okay=False))
@_store
@_config
@_data_dir
def store_restore(
    input_: str, store_url: str | None, config_file: str | None, data_dir: str | None
) -> None:
    """Load a backup into the store (idempotent: records already there stay as they are)."""
    settings = _settings(config_file, data_dir)
    with _opened(settings, store_url) as opened:
        summary = restore(opened, Path(input_))
    click.echo(f"restored from {input_}: {summary.describe()}")
