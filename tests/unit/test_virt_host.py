"""LibvirtHost reconnects after "client socket is closed", retries while libvirtd is down,
and translates libvirtError at its boundary."""

from __future__ import annotations

import libvirt
import pytest

from mayu_py.errors import NotFound, PeerUnavailable
from mayu_py.virt.host import LibvirtFailed, LibvirtHost


def error(code: int, text: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(text)
    exc.err = (code, 0, text, 0, None, None, None, 0, 0)
    return exc


class DeadConn:
    def isAlive(self) -> int:
        return 0

    def getInfo(self) -> list:
        raise error(libvirt.VIR_ERR_INTERNAL_ERROR, "internal error: client socket is closed")


class LiveConn:
    def isAlive(self) -> int:
        return 1

    def getInfo(self) -> list:
        return ["x86_64", 4096, 2]

    def lookupByName(self, name: str) -> None:
        raise error(libvirt.VIR_ERR_NO_DOMAIN, f"Domain not found: {name}")

    def defineXML(self, xml: str) -> None:
        raise error(libvirt.VIR_ERR_XML_ERROR, "bad xml")


def test_reconnects_after_socket_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    conns = [DeadConn(), LiveConn()]
    monkeypatch.setattr(libvirt, "open", lambda uri: conns.pop(0))
    host = LibvirtHost("qemu:///system")
    assert host.capacity() == (2, 4096)
    assert conns == []


def test_retries_while_daemon_down_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[str] = []
    sleeps: list[float] = []

    def down(uri: str) -> None:
        attempts.append(uri)
        raise error(libvirt.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket: No such file")

    monkeypatch.setattr(libvirt, "open", down)
    host = LibvirtHost("qemu:///system", attempts=4, backoff_s=0.5, sleep=sleeps.append)
    with pytest.raises(PeerUnavailable):
        host.capacity()
    assert len(attempts) == 4 and sleeps == [0.5, 1.0, 2.0]

    conns: list[object] = [LiveConn()]

    def flaky(uri: str) -> object:
        if len(attempts) < 6:
            attempts.append(uri)
            raise error(libvirt.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket")
        return conns.pop()

    monkeypatch.setattr(libvirt, "open", flaky)
    assert host.capacity() == (2, 4096)


def test_errors_are_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libvirt, "open", lambda uri: LiveConn())
    host = LibvirtHost("test:///default")
    with pytest.raises(NotFound):
        host.domain_xml("nope")
    with pytest.raises(LibvirtFailed) as info:
        host.define_domain("<domain/>")
    assert info.value.detail == {"op": "defineXML", "code": libvirt.VIR_ERR_XML_ERROR}
    host.delete_domain("nope")  # missing is already deleted
