"""Start the supervised dnsmasq for `mayu serve --dhcp proxy|full`.

Files live under `<data-dir>/dhcp/`: `dnsmasq.conf`, `leases`, `dnsmasq.pid` and the TFTP
root `tftp/` (iPXE binaries). The configuration is validated against the live interfaces
first, so a wrong interface, subnet or range stops start-up with one ConfigError line naming
the `dhcp.` field, before anything is started.

In full-DHCP mode the server reads the lease file (`lease_file`) to bind each machine's boot
token to the address dnsmasq leased to its MAC.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from mayu_py.config import Settings
from mayu_py.dhcp.conf import render_dnsmasq_conf
from mayu_py.dhcp.plan import resolve_dhcp
from mayu_py.dhcp.supervisor import DnsmasqSupervisor
from mayu_py.dhcp.tftp import prepare_tftp_root
from mayu_py.errors import ConfigError
from mayu_py.files import atomic_write

log = logging.getLogger(__name__)

_WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]", "*")


def dhcp_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "dhcp"


def lease_file(data_dir: Path) -> Path:
    """Where our dnsmasq keeps its leases (read by the server in full-DHCP mode)."""
    return dhcp_dir(data_dir) / "leases"


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


def stop_stale_dnsmasq(pid_file: Path, conf_file: Path) -> None:
    """Kill a dnsmasq left running by a crashed `mayu serve` on the same files (SIGKILL of
    the server cannot take its child along: dnsmasq drops privileges, which clears
    PR_SET_PDEATHSIG)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if (
        cmdline
        and cmdline[0].endswith(b"dnsmasq")
        and any(str(conf_file).encode() in arg for arg in cmdline)
    ):
        log.warning("stopping dnsmasq pid %d left by an earlier mayu serve", pid)
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)


def start_supervised_dnsmasq(
    settings: Settings,
    data_dir: Path,
    on_restart: Callable[[], object] | None = None,
    *,
    lease_script: Path | None = None,
    die_with_parent: bool = False,
) -> DnsmasqSupervisor:
    """Validate `settings.dhcp`, write dnsmasq's files and start it; the caller stops it.
    `on_restart` is called after each restart of dnsmasq; `lease_script` is run on each lease
    change; with `die_with_parent`, dnsmasq ends when this process dies (fence.py)."""
    plan = resolve_dhcp(settings.dhcp)
    workdir = dhcp_dir(data_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    # dnsmasq drops to nobody and must still reach the TFTP root.
    workdir.chmod(0o755)
    conf = render_dnsmasq_conf(
        settings.dhcp,
        boot_url=boot_url(settings, str(plan.server_ip)),
        tftp_root=prepare_tftp_root(workdir / "tftp"),
        lease_file=lease_file(data_dir),
        pid_file=workdir / "dnsmasq.pid",
        lease_script=lease_script,
    )
    conf_file = workdir / "dnsmasq.conf"
    stop_stale_dnsmasq(workdir / "dnsmasq.pid", conf_file)
    atomic_write(conf_file, conf, 0o644)
    supervisor = DnsmasqSupervisor(
        conf_file, on_restart=on_restart, die_with_parent=die_with_parent
    )
    supervisor.start()
    log.info(
        "dhcp %s on %s (%s), boot URL %s",
        plan.mode,
        plan.interface,
        plan.server_ip,
        boot_url(settings, str(plan.server_ip)),
    )
    return supervisor
