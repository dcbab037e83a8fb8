"""The PROXY protocol (v1) in front of TLS, for the HTTPS listener behind a TCP balancer.

HAProxy's `send-proxy` writes one line naming the machine's address before the TLS handshake
(TLS passes through: machines pin the server CA). gunicorn parses PROXY lines only inside
the HTTP stream, after TLS, so this sync worker reads the line off the raw socket first, and
only from the addresses gunicorn's `proxy_allow_ips` names (server.proxy_protocol_from);
gunicorn then sees the machine's address as the peer. From anyone else nothing is read: a
forged line goes into the TLS handshake, which fails.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from gunicorn.workers.sync import SyncWorker

PREFIX = b"PROXY "
MAX_LINE = 107  # the longest v1 line, CRLF included (the protocol's own limit)
READ_TIMEOUT_S = 5.0

Address = tuple[str, int]


class ProxyLineError(ValueError):
    """A PROXY line that is malformed or too long."""


def _allowed(peer: str, balancers: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address == ipaddress.ip_address(b) for b in balancers)


def _read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        if len(line) >= MAX_LINE:
            raise ProxyLineError("PROXY line too long")
        byte = sock.recv(1)
        if not byte:
            raise ProxyLineError("connection closed inside the PROXY line")
        line += byte
    return line


def parse_line(line: bytes, peer: Address) -> Address:
    """The machine's address a v1 line names; `peer` for `PROXY UNKNOWN` (a health check)."""
    fields = line.decode("ascii", errors="replace").rstrip("\r\n").split(" ")
    if fields[:2] == ["PROXY", "UNKNOWN"]:
        return peer
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyLineError(f"bad PROXY line {line[:MAX_LINE]!r}")
    source, port = fields[2], fields[4]
    version = ipaddress.ip_address(source).version  # ValueError when not an address
    if version != (4 if fields[1] == "TCP4" else 6) or not port.isdigit() or int(port) > 65535:
        raise ProxyLineError(f"bad PROXY line {line[:MAX_LINE]!r}")
    return source, int(port)


def proxied_peer(sock: socket.socket, peer: Address, balancers: list[str]) -> Address:
    """The machine's address: read from a PROXY line when `peer` is an allowed balancer and
    the connection starts with one, else `peer` itself."""
    if not _allowed(peer[0], balancers):
        return peer
    sock.settimeout(READ_TIMEOUT_S)
    try:
        start = sock.recv(len(PREFIX), socket.MSG_PEEK | socket.MSG_WAITALL)
        if start != PREFIX:
            return peer  # the balancer's own connection (a health check) or plain TLS
        return parse_line(_read_line(sock), peer)
    finally:
        sock.settimeout(None)


class ProxyTlsWorker(SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker, reading an allowed balancer's PROXY line before TLS."""

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        try:
            addr = proxied_peer(client, addr, self.cfg.proxy_allow_ips)
        except (OSError, ValueError) as exc:
            self.log.warning("refused a connection from %s: %s", addr[0], exc)
            client.close()
            return
        super().handle(listener, client, addr)
