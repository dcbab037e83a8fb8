"""Keys and X.509 certificates: CA creation, leaf issuance, PEM encoding (no file access).

Choices: every CA and leaf key is EC P-256 (Kubernetes, etcd and Go's TLS stack accept ECDSA
everywhere a certificate is used). Private keys are PEM in the traditional OpenSSL form
("EC PRIVATE KEY" / "RSA PRIVATE KEY"), as kubeadm writes them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)
# Back-date notBefore so a node whose clock lags a little still accepts a fresh certificate.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Lifetime:
    """How long a leaf is issued for, and the renewal rule every issuer of cached leaves
    follows (the leaf cache, the server's serving certificate): a certificate with
    `renew_before` or less left is issued anew rather than served again."""

    validity: timedelta
    renew_before: timedelta

    def fresh(self, certificate: x509.Certificate, now: datetime) -> bool:
        """Still to be served: more than `renew_before` left."""
        return certificate.not_valid_after_utc - now > self.renew_before


# Leaves of machines, nodes and users: a year, issued anew in their last 30 days (what
# `mayu pki rotate` re-issues by default, too).
LEAF_LIFETIME = Lifetime(LEAF_VALIDITY, renew_before=timedelta(days=30))


def issued_validity(certificate: x509.Certificate) -> timedelta:
    """The validity `certificate` was issued with (`issue` back-dates notBefore)."""
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc - CLOCK_SKEW


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def load_private_key(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def same_public_key(certificate: x509.Certificate, key: PrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return certificate.public_key().public_bytes(der, spki) == key.public_key().public_bytes(
        der, spki
    )


def key_id(certificate: x509.Certificate) -> bytes:
    """The certificate's subject key identifier."""
    return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def authority_key_id(certificate: x509.Certificate) -> bytes | None:
    """The key identifier of the CA that signed the certificate, when it says."""
    try:
        ext = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return ext.value.key_identifier


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its self-signed certificate and private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def create_authority(common_name: str, organization: str, now: datetime) -> Authority:
    """A new self-signed CA valid for CA_VALIDITY."""
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate, key)


@dataclass(frozen=True)
class LeafSpec:
    """Everything that identifies a leaf certificate; two certificates with equal specs are
    interchangeable, so an equal spec on disk means "reuse, do not sign again"."""

    ca: str
    common_name: str
    organizations: tuple[str, ...] = ()
    dns_names: frozenset[str] = frozenset()
    ips: frozenset[str] = frozenset()
    server: bool = False
    client: bool = False

    @classmethod
    def of(cls, certificate: x509.Certificate, ca: str) -> LeafSpec:
        """Read the spec back out of an issued certificate."""
        subject = certificate.subject
        names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        extensions = certificate.extensions
        try:
            san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = frozenset(san.get_values_for_type(x509.DNSName))
            ips = frozenset(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            dns, ips = frozenset(), frozenset()
        usages = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        return cls(
            ca=ca,
            common_name=str(names[0].value) if names else "",
            organizations=tuple(str(o.value) for o in orgs),
            dns_names=dns,
            ips=ips,
            server=ExtendedKeyUsageOID.SERVER_AUTH in usages,
            client=ExtendedKeyUsageOID.CLIENT_AUTH in usages,
        )


def issue(
    spec: LeafSpec, authority: Authority, now: datetime, validity: timedelta = LEAF_VALIDITY
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Sign a new leaf (fresh key) for spec, valid for `validity` but never past the CA."""
    key = new_key()
    public = key.public_key()
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec.organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if spec.server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if spec.client else []
    not_after = min(now + validity, authority.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(authority.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(spec.dns_names)]
    alt_names += [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(spec.ips)]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(authority.key, hashes.SHA256()), key


def utcnow() -> datetime:
    return datetime.now(UTC)


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
