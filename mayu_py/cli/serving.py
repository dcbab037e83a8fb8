"""Everything a `mayu serve` listener process needs before it serves: the checked admin token,
the opened store, the server's TLS material and the Flask app. Both listeners (plain HTTP and
HTTPS) build their app through here, from the same settings."""

from __future__ import annotations

import errno
import os
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask

from mayu_py.cli.dhcp_leader import lease_lookup
from mayu_py.config import Settings
from mayu_py.errors import ConfigError
from mayu_py.pki import server_tls
from mayu_py.pki.server_tls import ServerTls
from mayu_py.server.app import create_app
from mayu_py.server.metrics import ServerMetrics
from mayu_py.server.replica_files import sync_replica_files
from mayu_py.server.tokens import check_admin_token, load_or_create_admin_token
from mayu_py.store import open_store


@dataclass(frozen=True)
class AdminToken:
    value: str
    created: bool
    origin: str


def admin_token(settings: Settings) -> AdminToken:
    """MAYU_TOKEN, else <data-dir>/admin.token (created 0600 at first start); weak tokens and
    token files readable by others are refused."""
    from_env = os.environ.get("MAYU_TOKEN")
    if from_env is not None:
        return AdminToken(check_admin_token(from_env, "MAYU_TOKEN"), False, "MAYU_TOKEN")
    path = settings.data_path / "admin.token"
    token, created = load_or_create_admin_token(path)
    return AdminToken(token, created, str(path))


def check_paths(settings: Settings) -> None:
    """Refuse an assets root that would publish the data dir (keys, tokens, the store)."""
    data = settings.data_path.resolve()
    assets = settings.assets_root.resolve()
    if data == assets or data.is_relative_to(assets):
        raise ConfigError(
            f"config error at assets.root: {assets} contains the data dir {data}; "
            "it would publish the server's keys"
        )


BIND_ATTEMPTS = 5


def check_bindable(listen: str, field: str) -> None:
    """ConfigError (one line naming the field) when HOST:PORT cannot be bound; like gunicorn,
    a port still held (a killed server's workers exiting) is tried again for a few seconds."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"config error at {field}: {listen!r} is not HOST:PORT")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for attempt in range(BIND_ATTEMPTS):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, int(port)))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS - 1:
                    raise ConfigError(
                        f"config error at {field}: cannot bind {listen}: {exc.strerror}"
                    ) from None
        time.sleep(1)


def tls_names(settings: Settings) -> list[str]:
    """Every host name or address machines may use to reach this server."""
    server = settings.server
    hosts = {"localhost", "127.0.0.1"}
    for listen in (server.listen, server.tls_listen):
        hosts.add(listen.rpartition(":")[0].strip("[]"))
    for url in (server.public_url, server.tls.public_url):
        if url and urlsplit(url).hostname:
            hosts.add(str(urlsplit(url).hostname))
    hosts.update(server.tls.extra_sans)
    return sorted(h for h in hosts if h)


def load_tls(settings: Settings) -> ServerTls:
    tls = settings.server.tls
    if tls.cert_file and tls.key_file and tls.ca_file:
        return server_tls.operator_supplied(tls.cert_file, tls.key_file, tls.ca_file)
    return server_tls.load_or_create(server_tls.server_dir(settings.data_path), tls_names(settings))


def build_app(
    settings: Settings, token: str, metrics: ServerMetrics | None = None
) -> tuple[Flask, ServerTls]:
    """Open the store and build the app (it closes its start-up connection: workers open
    their own); the store reports its transactions to the app's metrics."""
    data = settings.data_path
    try:
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o711)
    except OSError as exc:
        raise ConfigError(f"config error at data_dir: {data}: {exc.strerror}") from None
    check_paths(settings)
    server = settings.server
    metrics = metrics or ServerMetrics()
    store = open_store(
        data,
        server.events_per_machine,
        server.alerts_kept,
        settings.store,
        observer=metrics.store_transaction,
    )
    sync_replica_files(store, settings)  # the CAs every replica shares, before loading them
    tls = load_tls(settings)
    app = create_app(settings, store, token, tls, lease_lookup(settings), metrics)
    store.close()
    return app, tls
