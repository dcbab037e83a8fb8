"""Two `mayu serve` replicas (own data dirs, own ports on 127.0.0.1) on one etcd cluster,
the second given the first's replica key: they pin the same server CA and cluster CAs, any
step of a machine's conversation may go to either, their admin APIs answer the same, and a
one-time boot token is spent once however the two replicas are asked, even at the same
moment."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mayu_py.lab.etcd import EtcdCluster
from tests.conftest import RunningServer, start_server
from tests.support.boot import ipxe, register

pytestmark = pytest.mark.peer

SHARED = ["pki/mayu/ca/kubernetes.key", "pki/mayu/ca/sa.key", "pki/server/ca.key", "bmc.key"]


@pytest.fixture
def replicas(tmp_path: Path, etcd_cluster: EtcdCluster) -> Iterator[list[RunningServer]]:
    url = etcd_cluster.url(f"/mayu-replicas-{uuid.uuid4().hex[:8]}/")
    first = start_server(tmp_path / "a", extra_args=("--store", url), workers=1)
    started = [first]
    try:
        (tmp_path / "b").mkdir()
        shutil.copy(first.data_dir / "replica.key", tmp_path / "b" / "replica.key")
        started.append(start_server(tmp_path / "b", extra_args=("--store", url), workers=1))
        yield started
    finally:
        for server in started:
            server.kill()


def _secret_path(stub_server: RunningServer, mac: str, token: str) -> str:
    """The path of the secret config the stub (from `stub_server`) names over HTTPS."""
    stub = requests.get(
        f"{stub_server.url}/ignition", params={"mac": mac, "token": token}, timeout=30
    )
    assert stub.status_code == 200, stub.text
    source: str = stub.json()["ignition"]["config"]["merge"][0]["source"]
    return source[source.index("/", len("https://")) :]


def test_two_replicas_serve_one_inventory_and_spend_each_token_once(
    replicas: list[RunningServer],
) -> None:
    a, b = replicas
    for path in SHARED:
        assert (a.data_dir / path).read_bytes() == (b.data_dir / path).read_bytes(), path
    mac = "52:54:00:00:0e:01"
    ipxe(a.url, mac)  # discovered through a
    approved = b.api("POST", f"/api/v1/machines/{mac}/approve", json={"role": "worker"})
    assert approved.status_code == 200, approved.text  # approved through b
    token = register(a.url, mac)
    path = _secret_path(b, mac, token)
    secret = requests.get(a.tls_url + path, verify=str(b.ca_file), timeout=30)
    assert secret.status_code == 200, secret.text  # stub from b, its secret bytes from a
    again = requests.get(b.tls_url + path, verify=str(a.ca_file), timeout=30)
    assert again.status_code == 403, again.text  # spent on a
    report = requests.post(
        f"{b.url}/report", params={"mac": mac, "token": token}, json={"event": "installed"},
        timeout=30,
    )  # fmt: skip
    assert report.status_code == 200, report.text
    for path in ("/api/v1/machines", f"/api/v1/machines/{mac}"):
        assert a.api("GET", path).json() == b.api("GET", path).json(), path
    assert a.api("GET", f"/api/v1/machines/{mac}").json()["state"] == "installed"

    # the same token presented to both replicas at once: exactly one gets the secret
    racer = "52:54:00:00:0e:02"
    ipxe(b.url, racer)
    assert a.api("POST", f"/api/v1/machines/{racer}/approve", json={"role": "worker"}).ok
    token = register(b.url, racer)
    path = _secret_path(a, racer, token)
    urls = [server.tls_url + path for server in (a, b)]
    statuses: list[int] = []
    gate = threading.Barrier(2)

    def fetch(url: str) -> None:
        gate.wait()
        statuses.append(requests.get(url, verify=str(a.ca_file), timeout=30).status_code)

    threads = [threading.Thread(target=fetch, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses)[0] == 200 and statuses.count(200) == 1, statuses
