"""The lab's replica topology (`mayu lab up --store etcd --replicas N`): what it refuses, each
replica's config, and what `down` removes without a state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mayu_py.errors import ConfigError
from mayu_py.lab import replicas
from mayu_py.lab import topology as topo


@pytest.mark.parametrize(
    ("store", "count", "dhcp", "message"),
    [
        ("sqlite", 2, "full", "--replicas above 1 needs --store etcd"),
        ("etcd", 0, "full", "--replicas must be between 1 and 5"),
        ("etcd", 6, "full", "--replicas must be between 1 and 5"),
        ("etcd", 2, "proxy", "--dhcp proxy with --replicas above 1 is not supported"),
    ],
)
def test_what_the_lab_refuses(store: str, count: int, dhcp: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replicas.check(store, count, dhcp)


def test_one_sqlite_server_and_etcd_replicas_pass() -> None:
    replicas.check("sqlite", 1, "proxy")
    replicas.check("etcd", 2, "full")
    replicas.check("etcd", 1, "proxy")


def test_each_replica_tells_machines_the_balancer_and_believes_only_it(tmp_path: Path) -> None:
    base = {
        "data_dir": str(tmp_path),
        "server": {"listen": "10.77.0.1:8080", "tls": {"listen": "10.77.0.1:8443"}},
        "store": {"request_timeout_seconds": 2},
    }
    url = "etcd://127.0.0.1:2379/mayu-lab/"
    first = replicas.replica_config(base, url, tmp_path, 1, tmp_path / "assets")
    second = replicas.replica_config(base, url, tmp_path, 2, tmp_path / "assets")
    assert first["data_dir"] == str(tmp_path)
    assert second["data_dir"] == str(tmp_path / "lab" / "replica-2")
    for config in (first, second):
        assert config["store"] == {"request_timeout_seconds": 2, "url": url}
        assert config["server"]["public_url"] == topo.SERVER_URL
        assert config["server"]["tls"] == {
            "listen": "10.77.0.1:8443",
            "public_url": topo.SERVER_TLS_URL,
        }
        assert config["server"]["proxy_protocol_from"] == [topo.SERVER_IP]
        assert config["assets"] == {"root": str(tmp_path / "assets")}
    assert base["server"]["tls"] == {"listen": "10.77.0.1:8443"}  # the base is left alone
    assert replicas.listen(2) == ("10.77.0.1:8082", "10.77.0.1:8445")


def test_down_removes_the_etcd_data_and_further_replicas_by_their_paths(tmp_path: Path) -> None:
    work = tmp_path / "lab"
    for name in ("etcd/m1.etcd", "replica-2", "replica-3"):
        (work / name).mkdir(parents=True)
    (work / "serve.log").write_text("kept")
    done = replicas.remove_files(tmp_path)
    assert done == [f"removed {work / n}" for n in ("etcd", "replica-2", "replica-3")]
    assert sorted(p.name for p in work.iterdir()) == ["serve.log"]
    assert replicas.remove_files(tmp_path) == []
