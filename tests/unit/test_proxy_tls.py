"""The PROXY line read before TLS on the HTTPS listener: only from an allowed balancer, only
when the connection starts with one, and a malformed or endless line is an error (the worker
closes the connection)."""

from __future__ import annotations

import socket

import pytest

from mayu_py.cli.proxy_tls import ProxyLineError, proxied_peer
from mayu_py.cli.wsgi import proxy_protocol_options

BALANCER = ("127.0.0.2", 40000)
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01"


def _peer_of(
    sent: bytes, peer: tuple[str, int], balancers: list[str]
) -> tuple[tuple[str, int], bytes]:
    """What proxied_peer answers for a connection that sent `sent`, and what is left to read."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(sent)
        theirs.shutdown(socket.SHUT_WR)
        found = proxied_peer(ours, peer, balancers)
        return found, ours.recv(4096)


def test_an_allowed_balancer_names_the_machine_and_the_line_is_consumed() -> None:
    line = b"PROXY TCP4 10.0.0.7 10.0.0.1 51234 8443\r\n"
    assert _peer_of(line + TLS_HELLO, BALANCER, ["127.0.0.2"]) == (("10.0.0.7", 51234), TLS_HELLO)
    line6 = b"PROXY TCP6 fd00::7 fd00::1 51234 8443\r\n"
    assert _peer_of(line6, BALANCER, ["127.0.0.2"]) == (("fd00::7", 51234), b"")


def test_anyone_else_is_not_read_and_keeps_its_own_address() -> None:
    forged = b"PROXY TCP4 10.0.0.7 10.0.0.1 51234 8443\r\n"
    assert _peer_of(forged, ("127.0.0.1", 5555), ["127.0.0.2"]) == (("127.0.0.1", 5555), forged)
    assert _peer_of(forged, BALANCER, []) == (BALANCER, forged)


def test_a_balancer_connection_without_a_line_is_its_own() -> None:
    assert _peer_of(TLS_HELLO, BALANCER, ["127.0.0.2"]) == (BALANCER, TLS_HELLO)
    assert _peer_of(b"PROXY UNKNOWN\r\n", BALANCER, ["127.0.0.2"]) == (BALANCER, b"")


@pytest.mark.parametrize(
    "sent",
    [
        b"PROXY TCP4 10.0.0.7 10.0.0.1 51234\r\n",  # a field short
        b"PROXY TCP4 fd00::7 10.0.0.1 51234 8443\r\n",  # TCP4 with an IPv6 source
        b"PROXY TCP4 10.0.0.999 10.0.0.1 51234 8443\r\n",
        b"PROXY TCP4 10.0.0.7 10.0.0.1 99999 8443\r\n",
        b"PROXY " + b"x" * 200 + b"\r\n",  # longer than the protocol allows
        b"PROXY TCP4 10.0.0.7",  # closed inside the line
    ],
)
def test_a_bad_line_from_the_balancer_is_an_error(sent: bytes) -> None:
    with pytest.raises(ValueError):
        _peer_of(sent, BALANCER, ["127.0.0.2"])
    assert issubclass(ProxyLineError, ValueError)


def test_gunicorn_trusts_no_proxy_header_unless_balancers_are_named() -> None:
    assert proxy_protocol_options([]) == {"proxy_protocol": False, "proxy_allow_ips": ""}
    assert proxy_protocol_options(["127.0.0.2", "::1"]) == {
        "proxy_protocol": True,
        "proxy_allow_ips": "127.0.0.2,::1",
    }
