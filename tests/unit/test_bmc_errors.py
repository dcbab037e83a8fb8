"""The BMC boundary: library exceptions become one BmcError line; every call ends in bounded time.

Fakes: a small Redfish service (http.server) with two systems and narrow AllowableValues, a TCP
listener that never accepts (a hung BMC), a UDP socket that never answers (a silent IPMI BMC),
and hand-made sushy/pyghmi/requests exceptions. The real emulators are in tests/peers/test_bmc.py.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from pyghmi import exceptions as pyghmi_exc
from sushy import exceptions as sushy_exc

from mayu_py.bmc import pyghmi_sha1
from mayu_py.bmc.base import BootDevice, PowerState
from mayu_py.bmc.client import connect
from mayu_py.bmc.coordinates import BmcCoordinates, BmcProtocol
from mayu_py.bmc.errors import (
    BmcAuthFailed,
    BmcError,
    BmcSystemNotFound,
    BmcUnreachable,
    BmcUnsupported,
)
from mayu_py.bmc.ipmi import IpmiBmc
from mayu_py.bmc.redfish import RedfishBmc

SECRET = "pw-unit-secret"
SYSTEMS = "/redfish/v1/Systems"


def _system(ident: str, resets: list[str], boots: list[str]) -> dict[str, Any]:
    return {
        "@odata.id": f"{SYSTEMS}/{ident}",
        "Id": ident,
        "PowerState": "On",
        "Boot": {
            "BootSourceOverrideTarget": "Pxe",
            "BootSourceOverrideEnabled": "Continuous",
            "BootSourceOverrideTarget@Redfish.AllowableValues": boots,
        },
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": f"{SYSTEMS}/{ident}/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": resets,
            }
        },
    }


@dataclass
class FakeRedfish:
    """A Redfish service: GET serves `documents`, POST/PATCH are recorded and answered."""

    url: str = ""
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[str, str, Any]] = field(default_factory=list)
    refuse_writes: bool = False

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                document = fake.documents.get(self.path.rstrip("/") or "/")
                self._answer(200, document) if document else self._answer(404, {})

            def _write(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                fake.writes.append((self.command, self.path, json.loads(self.rfile.read(length))))
                if fake.refuse_writes:
                    self._answer(400, {"error": {"code": "Base.1.0.GeneralError",
                                                 "message": "ResetType not acceptable"}})  # fmt: skip
                else:
                    self._answer(204, {})

            do_POST = do_PATCH = _write  # noqa: N815

        return Handler


@pytest.fixture
def fake_redfish() -> Iterator[FakeRedfish]:
    fake = FakeRedfish()
    fake.documents = {
        "/redfish/v1": {
            "@odata.id": "/redfish/v1/",
            "Id": "RootService",
            "RedfishVersion": "1.5.0",
            "Systems": {"@odata.id": SYSTEMS},
        },
        SYSTEMS: {
            "@odata.id": SYSTEMS,
            "Members": [{"@odata.id": f"{SYSTEMS}/a"}, {"@odata.id": f"{SYSTEMS}/b"}],
            "Members@odata.count": 2,
        },
        f"{SYSTEMS}/a": _system("a", ["ForceOff"], ["Pxe"]),
        f"{SYSTEMS}/b": _system("b", ["On", "ForceOff", "ForceRestart"], ["Pxe", "Hdd"]),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def redfish(url: str, system_id: str | None = None) -> BmcCoordinates:
    return BmcCoordinates(BmcProtocol.REDFISH, url, "admin", SECRET, system_id=system_id)


def check_line(err: BmcError, coords: BmcCoordinates) -> str:
    text = str(err)
    assert "\n" not in text and SECRET not in text and SECRET not in json.dumps(err.to_json())
    assert text.startswith(f"BMC {coords.label}: ")
    return text


def test_several_systems_need_a_system_id(fake_redfish: FakeRedfish) -> None:
    coords = redfish(fake_redfish.url)
    with pytest.raises(BmcSystemNotFound, match="2 systems .*: set system_id") as caught:
        connect(coords).power_status()
    check_line(caught.value, coords)
    assert connect(redfish(fake_redfish.url, "a")).power_status() is PowerState.ON
    assert connect(redfish(fake_redfish.url, f"{SYSTEMS}/b")).power_status() is PowerState.ON
    with pytest.raises(BmcSystemNotFound, match="system c not found .*Systems/a"):
        connect(redfish(fake_redfish.url, "c")).power_status()


def test_actions_the_bmc_does_not_offer_are_unsupported(fake_redfish: FakeRedfish) -> None:
    bmc = connect(redfish(fake_redfish.url, "a"))  # offers ForceOff and Pxe only
    with pytest.raises(BmcUnsupported, match=r"power on: the BMC offers \['ForceOff'\] only"):
        bmc.power_on()
    with pytest.raises(BmcUnsupported, match="power cycle"):
        bmc.power_cycle()
    with pytest.raises(BmcUnsupported, match=r"boot device disk: the BMC offers \['Pxe'\]"):
        bmc.set_boot_device(BootDevice.DISK)
    assert fake_redfish.writes == []
    assert bmc.power_off().state is PowerState.ON  # the fake does not change state
    assert fake_redfish.writes[-1][2] == {"ResetType": "ForceOff"}


def test_boot_overrides_are_requested_continuous(fake_redfish: FakeRedfish) -> None:
    result = connect(redfish(fake_redfish.url, "b")).set_boot_device(BootDevice.DISK)
    assert result.persistent
    method, path, body = fake_redfish.writes[-1]
    assert (method, path) == ("PATCH", f"{SYSTEMS}/b")
    assert body["Boot"]["BootSourceOverrideTarget"] == "Hdd"
    assert body["Boot"]["BootSourceOverrideEnabled"] == "Continuous"


def test_cycle_restarts_a_running_system(fake_redfish: FakeRedfish) -> None:
    connect(redfish(fake_redfish.url, "b")).power_cycle()
    assert fake_redfish.writes[-1][2] == {"ResetType": "ForceRestart"}
    fake_redfish.documents[f"{SYSTEMS}/b"]["PowerState"] = "Off"
    connect(redfish(fake_redfish.url, "b")).power_cycle()
    assert fake_redfish.writes[-1][2] == {"ResetType": "On"}


def test_a_refused_request_is_unsupported_with_the_bmc_s_words(fake_redfish: FakeRedfish) -> None:
    fake_redfish.refuse_writes = True
    with pytest.raises(
        BmcUnsupported, match="power off: the BMC refused: ResetType not acceptable"
    ):
        connect(redfish(fake_redfish.url, "b")).power_off()


def test_no_redfish_service_at_the_address(fake_redfish: FakeRedfish) -> None:
    del fake_redfish.documents["/redfish/v1"]
    with pytest.raises(BmcUnsupported, match="no Redfish service at http://127.0.0.1"):
        connect(redfish(fake_redfish.url)).power_status()


def test_a_hung_redfish_bmc_fails_after_the_read_timeout() -> None:
    with socket.socket() as listener:  # accepts TCP (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        coords = redfish(f"http://127.0.0.1:{listener.getsockname()[1]}")
        start = time.monotonic()
        with pytest.raises(BmcUnreachable, match="power status: no answer within 1 s"):
            RedfishBmc(coords, timeout=1.0).power_status()
        assert time.monotonic() - start < 2.5


def test_a_silent_ipmi_bmc_fails_after_the_connect_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        coords = BmcCoordinates(
            BmcProtocol.IPMI, f"127.0.0.1:{silent.getsockname()[1]}", "admin", SECRET
        )
        start = time.monotonic()
        with pytest.raises(BmcUnreachable, match="no IPMI session within 0.5 s") as caught:
            IpmiBmc(coords, connect_timeout=0.5).power_on()
        assert time.monotonic() - start < 1.5
        assert caught.value.temporary and caught.value.status == 503
        check_line(caught.value, coords)


def _response(code: int, message: str = "") -> requests.Response:
    response = requests.Response()
    response.status_code = code
    response._content = json.dumps({"error": {"message": message}} if message else {}).encode()
    return response


def _sushy_connection_error(cause: Exception) -> sushy_exc.ConnectionError:
    try:
        raise cause
    except Exception as exc:
        try:
            raise sushy_exc.ConnectionError(url="http://bmc/redfish/v1/", error=exc)
        except sushy_exc.ConnectionError as wrapped:
            return wrapped


REDFISH_CASES = [
    (sushy_exc.AccessError("GET", "/x", _response(401)), BmcAuthFailed,
     "power on: authentication failed (HTTP 401)"),
    (sushy_exc.ServerSideError("GET", "/x", _response(500, "libvirt down")), BmcError,
     "power on: HTTP 500: libvirt down"),
    (sushy_exc.MissingActionError(action="#ComputerSystem.Reset", resource="/x"),
     BmcUnsupported, "power on: The action #ComputerSystem.Reset is missing"),
    (_sushy_connection_error(requests.exceptions.ConnectTimeout("slow")), BmcUnreachable,
     "power on: no connection within 2 s"),
    (_sushy_connection_error(requests.exceptions.ReadTimeout("slow")), BmcUnreachable,
     "power on: no answer within 10 s"),
    (_sushy_connection_error(requests.exceptions.ConnectionError(
        requests.packages.urllib3.exceptions.ProtocolError(
            "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")))),
     BmcUnreachable, "power on: unreachable (Connection reset by peer)"),
    (_sushy_connection_error(requests.exceptions.SSLError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
        "(_ssl.c:1006)")),
     BmcError, "power on: TLS failed: certificate verify failed: self-signed certificate"),
    (ValueError("Expecting value: line 1 column 1"), BmcError,
     "power on: unexpected answer (ValueError: Expecting value: line 1 column 1)"),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "kind", "text"), REDFISH_CASES)
def test_redfish_exception_mapping(exc: Exception, kind: type[BmcError], text: str) -> None:
    coords = redfish("https://bmc")
    mapped = RedfishBmc(coords)._translate("power on", exc)
    assert type(mapped) is kind
    assert check_line(mapped, coords).startswith(f"BMC redfish https://bmc: {text}")


IPMI_CASES = [
    (pyghmi_exc.IpmiException("Incorrect password provided"), BmcAuthFailed,
     "power on: authentication failed (Incorrect password provided)"),
    (pyghmi_exc.IpmiException("Unauthorized name"), BmcAuthFailed, "power on: authentication"),
    (pyghmi_exc.IpmiException(None), BmcUnreachable, "power on: no answer from bmc:623"),
    (pyghmi_exc.IpmiException("Session no longer connected"), BmcUnreachable,
     "power on: no answer from bmc:623"),
    (pyghmi_exc.IpmiException("Invalid command"), BmcUnsupported,
     "power on: the BMC answered 'Invalid command'"),
    (pyghmi_exc.IpmiException("Unspecified"), BmcError, "power on: the BMC answered 'Unspecified'"),
    (pyghmi_exc.InvalidParameterValue("Unknown power state"), BmcUnsupported,
     "power on: Unknown power state"),
    (socket.gaierror(-2, "Name or service not known"), BmcUnreachable,
     "power on: cannot resolve bmc (Name or service not known)"),
    (struct.error("pack expected 32 items for packing (got 20)"), BmcError,
     "power on: unexpected answer (error: pack expected 32 items"),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "kind", "text"), IPMI_CASES)
def test_ipmi_exception_mapping(exc: Exception, kind: type[BmcError], text: str) -> None:
    coords = BmcCoordinates(BmcProtocol.IPMI, "bmc", "admin", SECRET)
    mapped = IpmiBmc(coords)._translate("power on", exc)
    assert type(mapped) is kind
    assert check_line(mapped, coords).startswith(f"BMC ipmi bmc: {text}")


def test_error_kinds_and_http_status() -> None:
    assert [(cls.kind, cls.status, cls.temporary) for cls in (
        BmcError, BmcUnreachable, BmcAuthFailed, BmcUnsupported, BmcSystemNotFound)] == [
        ("failed", 502, False), ("unreachable", 503, True), ("auth", 502, False),
        ("unsupported", 502, False), ("not-found", 502, False)]  # fmt: skip
    long = BmcError("redfish x", "line one\nline two " + "y" * 400)
    assert "\n" not in long.message and len(long.message) < 300 and long.message.endswith("...")
    assert long.to_json()["detail"] == {"bmc": "redfish x", "kind": "failed"}


def test_sha1_applies_to_registered_endpoints_only() -> None:
    seen: list[object] = []

    class FakeSession:
        def __init__(self, bmc: str, port: int) -> None:
            self.bmc, self.port, self.attemptedhash = bmc, port, 256

    wrapped = pyghmi_sha1._wrap(seen.append)
    pyghmi_sha1.force_sha1("192.0.2.10", 6230)
    vbmc, other = FakeSession("192.0.2.10", 6230), FakeSession("192.0.2.10", 623)
    wrapped(vbmc)
    wrapped(other)
    assert seen == [vbmc, other]
    assert vbmc.attemptedhash == 1 and other.attemptedhash == 256


def test_the_sha1_hook_is_installed_once() -> None:
    from pyghmi.ipmi.private import session

    pyghmi_sha1.force_sha1("192.0.2.11", 623)
    installed = session.Session._initsession
    pyghmi_sha1.force_sha1("192.0.2.12", 623)
    assert session.Session._initsession is installed
    assert getattr(installed, pyghmi_sha1._MARK)
