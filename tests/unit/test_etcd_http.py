"""The etcd HTTP/1.1 client reads chunked replies to their very end, trailers included (etcd's
gateway ends an error reply with a `Grpc-Trailer-Content-Type` trailer): the next request on
the same keep-alive connection then reads its own reply, not the rest of the last one."""

from __future__ import annotations

import socket
import threading

from mayu_py.store.etcd_http import Http1Connection

ERROR_REPLY = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
    b"Trailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'0d\r\n{"code": 5}\r\n\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n'
)
OK_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def test_a_chunked_reply_with_a_trailer_leaves_nothing_behind() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            peer, _ = server.accept()
            with peer:
                for reply in (ERROR_REPLY, OK_REPLY):
                    peer.recv(65536)
                    peer.sendall(reply)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        conn = Http1Connection("127.0.0.1", port, timeout=5)
        conn.connect()
        try:
            assert conn.post("/v3/lease/revoke", b"{}") == (404, b'{"code": 5}\r\n')
            assert conn.post("/v3/kv/range", b"{}") == (200, b"{}")
        finally:
            conn.close()
        thread.join(timeout=5)
