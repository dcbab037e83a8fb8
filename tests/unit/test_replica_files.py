"""The files every replica shares (CAs, service-account key, server CA, bmc.key) live in the
store, private keys sealed with the replica key; a replica's data dir is a copy. Here on
SQLite (several data dirs, one store file); tests/peers/test_replicas.py runs two `mayu serve`
on etcd."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mayu_py.config import Settings, load_settings
from mayu_py.errors import ConfigError
from mayu_py.pki import ClusterPKI
from mayu_py.pki.server_tls import load_or_create as load_server_tls
from mayu_py.pki.server_tls import server_dir
from mayu_py.pki.x509 import authority_key_id, key_id, load_certificate
from mayu_py.server.replica_files import RECORD, shared_paths, sync_replica_files
from mayu_py.store import Store
from mayu_py.store.sqlite import SqliteStore
from tests.support.flask_app import AUTH, make_app, services_of
from tests.support.tenants import acme


def _settings(tmp_path: Path, name: str, **store: str) -> Settings:
    flat = {("data_dir",): str(tmp_path / name)}
    flat |= {("store", field): value for field, value in store.items()}
    return load_settings(None, flat, environ={})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return SqliteStore(tmp_path / "shared.sqlite3")


def _shared(settings: Settings) -> dict[str, bytes]:
    return {p: (settings.data_path / p).read_bytes() for p in shared_paths(settings)}


def test_replicas_share_the_cas_and_private_keys_are_sealed(tmp_path: Path, store: Store) -> None:
    first = _settings(tmp_path, "a")
    sync_replica_files(store, first)
    key_file = first.data_path / "replica.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    record = json.dumps(store.get_shared(RECORD))
    assert "PRIVATE KEY" not in record and "BEGIN CERTIFICATE" not in record  # base64
    files = store.get_shared(RECORD)["files"]  # type: ignore[index]
    assert all(("sealed" in e) == p.endswith(".key") for p, e in files.items())

    (tmp_path / "b").mkdir()
    shutil.copy(key_file, tmp_path / "b" / "replica.key")
    second = _settings(tmp_path, "b")
    sync_replica_files(store, second)
    assert _shared(second) == _shared(first)
    assert (second.data_path / "bmc.key").stat().st_mode & 0o777 == 0o600
    sync_replica_files(store, second)  # again: nothing changes
    assert _shared(second) == _shared(first)


def test_a_replica_with_its_own_cas_adopts_the_stores(tmp_path: Path, store: Store) -> None:
    first = _settings(tmp_path, "a")
    sync_replica_files(store, first)
    late = _settings(tmp_path, "late", replica_key_file=str(first.data_path / "replica.key"))
    # it ran alone once: its own CAs and a serving certificate from its own server CA
    ClusterPKI.load_or_create(late.data_path / "pki" / "mayu", "mayu")
    load_server_tls(server_dir(late.data_path), ["127.0.0.1"])
    sync_replica_files(store, late)
    assert _shared(late) == _shared(first)
    tls = load_server_tls(server_dir(late.data_path), ["127.0.0.1"])
    serving = load_certificate(tls.cert_file.read_text())
    shared_ca = load_certificate(tls.ca_pem)
    assert authority_key_id(serving) == key_id(shared_ca)  # issued again by the shared CA


def test_a_server_moving_to_a_shared_store_keeps_its_cas(tmp_path: Path, store: Store) -> None:
    alone = _settings(tmp_path, "alone")
    ClusterPKI.load_or_create(alone.data_path / "pki" / "mayu", "mayu")
    before = (alone.data_path / "pki/mayu/ca/kubernetes.crt").read_bytes()
    sync_replica_files(store, alone)
    assert (alone.data_path / "pki/mayu/ca/kubernetes.crt").read_bytes() == before
    stored = store.get_shared(RECORD)["files"]["pki/mayu/ca/kubernetes.crt"]  # type: ignore[index]
    assert stored["data"] and before.startswith(b"-----BEGIN CERTIFICATE")


@pytest.mark.parametrize("case", ["missing", "other", "readable", "garbage"])
def test_a_wrong_replica_key_is_one_line(tmp_path: Path, store: Store, case: str) -> None:
    sync_replica_files(store, _settings(tmp_path, "a"))
    key_file = tmp_path / "b" / "replica.key"
    key_file.parent.mkdir()
    if case != "missing":
        content = {"other": "ab" * 32, "readable": (tmp_path / "a/replica.key").read_text()}
        key_file.write_text(content.get(case, "not hex\n"))
        key_file.chmod(0o644 if case == "readable" else 0o600)
    with pytest.raises(ConfigError) as info:
        sync_replica_files(store, _settings(tmp_path, "b"))
    assert "\n" not in info.value.message
    assert {"missing": "does not exist", "other": "not the one", "readable": "chmod 600"}.get(
        case, "not a replica key"
    ) in info.value.message


def test_replicas_share_each_tenant_clusters_cas(tmp_path: Path) -> None:
    store_url = f"sqlite:{tmp_path / 'shared.sqlite3'}"

    def replica(name: str) -> FlaskClient:
        overrides = {("data_dir",): str(tmp_path / name), ("store", "url"): store_url}
        return make_app(tmp_path, overrides).test_client()

    first = replica("a")
    created = first.post("/api/v1/tenants", headers=AUTH, json=acme())
    assert created.status_code == 201, created.data
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "replica.key", tmp_path / "b" / "replica.key")
    second = replica("b")
    pems = [services_of(c).tenants.tenant_pki("acme").ca_certificate_pem for c in (second, first)]
    assert pems[0] == pems[1]
    key = "tenants/acme/pki/ca/kubernetes.key"
    assert (tmp_path / "a" / key).read_bytes() == (tmp_path / "b" / key).read_bytes()
    record = services_of(first).store.get_shared("tenant-pki:acme")
    assert record is not None and "PRIVATE KEY" not in json.dumps(record)
