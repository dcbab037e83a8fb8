"""The real Ignition binary fetches a machine's config from a running `mayu serve` and writes
it: the stub over plain HTTP, then the real config it merges over HTTPS, with the server CA
pinned and the SHA-512 checked. A wrong CA, a wrong hash and a replayed token each fail."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from tests.conftest import RunningServer, start_server
from tests.support.boot import ipxe
from tests.support.ignition import remote_config, run_ignition

pytestmark = pytest.mark.peer

SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvPJ1mVkVbC0D0k7o2pm3C8fFz8mA9x5YxYt1ZkQmQx test@mayu"
)
MANIFESTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(
        tmp_path_factory.mktemp("srv") / "data", config={"ssh_authorized_keys": [SSH_KEY]}
    )
    try:
        yield srv
    finally:
        srv.kill()


IDENTITY = {"uuid": "9b3c1f1e-0c39-4b0b-9e5c-6a8c3f1d2e4a", "serial": "SN-1"}


def _boot(server: RunningServer, mac: str, role: str = "controller") -> str:
    """Enroll the machine with `role`; returns the Ignition URL of its installer script."""
    ipxe(server.url, mac, **IDENTITY)
    response = server.api("POST", f"/api/v1/machines/{mac}/approve", json={"role": role})
    assert response.status_code == 200, response.text
    url = re.search(r"ignition\.config\.url=(\S+)", ipxe(server.url, mac, **IDENTITY))
    assert url
    return url.group(1)


def _stub(url: str) -> dict:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert b"PRIVATE" not in response.content
    return response.json()


def _sans(cert: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_real_ignition_installs_a_controller(served: RunningServer, tmp_path: Path) -> None:
    url = _boot(served, "52-54-00-10-00-01")
    result = run_ignition(tmp_path, remote_config(url))
    assert result.returncode == 0, result.log[-3000:]
    root = result.sysroot

    unit = root / "etc/systemd/system/kubelet.service"
    assert unit.is_file() and "kubelet" in unit.read_text()
    preset = (root / "etc/systemd/system-preset/20-ignition.preset").read_text()
    assert "enable kubelet.service" in preset

    manifest_dir = root / "etc/kubernetes/manifests"
    assert sorted(p.stem for p in manifest_dir.glob("*.yaml")) >= sorted(MANIFESTS)
    referenced: set[str] = set()
    for name in MANIFESTS:
        text = (manifest_dir / f"{name}.yaml").read_text()
        yaml.safe_load(text)
        referenced |= set(re.findall(r"/etc/kubernetes/pki/[\w./-]+\.(?:crt|key|pub)", text))
    assert referenced, "manifests reference no certificates"
    for path in sorted(referenced):
        file = root / path.lstrip("/")
        assert file.is_file(), f"{path} referenced by a manifest but not written"
        if path.endswith(".key"):
            assert file.stat().st_mode & 0o777 == 0o600, path

    keys = root / "home/core/.ssh/authorized_keys.d/ignition"
    assert SSH_KEY in keys.read_text()

    pki = root / "etc/kubernetes/pki"
    for ca, leaf in (
        ("ca.crt", "apiserver.crt"),
        ("ca.crt", "apiserver-kubelet-client.crt"),
        ("etcd/ca.crt", "etcd/server.crt"),
        ("etcd/ca.crt", "etcd/peer.crt"),
        ("front-proxy-ca.crt", "front-proxy-client.crt"),
    ):
        verify = subprocess.run(
            ["openssl", "verify", "-CAfile", str(pki / ca), str(pki / leaf)],
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
    sans = _sans(pki / "apiserver.crt")
    for expected in (
        "DNS:kubernetes.default.svc.cluster.local",
        "IP Address:10.96.0.1",
        "DNS:node-525400100001",
        "IP Address:127.0.0.1",
    ):
        assert expected in {entry.strip() for entry in sans.split("\n", 1)[1].split(",")}, sans
    assert (root / "etc/mayu/report.token").stat().st_mode & 0o777 == 0o600
    assert "BEGIN CERTIFICATE" in (root / "etc/mayu/server-ca.crt").read_text()
    assert "token" not in (root / "etc/mayu/report-url").read_text()
    events = served.api("GET", "/api/v1/machines/52-54-00-10-00-01/events").json()["items"]
    assert events[-1]["to"] == "installing" and "HTTPS" in events[-1]["cause"]


def test_worker_gets_no_control_plane_secrets(served: RunningServer, tmp_path: Path) -> None:
    url = _boot(served, "52-54-00-10-00-09", role="worker")
    result = run_ignition(tmp_path, remote_config(url))
    assert result.returncode == 0, result.log[-3000:]
    root = result.sysroot
    assert (root / "etc/systemd/system/kubelet.service").is_file()
    assert not (root / "etc/kubernetes/manifests/kube-apiserver.yaml").exists()
    assert not (root / "etc/kubernetes/pki/ca.key").exists()
    assert (root / "etc/kubernetes/pki/ca.crt").is_file()


def test_reused_token_fails_the_real_fetch(served: RunningServer, tmp_path: Path) -> None:
    url = _boot(served, "52-54-00-10-00-0a", role="worker")
    stub = _stub(url)
    secret = stub["ignition"]["config"]["merge"][0]["source"]
    assert requests.get(secret, verify=str(served.ca_file), timeout=30).status_code == 200
    result = run_ignition(tmp_path, stub, timeout=60)
    assert result.returncode != 0
    assert "failed to fetch" in result.log
    assert not (result.sysroot / "etc/kubernetes").exists()


def _other_ca_pem(tmp_path: Path) -> str:
    key, cert = tmp_path / "other.key", tmp_path / "other.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=not-mayu", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert.read_text()


@pytest.mark.parametrize("tamper", ["wrong CA", "wrong hash"])
def test_tampered_stub_fails_the_real_fetch(
    served: RunningServer, tmp_path: Path, tamper: str
) -> None:
    mac = "52-54-00-10-00-0b" if tamper == "wrong CA" else "52-54-00-10-00-0c"
    stub = _stub(_boot(served, mac, role="worker"))
    ignition = stub["ignition"]
    if tamper == "wrong CA":
        pem = base64.b64encode(_other_ca_pem(tmp_path).encode()).decode()
        ignition["security"]["tls"]["certificateAuthorities"][0]["source"] = (
            f"data:text/plain;charset=utf-8;base64,{pem}"
        )
    else:
        ignition["config"]["merge"][0]["verification"]["hash"] = "sha512-" + "0" * 128
    # Ignition retries a TLS failure for ever: a bounded run that never applied is a failure.
    result = run_ignition(tmp_path, stub, timeout=20, may_time_out=True)
    assert result.returncode != 0
    expected = "certificate" if tamper == "wrong CA" else "hash"
    assert expected in result.log.lower(), result.log[-2000:]
    assert not (result.sysroot / "etc/kubernetes").exists()
    if tamper == "wrong hash":
        # The real config was served (and the token spent), but Ignition refused to apply it.
        state = served.api("GET", f"/api/v1/machines/{mac}").json()["state"]
        assert state == "installing"


def _get_from(source_ip: str, url: str) -> bytes:
    """GET url with the connection made from source_ip (another loopback address)."""
    parts = urlsplit(url)
    with socket.create_connection(
        (parts.hostname, parts.port), timeout=10, source_address=(source_ip, 0)
    ) as conn:
        conn.sendall(f"GET {parts.path}?{parts.query} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_stub_from_another_address_gets_nothing(served: RunningServer) -> None:
    """The window is bound to 127.0.0.1 (who asked for the script); 127.0.0.2 gets a 403."""
    url = _boot(served, "52-54-00-10-00-0d", role="worker")
    answer = _get_from("127.0.0.2", url)
    assert answer.split(b"\r\n", 1)[0].endswith(b"403 FORBIDDEN"), answer[:200]
    assert b"merge" not in answer
    assert requests.get(url, timeout=30).status_code == 200  # the machine itself still can
