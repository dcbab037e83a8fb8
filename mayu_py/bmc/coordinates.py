"""Where a BMC is and how to log in: protocol, address, credentials, system id, TLS options.

Addresses: Redfish takes a URL (`https://bmc.example:443`, `http://127.0.0.1:8000`) or a bare
`host[:port]`, which means https (real BMCs serve Redfish over TLS only). IPMI takes
`host[:port]` (port 623 by default; IPv6 as `[::1]:623`). Credentials never sit in the URL.
The password is kept out of repr() and out of `public()`, which is what an API may show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlsplit

from mayu_py.errors import Unprocessable

IPMI_DEFAULT_PORT = 623
IPMI_PASSWORD_MAX = 20  # bytes, IPMI 2.0 (RAKP)
# 17: pyghmi's own negotiation (SHA-256, SHA-1 when the BMC refuses); 3: SHA-1 only, which
# virtualbmc needs (see pyghmi_sha1).
IPMI_CIPHER_SUITES = (3, 17)


class BmcProtocol(StrEnum):
    REDFISH = "redfish"
    IPMI = "ipmi"


def _invalid(field_name: str, message: str) -> Unprocessable:
    return Unprocessable(f"bmc.{field_name}: {message}", {"field": f"bmc.{field_name}"})


def _redfish_url(address: str) -> str:
    text = address.strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    if parts.scheme not in ("http", "https"):
        raise _invalid("address", f"scheme {parts.scheme!r} is not http or https")
    if parts.username is not None or parts.password is not None:
        raise _invalid("address", "credentials go in username/password, not the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _invalid("address", "give scheme://host[:port] without a path")
    if not parts.hostname:
        raise _invalid("address", "has no host")
    _port(parts)
    return f"{parts.scheme}://{parts.netloc}"


def _ipmi_endpoint(address: str) -> tuple[str, int]:
    text = address.strip()
    if "://" in text or "/" in text:
        raise _invalid("address", "IPMI takes host[:port], not a URL")
    parts = urlsplit(f"//{text}")
    if not parts.hostname or parts.username is not None:
        raise _invalid("address", "IPMI takes host[:port]")
    return parts.hostname, _port(parts) or IPMI_DEFAULT_PORT


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise _invalid("address", "has an invalid port") from None


@dataclass(frozen=True)
class BmcCoordinates:
    """A validated BMC address with credentials; raises Unprocessable naming the field."""

    protocol: BmcProtocol
    address: str
    username: str
    password: str = field(repr=False)
    system_id: str | None = None  # Redfish only: a member of /redfish/v1/Systems
    verify_tls: bool = True  # Redfish over https: check the BMC's certificate
    ca_bundle: str | None = None  # ... against this CA file instead of the system's CAs
    ipmi_cipher_suite: int = 17

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "protocol", BmcProtocol(self.protocol))
        except ValueError:
            raise _invalid("protocol", f"{self.protocol!r} is not redfish or ipmi") from None
        for name in ("address", "username", "password"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise _invalid(name, "must be a non-empty string")
        if self.protocol is BmcProtocol.REDFISH:
            self._check_redfish()
        else:
            self._check_ipmi()

    def _check_redfish(self) -> None:
        if self.ipmi_cipher_suite != 17:
            raise _invalid("ipmi_cipher_suite", "only applies to protocol ipmi")
        if self.system_id is not None and not self.system_id.strip():
            raise _invalid("system_id", "must be non-empty when given")
        if self.ca_bundle is not None and not self.verify_tls:
            raise _invalid("ca_bundle", "given while verify_tls is false")
        _redfish_url(self.address)

    def _check_ipmi(self) -> None:
        if self.system_id is not None:
            raise _invalid("system_id", "only applies to protocol redfish")
        if self.ca_bundle is not None:
            raise _invalid("ca_bundle", "only applies to protocol redfish")
        if self.ipmi_cipher_suite not in IPMI_CIPHER_SUITES:
            raise _invalid("ipmi_cipher_suite", f"must be one of {IPMI_CIPHER_SUITES}")
        if len(self.password.encode()) > IPMI_PASSWORD_MAX:
            raise _invalid("password", f"IPMI passwords have at most {IPMI_PASSWORD_MAX} bytes")
        _ipmi_endpoint(self.address)

    @property
    def url(self) -> str:
        """Redfish: the service's base URL (scheme://host[:port]), without a path."""
        return _redfish_url(self.address)

    @property
    def endpoint(self) -> tuple[str, int]:
        """IPMI: (host, UDP port)."""
        return _ipmi_endpoint(self.address)

    @property
    def label(self) -> str:
        """How messages name this BMC: protocol and address, never credentials."""
        return f"{self.protocol} {self.address.strip()}"

    def public(self) -> dict[str, Any]:
        """Everything but the password, for API answers and logs."""
        shown: dict[str, Any] = {
            "protocol": str(self.protocol),
            "address": self.address,
            "username": self.username,
        }
        if self.protocol is BmcProtocol.REDFISH:
            shown |= {"system_id": self.system_id, "verify_tls": self.verify_tls}
            if self.ca_bundle:
                shown["ca_bundle"] = self.ca_bundle
        else:
            shown["ipmi_cipher_suite"] = self.ipmi_cipher_suite
        return shown

    @classmethod
    def from_dict(cls, data: Any) -> BmcCoordinates:
        """Build from inventory data (YAML/JSON mapping); unknown keys are an error."""
        if not isinstance(data, dict):
            raise Unprocessable("bmc: must be a mapping", {"field": "bmc"})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise _invalid(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
        missing = [k for k in ("protocol", "address", "username", "password") if k not in data]
        if missing:
            raise _invalid(missing[0], "is required")
        if not isinstance(data.get("verify_tls", True), bool):
            raise _invalid("verify_tls", "must be true or false")
        suite = data.get("ipmi_cipher_suite", 17)
        if isinstance(suite, bool) or not isinstance(suite, int):
            raise _invalid("ipmi_cipher_suite", f"must be one of {IPMI_CIPHER_SUITES}")
        for name in ("system_id", "ca_bundle"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise _invalid(name, "must be a string")
        return cls(**data)
