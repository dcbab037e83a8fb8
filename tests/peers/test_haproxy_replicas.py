"""A real HAProxy (the shipped docs/examples/haproxy-replicas.cfg, run as is) on 127.0.0.1 in
front of two `mayu serve` replicas on etcd, connecting to them from 127.0.0.2 with the PROXY
protocol: a machine on 127.0.0.3 goes through its whole conversation via the balancer (each
step to the next replica), and its boot token is bound to 127.0.0.3, not to the balancer.
A direct connection that forges a PROXY header is refused by a replica that does not allow
its address, on both listeners; the same header from the balancer's address is believed."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mayu_py.lab.etcd import EtcdCluster
from tests.conftest import REPO, RunningServer, free_port
from tests.support.replicas import start_replicas
from tests.support.wait import wait_for

pytestmark = pytest.mark.peer

CONFIG_FILE = REPO / "docs" / "examples" / "haproxy-replicas.cfg"
BALANCER = "127.0.0.2"  # the address HAProxy connects to the replicas from
MACHINE = "127.0.0.3"  # the machine's own address
FORGER = "127.0.0.1"
_TOKEN = re.compile(r"token=([A-Za-z0-9_-]+)")


class Front:
    """The balancer's two ports on 127.0.0.1."""

    def __init__(self) -> None:
        self.http_port, self.https_port = free_port(), free_port()

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


def _request(
    url: str, source: str, method: str = "GET", body: bytes | None = None, ca: Path | None = None
) -> tuple[int, bytes]:
    """One request from `source` (a loopback address), as a machine sends it."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=30, context=context, source_address=(source, 0)
        )
    else:
        conn = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=30, source_address=(source, 0)
        )
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        conn.request(method, f"{parts.path}?{parts.query}", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory, etcd_cluster: EtcdCluster
) -> Iterator[tuple[Front, list[RunningServer]]]:
    tmp_path = tmp_path_factory.mktemp("haproxy")
    lb = Front()
    config = {
        "groups": [{"name": "all", "profile": "worker", "selector": {}}],
        "store": {"url": etcd_cluster.url(f"/mayu-haproxy-{uuid.uuid4().hex[:8]}/")},
        "server": {
            "public_url": lb.http,
            "tls": {"public_url": lb.https},
            "proxy_protocol_from": [BALANCER],
        },
    }
    replicas = start_replicas(tmp_path, 2, config)
    env = {
        **os.environ,
        "MAYU_LB_ADDR": "127.0.0.1",
        "MAYU_LB_HTTP_PORT": str(lb.http_port),
        "MAYU_LB_HTTPS_PORT": str(lb.https_port),
        "MAYU_LB_SOURCE": BALANCER,
    }
    for index, replica in enumerate(replicas, 1):
        env[f"MAYU_REPLICA_{index}_HTTP"] = urlsplit(replica.url).netloc
        env[f"MAYU_REPLICA_{index}_HTTPS"] = urlsplit(replica.tls_url).netloc
    log = tmp_path / "haproxy.log"
    with open(log, "wb") as out:
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(CONFIG_FILE)], env=env, stdout=out, stderr=out
        )
    try:

        def ready() -> bool:  # listening, and both replicas passed HAProxy's /readyz check
            assert haproxy.poll() is None, log.read_text()
            try:
                statuses = [_request(f"{lb.http}/readyz", MACHINE)[0] for _ in range(4)]
            except OSError:
                return False
            return statuses == [200] * 4

        wait_for("HAProxy in front of both replicas", ready, timeout_s=30)
        yield lb, replicas
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=10)
        for replica in replicas:
            replica.kill()


def test_through_haproxy_a_token_is_bound_to_the_machine_not_the_balancer(
    front: tuple[Front, list[RunningServer]],
) -> None:
    lb, (a, b) = front
    mac = "52:54:00:00:0f:01"
    status, script = _request(f"{lb.http}/ipxe?mac={mac}", MACHINE)
    assert status == 200, script
    found = _TOKEN.search(script.decode())
    assert found, script
    query = f"mac={mac}&token={found.group(1)}"
    status, stub = _request(f"{lb.http}/ignition?{query}", MACHINE)
    assert status == 200, stub
    source = json.loads(stub)["ignition"]["config"]["merge"][0]["source"]
    assert source.startswith(lb.https + "/"), source  # the stub names the balancer
    status, secret = _request(source, MACHINE, ca=a.ca_file)
    assert status == 200, secret
    report = json.dumps({"event": "installed"}).encode()
    status, answer = _request(f"{lb.http}/report?{query}", MACHINE, "POST", report)
    assert status == 200, answer

    machine = b.api("GET", f"/api/v1/machines/{mac}").json()
    assert machine["state"] == "installed" and machine["ip"] == MACHINE, machine
    sources = {event["source"] for event in machine["events"]}
    assert sources == {MACHINE}, machine["events"]


def _forged(listener: str, source: str, tls_ca: Path | None = None) -> int:
    """Send a PROXY line naming 10.9.8.7, then ask for /ipxe: the HTTP status (0: the
    connection was refused before any answer)."""
    host, port = urlsplit(listener).netloc.rsplit(":", 1)
    line = f"PROXY TCP4 10.9.8.7 {host} 40404 {port}\r\n".encode()
    request = b"GET /ipxe?mac=52:54:00:00:0f:02 HTTP/1.0\r\nHost: x\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0)) as raw:
        raw.sendall(line)
        try:
            if tls_ca is None:
                raw.sendall(request)
                reply = raw.makefile("rb").read()
            else:
                context = ssl.create_default_context(cafile=str(tls_ca))
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    tls.sendall(request)
                    reply = tls.makefile("rb").read()
        except (ssl.SSLError, ConnectionError):
            return 0
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def test_a_forged_proxy_header_is_refused_unless_it_comes_from_the_balancer(
    front: tuple[Front, list[RunningServer]],
) -> None:
    _, (a, _) = front
    assert _forged(a.url, FORGER) == 403
    assert _forged(a.tls_url, FORGER, a.ca_file) == 0  # the line broke the TLS handshake
    assert a.api("GET", "/api/v1/machines/52:54:00:00:0f:02").status_code == 404
    # the same line from the balancer's address is believed (the machine is 10.9.8.7)
    assert _forged(a.url, BALANCER) == 200
    machine = a.api("GET", "/api/v1/machines/52:54:00:00:0f:02").json()
    assert {e["source"] for e in machine["events"]} == {"10.9.8.7"}, machine
