"""`mayu serve --store etcd://...` as an operator runs it, against a real etcd cluster: a
machine enrolls, fetches its stub and secret config, reports; start-up errors about the
store are one line; /readyz follows the cluster's health."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from mayu_py.lab.etcd import EtcdCluster
from mayu_py.model import MachineState
from mayu_py.store.etcd import EtcdStore
from mayu_py.store.url import EtcdLocation, parse_store_url
from tests.conftest import free_port, start_server
from tests.peers.test_serve_cli import _fails_at_start
from tests.support.boot import enroll, fetch_config, ipxe

pytestmark = pytest.mark.peer

MAC = "52-54-00-00-06-01"


def test_a_machine_enrolls_fetches_and_reports_through_etcd(
    tmp_path: Path, etcd_cluster: EtcdCluster
) -> None:
    url = etcd_cluster.url(f"/mayu-serve-{uuid.uuid4().hex[:8]}/")
    server = start_server(tmp_path / "data", extra_args=("--store", url))
    try:
        assert f"store {url}" in server.log_path.read_text()
        token = enroll(server, MAC)
        config = fetch_config(server.url, MAC, token, server.ca_file)
        assert config["ignition"]["version"] == "3.3.0"
        again = requests.get(
            f"{server.tls_url}/ignition",
            params={"mac": MAC, "token": token},
            verify=str(server.ca_file),
            timeout=30,
        )
        assert again.status_code == 403  # the boot token was spent
        report = requests.post(
            f"{server.url}/report",
            params={"mac": MAC, "token": token},
            json={"event": "installed"},
            timeout=30,
        )
        assert report.status_code == 200, report.text
        shown = server.api("GET", f"/api/v1/machines/{MAC}").json()
        assert shown["state"] == "installed"
        kinds = [e["kind"] for e in shown["events"]]
        assert kinds[0] == "discovered" and kinds.count("transition") == 3
        assert "sanboot" in ipxe(server.url, MAC) or "exit" in ipxe(server.url, MAC)
        ready = server.api("GET", "/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
    finally:
        server.kill()
    assert not (server.data_dir / "inventory.sqlite3").exists()  # everything went to etcd
    location = parse_store_url(url)
    assert isinstance(location, EtcdLocation)
    stored = EtcdStore(location).get_machine("52:54:00:00:06:01")
    assert stored is not None and stored.state == MachineState.INSTALLED
    # the window is closed; the spent token's hash stays only to answer a repeated report
    assert stored.window_expires is None and stored.token_consumed is True


def test_store_in_the_config_file(tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    config = {"store": {"url": etcd_cluster.url(f"/mayu-cfg-{uuid.uuid4().hex[:8]}/")}}
    server = start_server(tmp_path / "data", config=config)
    try:
        script = ipxe(server.url, MAC)
        assert "token=" not in script  # discovered, waiting for approval
        listed = server.api("GET", "/api/v1/machines").json()["items"]
        assert [m["id"] for m in listed] == ["52:54:00:00:06:01"]
    finally:
        server.kill()
    assert not (server.data_dir / "inventory.sqlite3").exists()


def test_readyz_follows_the_cluster(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd", size=1).start()
    try:
        config = {"store": {"url": cluster.url(), "unavailable_after_seconds": 3}}
        server = start_server(tmp_path / "data", config=config)
        try:
            assert server.api("GET", "/readyz").status_code == 200
            cluster.kill_member(cluster.members[0])
            started = time.monotonic()
            down = server.api("GET", "/readyz")
            assert down.status_code == 503 and "failed" in down.json()["checks"]["store"]
            assert time.monotonic() - started < 10
            boot = requests.get(f"{server.url}/ipxe", params={"mac": MAC}, timeout=60)
            assert boot.status_code == 503  # after store.unavailable_after_seconds
            assert "application/problem+json" in boot.headers["Content-Type"]
            assert "unavailable" in json.dumps(boot.json())
        finally:
            server.kill()
    finally:
        cluster.stop()


def test_unreachable_or_malformed_store_is_one_line(tmp_path: Path) -> None:
    nobody = f"etcd://127.0.0.1:{free_port()}"
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump({"store": {"unavailable_after_seconds": 2}}))
    line = _fails_at_start(tmp_path / "a", "--store", nobody, "--config", str(config))
    assert "unavailable" in line and nobody.removeprefix("etcd://") in line
    line = _fails_at_start(tmp_path / "b", "--store", "etcd://127.0.0.1:1?ca=/x")
    assert line.startswith("mayu: config error at store.url") and "etcds://" in line
