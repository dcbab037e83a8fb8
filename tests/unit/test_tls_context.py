"""The HTTPS listeners' TLS context is built once per process (gunicorn's own hook builds one
per connection, reading the certificate and key each time), and again when either file
changes, so a new certificate still takes effect without a restart."""

from __future__ import annotations

import os
from pathlib import Path

from gunicorn.config import Config
from gunicorn.sock import ssl_context

from mayu_py.cli.wsgi import reused_ssl_context, server_options
from mayu_py.pki import server_tls


def test_one_context_per_process_until_the_certificate_changes(tmp_path: Path) -> None:
    tls = server_tls.load_or_create(tmp_path / "pki", ["127.0.0.1"])
    options = server_options(
        "127.0.0.1:0", 1, "test", certfile=str(tls.cert_file), keyfile=str(tls.key_file)
    )
    assert options["ssl_context"] is reused_ssl_context
    config = Config()
    for key in ("certfile", "keyfile", "ssl_context"):
        config.set(key, options[key])
    first = ssl_context(config)
    assert ssl_context(config) is first
    stat = tls.cert_file.stat()
    os.utime(tls.cert_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    renewed = ssl_context(config)
    assert renewed is not first and ssl_context(config) is renewed
    assert "ssl_context" not in server_options("127.0.0.1:0", 1, "plain")
