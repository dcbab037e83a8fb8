"""Store URLs: sqlite:PATH and etcd[s]://HOST:PORT,...[/PREFIX][?ca=&cert=&key=]."""

from __future__ import annotations

from pathlib import Path

import pytest

from mayu_py.config import StoreConfig, load_settings
from mayu_py.errors import ConfigError
from mayu_py.store import open_store
from mayu_py.store.sqlite import SqliteStore
from mayu_py.store.url import EtcdLocation, SqliteLocation, parse_store_url


def test_sqlite_urls() -> None:
    assert parse_store_url("sqlite:/var/lib/mayu/x.db") == SqliteLocation(
        Path("/var/lib/mayu/x.db")
    )
    assert parse_store_url("sqlite:///abs/x.db") == SqliteLocation(Path("/abs/x.db"))
    assert parse_store_url("sqlite:rel.db") == SqliteLocation(Path("rel.db"))


def test_etcd_urls() -> None:
    location = parse_store_url("etcd://10.0.0.1:2379,[fd00::2]:2380,etcd-3/site-a")
    assert location == EtcdLocation(
        (("10.0.0.1", 2379), ("fd00::2", 2380), ("etcd-3", 2379)), "/site-a/"
    )
    assert parse_store_url("etcd://h:1").prefix == "/mayu/"  # type: ignore[union-attr]
    tls = parse_store_url("etcds://h:1/p/?ca=/c.pem&cert=/cl.pem&key=/cl.key")
    assert tls == EtcdLocation((("h", 1),), "/p/", True, "/c.pem", "/cl.pem", "/cl.key")
    from_config = parse_store_url("etcds://h:1", StoreConfig(ca_file="/ca.pem"))
    assert isinstance(from_config, EtcdLocation) and from_config.ca_file == "/ca.pem"
    assert from_config.describe() == "etcds://h:1/mayu/"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgres://x", "use sqlite:PATH"),
        ("sqlite:", "needs a PATH"),
        ("etcd://", "no etcd endpoint"),
        ("etcd://h:99999", "not HOST:PORT"),
        ("etcd://h:1?ca=/x", "need etcds://"),
        ("etcds://h:1?cert=/x", "both cert and key"),
        ("etcds://h:1?user=x", "unknown parameter"),
        ("etcd://h:1/caf\u00e9", "printable ASCII"),
    ],
)
def test_bad_urls_are_one_config_line(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        parse_store_url(url)
    assert info.value.message.startswith("config error at store.url:")


def test_open_store_follows_the_url(tmp_path: Path) -> None:
    default = open_store(tmp_path)
    assert isinstance(default, SqliteStore) and default.path == tmp_path / "inventory.sqlite3"
    elsewhere = open_store(tmp_path, config=StoreConfig(url=f"sqlite:{tmp_path}/other.db"))
    assert isinstance(elsewhere, SqliteStore) and elsewhere.path == tmp_path / "other.db"


def test_store_url_from_file_env_and_flag(tmp_path: Path) -> None:
    config = tmp_path / "mayu.yaml"
    config.write_text("store:\n  url: etcd://from-file:2379\n")
    assert load_settings(config, environ={}).store.url == "etcd://from-file:2379"
    env = {"MAYU_STORE": "etcd://from-env:2379"}
    assert load_settings(config, environ=env).store.url == "etcd://from-env:2379"
    flag = {("store", "url"): "sqlite:/x.db"}
    assert load_settings(config, flag, environ=env).store.url == "sqlite:/x.db"
    with pytest.raises(ConfigError, match="cert_file and key_file"):
        load_settings(None, {("store", "cert_file"): "/c.pem"}, environ={})
