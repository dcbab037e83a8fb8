"""Emulated BMCs for libvirt domains: one `sushy-emulator` (Redfish) and one `vbmcd` (IPMI).

Both drive the domains over libvirt's unix socket, so with `netns` they run inside a network
namespace and serve only addresses there. Everything they need lives under `state_dir`
(0700): for Redfish a Flask config file, an htpasswd file (bcrypt cost 4: cost 12 costs
~0.3 s of CPU per request) and the emulator's state dir; for IPMI vbmcd's config and one
directory per domain whose `config` holds the IPMI password in plain text (virtualbmc's
format), 0600.

IPMI BMCs are added without the `vbmc` CLI: `vbmc add --password W` would put the password
on a command line, readable in /proc by every local user. `add_domain` writes the file that
`vbmc add` + `vbmc start` write (same section and keys, `active = True`); vbmcd starts every
active domain when it starts and picks up new ones within its 3 s idle tick.

Readiness is "the port is bound", read from /proc/PID/net/{tcp,udp}{,6}, which shows the
process's own namespace; no fixed sleeps, bounded waits. Each emulator runs in its own
process group; stop() sends SIGTERM to the group, then SIGKILL, and returns once no process
of the group is left (vbmcd forks one child per BMC). Passwords are never logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import bcrypt

from mayu_py.bmc.coordinates import BmcCoordinates, BmcProtocol
from mayu_py.errors import ConfigError
from mayu_py.files import atomic_write
from mayu_py.pki.files import ensure_private_dir

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
SUSHY_EMULATOR = str(BIN / "sushy-emulator")
VBMCD = str(BIN / "vbmcd")
BCRYPT_COST = 4
# Printable ASCII without whitespace, ':' (htpasswd) and '%' (vbmc's configparser
# interpolates it): what both emulators store without quoting rules.
_SAFE_SECRET = re.compile(r"^[!-~]+$")
_LISTEN, _UDP_BOUND = "0A", "07"


def _check_secret(what: str, value: str) -> None:
    if not _SAFE_SECRET.match(value) or ":" in value or "%" in value:
        raise ConfigError(f"BMC emulator {what}: printable ASCII without ':', '%' or spaces")


def _bound_ports(pid: int, kind: str) -> set[int]:
    """Ports bound in pid's network namespace: TCP listening or UDP bound."""
    state = _LISTEN if kind == "tcp" else _UDP_BOUND
    ports = set()
    for table in (f"/proc/{pid}/net/{kind}", f"/proc/{pid}/net/{kind}6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == state:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group pgid."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(entry.name))
    return alive


def _end_group(proc: subprocess.Popen[bytes], sig: int, wait: float) -> bool:
    """Send sig to proc's process group; True once none of it is left (within wait)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    deadline = time.monotonic() + wait
    while True:
        proc.poll()  # reap the leader as soon as it exits
        if not _group_alive(proc.pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class _Emulator:
    """One emulator process in its own process group, with a bounded start and stop."""

    name = "emulator"

    def __init__(self, state_dir: Path, netns: str | None, startup_timeout: float) -> None:
        self.state_dir = Path(state_dir)
        self.netns = netns
        self.startup_timeout = startup_timeout
        self.log_file = self.state_dir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The emulator's pid (also its process group) while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _spawn(self, argv: list[str], env: dict[str, str]) -> None:
        if self.pid is not None:
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._proc = subprocess.Popen(
                [*prefix, *argv],
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
                umask=0o077,  # whatever the emulator writes (vbmc rewrites its configs): 0600
            )
        except OSError as exc:
            raise ConfigError(f"cannot run {argv[0]}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def _await_bound(self, tcp: Sequence[int] = (), udp: Sequence[int] = ()) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if proc.poll() is not None:
                raise ConfigError(
                    f"{self.name} exited at start (code {proc.returncode}): {self._last_line()}"
                )
            missing = sorted(set(tcp) - _bound_ports(proc.pid, "tcp")) + sorted(
                set(udp) - _bound_ports(proc.pid, "udp")
            )
            if not missing:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(
                    f"{self.name} did not bind port(s) {missing} within "
                    f"{self.startup_timeout:g} s: {self._last_line()}"
                )
            time.sleep(0.05)

    def _last_line(self) -> str:
        try:
            lines = [ln for ln in self.log_file.read_text(errors="replace").splitlines() if ln]
        except OSError:
            return "no log"
        return lines[-1].strip() if lines else "no output"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after `timeout`; idempotent."""
        proc = self._proc
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if _end_group(proc, sig, wait):
                break
        left = _group_alive(proc.pid)
        if left:
            log.warning("%s: processes %s survived SIGKILL", self.name, left)
        self._proc = None
        log.info("%s stopped (pid %s)", self.name, proc.pid)


