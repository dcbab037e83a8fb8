"""Flask app factory: wires settings, store, PKI and renderer into the blueprints."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from mayu_py.bmc.sealing import PasswordSealer
from mayu_py.config import Settings
from mayu_py.pki import ClusterPKI
from mayu_py.pki.server_tls import ServerTls, server_dir
from mayu_py.pki.server_tls import load_or_create as load_or_create_server_tls
from mayu_py.render import IgnitionRenderer
from mayu_py.server import (
    api,
    boot,
    docs,
    health,
    monitoring,
    power_api,
    tenants_api,
    users_api,
)
from mayu_py.server.boot_front import BootReads
from mayu_py.server.boot_service import BootService
from mayu_py.server.context import Services
from mayu_py.server.delivery import Delivery
from mayu_py.server.errors import register_error_handlers
from mayu_py.server.hosts import HostService
from mayu_py.server.machines import MachineService
from mayu_py.server.metrics import ServerMetrics
from mayu_py.server.power import PowerService
from mayu_py.server.provisioning import Provisioner
from mayu_py.server.replica_files import shared_files
from mayu_py.server.tenant_service import TenantService
from mayu_py.server.tokens import load_or_create_key
from mayu_py.server.ui import dashboard
from mayu_py.server.users import UserService
from mayu_py.store import Store


def create_app(
    settings: Settings,
    store: Store,
    admin_token: str,
    server_tls: ServerTls | None = None,
    lease_of: Callable[[str], str | None] | None = None,
    metrics: ServerMetrics | None = None,
) -> Flask:
    """Build the WSGI app. The renderer's templates are checked here: a bad one stops start-up.

    `server_tls` defaults to the server's own CA under <data-dir>/pki/server (created when
    missing) for a listener on server.listen; `lease_of` (full DHCP) names the address our
    dnsmasq leased to a MAC: boot tokens are bound to it. `metrics` are the ones the store
    reports its transactions to (`mayu serve`), else the app gets its own."""
    metrics = metrics or ServerMetrics()
    if server_tls is None:
        host = settings.server.listen.rpartition(":")[0].strip("[]")
        server_tls = load_or_create_server_tls(server_dir(settings.data_path), [host])
    renderer = IgnitionRenderer()
    renderer.check_templates()
    pki = ClusterPKI.load_or_create(
        settings.data_path / "pki" / settings.cluster.name, settings.cluster.name
    )
    power = power_service(settings, store)
    root = settings.assets_root
    root.mkdir(parents=True, exist_ok=True)
    provisioner = Provisioner(settings, store, renderer, pki)
    shared = shared_files(store, settings)
    tenants = TenantService(settings, store, renderer, metrics=metrics, shared=shared)
    hosts = HostService(store, on_revoke=lambda tx, _host: tenants.place_nodes(tx))
    app = Flask(__name__, static_folder=None)  # no route but the described ones
    boot_reads = BootReads(store, metrics)
    app.wsgi_app = boot_reads.front(app.wsgi_app)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["mayu"] = Services(
        settings=settings,
        store=store,
        boot=BootService(settings, store, lease_of, metrics=metrics),
        boot_reads=boot_reads,
        delivery=Delivery(
            settings, store, provisioner, hosts, server_tls.ca_pem, power, metrics=metrics
        ),
        machines=MachineService(settings, store, hosts, pki.forget_node, power),
        power=power,
        provisioner=provisioner,
        tenants=tenants,
        hosts=hosts,
        users=UserService(store),
        assets_root=root,
        admin_token=admin_token,
        metrics=metrics,
    )
    monitoring.instrument(app, metrics)
    app.register_blueprint(boot.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(tenants_api.bp)
    app.register_blueprint(power_api.bp)
    app.register_blueprint(users_api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(monitoring.bp)
    dashboard.install(app, settings)
    app.register_blueprint(docs.bp)
    register_error_handlers(app)
    return app


def power_service(settings: Settings, store: Store) -> PowerService:
    """BMC power on this data dir: passwords sealed with <data-dir>/bmc.key (0600)."""
    sealer = PasswordSealer(load_or_create_key(settings.data_path / "bmc.key"))
    return PowerService(store, sealer, settings.data_path)
