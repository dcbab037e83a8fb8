"""ApiSource (through the admin API client) speaks the agent API shapes the server implements,
against a stdlib fake server; its errors say whether they are temporary."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mayu_py.agent.source import ApiSource
from mayu_py.api_client import ApiError
from mayu_py.tenants import HostRegistration, NodeReport, NodeState

NODE = {
    "tenant": "acme", "node": "acme-master-0", "role": "master", "generation": 2,
    "spec_hash": "abc", "cpus": 1, "memory_mib": 512, "disk_gib": 2, "image": "lab",
    "mac": "52:54:00:AA:BB:CC", "ip": "10.100.0.10", "uuid": "u",
    "network": {"cidr": "10.100.0.0/24", "vni": 100, "gateway": "10.100.0.1"},
}  # fmt: skip


@pytest.fixture
def server():
    seen: list[tuple[str, str, str | None, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            seen.append((self.command, self.path, self.headers.get("Authorization"), body))
            if self.headers.get("Authorization") != "Bearer s3cret":
                self.send_response(401)
                payload = b'{"error": "unauthorized"}'
            elif self.path == "/api/v1/hosts/h1/nodes":
                self.send_response(200)
                payload = json.dumps([NODE]).encode()
            elif self.path.endswith("/ignition"):
                self.send_response(200)
                payload = b'{"ignition":{"version":"3.3.0"}}'
            else:
                self.send_response(200)
                payload = b"{}"
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()


def test_api_shapes(server) -> None:
    url, seen = server
    source = ApiSource(url + "/", "s3cret", "h1")
    source.register(HostRegistration("h1", 2, 4096, "192.0.2.5", "192.0.2.6"))
    nodes = source.desired_nodes()
    assert nodes[0].name == "acme-master-0" and nodes[0].mac == "52:54:00:aa:bb:cc"
    assert nodes[0].gateway == "10.100.0.1" and nodes[0].generation == 2
    assert source.ignition(nodes[0]) == b'{"ignition":{"version":"3.3.0"}}'
    source.report(
        NodeReport("acme", "acme-master-0", NodeState.RUNNING, "10.100.0.10", "h1", "", 2)
    )
    assert [(m, p, b) for m, p, _a, b in seen] == [
        ("POST", "/api/v1/hosts", {"name": "h1", "cpus": 2, "memory_mib": 4096,
                                   "address": "192.0.2.5", "underlay": "192.0.2.6"}),
        ("GET", "/api/v1/hosts/h1/nodes", None),
        ("GET", "/api/v1/tenants/acme/nodes/acme-master-0/ignition", None),
        ("PUT", "/api/v1/tenants/acme/nodes/acme-master-0/status",
         {"state": "running", "ip": "10.100.0.10", "host": "h1", "message": "", "generation": 2,
              "reason": ""}),
    ]  # fmt: skip
    assert {a for _m, _p, a, _b in seen} == {"Bearer s3cret"}


def test_errors(server) -> None:
    url, _seen = server
    with pytest.raises(ApiError) as info:
        ApiSource(url, "wrong", "h1").desired_nodes()
    assert info.value.detail == {"error": "unauthorized"}
    assert info.value.status == 401 and not info.value.temporary
    assert info.value.message == "GET /api/v1/hosts/h1/nodes: 401 unauthorized"
    with pytest.raises(ApiError) as info:
        ApiSource("http://127.0.0.1:9", "s3cret", "h1", timeout_s=2).desired_nodes()
    assert info.value.temporary and "cannot reach http://127.0.0.1:9" in info.value.message
