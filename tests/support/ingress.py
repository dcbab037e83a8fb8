"""TLS clients for the ingress tests: `openssl s_client` run inside a network namespace the test
made (no route out: no test packet leaves the machine, RECIPES section 8) or, with no namespace,
against a loopback listener of this one; once or held open across a reload."""

from __future__ import annotations

import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mayu_py.command import run
from tests.support.wait import wait_for

REQUEST = b"GET /readyz HTTP/1.0\r\n\r\n"
PEM = r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----"


@contextmanager
def namespace(prefix: str) -> Iterator[str]:
    """A fresh network namespace with lo up, deleted afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        run(["ip", "netns", "del", name], check=False)


def _client_argv(ns: str | None, address: str, server_name: str, ca: Path | None) -> list[str]:
    argv = ["ip", "netns", "exec", ns] if ns else []
    argv += ["openssl", "s_client", "-connect", address]
    argv += ["-servername", server_name, "-verify_return_error"]
    if ca is not None:
        argv += ["-CAfile", str(ca), "-verify_hostname", server_name]
    return argv


@dataclass(frozen=True)
class Handshake:
    ok: bool  # a verified TLS session to a server presenting a certificate for the name
    output: str

    @property
    def subject(self) -> str:
        for line in self.output.splitlines():
            if line.startswith("subject="):
                return line.removeprefix("subject=").strip()
        return ""

    @property
    def certificate(self) -> str:
        """The server's certificate as s_client printed it (PEM), "" when there was none."""
        found = re.search(PEM, self.output, re.S)
        return found.group(0) + "\n" if found else ""


def handshake(ns: str | None, address: str, server_name: str, ca: Path | None) -> Handshake:
    """`openssl s_client` through the ingress at `address`, verifying the certificate against
    `ca` for `server_name` (None: no verification); it sends the request and reads the
    answer."""
    proc = subprocess.run(
        [*_client_argv(ns, address, server_name, ca), "-ign_eof"],
        input=REQUEST,
        capture_output=True,
        timeout=30,
    )
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    ok = proc.returncode == 0 and "Verify return code: 0 (ok)" in out and "HTTP/1.0 200" in out
    return Handshake(ok, out)


class HeldConnection:
    """A TLS session through the ingress, opened now (`wait_established`) and used later
    (`finish`)."""

    def __init__(self, ns: str, address: str, server_name: str, ca: Path) -> None:
        self.proc = subprocess.Popen(
            [*_client_argv(ns, address, server_name, ca), "-ign_eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
            self._output.extend(chunk)

    def established(self) -> bool:
        return self.proc.poll() is None

    @property
    def output(self) -> str:
        return self._output.decode(errors="replace")

    def wait_established(self, timeout: float = 30.0) -> None:
        """Until the handshake is done and the certificate verified (AssertionError if not)."""
        wait_for(
            "a verified TLS session",
            lambda: "Verify return code: 0 (ok)" in self.output or self.proc.poll() is not None,
            timeout,
            0.05,
        )
        assert self.proc.poll() is None, self.output

    def finish(self, timeout: float = 30.0) -> Handshake:
        """Send the request on the open session and read the answer to the end."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(REQUEST)
        self.proc.stdin.close()
        self.proc.wait(timeout)
        self._reader.join(timeout)
        text = self.output
        ok = self.proc.returncode == 0 and "HTTP/1.0 200" in text
        return Handshake(ok, text)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