class RedfishEmulator(_Emulator):
    """sushy-emulator with its libvirt driver, serving only the `allowed` domain UUIDs."""

    name = "sushy-emulator"

    def __init__(
        self,
        state_dir: Path,
        *,
        listen_ip: str,
        port: int,
        username: str,
        password: str,
        allowed: Sequence[str],
        libvirt_uri: str = "qemu:///system",
        netns: str | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        super().__init__(state_dir, netns, startup_timeout)
        _check_secret("user name", username)
        _check_secret("password", password)
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("sushy-emulator: give both tls_cert and tls_key, or neither")
        self.listen_ip = listen_ip
        self.port = port
        self.username = username
        self._password = password
        self.allowed = [str(uuid) for uuid in allowed]
        self.libvirt_uri = libvirt_uri
        self.tls = (tls_cert, tls_key) if tls_cert and tls_key else None

    @property
    def url(self) -> str:
        host = f"[{self.listen_ip}]" if ":" in self.listen_ip else self.listen_ip
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def coordinates(
        self, system_uuid: str, *, verify_tls: bool = True, ca_bundle: str | None = None
    ) -> BmcCoordinates:
        """Client coordinates for one of the allowed domains."""
        return BmcCoordinates(
            BmcProtocol.REDFISH,
            self.url,
            self.username,
            self._password,
            system_id=system_uuid,
            verify_tls=verify_tls,
            ca_bundle=ca_bundle,
        )

    def start(self) -> None:
        """Write the config and auth file, start the emulator, wait until it listens."""
        ensure_private_dir(self.state_dir)
        auth_file = self.state_dir / "htpasswd"
        digest = bcrypt.hashpw(self._password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
        atomic_write(auth_file, f"{self.username}:{digest}\n", 0o600)
        settings: dict[str, object] = {
            "SUSHY_EMULATOR_LISTEN_IP": self.listen_ip,
            "SUSHY_EMULATOR_LISTEN_PORT": self.port,
            "SUSHY_EMULATOR_LIBVIRT_URI": self.libvirt_uri,
            "SUSHY_EMULATOR_AUTH_FILE": str(auth_file),
            "SUSHY_EMULATOR_STATE_DIR": str(ensure_private_dir(self.state_dir / "state")),
            "SUSHY_EMULATOR_ALLOWED_INSTANCES": self.allowed,
        }
        if self.tls:
            settings["SUSHY_EMULATOR_SSL_CERT"] = str(self.tls[0])
            settings["SUSHY_EMULATOR_SSL_KEY"] = str(self.tls[1])
        config = self.state_dir / "sushy-emulator.conf"
        atomic_write(config, "".join(f"{k} = {v!r}\n" for k, v in settings.items()), 0o600)
        self._spawn([SUSHY_EMULATOR, "--config", str(config)], {})
        self._await_bound(tcp=[self.port])
        log.info("%s serving %d domain(s) on %s (pid %s)", self.name, len(self.allowed),
                 self.url, self.pid)  # fmt: skip


class IpmiEmulators(_Emulator):
    """vbmcd with one IPMI BMC (a child process, a UDP port) per added domain."""

    name = "vbmcd"

    def __init__(
        self,
        state_dir: Path,
        *,
        control_port: int,
        libvirt_uri: str = "qemu:///system",
        netns: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        super().__init__(state_dir, netns, startup_timeout)
        self.control_port = control_port
        self.libvirt_uri = libvirt_uri
        self.domains_dir = self.state_dir / "domains"
        self.config_file = self.state_dir / "virtualbmc.conf"
        self.pid_file = self.state_dir / "vbmcd.pid"
        self._ports: dict[str, int] = {}

    def add_domain(
        self, domain: str, *, address: str, port: int, username: str, password: str
    ) -> BmcCoordinates:
        """Give `domain` an IPMI BMC on address:port; when vbmcd runs, wait until it serves.

        Returns client coordinates (cipher suite 3: see mayu_py.bmc.pyghmi_sha1).
        """
        if not re.match(r"^[A-Za-z0-9_.+-]+$", domain):
            raise ConfigError(f"vbmc: domain name {domain!r} is not a plain name")
        _check_secret("user name", username)
        _check_secret("password", password)
        coordinates = BmcCoordinates(
            BmcProtocol.IPMI,
            f"[{address}]:{port}" if ":" in address else f"{address}:{port}",
            username,
            password,
            ipmi_cipher_suite=3,
        )
        ensure_private_dir(self.state_dir)
        directory = ensure_private_dir(ensure_private_dir(self.domains_dir) / domain)
        lines = {
            "domain_name": domain,
            "username": username,
            "password": password,
            "port": port,
            "address": address,
            "libvirt_uri": self.libvirt_uri,
            "active": True,
        }
        body = "[VirtualBMC]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())
        atomic_write(directory / "config", body, 0o600)
        self._ports[domain] = port
        if self.pid is not None:
            self._await_bound(udp=[port])
        log.info("IPMI BMC for %s on %s", domain, coordinates.address)
        return coordinates

    def start(self) -> None:
        """Start vbmcd; wait until its control port and every added BMC's port are bound."""
        ensure_private_dir(self.state_dir)
        ensure_private_dir(self.domains_dir)
        config = (
            "[default]\n"
            f"config_dir = {self.domains_dir}\n"
            f"pid_file = {self.pid_file}\n"
            f"server_port = {self.control_port}\n"
            "[log]\n"
            f"logfile = {self.log_file}\n"
        )
        atomic_write(self.config_file, config, 0o600)
        # A vbmcd killed earlier left its pid file; a recycled pid would make vbmcd refuse.
        self.pid_file.unlink(missing_ok=True)
        env = {"VIRTUALBMC_CONFIG": str(self.config_file)}
        self._spawn([VBMCD, "--foreground"], env)
        self._await_bound(tcp=[self.control_port], udp=list(self._ports.values()))
        log.info("%s running %d BMC(s), control port %d (pid %s)", self.name,
                 len(self._ports), self.control_port, self.pid)  # fmt: skip
