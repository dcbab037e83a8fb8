"""`mayu serve`: the provisioning server (boot plane + admin plane), optionally with dnsmasq."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from mayu_py.cli.wsgi import GunicornServer
from mayu_py.config import Settings, load_settings
from mayu_py.dhcp import resolve_dhcp
from mayu_py.server.app import create_app
from mayu_py.server.tokens import load_or_create_admin_token
from mayu_py.store import open_store

log = logging.getLogger(__name__)


def prepare(settings: Settings) -> tuple[object, str]:
    """Open the store, make the admin token, build the app. Returns (app, admin token)."""
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o711)
    token = os.environ.get("MAYU_TOKEN")
    if not token:
        token, created = load_or_create_admin_token(data / "admin.token")
        if created:
            # Printed once, to the terminal only; never logged.
            click.echo(f"admin token (stored in {data / 'admin.token'}, mode 0600): {token}")
    store = open_store(data)
    app = create_app(settings, store, token)
    # Children of gunicorn open their own SQLite connections.
    store.close()
    return app, token


@click.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="State directory.")
@click.option("--listen", help="HOST:PORT to bind (default 127.0.0.1:8080).")
@click.option("--dhcp", type=click.Choice(["off", "proxy", "full"]), help="Run dnsmasq.")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option(
    "--threads", default=1, show_default=True, help="Threads per worker (>1: gthread workers)."
)
def serve(
    config_file: str | None,
    data_dir: str | None,
    listen: str | None,
    dhcp: str | None,
    workers: int,
    threads: int,
) -> None:
    """Serve iPXE scripts, Ignition configs, assets and the admin API."""
    settings = load_settings(
        config_file,
        {("data_dir",): data_dir, ("server", "listen"): listen, ("dhcp", "mode"): dhcp},
    )
    if settings.dhcp.mode != "off":
        # A wrong interface or range stops start-up before anything is created.
        resolve_dhcp(settings.dhcp)
    app, _ = prepare(settings)
    supervisor = start_dhcp(settings)
    listen_at = settings.server.listen
    log.info("mayu serve listening on http://%s (data dir %s)", listen_at, settings.data_dir)
    options = {
        "bind": listen_at,
        "workers": workers,
        "worker_class": "gthread" if threads > 1 else "sync",
        "threads": threads,
        "preload_app": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "timeout": 60,
        "graceful_timeout": 5,
        # on_exit runs in the gunicorn master only: a worker exiting must not stop dnsmasq.
        "on_exit": lambda _arbiter: supervisor.stop() if supervisor is not None else None,
    }
    GunicornServer(app, options).run()
    sys.exit(0)


def start_dhcp(settings: Settings):  # type: ignore[no-untyped-def]
    """Start the supervised dnsmasq when --dhcp is proxy or full; None when off."""
    if settings.dhcp.mode == "off":
        return None
    from mayu_py.cli.dhcp_runner import start_supervised_dnsmasq

    return start_supervised_dnsmasq(settings, Path(settings.data_dir))
