"""One keep-alive HTTP/1.1 connection to an etcd member, for POSTs of JSON: the least a
client must do (a request line, three headers; a reply with Content-Length or chunked
transfer encoding). http.client parses every reply's headers with the email package, which
cost more CPU than the rest of an etcd call together (measured: docs/store.md)."""

from __future__ import annotations

import socket
import ssl

MAX_LINE = 65536


class HttpError(OSError):
    """The connection broke or the reply was not HTTP/1.1 as expected."""


class Http1Connection:
    def __init__(
        self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.tls = tls
        self._sock: socket.socket | None = None
        self._reader = None

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Open the TCP (and TLS) connection; any OSError means nothing was sent."""
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        self._sock = sock
        self._reader = sock.makefile("rb")

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Send one POST and read its reply: (status, body). OSError when the connection
        breaks (the request may or may not have been processed)."""
        if self._sock is None or self._reader is None:
            raise HttpError("not connected")
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._sock.sendall(head.encode() + body)
        reader = self._reader
        status_line = reader.readline(MAX_LINE)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"no HTTP reply: {status_line[:80]!r}")
        length, chunked, closing = None, False, False
        while True:
            line = reader.readline(MAX_LINE)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                closing = b"close" in value.lower()
        data = self._chunked() if chunked else self._exactly(length or 0)
        if closing:
            self.close()
        return int(parts[1]), data

    def _exactly(self, count: int) -> bytes:
        assert self._reader is not None
        data = self._reader.read(count)
        if len(data) != count:
            raise HttpError("connection closed inside a reply")
        return data

    def _chunked(self) -> bytes:
        assert self._reader is not None
        chunks = []
        while True:
            size = int(self._reader.readline(MAX_LINE).split(b";")[0], 16)
            if size == 0:  # trailers (etcd's errors carry one) up to a blank line
                while self._reader.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self._exactly(size))
            self._reader.readline(MAX_LINE)

    def close(self) -> None:
        for closable in (self._reader, self._sock):
            if closable is not None:
                closable.close()
        self._sock = self._reader = None
