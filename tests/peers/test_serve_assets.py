"""Assets through the production server (`mayu serve`: gunicorn, sendfile), not the Flask test
client: a download interrupted mid-way resumes with Range (and If-Range on the ETag) to the
same bytes, on the main listener and on the asset listener; and while slow downloads hold
connections on the asset listener, /ipxe answers promptly."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import RunningServer, free_port, start_server

pytestmark = pytest.mark.peer

SIZE = 24 << 20  # more than the loopback socket buffers hold: a client that does not read
# holds the server's sending thread
SLOW = 12  # slow downloads held open at once (the main listener has 2 sync workers)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    """`mayu serve` with an asset listener; an image in its assets root. Yields the server
    and the image's URL on the asset listener."""
    assets = f"127.0.0.1:{free_port()}"
    root = tmp_path / "data" / "assets" / "lab"
    root.mkdir(parents=True)
    with open(root / "disk.img", "wb") as image:
        for block in range(SIZE >> 20):
            image.write(hashlib.sha512(str(block).encode()).digest() * (1 << 14))
    served = start_server(tmp_path / "data", extra_args=("--assets-listen", assets))
    try:
        yield served, f"http://{assets}/assets/lab/disk.img"
    finally:
        served.kill()


def _resumed(url: str, expected: str) -> None:
    """Read the first part, drop the connection, fetch the rest with Range/If-Range."""
    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == SIZE
    etag = head.headers["ETag"]
    first = requests.get(url, stream=True, timeout=10)
    part = first.raw.read(5 << 20)
    first.close()  # interrupted
    rest = requests.get(url, headers={"Range": f"bytes={len(part)}-", "If-Range": etag}, timeout=30)
    assert rest.status_code == 206
    assert rest.headers["Content-Range"] == f"bytes {len(part)}-{SIZE - 1}/{SIZE}"
    assert hashlib.sha256(part + rest.content).hexdigest() == expected


def test_an_interrupted_download_resumes_with_range(
    server: tuple[RunningServer, str], tmp_path: Path
) -> None:
    served, on_asset_listener = server
    expected = hashlib.sha256(
        (tmp_path / "data" / "assets" / "lab" / "disk.img").read_bytes()
    ).hexdigest()
    _resumed(f"{served.url}/assets/lab/disk.img", expected)
    _resumed(on_asset_listener, expected)
    stale = requests.get(
        on_asset_listener, headers={"Range": "bytes=100-", "If-Range": '"old"'}, timeout=30
    )
    assert stale.status_code == 200 and len(stale.content) == SIZE
    script = requests.get(served.url + "/boot.ipxe", timeout=10)
    assert script.status_code == 200


def _slow_download(url: str) -> socket.socket:
    """A download that reads nothing: it holds its connection and a server thread."""
    parts = urlsplit(url)
    conn = socket.create_connection((parts.hostname, parts.port), timeout=10)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    assert conn.recv(64).startswith(b"HTTP/1.1 200")
    return conn


def test_scripts_answer_promptly_while_slow_downloads_hold_the_asset_listener(
    server: tuple[RunningServer, str],
) -> None:
    served, on_asset_listener = server
    held = [_slow_download(on_asset_listener) for _ in range(SLOW)]
    try:
        latencies = []
        for n in range(20):
            started = time.monotonic()
            answer = requests.get(
                f"{served.url}/ipxe", params={"mac": f"52-54-00-5f-00-{n:02x}"}, timeout=10
            )
            latencies.append(time.monotonic() - started)
            assert answer.status_code == 200
        assert max(latencies) < 0.5, latencies
        # The downloads are still being held, not finished.
        assert all(conn.recv(1) for conn in held)
    finally:
        for conn in held:
            conn.close()
