"""The real Ignition binary fetches a machine's config from a running `mayu serve` and writes it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import RunningServer, start_server
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


def _boot(server: RunningServer, mac: str) -> str:
    response = requests.get(
        f"{server.url}/ipxe",
        params={"mac": mac, "uuid": "9b3c1f1e-0c39-4b0b-9e5c-6a8c3f1d2e4a", "serial": "SN-1"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    url = re.search(r"ignition\.config\.url=(\S+)", response.text)
    assert url
    return url.group(1)


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
        "DNS:node-52540010000",
        "IP Address:127.0.0.1",
    ):
        assert expected in sans, sans


def test_worker_gets_no_control_plane_secrets(served: RunningServer, tmp_path: Path) -> None:
    for i in range(2, 5):  # the first three machines are controllers
        _boot(served, f"52-54-00-10-00-0{i}")
    url = _boot(served, "52-54-00-10-00-09")
    result = run_ignition(tmp_path, remote_config(url))
    assert result.returncode == 0, result.log[-3000:]
    root = result.sysroot
    assert (root / "etc/systemd/system/kubelet.service").is_file()
    assert not (root / "etc/kubernetes/manifests/kube-apiserver.yaml").exists()
    assert not (root / "etc/kubernetes/pki/ca.key").exists()
    assert (root / "etc/kubernetes/pki/ca.crt").is_file()


def test_reused_token_fails_the_real_fetch(served: RunningServer, tmp_path: Path) -> None:
    url = _boot(served, "52-54-00-10-00-0a")
    assert requests.get(url, timeout=30).status_code == 200
    result = run_ignition(tmp_path, remote_config(url), timeout=60)
    assert result.returncode != 0
    assert not (result.sysroot / "etc/kubernetes").exists()
