"""Start the supervised dnsmasq for `mayu serve --dhcp proxy|full`.

Files live under `<data-dir>/dhcp/`: `dnsmasq.conf`, `leases`, `dnsmasq.pid` and the TFTP
root `tftp/` (iPXE binaries). The configuration is validated against the live interfaces
first, so a wrong interface, subnet or range stops start-up with one ConfigError line naming
the `dhcp.` field, before anything is started.

Machine addresses: every boot-plane request records its source address as the machine's
`ip`, and in the lab that is the address dnsmasq leased, so the inventory shows leases
without reading the lease file here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mayu_py.config import Settings
from mayu_py.dhcp import DnsmasqSupervisor, prepare_tftp_root, render_dnsmasq_conf, resolve_dhcp
from mayu_py.errors import ConfigError

log = logging.getLogger(__name__)

_WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]", "*")


class ServeDnsmasq(DnsmasqSupervisor):
    """A supervisor whose stop() acts only in the process that started dnsmasq.

    gunicorn's workers are forks of `mayu serve`; when one exits it unwinds through serve's
    `finally: supervisor.stop()`, which must not terminate the master's dnsmasq.
    """

    _owner: int | None = None

    def start(self) -> None:
        self._owner = os.getpid()
        super().start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._owner is not None and os.getpid() != self._owner:
            return
        super().stop(timeout)


def boot_url(settings: Settings, server_ip: str) -> str:
    """The HTTP boot script URL handed to iPXE: public_url, else the listen address.

    A wildcard listen address (0.0.0.0:PORT) is replaced by the DHCP server's own address.
    """
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/") + "/boot.ipxe"
    host, sep, port = settings.server.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"server.listen: {settings.server.listen!r} is not HOST:PORT")
    if host in _WILDCARD_HOSTS:
        host = server_ip
    return f"http://{host}:{port}/boot.ipxe"


def start_supervised_dnsmasq(settings: Settings, data_dir: Path) -> ServeDnsmasq:
    """Validate `settings.dhcp`, write dnsmasq's files and start it; the caller stops it."""
    plan = resolve_dhcp(settings.dhcp)
    workdir = Path(data_dir) / "dhcp"
    workdir.mkdir(parents=True, exist_ok=True)
    # dnsmasq drops to nobody and must still reach the TFTP root.
    workdir.chmod(0o755)
    conf = render_dnsmasq_conf(
        settings.dhcp,
        boot_url=boot_url(settings, str(plan.server_ip)),
        tftp_root=prepare_tftp_root(workdir / "tftp"),
        lease_file=workdir / "leases",
        pid_file=workdir / "dnsmasq.pid",
    )
    conf_file = workdir / "dnsmasq.conf"
    tmp = conf_file.with_name(".dnsmasq.conf.tmp")
    tmp.write_text(conf)
    tmp.replace(conf_file)
    supervisor = ServeDnsmasq(conf_file)
    supervisor.start()
    log.info(
        "dhcp %s on %s (%s), boot URL %s",
        plan.mode,
        plan.interface,
        plan.server_ip,
        boot_url(settings, str(plan.server_ip)),
    )
    return supervisor
