"""Boot the lab node image in qemu (TCG) and check what real Ignition did, as reported home.

Each test runs a tiny HTTP server on 127.0.0.1 (the guest reaches it as 10.0.2.2 through
qemu's user-mode network) serving an Ignition config and recording the phone-home report.
The HTTPS tests add a TLS server with a throw-away CA: the HTTP config is then a stub that
merges the real one from it (CA pinned, SHA-512 named), as `mayu serve` answers. A machine
that stays up serves TLS on 6443 with the apiserver certificate its config wrote (reached
through a qemu host forward, checked with `openssl s_client`).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import queue
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mayu_py.images.lab import LabImage, build_lab_image
from mayu_py.pki.x509 import (
    Authority,
    LeafSpec,
    certificate_pem,
    create_authority,
    issue,
    private_key_pem,
    utcnow,
)
from tests.conftest import free_port
from tests.support.ingress import Handshake, handshake
from tests.support.leaks import assert_no_leaks, snapshot
from tests.support.peers import require_peers
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 90.0
MAC = "52:54:00:4d:41:01"

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMayuLabImageTestKey0000000000000000000 core@test"
HELLO = "hello from mayu\nline two & 'quotes' \"double\"\n"
UNIT = (
    "[Unit]\nDescription=kubelet\n[Service]\nExecStart=/bin/true\n"
    "[Install]\nWantedBy=multi-user.target\n"
)
CONFIG: dict[str, Any] = {
    "ignition": {"version": "3.3.0"},
    "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [SSH_KEY], "groups": ["sudo"]}]},
    "storage": {
        "files": [
            {"path": "/etc/hostname", "mode": 0o644, "contents": {"source": "data:,node-a1%0A"}},
            {
                "path": "/etc/mayu/hello.txt",
                "mode": 0o640,
                "contents": {"source": "data:;base64," + base64.b64encode(HELLO.encode()).decode()},
            },
        ]
    },
    "systemd": {"units": [{"name": "kubelet.service", "enabled": True, "contents": UNIT}]},
}  # fmt: skip
EXPECTED = {
    "/etc/hostname": ("0644", b"node-a1\n"),
    "/etc/mayu/hello.txt": ("0640", HELLO.encode()),
    "/etc/systemd/system/kubelet.service": ("0644", UNIT.encode()),
    "/etc/systemd/system-preset/20-ignition.preset": ("0644", b"enable kubelet.service\n"),
    "/home/core/.ssh/authorized_keys.d/ignition": ("0600", (SSH_KEY + "\n").encode()),
}


@dataclass
class Server:
    """What the test server serves and what it saw."""

    port: int = 0
    config_status: int = 200
    config_body: bytes = json.dumps(CONFIG).encode()
    reports: queue.Queue[tuple[float, str, dict[str, Any]]] = field(default_factory=queue.Queue)
    requests: list[str] = field(default_factory=list)


def _handler(state: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(f"GET {self.path}")
            body = state.config_body if state.config_status == 200 else b"nope\n"
            self.send_response(state.config_status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(f"POST {self.path}")
            assert self.headers.get("Content-Type") == "application/json"
            state.reports.put((time.monotonic(), self.path, json.loads(raw)))
            self.send_response(204)
            self.end_headers()

    return Handler


@contextmanager
def _serving(
    handler: type[http.server.BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[int]:
    """A threaded HTTP (or, with `tls`, HTTPS) server on 127.0.0.1; yields its port."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()
    with _serving(_handler(state)) as state.port:
        yield state


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> LabImage:
    require_peers(QEMU)
    return build_lab_image(tmp_path_factory.mktemp("lab"))


def _qemu(image: LabImage, append: str, *extra: str, hostfwd: str = "") -> list[str]:
    return [
        QEMU, "-accel", "tcg", "-m", "256", "-display", "none", "-no-reboot",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-netdev", f"user,id=n0{f',hostfwd={hostfwd}' if hostfwd else ''}",
        "-device", f"virtio-net-pci,netdev=n0,mac={MAC},disable-legacy=on,romfile=",
        "-append", f"console=ttyS0 {append}",
        *extra,
    ]  # fmt: skip


@dataclass
class Boot:
    proc: subprocess.Popen[bytes]
    started: float
    console: Path


