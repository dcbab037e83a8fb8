from __future__ import annotations

import pytest

from mayu_py.errors import BadRequest
from mayu_py.model import (
    MachineState,
    canonical_mac,
    canonical_uuid,
    clean_serial,
    transition_allowed,
)


@pytest.mark.parametrize(
    "raw",
    [
        "52-54-00-12-34-56",
        "52:54:00:12:34:56",
        "525400123456",
        "52:54:00:12:34:56".upper(),
    ],
)
def test_mac_forms_share_one_canonical_form(raw: str) -> None:
    assert canonical_mac(raw) == "52:54:00:12:34:56"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "52:54:00:12:34",
        "52-54:00-12-34-56",
        "zz:54:00:12:34:56",
        " 52-54-00-12-34-56 ",
        "52-54-00-12-34-56\n",
        "5254001234567",
        "52:54:00:12:34:5\n6",
        "../../etc",
    ],
)
def test_malformed_mac_is_bad_request(raw: str) -> None:
    with pytest.raises(BadRequest):
        canonical_mac(raw)


def test_uuid_forms() -> None:
    assert (
        canonical_uuid("5F1B8B1E-0C39-4B0B-9E5C-6A8C3F1D2E4A")
        == "5f1b8b1e-0c39-4b0b-9e5c-6a8c3f1d2e4a"
    )
    assert canonical_uuid("") is None
    with pytest.raises(BadRequest):
        canonical_uuid("not-a-uuid")


def test_serial_rejects_control_characters() -> None:
    assert clean_serial("SN-001") == "SN-001"
    with pytest.raises(BadRequest):
        clean_serial("bad\nserial")


def test_transitions() -> None:
    s = MachineState
    assert transition_allowed(s.DISCOVERED, s.CONFIGURED)
    assert transition_allowed(s.INSTALLING, s.INSTALLED)
    assert transition_allowed(s.INSTALLED, s.RUNNING)
    assert not transition_allowed(s.DISCOVERED, s.RUNNING)
    assert not transition_allowed(s.CONFIGURED, s.INSTALLED)
    assert transition_allowed(s.RUNNING, s.RUNNING)
