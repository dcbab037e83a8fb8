"""Installed machines' boot answers come from a cache keyed by the store's state version: a
repeated answer reads no machine, and any commit (a reinstall through the API, a write by
another process's connection, a failure) is seen at the very next request. The kept answer is
served in front of Flask (server/boot_front.py): byte for byte and header for header what the
handler served, counted in the request metrics, for that exact query only, GET only."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mayu_py.model import MachineState
from mayu_py.server.boot_cache import VersionedCache
from mayu_py.store.sqlite import SqliteStore
from tests.support.flask_app import AUTH, Machine, approve, make_app, services_of
from tests.support.prometheus import parse, value

MAC = "52-54-00-5c-00-01"
STORED = MAC.replace("-", ":")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    client = make_app(tmp_path).test_client()
    Machine(client, MAC).ipxe()
    assert approve(client, MAC).status_code == 200
    Machine(client, MAC).provision()
    yield client


def _machine_reads(client: FlaskClient) -> list[str]:
    """The machine SELECTs this thread's store connection executes from now on."""
    conn = services_of(client).store._connect()  # type: ignore[attr-defined]
    statements: list[str] = []
    conn.set_trace_callback(
        lambda s: statements.append(s) if s.startswith("SELECT") and "FROM machines" in s else None
    )
    return statements


def _local(client: FlaskClient) -> bool:
    status, script = Machine(client, MAC).ipxe()
    assert status == 200
    return "booting its disk" in script


def test_a_repeated_local_boot_answer_reads_no_machine(client: FlaskClient) -> None:
    assert _local(client)
    reads = _machine_reads(client)
    for _ in range(3):
        assert _local(client)
    assert reads == []


def _ipxe_counted(client: FlaskClient) -> tuple[float, float]:
    """/ipxe answers 200 counted so far, and timed so far."""
    samples = parse(client.get("/metrics", headers=AUTH).get_data(as_text=True))
    labels = {"endpoint": "boot.machine_boot_script", "status": "200"}
    return (
        value(samples, "mayu_http_requests_total", method="GET", **labels),
        value(samples, "mayu_http_request_duration_seconds_count", **labels),
    )


def test_a_kept_answer_is_the_handlers_own_and_is_counted(client: FlaskClient) -> None:
    query = {"mac": MAC, "platform": "pcbios"}
    counted, timed = _ipxe_counted(client)
    served = client.get("/ipxe", query_string=query)  # the handler's, kept
    reads = _machine_reads(client)
    kept = client.get("/ipxe", query_string=query)
    assert reads == []  # from the front
    assert kept.status_code == served.status_code == 200
    assert kept.get_data() == served.get_data()
    assert sorted(kept.headers.items()) == sorted(served.headers.items())
    assert kept.headers["Cache-Control"] == "no-store"
    uefi = client.get("/ipxe", query_string={"mac": MAC, "platform": "efi"})  # another query
    assert reads != [] and "exit" in uefi.get_data(as_text=True).splitlines()
    assert client.head("/ipxe", query_string=query).status_code == 405  # never served by it
    assert _ipxe_counted(client) == (counted + 3, timed + 3)


def test_a_reinstall_is_seen_at_the_next_boot(client: FlaskClient) -> None:
    assert _local(client) and _local(client)
    assert client.post(f"/api/v1/machines/{MAC}/reinstall", headers=AUTH).status_code == 202
    status, script = Machine(client, MAC).ipxe()
    assert status == 200 and "token=" in script


def test_a_write_by_another_connection_is_seen(client: FlaskClient) -> None:
    """Another process (here its own connection, the sqlite3 module straight) marks the
    machine failed: this connection's cached answer must not outlive it."""
    assert _local(client) and _local(client)
    store = services_of(client).store
    assert isinstance(store, SqliteStore)
    with sqlite3.connect(store.path) as other:
        other.execute("UPDATE machines SET state = 'failed' WHERE id = ?", (STORED,))
    status, script = Machine(client, MAC).ipxe()
    assert status == 200 and "failed: waiting for an operator's reinstall" in script


def test_a_write_through_the_store_is_seen(client: FlaskClient) -> None:
    assert _local(client) and _local(client)
    store = services_of(client).store
    store.atomically(
        lambda tx: tx.put_machine(replace(tx.get_machine(STORED), state=MachineState.FAILED))
    )
    assert not _local(client)


def test_a_backend_without_a_version_caches_nothing() -> None:
    cache: VersionedCache[str] = VersionedCache()
    cache.put(None, "k", "v")
    assert cache.get(None, "k") is None
    cache.put(1, "k", "v")
    assert cache.get(1, "k") == "v"
    assert cache.get(2, "k") is None
    cache.put(2, "j", "w")
    assert cache.get(1, "k") is None and cache.get(2, "k") is None


def test_the_cache_is_bounded() -> None:
    cache: VersionedCache[int] = VersionedCache(limit=3)
    for n in range(10):
        cache.put(1, n, n)
    assert sum(cache.get(1, n) is not None for n in range(10)) <= 3
    assert cache.get(1, 9) == 9
