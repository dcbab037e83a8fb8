"""`mayu serve`: the provisioning server (boot plane + admin plane) on plain HTTP and HTTPS,
its BMC runner, optionally with dnsmasq."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from mayu_py.cli.asset_listener import AssetListener
from mayu_py.cli.bmc_runner import BmcRunnerProcess
from mayu_py.cli.dhcp_leader import DhcpLeader, etcd_location
from mayu_py.cli.serving import admin_token, build_app, check_bindable
from mayu_py.cli.tls_listener import TlsListener
from mayu_py.cli.wsgi import GunicornServer, proxy_protocol_options, server_options
from mayu_py.config import Settings, load_settings
from mayu_py.dhcp import DnsmasqSupervisor, resolve_dhcp
from mayu_py.server.metrics import ServerMetrics, metrics_dir, use_multiprocess_dir
from mayu_py.store import inventory_path

log = logging.getLogger(__name__)


@click.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="State directory.")
@click.option("--listen", help="HOST:PORT to bind (default 127.0.0.1:8080).")
@click.option("--tls-listen", help="HOST:PORT of the HTTPS listener (default: listen host:8443).")
@click.option(
    "--assets-listen",
    help="HOST:PORT of an asset listener of its own (default: /assets on --listen).",
)
@click.option("--dhcp", type=click.Choice(["off", "proxy", "full"]), help="Run dnsmasq.")
@click.option(
    "--store",
    "store_url",
    help="Inventory: sqlite:PATH (default <data-dir>/inventory.sqlite3) or "
    "etcd://HOST:PORT,HOST:PORT[/PREFIX] (etcds:// for TLS; docs/store.md).",
)
@click.option(
    "--proxy-protocol-from",
    help="ADDR[,ADDR]: TCP balancers whose PROXY protocol header names the machine's address "
    "(server.proxy_protocol_from; default: none, PROXY headers refused).",
)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option(
    "--threads", default=1, show_default=True, help="Threads per worker (>1: gthread workers)."
)
def serve(
    config_file: str | None,
    data_dir: str | None,
    listen: str | None,
    tls_listen: str | None,
    assets_listen: str | None,
    dhcp: str | None,
    store_url: str | None,
    proxy_protocol_from: str | None,
    workers: int,
    threads: int,
) -> None:
    """Serve iPXE scripts, Ignition configs, assets and the admin API."""
    settings = load_settings(
        config_file,
        {
            ("data_dir",): data_dir,
            ("server", "listen"): listen,
            ("server", "tls", "listen"): tls_listen,
            ("assets", "listen"): assets_listen,
            ("dhcp", "mode"): dhcp,
            ("store", "url"): store_url,
            ("server", "proxy_protocol_from"): (
                proxy_protocol_from.split(",") if proxy_protocol_from is not None else None
            ),
        },
    )
    if settings.dhcp.mode != "off":
        # A wrong interface or range stops start-up before anything is created.
        resolve_dhcp(settings.dhcp)
    check_bindable(settings.server.listen, "server.listen")
    check_bindable(settings.server.tls_listen, "server.tls.listen")
    if settings.assets.listen:
        check_bindable(settings.assets.listen, "assets.listen")
    token = admin_token(settings)
    # Both gunicorn servers (and the HTTPS one's restarts) share this directory: /metrics on
    # either listener reports the whole server.
    use_multiprocess_dir(metrics_dir(settings.data_path), clean=True)
    metrics = ServerMetrics()
    app, server_tls = build_app(settings, token.value, metrics)
    if settings.server.insecure_secrets_over_http:
        log.warning(
            "server.insecure_secrets_over_http is on: configs with private keys go over plain "
            "HTTP to anyone holding a boot token; never use this outside a lab"
        )
    tls = TlsListener(settings, token.value, workers, server_tls.ca_pem)
    assets = AssetListener(settings, workers) if settings.assets.listen else None
    runner = BmcRunnerProcess(settings)
    tls.start()
    try:
        if assets is not None:
            assets.start()
        runner.start()
        supervisor = start_dhcp(settings, metrics)
    except BaseException:
        runner.stop()
        if assets is not None:
            assets.stop()
        tls.stop()
        raise

    def on_exit(_arbiter: Any) -> None:
        # Runs in the gunicorn master only: a worker exiting must not stop dnsmasq. DHCP
        # first: a full-DHCP leader hands over as soon as it has stopped (docs/ha.md).
        if supervisor is not None:
            supervisor.stop()
        runner.stop()
        if assets is not None:
            assets.stop()
        tls.stop()

    def when_ready(_arbiter: Any) -> None:
        log.info(
            "mayu serve listening on http://%s and https://%s (data dir %s, store %s)",
            settings.server.listen,
            settings.server.tls_listen,
            settings.data_dir,
            settings.store.url or f"sqlite:{inventory_path(settings.data_path)}",
        )
        if token.created:
            # Printed once, to the terminal only, after start-up succeeded; never logged.
            click.echo(f"admin token (stored in {token.origin}, mode 0600): {token.value}")

    options = server_options(
        settings.server.listen,
        workers,
        "mayu-serve",
        worker_class="gthread" if threads > 1 else "sync",
        threads=threads,
        preload_app=True,
        on_exit=on_exit,
        when_ready=when_ready,
        **proxy_protocol_options(settings.server.proxy_protocol_from),
    )
    GunicornServer(app, options).run()
    sys.exit(0)


def start_dhcp(settings: Settings, metrics: ServerMetrics) -> DnsmasqSupervisor | DhcpLeader | None:
    """Start the supervised dnsmasq when --dhcp is proxy or full; None when off. Full DHCP
    with the store on etcd: this replica's candidacy instead, dnsmasq running while it leads
    (docs/ha.md)."""
    if settings.dhcp.mode == "off":
        return None
    location = etcd_location(settings)
    if settings.dhcp.mode == "full" and location is not None:
        return DhcpLeader(settings, location, metrics).start()
    from mayu_py.dhcp.service import start_supervised_dnsmasq

    return start_supervised_dnsmasq(settings, Path(settings.data_dir), metrics.dnsmasq_restarts.inc)
