"""Node and ingress addresses: assigned by the server, stored with the tenant, delivered with
the desired nodes, kept across changes, freed with their node once it is gone (Flask's test
client on a real SQLite store; the etcd store runs the same record through the contract)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mayu_py.config import load_settings
from mayu_py.errors import Conflict
from mayu_py.server.app import create_app
from mayu_py.store import Store, open_store
from mayu_py.tenants import ImageInfo, parse_tenant, tenant_nodes
from mayu_py.tenants.addresses import allocate
from tests.support.tenants import acme

AUTH = {"Authorization": "Bearer t"}
SIZE = {"cpus": 1, "memory": "512Mi", "disk": "2Gi"}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    settings = load_settings(None, {("data_dir",): str(tmp_path / "data")}, environ={})
    return open_store(settings.data_path)


@pytest.fixture
def client(tmp_path: Path, store: Store) -> FlaskClient:
    settings = load_settings(None, {("data_dir",): str(tmp_path / "data")}, environ={})
    client = create_app(settings, store, "t").test_client()
    body = {"name": "h1", "cpus": 64, "memory_mib": 65536, "address": "127.0.0.1"}
    assert client.post("/api/v1/hosts", headers=AUTH, json=body).status_code == 200
    return client


def _desired(client: FlaskClient) -> dict[str, dict]:
    return {d["node"]: d for d in client.get("/api/v1/hosts/h1/nodes", headers=AUTH).get_json()}


def _patch(client: FlaskClient, spec: dict) -> dict:
    answer = client.patch("/api/v1/tenants/acme", headers=AUTH, json={"spec": spec})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def _report(client: FlaskClient, node: str, ip: str, state: str = "ready") -> None:
    body = {"state": state, "ip": ip, "host": "h1", "generation": 1}
    url = f"/api/v1/tenants/acme/nodes/{node}/status"
    assert client.put(url, headers=AUTH, json=body).status_code == 200


def test_addresses_are_stored_delivered_and_kept_when_masters_are_added(
    client: FlaskClient, store: Store
) -> None:
    created = client.post("/api/v1/tenants", headers=AUTH, json=acme())
    assert created.status_code == 201, created.get_json()
    network = created.get_json()["spec"]["network"]
    assert network["ingress"] == "10.100.0.2"
    assert network["addresses"] == {
        "acme-master-0": "10.100.0.10",
        "acme-worker-0": "10.100.0.11",
        "acme-worker-1": "10.100.0.12",
    }
    record = store.get_tenant("acme")
    assert record is not None and record.tenant.spec.network.addresses == network["addresses"]
    desired = _desired(client)
    assert {n: d["ip"] for n, d in desired.items()} == network["addresses"]
    assert {d["network"]["ingress"] for d in desired.values()} == {"10.100.0.2"}

    # two more masters: the workers keep theirs (an index-derived address would shift them)
    after = _patch(client, {"masters": [SIZE] * 3})["spec"]["network"]["addresses"]
    assert after == network["addresses"] | {
        "acme-master-1": "10.100.0.13",
        "acme-master-2": "10.100.0.14",
    }
    # a change of something else (a rolling replacement) keeps every address
    same = _patch(client, {"workers": [{**SIZE, "cpus": 2}] * 2})
    assert same["spec"]["network"]["addresses"] == after


def test_a_removed_node_s_address_is_free_only_once_it_is_gone(client: FlaskClient) -> None:
    assert client.post("/api/v1/tenants", headers=AUTH, json=acme()).status_code == 201
    _report(client, "acme-worker-1", "10.100.0.12")
    _patch(client, {"workers": [SIZE]})  # worker-1 removed, its VM still there
    grown = _patch(client, {"workers": [SIZE, SIZE]})["spec"]["network"]["addresses"]
    assert grown["acme-worker-1"] == "10.100.0.13"  # .12 is still held
    _report(client, "acme-worker-1", "10.100.0.13")
    _patch(client, {"workers": [SIZE]})
    _report(client, "acme-worker-1", "", state="deleted")  # gone: .13 and .12 are free
    again = _patch(client, {"workers": [SIZE, SIZE]})["spec"]["network"]["addresses"]
    assert again["acme-worker-1"] == "10.100.0.12"


def test_naming_some_addresses_moves_no_other_node(client: FlaskClient) -> None:
    assert client.post("/api/v1/tenants", headers=AUTH, json=acme()).status_code == 201
    for node, ip in (("acme-master-0", ".10"), ("acme-worker-0", ".11"), ("acme-worker-1", ".12")):
        _report(client, node, "10.100.0" + ip)
    named = {"acme-worker-1": "10.100.0.20", "acme-master-1": "10.100.0.10"}
    spec = {"masters": [SIZE] * 2, "network": {"cidr": "10.100.0.0/24", "addresses": named}}
    # master-0 gives .10 up to master-1 (named); worker-0 keeps .11; .12 is still held
    assert _patch(client, spec)["spec"]["network"]["addresses"] == {
        "acme-master-0": "10.100.0.13",
        "acme-master-1": "10.100.0.10",
        "acme-worker-0": "10.100.0.11",
        "acme-worker-1": "10.100.0.20",
    }


def test_a_cidr_change_moves_every_address_into_it(client: FlaskClient) -> None:
    assert client.post("/api/v1/tenants", headers=AUTH, json=acme()).status_code == 201
    network = _patch(client, {"network": {"cidr": "10.101.0.0/24"}})["spec"]["network"]
    assert network["ingress"] == "10.101.0.2"
    assert sorted(network["addresses"].values()) == [f"10.101.0.{i}" for i in (10, 11, 12)]


@pytest.mark.parametrize(
    ("addresses", "ingress", "field"),
    [
        ({"acme-master-0": "10.200.0.10"}, None, "spec.network.addresses.acme-master-0"),
        ({"acme-master-0": "10.100.0.1"}, None, "spec.network.addresses.acme-master-0"),
        ({"acme-master-0": "10.100.0.2"}, None, "spec.network.addresses.acme-master-0"),
        ({"acme-master-0": "10.100.0.30"}, "10.100.0.30", "spec.network.addresses.acme-master-0"),
        ({"acme-worker-0": "10.100.0.30", "acme-worker-1": "10.100.0.30"}, None,
         "spec.network.addresses.acme-worker-1"),
        ({"acme-master-0": "banana"}, None, "spec.network.addresses.acme-master-0"),
        ({}, "10.100.0.255", "spec.network.ingress"),
    ],
)  # fmt: skip
def test_addresses_a_document_names_are_checked(
    client: FlaskClient, addresses: dict, ingress: str | None, field: str
) -> None:
    doc = copy.deepcopy(acme())
    doc["spec"]["network"]["addresses"] = addresses
    if ingress is not None:
        doc["spec"]["network"]["ingress"] = ingress
    answer = client.post("/api/v1/tenants", headers=AUTH, json=doc)
    assert answer.status_code == 422 and field in answer.get_json()["context"], answer.get_json()


def test_named_addresses_are_kept_and_the_rest_allocated_around_them() -> None:
    doc = copy.deepcopy(acme())
    doc["spec"]["network"]["addresses"] = {"acme-worker-0": "10.100.0.10"}
    tenant = parse_tenant(doc, {"lab": ImageInfo("lab")}, [])
    assert [n.ip for n in tenant_nodes(tenant)] == ["10.100.0.11", "10.100.0.10", "10.100.0.12"]


def test_a_tenant_stored_before_addresses_keeps_what_its_nodes_have(
    client: FlaskClient, store: Store
) -> None:
    assert client.post("/api/v1/tenants", headers=AUTH, json=acme()).status_code == 201
    record = store.get_tenant("acme")
    assert record is not None
    network = record.tenant.spec.network.model_copy(update={"addresses": None, "ingress": None})
    spec = record.tenant.spec.model_copy(update={"network": network})
    old = replace(record, tenant=record.tenant.model_copy(update={"spec": spec}))
    store.atomically(lambda tx: tx.put_tenant(old))
    assert [d["ip"] for d in _desired(client).values()] == [f"10.100.0.{i}" for i in (10, 11, 12)]
    # its next change stores them, and the new masters go around them
    after = _patch(client, {"masters": [SIZE] * 2})["spec"]["network"]
    assert after["ingress"] == "10.100.0.2"
    assert after["addresses"]["acme-worker-1"] == "10.100.0.12"
    assert after["addresses"]["acme-master-1"] == "10.100.0.13"


def test_no_free_address_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        allocate("10.0.0.0/28", ["a", "b", "c", "d", "e", "f"], {}, held=["10.0.0.14"])
