"""Leaf certificates of one subject (a node or a user), issued on demand and cached on disk.

Each leaf is one bundle file `<dir>/<leaf>.pem` (certificate, then its private key; mode
0600) written atomically, so a certificate and its key can never be seen out of step. A
request whose leaves are all on disk, still match what it wants and are fresh by the
request's `Lifetime` (mayu_py.pki.x509: the one renewal rule) is served without a lock and
without signing; anything else re-checks under the directory's lock, so several processes
asking at once sign each leaf once and all return the same bytes. A rotation re-issues a
leaf with the validity it had (a short-lived one stays short-lived).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from mayu_py.files import atomic_write
from mayu_py.pki import files
from mayu_py.pki.authorities import Authorities
from mayu_py.pki.x509 import (
    LEAF_LIFETIME,
    LEAF_VALIDITY,
    LeafSpec,
    Lifetime,
    authority_key_id,
    certificate_pem,
    issue,
    issued_validity,
    key_id,
    load_certificate,
    private_key_pem,
    utcnow,
)

log = logging.getLogger(__name__)

BUNDLE_SUFFIX = ".pem"
_PEM_BEGIN = "-----BEGIN "


@dataclass(frozen=True)
class Leaf:
    """An issued leaf: certificate and private key (PEM) and the parsed certificate."""

    certificate_pem: str
    key_pem: str
    certificate: x509.Certificate = field(compare=False, repr=False)

    @classmethod
    def parse(cls, bundle: str) -> Leaf:
        """Read a bundle (certificate PEM followed by key PEM); ValueError when malformed."""
        split = bundle.find(_PEM_BEGIN, 1)
        if not bundle.startswith(_PEM_BEGIN) or split < 0:
            raise ValueError("not a certificate-and-key bundle")
        return cls(bundle[:split], bundle[split:], load_certificate(bundle[:split]))

    @property
    def common_name(self) -> str:
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value)


class LeafCache:
    """The cached leaves under one directory, signed by one cluster's authorities."""

    def __init__(self, directory: Path, authorities: Authorities) -> None:
        self.directory = directory
        self.authorities = authorities

    def leaves(
        self, wanted: Mapping[str, LeafSpec], lifetime: Lifetime = LEAF_LIFETIME
    ) -> dict[str, Leaf]:
        """Exactly the wanted leaves, reusing cached ones that still match their spec and
        are fresh (`lifetime`); new ones are issued for `lifetime.validity`."""
        cached = self._all_usable(wanted, lifetime)
        if cached is not None:
            return cached
        files.ensure_private_dir(self.directory)
        with files.exclusive_lock(self.directory):
            return self._refresh(wanted, lifetime)

    def rotate(self, within: timedelta, force: bool) -> list[str]:
        """Re-issue (same identity, new key) every leaf expiring within `within`, or all."""
        if not self.directory.is_dir():
            return []
        rotated = []
        rule = Lifetime(LEAF_VALIDITY, renew_before=within)
        with files.exclusive_lock(self.directory):
            now = utcnow()
            for path in sorted(self.directory.glob("*" + BUNDLE_SUFFIX)):
                leaf = self._read(path.stem)
                if leaf is None:
                    continue
                certificate = leaf.certificate
                ca = self.authorities.name_for_key_id(authority_key_id(certificate))
                if ca is None:
                    log.warning(
                        "leaf not signed by a current CA; it is re-issued on its next request",
                        extra={"subject": self.directory.name, "leaf": path.stem},
                    )
                    continue
                if force or not rule.fresh(certificate, now):
                    validity = issued_validity(certificate)
                    self._issue(path.stem, LeafSpec.of(certificate, ca), now, validity)
                    rotated.append(path.stem)
        return rotated

    def forget(self) -> list[str]:
        """Delete every cached leaf and its key; returns their serial numbers (hex), so the
        caller can tell which certificates are no longer issued to this subject."""
        if not self.directory.is_dir():
            return []
        serials = []
        with files.exclusive_lock(self.directory):
            for path in sorted(self.directory.glob("*" + BUNDLE_SUFFIX)):
                leaf = self._read(path.stem)
                if leaf is not None:
                    serials.append(f"{leaf.certificate.serial_number:x}")
                path.unlink()
        shutil.rmtree(self.directory, ignore_errors=True)
        return serials

    def _all_usable(
        self, wanted: Mapping[str, LeafSpec], lifetime: Lifetime
    ) -> dict[str, Leaf] | None:
        if not self.directory.is_dir() or set(self._names()) != set(wanted):
            return None
        now = utcnow()
        found = {}
        for name, spec in wanted.items():
            leaf = self._read(name)
            if leaf is None or not self._usable(leaf, spec, lifetime, now):
                return None
            found[name] = leaf
        return found

    def _refresh(self, wanted: Mapping[str, LeafSpec], lifetime: Lifetime) -> dict[str, Leaf]:
        now = utcnow()
        result = {}
        for name, spec in wanted.items():
            leaf = self._read(name)
            if leaf is None or not self._usable(leaf, spec, lifetime, now):
                leaf = self._issue(name, spec, now, lifetime.validity)
            result[name] = leaf
        for name in self._names():
            if name not in wanted:
                (self.directory / (name + BUNDLE_SUFFIX)).unlink()
                log.info("removed leaf no longer wanted", extra=self._context(name))
        return result

    def _usable(self, leaf: Leaf, spec: LeafSpec, lifetime: Lifetime, now: datetime) -> bool:
        certificate = leaf.certificate
        authority = self.authorities.cas[spec.ca]
        return (
            lifetime.fresh(certificate, now)
            and authority_key_id(certificate) == key_id(authority.certificate)
            and LeafSpec.of(certificate, spec.ca) == spec
        )

    def _issue(self, name: str, spec: LeafSpec, now: datetime, validity: timedelta) -> Leaf:
        certificate, key = issue(spec, self.authorities.cas[spec.ca], now, validity)
        leaf = Leaf(certificate_pem(certificate), private_key_pem(key), certificate)
        path = self.directory / (name + BUNDLE_SUFFIX)
        atomic_write(path, leaf.certificate_pem + leaf.key_pem, 0o600)
        log.info(
            "issued certificate",
            extra={
                **self._context(name),
                "ca": spec.ca,
                "serial": certificate.serial_number,
                "not_after": certificate.not_valid_after_utc.isoformat(),
            },
        )
        return leaf

    def _read(self, name: str) -> Leaf | None:
        """The cached leaf, or None when absent or unreadable (it is then issued again)."""
        text = files.read_text(self.directory / (name + BUNDLE_SUFFIX))
        if text is None:
            return None
        try:
            return Leaf.parse(text)
        except ValueError:
            log.warning("unreadable cached leaf; issuing it again", extra=self._context(name))
            return None

    def _names(self) -> list[str]:
        return [p.stem for p in self.directory.glob("*" + BUNDLE_SUFFIX)]

    def _context(self, name: str) -> dict[str, str]:
        return {
            "cluster": self.authorities.cluster_name,
            "subject": self.directory.name,
            "leaf": name,
        }