@pytest.fixture
def boot(tmp_path: Path, image: LabImage) -> Iterator[Any]:
    """boot(append, *qemu_args, serial_stdio=, hostfwd=) starts a VM (`hostfwd`: qemu's
    `tcp:127.0.0.1:PORT-:GUESTPORT`); every VM is killed when the test ends, and then nothing
    of it is left."""
    boots: list[Boot] = []
    before = snapshot(None, markers=[str(tmp_path)])

    def start(append: str, *extra: str, serial_stdio: bool = False, hostfwd: str = "") -> Boot:
        console = tmp_path / f"console{len(boots)}.log"
        serial = ["-chardev", "stdio,id=s0,signal=off", "-serial", "chardev:s0"]
        if not serial_stdio:
            serial = ["-serial", f"file:{console}"]
        proc = subprocess.Popen(
            _qemu(image, append, *serial, *extra, hostfwd=hostfwd),
            stdin=subprocess.PIPE if serial_stdio else subprocess.DEVNULL,
            stdout=subprocess.PIPE if serial_stdio else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        b = Boot(proc, time.monotonic(), console)
        boots.append(b)
        return b

    try:
        yield start
    finally:
        for b in boots:
            if b.proc.poll() is None:
                b.proc.kill()
            b.proc.wait(timeout=10)
    assert_no_leaks(before, snapshot(None, markers=[str(tmp_path)]))


def _report_arg(server: Server) -> str:
    base = f"http://10.0.2.2:{server.port}"
    return f"mayu.report={base}/report?mac=x&token=y"


def _report(server: Server, b: Boot) -> tuple[float, str, dict[str, Any]]:
    try:
        at, path, body = server.reports.get(timeout=BOOT_TIMEOUT)
    except queue.Empty:
        console = b.console.read_text(errors="replace") if b.console.exists() else ""
        pytest.fail(f"no report within {BOOT_TIMEOUT}s; console:\n{console[-3000:]}")
    print(f"\nqemu start -> report received: {at - b.started:.1f} s")
    return at, path, body


def _assert_powered_off(b: Boot) -> None:
    try:
        rc = b.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the VM did not power off after reporting")
    assert rc == 0
    print(f"qemu start -> qemu exited: {time.monotonic() - b.started:.1f} s")


def _assert_installed(body: dict[str, Any]) -> None:
    assert body["event"] == "installed", body
    details = body["details"]
    assert details["ip"] == "10.0.2.15"
    assert details["hostname"] == "node-a1"
    assert details["users"] == ["core"]
    files = {f["path"]: f for f in details["files"]}
    for path, (mode, content) in EXPECTED.items():
        assert path in files, f"{path} not reported: {sorted(files)}"
        assert files[path]["mode"] == mode, path
        assert files[path]["size"] == len(content), path
        assert files[path]["sha256"] == hashlib.sha256(content).hexdigest(), path
    # Our own skeleton is not something Ignition wrote.
    assert not {"/etc/passwd", "/etc/shadow", "/etc/selinux/config"} & set(files)


def test_metal_fetches_over_http_reports_installed_and_powers_off(server: Server, boot) -> None:
    config_url = f"http://10.0.2.2:{server.port}/ignition?mac=x&token=y"
    b = boot(f"ignition.config.url={config_url} {_report_arg(server)}")
    _, path, body = _report(server, b)
    assert path == "/report?mac=x&token=y"  # '&' survived the kernel command line
    assert "GET /ignition?mac=x&token=y" in server.requests
    _assert_installed(body)
    assert body["details"]["platform"] == "metal"
    _assert_powered_off(b)


GUEST_HOST = "10.0.2.2"  # the host as qemu's user-mode network shows it to the guest


@dataclass
class TlsServer:
    """An HTTPS server whose certificate (from `authority`) names GUEST_HOST."""

    authority: Authority
    port: int = 0
    body: bytes = json.dumps(CONFIG).encode()
    requests: list[str] = field(default_factory=list)

    def stub(self, ca_pem: str | None = None, body: bytes | None = None) -> bytes:
        """The HTTP config that merges ours: `ca_pem` pinned (default: our CA), the SHA-512
        of `body` (default: what we serve)."""
        ca = ca_pem or certificate_pem(self.authority.certificate)
        digest = hashlib.sha512(self.body if body is None else body).hexdigest()
        source = f"https://{GUEST_HOST}:{self.port}/ignition?mac=x&token=y"
        return json.dumps(
            {
                "ignition": {
                    "version": "3.3.0",
                    "config": {"merge": [{"source": source, "verification": {"hash": f"sha512-{digest}"}}]},
                    "security": {"tls": {"certificateAuthorities": [
                        {"source": "data:text/plain;base64," + base64.b64encode(ca.encode()).decode()}
                    ]}},
                }
            }
        ).encode()  # fmt: skip


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    now = utcnow()
    state = TlsServer(create_authority("lab-image-test-ca", "mayu", now))
    spec = LeafSpec(ca="test", common_name="test-server", ips=frozenset({GUEST_HOST}), server=True)
    certificate, key = issue(spec, state.authority, now)
    (tmp_path / "tls.crt").write_text(certificate_pem(certificate))
    (tmp_path / "tls.key").write_text(private_key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(f"GET {self.path}")
            self.send_response(200)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

    with _serving(Handler, context) as state.port:
        yield state


def test_metal_merges_the_secret_config_over_https_with_the_pinned_ca(
    server: Server, tls_server: TlsServer, boot
) -> None:
    """The stub over plain HTTP, the real config over HTTPS, verified by the pinned CA (the
    image's own CA bundle does not know it) and the SHA-512 the stub names."""
    server.config_body = tls_server.stub()
    config_url = f"http://{GUEST_HOST}:{server.port}/ignition?mac=x&token=y"
    b = boot(f"ignition.config.url={config_url} {_report_arg(server)}")
    _, _, body = _report(server, b)
    _assert_installed(body)
    assert "GET /ignition?mac=x&token=y" in server.requests
    assert tls_server.requests == ["GET /ignition?mac=x&token=y"]
    digest = hashlib.sha512(tls_server.body).hexdigest()
    console = b.console.read_text(errors="replace")
    assert f"fetched referenced config at https://{GUEST_HOST}:{tls_server.port}" in console
    assert f"with SHA512: {digest}" in console
    _assert_powered_off(b)


@pytest.mark.parametrize("wrong", ["ca", "hash"])
def test_https_merge_with_another_ca_or_hash_fails_and_nothing_is_written(
    server: Server, tls_server: TlsServer, boot, wrong: str
) -> None:
    if wrong == "ca":
        other = create_authority("someone-else", "mayu", utcnow())
        server.config_body = tls_server.stub(ca_pem=certificate_pem(other.certificate))
    else:
        server.config_body = tls_server.stub(body=b"{}")
    config_url = f"http://{GUEST_HOST}:{server.port}/ignition?mac=x&token=y"
    # A TLS failure is retried like a refused connection: the image bounds the fetch stage.
    b = boot(f"ignition.config.url={config_url} {_report_arg(server)} mayu.fetch_timeout=15")
    _, _, body = _report(server, b)
    assert body["event"] == "failed" and body["details"]["stage"] == "fetch", body
    log = body["details"]["log"]
    if wrong == "ca":
        assert "certificate signed by unknown authority" in log, log
        assert tls_server.requests == []  # no request got past the handshake
    else:
        assert "hash verification failed" in log, log
    assert "stage files" not in b.console.read_text(errors="replace")  # nothing was written
    _assert_powered_off(b)


def test_qemu_platform_reads_config_from_fw_cfg(server: Server, boot, tmp_path: Path) -> None:
    config = tmp_path / "node.ign"
    config.write_text(json.dumps(CONFIG))
    b = boot(_report_arg(server), "-fw_cfg", f"name=opt/com.coreos/config,file={config}")
    _, _, body = _report(server, b)
    _assert_installed(body)
    assert body["details"]["platform"] == "qemu"
    assert not [r for r in server.requests if r.startswith("GET")]  # no network fetch at all
    _assert_powered_off(b)


FETCH_RESULT = {404: "GET result: Not Found", 500: "GET result: Internal Server Error"}


@pytest.mark.parametrize("status", list(FETCH_RESULT))
def test_config_url_error_reports_failed(server: Server, boot, status: int) -> None:
    server.config_status = status
    config_url = f"http://10.0.2.2:{server.port}/ignition?mac=x&token=y"
    # Ignition retries a 5xx forever: the image bounds the fetch stage.
    b = boot(f"ignition.config.url={config_url} {_report_arg(server)} mayu.fetch_timeout=8")
    _, _, body = _report(server, b)
    assert body["event"] == "failed", body
    assert body["details"]["stage"] == "fetch"
    log = body["details"]["log"]
    assert f"GET http://10.0.2.2:{server.port}/ignition?mac=x&token=y: attempt #1" in log, log
    assert FETCH_RESULT[status] in log, log
    if status == 404:
        assert "CRITICAL : Ignition failed: resource not found" in log, log
    _assert_powered_off(b)


API_NAME = "demo-1.api.lab-image.test"
API_PKI = "/etc/kubernetes/pki"


def _data_file(path: str, text: str, mode: int) -> dict[str, Any]:
    data = base64.b64encode(text.encode()).decode()
    return {"path": path, "mode": mode, "contents": {"source": f"data:;base64,{data}"}}


def test_stay_keeps_network_up_with_a_root_shell_on_the_console_and_serves_the_api_cert(
    server: Server, boot, tmp_path: Path
) -> None:
    now = utcnow()
    authority = create_authority("lab-image-api-ca", "mayu", now)
    spec = LeafSpec(ca="test", common_name="kube-apiserver", dns_names=frozenset({API_NAME}),
                    server=True)  # fmt: skip
    certificate, key = issue(spec, authority, now)
    files = [
        *CONFIG["storage"]["files"],
        _data_file(f"{API_PKI}/apiserver.crt", certificate_pem(certificate), 0o644),
        _data_file(f"{API_PKI}/apiserver.key", private_key_pem(key), 0o600),
    ]
    config = tmp_path / "node.ign"
    config.write_text(json.dumps({**CONFIG, "storage": {"files": files}}))
    ca = tmp_path / "api-ca.crt"
    ca.write_text(certificate_pem(authority.certificate))
    port = free_port()
    api = f"127.0.0.1:{port}"
    b = boot(
        f"{_report_arg(server)} mayu.after=stay",
        "-fw_cfg",
        f"name=opt/com.coreos/config,file={config}",
        serial_stdio=True,
        hostfwd=f"tcp:{api}-:6443",
    )
    out = _Console(b.proc)
    _, _, body = _report(server, b)
    assert body["event"] == "installed"
    out.wait_for("MAYU-READY ip=10.0.2.15")
    # a shell that does not read the tty yet drops what is typed: type until it answers
    wait_for("a root shell on the console", lambda: out.ask("echo SH-$((40+2))", "SH-42"), 60)
    # the network is still up: the guest fetches from the test server (the host, 10.0.2.2)
    url = f"http://10.0.2.2:{server.port}/alive"
    assert out.ask(f"wget -q -O /dev/null {url} && echo NET-$((40+2))", "NET-42", 30)
    assert "GET /alive" in server.requests

    # the API stand-in: TLS on 6443 with the certificate Ignition wrote, verified for its name;
    # bare TCP connections (HAProxy's health checks) do not stop it...
    first = wait_for("TLS on 6443", lambda: _api_handshake(api, ca), 30)
    assert first.certificate == certificate_pem(certificate)
    for _ in range(5):
        socket.create_connection(("127.0.0.1", port), 5).close()
    for _ in range(3):
        assert _api_handshake(api, ca), "s_server stopped answering"
    # ...nor did anything make it exit (its respawn loop notes every exit there)
    assert out.ask("test -e /run/mayu/api.log || echo KEPT-$((40+2))", "KEPT-42", 10)

    out.send("hostname; poweroff -f\n")
    _assert_powered_off(b)
    assert "node-a1" in out.text()


def _api_handshake(api: str, ca: Path) -> Handshake | None:
    seen = handshake(None, api, API_NAME, ca)
    return seen if seen.ok else None


class _Console:
    """The guest's serial console over qemu's stdio chardev."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self._proc = proc
        self._buf = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        while chunk := self._proc.stdout.read1(4096):
            with self._lock:
                self._buf.extend(chunk)

    def text(self) -> str:
        with self._lock:
            return self._buf.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float = BOOT_TIMEOUT) -> None:
        if not self._seen(needle, timeout):
            pytest.fail(f"{needle!r} not on the console within {timeout}s:\n{self.text()[-3000:]}")

    def _seen(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            time.sleep(0.1)
        return False

    def ask(self, command: str, answer: str, timeout: float = 2.0) -> bool:
        """Type command; did `answer` show up within timeout? (Type commands whose answer
        differs from what they echo, e.g. `echo X-$((40+2))` answers X-42.)"""
        self.send(command + "\n")
        return self._seen(answer, timeout)

    def send(self, line: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(line.encode())
        self._proc.stdin.flush()
