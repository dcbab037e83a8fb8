"""BmcCoordinates: address forms per protocol, option checks, and the password kept out of sight."""

from __future__ import annotations

import pytest

from mayu_py.bmc.coordinates import BmcCoordinates, BmcProtocol
from mayu_py.errors import Unprocessable

SECRET = "s3cret-pw"


def redfish(address: str, **options: object) -> BmcCoordinates:
    return BmcCoordinates(BmcProtocol.REDFISH, address, "admin", SECRET, **options)  # type: ignore[arg-type]


def ipmi(address: str, **options: object) -> BmcCoordinates:
    return BmcCoordinates(BmcProtocol.IPMI, address, "admin", SECRET, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("10.0.0.5", "https://10.0.0.5"),
        ("bmc.rack1:8443", "https://bmc.rack1:8443"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://[fd00::5]:443/", "https://[fd00::5]:443"),
        ("  https://bmc  ", "https://bmc"),
    ],
)
def test_redfish_address_forms(address: str, url: str) -> None:
    assert redfish(address).url == url


@pytest.mark.parametrize(
    ("address", "complaint"),
    [
        ("ftp://bmc", "scheme 'ftp'"),
        ("https://root:pw@bmc", "credentials go in username/password"),
        ("https://bmc/redfish/v1", "without a path"),
        ("https://bmc?x=1", "without a path"),
        ("https://bmc:99999", "invalid port"),
        ("https://:443", "has no host"),
    ],
)
def test_redfish_address_errors_name_the_field(address: str, complaint: str) -> None:
    with pytest.raises(Unprocessable, match=complaint) as caught:
        redfish(address)
    assert caught.value.message.startswith("bmc.address: ")
    assert caught.value.detail == {"field": "bmc.address"}


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        ("10.0.0.5", ("10.0.0.5", 623)),
        ("10.0.0.5:6230", ("10.0.0.5", 6230)),
        ("[fd00::5]:6230", ("fd00::5", 6230)),
        ("bmc-7", ("bmc-7", 623)),
    ],
)
def test_ipmi_address_forms(address: str, endpoint: tuple[str, int]) -> None:
    assert ipmi(address).endpoint == endpoint


@pytest.mark.parametrize("address", ["https://bmc", "bmc/x", "bmc:0x10", "user@bmc"])
def test_ipmi_takes_host_and_port_only(address: str) -> None:
    with pytest.raises(Unprocessable, match="^bmc.address: "):
        ipmi(address)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ipmi("bmc", system_id="1"), "system_id"),
        (lambda: ipmi("bmc", ca_bundle="/ca.pem"), "ca_bundle"),
        (lambda: ipmi("bmc", ipmi_cipher_suite=8), "ipmi_cipher_suite"),
        (lambda: redfish("bmc", ipmi_cipher_suite=3), "ipmi_cipher_suite"),
        (lambda: redfish("bmc", system_id=" "), "system_id"),
        (lambda: redfish("bmc", verify_tls=False, ca_bundle="/ca.pem"), "ca_bundle"),
        (lambda: BmcCoordinates(BmcProtocol.IPMI, "bmc", "admin", "x" * 21), "password"),
        (lambda: BmcCoordinates(BmcProtocol.IPMI, "bmc", "", SECRET), "username"),
        (lambda: BmcCoordinates("snmp", "bmc", "admin", SECRET), "protocol"),  # type: ignore[arg-type]
    ],
)
def test_options_that_do_not_fit_the_protocol(build, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unprocessable) as caught:
        build()
    assert caught.value.message.startswith(f"bmc.{field}: ")


def test_the_ipmi_password_limit_counts_bytes() -> None:
    assert ipmi("bmc").password == SECRET
    with pytest.raises(Unprocessable, match="at most 20 bytes"):
        BmcCoordinates(BmcProtocol.IPMI, "bmc", "admin", "é" * 11)


def test_protocol_given_as_text_becomes_the_enum() -> None:
    coords = BmcCoordinates("ipmi", "bmc", "admin", SECRET)  # type: ignore[arg-type]
    assert coords.protocol is BmcProtocol.IPMI
    assert coords.label == "ipmi bmc"


def test_the_password_is_never_shown() -> None:
    for coords in (redfish("https://bmc", system_id="1"), ipmi("bmc", ipmi_cipher_suite=3)):
        assert SECRET not in repr(coords)
        assert SECRET not in str(coords.public()) and "password" not in coords.public()
        assert SECRET not in coords.label
    assert redfish("https://bmc", system_id="1").public() == {
        "protocol": "redfish",
        "address": "https://bmc",
        "username": "admin",
        "system_id": "1",
        "verify_tls": True,
    }
    assert ipmi("bmc", ipmi_cipher_suite=3).public()["ipmi_cipher_suite"] == 3


def test_from_dict_builds_and_checks_inventory_data() -> None:
    coords = BmcCoordinates.from_dict(
        {"protocol": "redfish", "address": "https://bmc", "username": "u", "password": "p"}
    )
    assert coords == BmcCoordinates(BmcProtocol.REDFISH, "https://bmc", "u", "p")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("redfish://bmc", "^bmc: must be a mapping"),
        ({"protocol": "ipmi", "address": "b", "username": "u"}, "^bmc.password: is required"),
        (
            {"protocol": "ipmi", "address": "b", "username": "u", "password": "p", "pasword": 1},
            "^bmc.pasword: unknown key",
        ),
        (
            {"protocol": "redfish", "address": "b", "username": "u", "password": "p",
             "verify_tls": "no"},
            "^bmc.verify_tls: must be true or false",
        ),
        (
            {"protocol": "ipmi", "address": "b", "username": "u", "password": "p",
             "ipmi_cipher_suite": "3"},
            "^bmc.ipmi_cipher_suite: must be one of",
        ),
        (
            {"protocol": "redfish", "address": "b", "username": "u", "password": "p",
             "system_id": 7},
            "^bmc.system_id: must be a string",
        ),
        ({"protocol": "ipmi", "address": "b", "username": "u", "password": 5}, "^bmc.password"),
    ],
)  # fmt: skip
def test_from_dict_errors_name_the_field(data: object, message: str) -> None:
    with pytest.raises(Unprocessable, match=message):
        BmcCoordinates.from_dict(data)
