"""The Store contract suite against a real 3-member etcd cluster, plus what only the etcd
backend has: conflicts retried then a 503, commits whose answer was lost, failover between
members, etcd's request size limit, TLS with client certificates."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mayu_py.config import StoreConfig
from mayu_py.lab.etcd import EtcdCluster, TlsFiles
from mayu_py.model import Event, PendingConfig
from mayu_py.store import Store, Tx, open_store
from mayu_py.store.errors import StoreContention, StoreTooLarge, StoreUnavailable
from mayu_py.store.etcd import EtcdStore
from mayu_py.store.etcd_gateway import OutcomeUnknown, prefix_end
from mayu_py.store.etcd_txn import OptimisticTxn
from mayu_py.store.url import EtcdLocation, parse_store_url
from mayu_py.tenants import HostInfo
from tests.support.store_contract import *  # noqa: F403
from tests.support.store_contract import _machine

pytestmark = pytest.mark.peer


@pytest.fixture
def open_backend(etcd_cluster: EtcdCluster) -> Iterator[Callable[..., Store]]:
    yield from _opener(_location(etcd_cluster))


@pytest.fixture
def empty_backend(etcd_cluster: EtcdCluster) -> Iterator[Callable[..., Store]]:
    yield from _opener(_location(etcd_cluster))


def _opener(location: EtcdLocation) -> Iterator[Callable[..., Store]]:
    opened: list[EtcdStore] = []

    def open_(events_kept: int = 200, alerts_kept: int = 1000) -> Store:
        opened.append(EtcdStore(location, events_kept, alerts_kept))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


# -- what only the etcd backend has -----------------------------------------------------------


def _location(cluster: EtcdCluster) -> EtcdLocation:
    location = parse_store_url(cluster.url(f"/mayu-test-{uuid.uuid4().hex[:8]}/"))
    assert isinstance(location, EtcdLocation)
    return location


MAC = "52:54:00:00:03:01"


def _bump(tx: Tx, label: str) -> None:
    machine = tx.get_machine(MAC)
    assert machine is not None
    tx.put_machine(replace(machine, labels={**machine.labels, label: "yes"}))


def test_a_lost_race_runs_again_and_loses_nothing(etcd_cluster: EtcdCluster) -> None:
    location = _location(etcd_cluster)
    ours, theirs = EtcdStore(location), EtcdStore(location)
    ours.atomically(lambda tx: tx.put_machine(_machine(MAC)))
    calls = []

    def txn(tx: Tx) -> str:
        calls.append(1)
        _bump(tx, "ours")
        if len(calls) == 1:  # another replica commits in between our read and our commit
            theirs.atomically(lambda other: _bump(other, "theirs"))
        return "done"

    assert ours.atomically(txn) == "done"
    assert len(calls) == 2
    final = ours.get_machine(MAC)
    assert final is not None and final.labels == {"role": "worker", "ours": "yes", "theirs": "yes"}


def test_endless_conflicts_end_in_a_503(etcd_cluster: EtcdCluster) -> None:
    location = _location(etcd_cluster)
    ours, theirs = EtcdStore(location, max_attempts=3), EtcdStore(location)
    ours.atomically(lambda tx: tx.put_machine(_machine(MAC)))
    calls = []

    def txn(tx: Tx) -> None:
        calls.append(1)
        _bump(tx, "ours")
        theirs.atomically(lambda other: _bump(other, f"theirs-{len(calls)}"))

    with pytest.raises(StoreContention) as info:
        ours.atomically(txn)
    assert info.value.status == 503 and len(calls) == 3
    final = ours.get_machine(MAC)
    assert final is not None and "ours" not in final.labels
    assert {"theirs-1", "theirs-2", "theirs-3"} <= final.labels.keys()


@pytest.mark.parametrize("landed", [True, False])
def test_a_commit_whose_answer_is_lost_is_resolved_by_rereading(
    etcd_cluster: EtcdCluster, monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    """The member dies (or the network drops) after a commit was sent: the transaction id
    in what it wrote tells whether it landed; the step is applied exactly once."""
    store = EtcdStore(_location(etcd_cluster))
    store.atomically(lambda tx: tx.put_machine(_machine(MAC)))
    real_txn = store.gateway.txn
    lost = []

    def answer_lost(compare: list[Any], success: list[Any]) -> bool:
        if not lost:
            lost.append(1)
            if landed:
                real_txn(compare, success)
            raise OutcomeUnknown("connection reset after sending")
        return real_txn(compare, success)

    monkeypatch.setattr(store.gateway, "txn", answer_lost)
    calls = []

    def txn(tx: Tx) -> None:
        calls.append(1)
        tx.add_event(Event(MAC, 1.0, "step", "once"))

    store.atomically(txn)
    assert len(calls) == (1 if landed else 2)
    assert [e.kind for e in store.events(MAC)] == ["step"]


def test_failover_between_members_and_loss_of_quorum(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd").start()
    try:
        store = EtcdStore(_location(cluster), request_timeout=1.0, unavailable_after=4.0)
        store.atomically(lambda tx: tx.put_machine(_machine(MAC)))
        host, port = store.gateway.member
        first = next(m for m in cluster.members if m.endpoint == f"{host}:{port}")
        cluster.kill_member(first)  # the member this client talks to
        store.atomically(lambda tx: tx.add_event(Event(MAC, 1.0, "after", "failover")))
        assert [e.kind for e in store.events(MAC)] == ["after"]
        second = next(m for m in cluster.members if m.process is not None)
        cluster.kill_member(second)  # one of three left: no quorum
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unavailable"):
            store.atomically(lambda tx: tx.add_event(Event(MAC, 2.0, "lost", "no quorum")))
        assert time.monotonic() - started < 15
        cluster.start_member(first)
        cluster.wait_healthy()
        store.atomically(lambda tx: tx.add_event(Event(MAC, 3.0, "back", "quorum again")))
        assert [e.kind for e in store.events(MAC)][-1] == "back"
    finally:
        cluster.stop()


def test_a_transaction_over_the_request_limit_is_refused_whole(
    etcd_cluster: EtcdCluster,
) -> None:
    store = EtcdStore(_location(etcd_cluster))
    huge = PendingConfig(MAC, "h", b"x" * (2 << 20), "s" * 128, "r", 1.0)

    def txn(tx: Tx) -> None:
        tx.put_machine(_machine(MAC))
        tx.put_pending_config(huge)

    with pytest.raises(StoreTooLarge) as info:
        store.atomically(txn)
    assert info.value.status == 507
    assert store.get_machine(MAC) is None


def test_keys_stay_under_their_prefix(etcd_cluster: EtcdCluster) -> None:
    one, two = _location(etcd_cluster), _location(etcd_cluster)
    first, second = EtcdStore(one), EtcdStore(two)

    def txn(tx: Tx) -> None:
        tx.put_machine(replace(_machine(MAC), hostname="h", registered_from="10.0.0.1"))
        tx.add_event(Event(MAC, 1.0, "e", "x"))
        tx.add_alert(Event("52:54:00:00:03:ff", 1.0, "a", "y"))
        tx.put_host(HostInfo("host/with/slashes", 1, 512, 1.0))

    first.atomically(txn)
    assert second.get_machine(MAC) is None and second.list_hosts() == []
    keys = [kv.key for kv in first.gateway.range(one.prefix, prefix_end(one.prefix)).kvs]
    assert all(k.isascii() and k.startswith(one.prefix) for k in keys)
    assert f"{one.prefix}hosts/host%2Fwith%2Fslashes" in keys
    assert first.list_hosts()[0].name == "host/with/slashes"


def test_a_newer_schema_is_refused(etcd_cluster: EtcdCluster) -> None:
    location = _location(etcd_cluster)
    txn = OptimisticTxn(EtcdStore(location).gateway)
    txn.put(location.prefix + "schema", {"version": 99})
    assert txn.commit()
    with pytest.raises(StoreUnavailable, match="newer"):
        EtcdStore(location)


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    tls = TlsFiles.create(tmp_path / "tls")
    cluster = EtcdCluster(tmp_path / "etcd", size=1, tls=tls).start()
    try:
        store = open_store(tmp_path, config=StoreConfig(url=cluster.url()))
        store.atomically(lambda tx: tx.put_machine(_machine(MAC)))
        assert store.get_machine(MAC) is not None
        store.ping()
        no_client_cert = cluster.url().split("&cert=")[0]  # the CA only
        with pytest.raises(StoreUnavailable):
            EtcdStore(parse_store_url(no_client_cert), unavailable_after=1.0)
    finally:
        cluster.stop()
