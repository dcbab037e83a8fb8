"""BMC passwords at rest: sealed per machine, opened only with the same key and machine id."""

from __future__ import annotations

import os

import pytest

from mayu_py.bmc.sealing import PasswordSealer, SealError

MAC = "52:54:00:00:00:01"


def test_sealed_passwords_open_and_never_show() -> None:
    sealer = PasswordSealer(os.urandom(32))
    sealed = sealer.seal(MAC, "pässword-1")
    assert sealed.startswith("v1:") and "pässword" not in sealed
    assert sealer.seal(MAC, "pässword-1") != sealed  # a fresh nonce each time
    assert sealer.open(MAC, sealed) == "pässword-1"


@pytest.mark.parametrize("damage", ["other machine", "other key", "altered", "format"])
def test_a_sealed_password_opens_nowhere_else(damage: str) -> None:
    key = os.urandom(32)
    sealed = PasswordSealer(key).seal(MAC, "pw")
    sealer, machine = PasswordSealer(key), MAC
    if damage == "other machine":
        machine = "52:54:00:00:00:02"
    elif damage == "other key":
        sealer = PasswordSealer(os.urandom(32))
    elif damage == "altered":
        sealed = sealed[:-4] + ("AAAA" if sealed[-4:] != "AAAA" else "BBBB")
    else:
        sealed = "v0:" + sealed[3:]
    with pytest.raises(SealError, match="set the BMC again") as caught:
        sealer.open(machine, sealed)
    assert "\n" not in caught.value.message


def test_the_key_is_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PasswordSealer(b"short")
