"""The server's own TLS: a server CA created at first start and a serving certificate for the
HTTPS listener, or the operator's certificate, key and CA. Machines pin the CA.

Layout under <data-dir>/pki/server (0700): ca.crt, ca.key, tls.crt, tls.key (keys 0600).
The serving certificate is issued again when the addresses it must name change or it nears
expiry; the CA stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mayu_py.errors import ConfigError
from mayu_py.files import atomic_write
from mayu_py.pki import files
from mayu_py.pki.identity import is_ip
from mayu_py.pki.x509 import (
    LEAF_LIFETIME,
    Authority,
    LeafSpec,
    authority_key_id,
    certificate_pem,
    create_authority,
    issue,
    key_id,
    load_certificate,
    load_private_key,
    private_key_pem,
    utcnow,
)

log = logging.getLogger(__name__)

CA_FILE = "ca.crt"
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True)
class ServerTls:
    """What the HTTPS listener serves and what machines pin."""

    cert_file: Path
    key_file: Path
    ca_pem: str


def server_dir(data_dir: Path) -> Path:
    """Where the server's CA and serving certificate live under its data dir."""
    return data_dir / "pki" / "server"


def load_or_create(directory: Path, names: list[str]) -> ServerTls:
    """The server CA and a serving certificate for `names` (host names and IP addresses)."""
    files.ensure_private_dir(directory)
    with files.exclusive_lock(directory):
        authority = _authority(directory)
        spec = LeafSpec(
            ca="server",
            common_name="mayu-server",
            dns_names=frozenset(n for n in names if not is_ip(n) and n not in _WILDCARDS),
            ips=frozenset(n for n in names if is_ip(n) and n not in _WILDCARDS),
            server=True,
        )
        cert_path, key_path = directory / "tls.crt", directory / "tls.key"
        current = files.read_text(cert_path)
        if current is None or not _still_good(current, spec, authority):
            certificate, key = issue(spec, authority, utcnow())
            atomic_write(key_path, private_key_pem(key), 0o600)
            atomic_write(cert_path, certificate_pem(certificate), 0o644)
            log.info("issued the HTTPS serving certificate for %s", ", ".join(sorted(names)))
    return ServerTls(cert_path, key_path, certificate_pem(authority.certificate))


def load_or_create_ca(directory: Path) -> None:
    """The server CA alone (created when missing); its serving certificate comes later."""
    files.ensure_private_dir(directory)
    with files.exclusive_lock(directory):
        _authority(directory)


def operator_supplied(cert_file: str, key_file: str, ca_file: str) -> ServerTls:
    """The operator's own certificate, key and the CA machines should pin (all must exist)."""
    for label, path in (("cert_file", cert_file), ("key_file", key_file), ("ca_file", ca_file)):
        if not Path(path).is_file():
            raise ConfigError(f"config error at server.tls.{label}: no such file {path}")
    if Path(key_file).stat().st_mode & 0o077:
        raise ConfigError(f"config error at server.tls.key_file: {key_file} is readable by others")
    ca_pem = Path(ca_file).read_text()
    try:
        load_certificate(ca_pem)
    except ValueError as exc:
        raise ConfigError(
            f"config error at server.tls.ca_file: not a PEM certificate: {exc}"
        ) from None
    return ServerTls(Path(cert_file), Path(key_file), ca_pem)


def _authority(directory: Path) -> Authority:
    cert_path, key_path = directory / CA_FILE, directory / "ca.key"
    cert_text, key_text = files.read_text(cert_path), files.read_text(key_path)
    if cert_text is not None and key_text is not None:
        key = load_private_key(key_text)
        return Authority(load_certificate(cert_text), key)  # type: ignore[arg-type]
    authority = create_authority("mayu-server-ca", "mayu", utcnow())
    atomic_write(key_path, private_key_pem(authority.key), 0o600)
    atomic_write(cert_path, certificate_pem(authority.certificate), 0o644)
    log.info("created the server CA in %s", directory)
    return authority


def _still_good(cert_text: str, spec: LeafSpec, authority: Authority) -> bool:
    """Fresh, for the same names, and issued by the CA in use (a replica that adopted the
    store's CA issues its serving certificate again)."""
    certificate = load_certificate(cert_text)
    fresh = LEAF_LIFETIME.fresh(certificate, utcnow())
    ours = authority_key_id(certificate) == key_id(authority.certificate)
    return fresh and ours and LeafSpec.of(certificate, spec.ca) == spec
