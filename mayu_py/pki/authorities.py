"""A cluster's certificate authorities and service-account key pair, created once and persisted.

Layout under the PKI directory (directories 0700, private keys 0600):
    ca/kubernetes.crt|.key  ca/etcd.crt|.key  ca/front-proxy.crt|.key  ca/sa.key  ca/sa.pub

The service-account key is RSA 2048: kube-apiserver accepts RSA or ECDSA signing keys, but
RS256 is the one algorithm every OIDC/JWT consumer must support, and it is kubeadm's default.

Crash safety: a CA's key is written before its certificate, and a CA counts as present only
when its certificate exists, so a crash between the two writes just creates that CA again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from mayu_py.errors import MayuError
from mayu_py.files import atomic_write
from mayu_py.pki import files
from mayu_py.pki.x509 import (
    Authority,
    certificate_pem,
    create_authority,
    key_id,
    load_certificate,
    load_private_key,
    private_key_pem,
    public_key_pem,
    same_public_key,
    utcnow,
)

log = logging.getLogger(__name__)

KUBERNETES = "kubernetes"
ETCD = "etcd"
FRONT_PROXY = "front-proxy"
CA_NAMES = (KUBERNETES, ETCD, FRONT_PROXY)
SERVICE_ACCOUNT_KEY_BITS = 2048


@dataclass(frozen=True)
class Authorities:
    """The loaded CA set of one cluster."""

    cluster_name: str
    cas: Mapping[str, Authority]
    service_account_key: rsa.RSAPrivateKey

    def name_for_key_id(self, key_id_: bytes | None) -> str | None:
        """Which of our CAs has this subject key identifier (None: not one of ours)."""
        for name, authority in self.cas.items():
            if key_id(authority.certificate) == key_id_:
                return name
        return None


def load_or_create(directory: Path, cluster_name: str) -> Authorities:
    """Load the CA set under directory, creating whatever is missing (under a lock)."""
    files.ensure_private_dir(directory)
    ca_dir = files.ensure_private_dir(directory / "ca")
    with files.exclusive_lock(directory):
        cas = {name: _load_or_create_ca(ca_dir, name, cluster_name) for name in CA_NAMES}
        sa_key = _load_or_create_sa_key(ca_dir, cluster_name)
    return Authorities(cluster_name, cas, sa_key)


def _load_or_create_ca(ca_dir: Path, name: str, cluster_name: str) -> Authority:
    cert_path, key_path = ca_dir / f"{name}.crt", ca_dir / f"{name}.key"
    cert_text = files.read_text(cert_path)
    if cert_text is None:
        authority = create_authority(f"{name}-ca", cluster_name, utcnow())
        atomic_write(key_path, private_key_pem(authority.key), 0o600)
        atomic_write(cert_path, certificate_pem(authority.certificate), 0o644)
        log.info(
            "created CA",
            extra={
                "cluster": cluster_name,
                "ca": name,
                "serial": authority.certificate.serial_number,
            },
        )
        return authority
    certificate = load_certificate(cert_text)
    _check_owner(certificate, cert_path, cluster_name)
    key_text = files.read_text(key_path)
    key = load_private_key(key_text) if key_text is not None else None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not same_public_key(certificate, key):
        raise MayuError(
            f"PKI directory is inconsistent: {key_path} is missing or does not match {cert_path};"
            " restore both from backup (removing both creates a new CA and invalidates every"
            " certificate of the cluster)",
            {"path": str(key_path)},
        )
    return Authority(certificate, key)


def _load_or_create_sa_key(ca_dir: Path, cluster_name: str) -> rsa.RSAPrivateKey:
    key_path, pub_path = ca_dir / "sa.key", ca_dir / "sa.pub"
    key_text = files.read_text(key_path)
    if key_text is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=SERVICE_ACCOUNT_KEY_BITS)
        atomic_write(key_path, private_key_pem(key), 0o600)
        log.info("created service-account key pair", extra={"cluster": cluster_name})
    else:
        loaded = load_private_key(key_text)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise MayuError(
                f"PKI directory is inconsistent: {key_path} is not an RSA key",
                {"path": str(key_path)},
            )
        key = loaded
    if files.read_text(pub_path) != public_key_pem(key):
        atomic_write(pub_path, public_key_pem(key), 0o644)
    return key


def _check_owner(certificate: x509.Certificate, path: Path, cluster_name: str) -> None:
    orgs = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    owner = str(orgs[0].value) if orgs else None
    if owner != cluster_name:
        raise MayuError(
            f"PKI directory belongs to cluster {owner!r}, not {cluster_name!r}: {path}",
            {"path": str(path)},
        )
