"""Tenant and host endpoints through Flask's test client on a real SQLite store."""

from __future__ import annotations

import base64
import copy
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from flask.testing import FlaskClient

from mayu_py.config import load_settings
from mayu_py.server.app import create_app
from mayu_py.store import Store, open_store
from mayu_py.tenants.validation import FIRST_AUTO_VNI
from tests.support.flask_app import Machine
from tests.support.ignition import file_text
from tests.support.tenants import acme

AUTH = {"Authorization": "Bearer t"}
ACME = acme()


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = load_settings(None, {("data_dir",): str(tmp_path / "data")}, environ={})
    return create_app(settings, open_store(settings.data_path), "t").test_client()


def _heartbeat(client: FlaskClient, name: str, cpus: int = 2, memory: int = 4096) -> None:
    body = {"name": name, "cpus": cpus, "memory_mib": memory, "address": "127.0.0.1"}
    assert client.post("/api/v1/hosts", headers=AUTH, json=body).status_code == 200


def test_create_place_render_report_delete(client: FlaskClient, tmp_path: Path) -> None:
    _heartbeat(client, "h1")
    _heartbeat(client, "h2")
    created = client.post("/api/v1/tenants", headers=AUTH, json=ACME)
    assert created.status_code == 201, created.get_json()
    status = created.get_json()["status"]
    assert [n["name"] for n in status["nodes"]] == [
        "acme-master-0",
        "acme-worker-0",
        "acme-worker-1",
    ]
    assert all(n["host"] in ("h1", "h2") for n in status["nodes"])
    desired = client.get("/api/v1/hosts/h1/nodes", headers=AUTH).get_json()
    desired += client.get("/api/v1/hosts/h2/nodes", headers=AUTH).get_json()
    assert sorted(d["node"] for d in desired) == ["acme-master-0", "acme-worker-0", "acme-worker-1"]
    assert {d["network"]["gateway"] for d in desired} == {"10.100.0.1"}

    ign = client.get("/api/v1/tenants/acme/nodes/acme-master-0/ignition", headers=AUTH)
    assert ign.status_code == 200
    # (the real ignition-validate checks every tenant node's config: tests/peers)
    paths = {f["path"] for f in json.loads(ign.data)["storage"]["files"]}
    assert "/etc/kubernetes/pki/apiserver.crt" in paths

    for d in desired:
        body = {"state": "ready", "ip": d["ip"], "host": "h1", "generation": 1}
        assert (
            client.put(
                f"/api/v1/tenants/acme/nodes/{d['node']}/status", headers=AUTH, json=body
            ).status_code
            == 200
        )
    shown = client.get("/api/v1/tenants/acme", headers=AUTH).get_json()
    assert shown["status"]["phase"] == "Ready" and shown["status"]["observedGeneration"] == 1

    assert client.delete("/api/v1/tenants/acme", headers=AUTH).status_code == 202
    assert client.get("/api/v1/hosts/h1/nodes", headers=AUTH).get_json() == []
    assert (
        client.get("/api/v1/tenants/acme", headers=AUTH).get_json()["status"]["phase"] == "Deleting"
    )
    for d in desired:
        client.put(
            f"/api/v1/tenants/acme/nodes/{d['node']}/status",
            headers=AUTH,
            json={"state": "deleted"},
        )
    assert client.get("/api/v1/tenants/acme", headers=AUTH).status_code == 404
    assert not (tmp_path / "data" / "tenants" / "acme").exists()


def test_masters_spread_over_hosts(client: FlaskClient) -> None:
    _heartbeat(client, "h1")
    _heartbeat(client, "h2")
    doc = copy.deepcopy(ACME)
    doc["spec"]["masters"] = [{"cpus": 1, "memory": "512Mi", "disk": "2Gi"}] * 2
    status = client.post("/api/v1/tenants", headers=AUTH, json=doc).get_json()["status"]
    hosts = {n["host"] for n in status["nodes"] if n["role"] == "master"}
    assert hosts == {"h1", "h2"}


def test_scale_bumps_generation_and_keeps_assignments(client: FlaskClient) -> None:
    _heartbeat(client, "h1")
    before = client.post("/api/v1/tenants", headers=AUTH, json=ACME).get_json()
    spec = {"workers": [{"cpus": 1, "memory": "512Mi", "disk": "2Gi"}] * 3}
    after = client.patch("/api/v1/tenants/acme", headers=AUTH, json={"spec": spec}).get_json()
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert len(after["status"]["nodes"]) == 4
    same = client.patch("/api/v1/tenants/acme", headers=AUTH, json={"spec": spec}).get_json()
    assert same["metadata"]["generation"] == after["metadata"]["generation"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name"),
        (lambda d: d["spec"].update(masters=[]), "spec.masters"),
        (lambda d: d["spec"]["masters"][0].update(memory="32Mi"), "spec.masters[0].memory"),
        (lambda d: d["spec"].update(image="windows"), "spec.image"),
        (lambda d: d["spec"]["network"].update(cidr="10.100.0.128/25"), "spec.network.cidr"),
        (lambda d: d["spec"].update(kubernetesVersion="1.31"), "spec.kubernetesVersion"),
    ],
)
def test_bad_tenants_are_422_and_create_nothing(client: FlaskClient, change, field: str) -> None:  # type: ignore[no-untyped-def]
    first = copy.deepcopy(ACME)
    first["metadata"]["name"] = "first"
    first["spec"]["network"] = {"cidr": "10.100.0.0/24", "vni": 1}
    assert client.post("/api/v1/tenants", headers=AUTH, json=first).status_code == 201
    doc = copy.deepcopy(ACME)
    doc["spec"]["network"] = {"cidr": "10.101.0.0/24", "vni": 2}
    doc["spec"]["masters"] = [dict(doc["spec"]["masters"][0])]
    change(doc)
    response = client.post("/api/v1/tenants", headers=AUTH, json=doc)
    assert response.status_code == 422, response.get_json()
    assert any(key.startswith(field) for key in response.get_json()["context"]), response.get_json()
    names = [
        t["metadata"]["name"]
        for t in client.get("/api/v1/tenants", headers=AUTH).get_json()["items"]
    ]
    assert names == ["first"]


def test_lapsed_host_marks_nodes_unknown(client: FlaskClient) -> None:
    _heartbeat(client, "h1")
    client.post("/api/v1/tenants", headers=AUTH, json=ACME)
    services = client.application.extensions["mayu"]
    services.tenants.clock = lambda: 10**12
    status = client.get("/api/v1/tenants/acme", headers=AUTH).get_json()["status"]
    assert {n["state"] for n in status["nodes"]} == {"unknown"}
    assert {n["host"] for n in status["nodes"]} == {"h1"}


def _agent_headers(client: FlaskClient, host: str) -> dict[str, str]:
    """Approve `host` as the operator and return its agent's headers."""
    response = client.post(f"/api/v1/hosts/{host}/approve", headers=AUTH)
    assert response.status_code == 201, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def test_agent_tokens_reach_only_their_own_host(client: FlaskClient) -> None:
    h1, h2 = _agent_headers(client, "h1"), _agent_headers(client, "h2")
    body = {"name": "h1", "cpus": 2, "memory_mib": 4096}
    assert client.post("/api/v1/hosts", headers=h1, json=body).status_code == 200
    assert client.post("/api/v1/hosts", headers=h2, json=body).status_code == 403
    assert client.post("/api/v1/tenants", headers=h1, json=ACME).status_code == 403
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201
    assert len(client.get("/api/v1/hosts/h1/nodes", headers=h1).get_json()) == 3
    assert client.get("/api/v1/hosts/h1/nodes", headers=h2).status_code == 403
    node = "/api/v1/tenants/acme/nodes/acme-worker-0"
    assert client.get(f"{node}/ignition", headers=h1).status_code == 200
    assert client.get(f"{node}/ignition", headers=h2).status_code == 403
    assert client.put(f"{node}/status", headers=h2, json={"state": "ready"}).status_code == 403
    assert client.put(f"{node}/status", headers=h1, json={"state": "ready"}).status_code == 200
    assert client.get("/api/v1/machines", headers=h1).status_code == 401
    forged = {"Authorization": "Bearer h1." + "0" * 43}
    assert client.get("/api/v1/hosts/h1/nodes", headers=forged).status_code == 401


def test_agents_get_a_drain_credential_of_their_own_not_the_admin_one(
    client: FlaskClient, tmp_path: Path
) -> None:
    h1, h2 = _agent_headers(client, "h1"), _agent_headers(client, "h2")
    body = {"name": "h1", "cpus": 8, "memory_mib": 16384}
    assert client.post("/api/v1/hosts", headers=h1, json=body).status_code == 200
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201
    # the cluster-admin kubeconfig is the operator's only
    assert client.get("/api/v1/tenants/acme/kubeconfig", headers=h1).status_code == 403
    assert client.get("/api/v1/tenants/acme/kubeconfig", headers=AUTH).status_code == 200

    drain = "/api/v1/hosts/{}/tenants/acme/drain-kubeconfig"
    reply = client.get(drain.format("h1"), headers=h1)
    assert reply.status_code == 200, reply.get_json()
    assert reply.headers["Cache-Control"] == "no-store"
    user = yaml.safe_load(reply.data)["users"][0]
    assert user["name"] == "mayu:drainer:h1"
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["user"]["client-certificate-data"]))
    assert cert.subject.rfc4514_string() == "CN=mayu:drainer:h1,O=mayu:drainers"
    # short-lived (no CRL in a tenant cluster to revoke it with): an hour, notBefore back-dated
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(hours=1, minutes=5)
    assert cert.not_valid_after_utc - datetime.now(UTC) <= timedelta(hours=1)
    bundle = tmp_path / "data" / "tenants" / "acme" / "pki" / "users" / "drainer-h1" / "drainer.pem"
    assert bundle.stat().st_mode & 0o777 == 0o600
    assert client.get(drain.format("h1"), headers=h1).data == reply.data  # issued once
    # a host carrying no node of the tenant gets none, nor another host's
    assert client.get(drain.format("h2"), headers=h2).status_code == 404
    assert client.get(drain.format("h2"), headers=AUTH).status_code == 404
    assert client.get(drain.format("h1"), headers=h2).status_code == 403
    assert not (bundle.parent.parent / "drainer-h2").exists()
    # nor does a host whose tenant goes (its last certificate dies within the hour): no drain
    # comes before a deleted tenant's VMs go, though they are h1's until it reports them gone
    status = "/api/v1/tenants/acme/nodes/acme-master-0/status"
    assert client.put(status, headers=h1, json={"state": "ready"}).status_code == 200
    assert client.delete("/api/v1/tenants/acme", headers=AUTH).status_code == 202
    assert client.get("/api/v1/tenants/acme", headers=AUTH).status_code == 200  # not purged
    assert client.get(drain.format("h1"), headers=h1).status_code == 404


def test_unapproved_hosts_and_insane_capacities_are_refused(client: FlaskClient) -> None:
    unknown = {"Authorization": "Bearer h9.whatever"}
    body = {"name": "h9", "cpus": 2, "memory_mib": 4096}
    assert client.post("/api/v1/hosts", headers=unknown, json=body).status_code == 401
    h1 = _agent_headers(client, "h1")
    for cpus, memory in (
        (0, 4096),
        (10**9, 4096),
        (2, 10**15),
        (True, 4096),
        (2.5, 4096),
        ("2", 4096),
    ):
        bad = {"name": "h1", "cpus": cpus, "memory_mib": memory}
        assert client.post("/api/v1/hosts", headers=h1, json=bad).status_code == 400, bad
    for name in ("h1\n", "H1", "a" * 300):
        bad = {"name": name, "cpus": 2, "memory_mib": 4096}
        assert client.post("/api/v1/hosts", headers=AUTH, json=bad).status_code == 400, name
    items = client.get("/api/v1/hosts", headers=AUTH).get_json()["items"]
    assert [(i["name"], "cpus" in i) for i in items] == [("h1", False)]  # no heartbeat kept


def test_revoked_host_loses_its_nodes_and_rotation_kills_the_old_token(client: FlaskClient) -> None:
    h1, h2 = _agent_headers(client, "h1"), _agent_headers(client, "h2")
    for name, headers in (("h1", h1), ("h2", h2)):
        body = {"name": name, "cpus": 8, "memory_mib": 16384}
        assert client.post("/api/v1/hosts", headers=headers, json=body).status_code == 200
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201
    placed = {
        n["name"]: n["host"]
        for n in client.get("/api/v1/tenants/acme", headers=AUTH).get_json()["status"]["nodes"]
    }
    assert "h1" in placed.values()
    assert client.post("/api/v1/hosts/h1/revoke", headers=AUTH).get_json()["revoked"] is True
    assert client.get("/api/v1/hosts/h1/nodes", headers=h1).status_code == 401
    moved = {
        n["name"]: n["host"]
        for n in client.get("/api/v1/tenants/acme", headers=AUTH).get_json()["status"]["nodes"]
    }
    assert set(moved.values()) == {"h2"}
    rotated = client.post("/api/v1/hosts/h2/rotate-token", headers=AUTH).get_json()["token"]
    assert client.get("/api/v1/hosts/h2/nodes", headers=h2).status_code == 401
    fresh = {"Authorization": f"Bearer {rotated}"}
    assert client.get("/api/v1/hosts/h2/nodes", headers=fresh).status_code == 200
    assert client.post("/api/v1/hosts/h3/revoke", headers=AUTH).status_code == 404
    assert client.post("/api/v1/hosts/h2/approve", headers=h2).status_code == 401


def test_machine_agent_token_works_only_once_the_machine_runs(client: FlaskClient) -> None:
    machine = Machine(client, "52-54-00-00-00-01")
    machine.ipxe()
    client.post(f"/api/v1/machines/{machine.mac}/approve", headers=AUTH, json={"role": "worker"})
    config = machine.provision()
    entry = next(f for f in config["storage"]["files"] if f["path"] == "/etc/mayu/agent.token")
    assert entry["mode"] == 0o600
    token = file_text(entry).strip()
    assert token.startswith("node-525400000001.")
    headers = {"Authorization": f"Bearer {token}"}
    body = {"name": "node-525400000001", "cpus": 4, "memory_mib": 8192}
    refused = client.post("/api/v1/hosts", headers=headers, json=body)
    assert refused.status_code == 403 and "running" in refused.get_json()["detail"]  # installed
    credential = file_text(
        next(f for f in config["storage"]["files"] if f["path"] == "/etc/mayu/report.token")
    ).strip()
    assert machine.report("running", credential=credential).status_code == 200
    assert client.post("/api/v1/hosts", headers=headers, json=body).status_code == 200
    # A machine's name cannot be approved as a separate host (no shared certificate or token).
    assert client.post("/api/v1/hosts/node-525400000001/approve", headers=AUTH).status_code == 409
    # Reinstalling mints a new agent token: the old one dies when the new config is served.
    client.post(f"/api/v1/machines/{machine.mac}/reinstall", headers=AUTH)
    machine.provision()
    assert client.get("/api/v1/hosts/node-525400000001/nodes", headers=headers).status_code == 401


def test_delete_of_nodes_no_agent_ever_reported_purges_at_once(client: FlaskClient) -> None:
    _heartbeat(client, "h1")
    client.post("/api/v1/tenants", headers=AUTH, json=ACME)
    node = "/api/v1/tenants/acme/nodes/acme-master-0/status"
    assert client.put(node, headers=AUTH, json={"state": "running"}).status_code == 200
    assert client.delete("/api/v1/tenants/acme", headers=AUTH).status_code == 202
    # the master was seen by an agent: the tenant waits for its `deleted`
    assert (
        client.get("/api/v1/tenants/acme", headers=AUTH).get_json()["status"]["phase"] == "Deleting"
    )
    assert client.put(node, headers=AUTH, json={"state": "deleted"}).status_code == 200
    assert client.get("/api/v1/tenants/acme", headers=AUTH).status_code == 404


def test_a_tenant_stored_with_a_dropped_minor_renders_as_422(tmp_path: Path) -> None:
    settings = load_settings(None, {("data_dir",): str(tmp_path / "data")}, environ={})
    store = open_store(settings.data_path)
    client = create_app(settings, store, "t").test_client()
    _heartbeat(client, "h1")
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201
    record = store.get_tenant("acme")
    assert record is not None
    spec = record.tenant.spec.model_copy(update={"kubernetesVersion": "1.31"})
    old = replace(record, tenant=record.tenant.model_copy(update={"spec": spec}))
    store.atomically(lambda tx: tx.put_tenant(old))  # stored before 1.31 was dropped
    response = client.get("/api/v1/tenants/acme/nodes/acme-master-0/ignition", headers=AUTH)
    assert response.status_code == 422, response.get_json()
    assert "Kubernetes 1.31 is not supported" in response.get_json()["detail"]


class _FailingCommits:
    """The real store, but the next transactions roll back after their function ran (as a
    failed COMMIT would): nothing they did may have happened."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.failures = 0

    def atomically(self, fn):  # type: ignore[no-untyped-def]
        if not self.failures:
            return self.inner.atomically(fn)
        self.failures -= 1

        def then_fail(tx):  # type: ignore[no-untyped-def]
            fn(tx)
            raise RuntimeError("commit failed")

        return self.inner.atomically(then_fail)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def _ca(kubeconfig: str) -> str:
    return yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]["certificate-authority-data"]


def test_the_pki_goes_only_after_the_purge_committed(tmp_path: Path) -> None:
    settings = load_settings(None, {("data_dir",): str(tmp_path / "data")}, environ={})
    store = _FailingCommits(open_store(settings.data_path))
    client = create_app(settings, store, "t").test_client()  # type: ignore[arg-type]
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201
    kubeconfig = client.get("/api/v1/tenants/acme/kubeconfig", headers=AUTH)
    assert kubeconfig.status_code == 200
    config = yaml.safe_load(kubeconfig.data)
    assert config["clusters"][0]["cluster"]["server"] == "https://10.100.0.10:6443"
    pki = tmp_path / "data" / "tenants" / "acme" / "pki"
    assert pki.is_dir()

    store.failures = 1  # no agent holds a node: the delete purges, but does not commit
    assert client.delete("/api/v1/tenants/acme", headers=AUTH).status_code == 500
    assert pki.is_dir()
    shown = client.get("/api/v1/tenants/acme", headers=AUTH).get_json()
    assert shown["status"]["phase"] == "Provisioning"
    assert client.get("/api/v1/tenants/acme/kubeconfig", headers=AUTH).data == kubeconfig.data

    assert client.delete("/api/v1/tenants/acme", headers=AUTH).status_code == 202
    assert client.get("/api/v1/tenants/acme", headers=AUTH).status_code == 404
    assert not pki.parent.exists()


def test_a_pki_left_by_a_crash_is_not_inherited(client: FlaskClient, tmp_path: Path) -> None:
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201
    old = client.get("/api/v1/tenants/acme/kubeconfig", headers=AUTH).data.decode()
    tenant_dir = tmp_path / "data" / "tenants" / "acme"
    shutil.copytree(tenant_dir, tmp_path / "kept")
    assert client.delete("/api/v1/tenants/acme", headers=AUTH).status_code == 202
    shutil.copytree(tmp_path / "kept", tenant_dir)  # as if killed between commit and cleanup
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201
    new = client.get("/api/v1/tenants/acme/kubeconfig", headers=AUTH).data.decode()
    assert _ca(new) != _ca(old)


def test_vni_is_allocated_when_absent_and_a_taken_one_is_409(client: FlaskClient) -> None:
    auto = copy.deepcopy(ACME)
    auto["spec"]["network"] = {"cidr": "10.100.0.0/24"}
    created = client.post("/api/v1/tenants", headers=AUTH, json=auto)
    assert created.status_code == 201, created.get_json()
    vni = created.get_json()["spec"]["network"]["vni"]
    assert vni == FIRST_AUTO_VNI
    # stored with the tenant: read back, and kept across a spec change that omits it
    stored = client.get("/api/v1/tenants/acme", headers=AUTH).get_json()
    assert stored["spec"]["network"]["vni"] == vni
    patch = {
        "spec": {"network": {"cidr": "10.100.0.0/24"}, "sshAuthorizedKeys": ["ssh-ed25519 AAAA"]}
    }
    changed = client.patch("/api/v1/tenants/acme", headers=AUTH, json=patch)
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["spec"]["network"]["vni"] == vni
    taken = copy.deepcopy(ACME)
    taken["metadata"]["name"] = "beta"
    taken["spec"]["network"] = {"cidr": "10.101.0.0/24", "vni": vni}
    response = client.post("/api/v1/tenants", headers=AUTH, json=taken)
    assert response.status_code == 409, response.get_json()
    assert "'acme'" in response.get_json()["context"]["spec.network.vni"]
    del taken["spec"]["network"]["vni"]
    again = client.post("/api/v1/tenants", headers=AUTH, json=taken)
    assert again.get_json()["spec"]["network"]["vni"] == FIRST_AUTO_VNI + 1


def test_hosts_publish_each_tenant_s_overlay_peers(client: FlaskClient) -> None:
    """A host's nodes carry the other hosts of their tenant: the underlay each says in its
    heartbeat, and the address its enrolled record holds (the approval's), which alone
    counts for accepting VXLAN. Rotation keeps the enrolled address."""
    headers = {}
    for host, underlay in (("h1", "192.0.2.1"), ("h2", "192.0.2.2")):
        answer = client.post(
            f"/api/v1/hosts/{host}/approve", headers=AUTH, json={"underlay": underlay}
        )
        assert answer.status_code == 201, answer.get_json()
        headers[host] = {"Authorization": f"Bearer {answer.get_json()['token']}"}
    bad = client.post("/api/v1/hosts/h3/approve", headers=AUTH, json={"underlay": "nope"})
    assert bad.status_code == 400
    client.post("/api/v1/hosts/h2/rotate-token", headers=AUTH)
    for host in ("h1", "h2"):  # h2's heartbeat claims another underlay than its enrolled one
        said = {"h1": "192.0.2.1", "h2": "198.51.100.2"}[host]
        body = {"name": host, "cpus": 2, "memory_mib": 4096, "underlay": said}
        assert client.post("/api/v1/hosts", headers=AUTH, json=body).status_code == 200
    doc = copy.deepcopy(ACME)
    doc["spec"]["masters"] = [{"cpus": 1, "memory": "512Mi", "disk": "2Gi"}] * 2
    doc["spec"]["workers"] = []
    status = client.post("/api/v1/tenants", headers=AUTH, json=doc).get_json()["status"]
    where = {n["name"]: n["host"] for n in status["nodes"]}
    assert set(where.values()) == {"h1", "h2"}
    on_h1 = client.get("/api/v1/hosts/h1/nodes", headers=AUTH).get_json()
    (node,) = on_h1
    other = next(n for n, h in where.items() if h == "h2")
    (peer,) = node["network"]["peers"]
    assert peer["host"] == "h2"
    assert peer["underlay"] == "198.51.100.2"  # from its heartbeat: where tunnels go
    assert peer["enrolled"] == "192.0.2.2"  # from its approval: whence VXLAN is accepted
    assert peer["macs"] == [
        n["mac"] for n in client.get("/api/v1/hosts/h2/nodes", headers=AUTH).get_json()
    ]
    assert other.startswith("acme-master-")
    (back,) = client.get("/api/v1/hosts/h2/nodes", headers=AUTH).get_json()[0]["network"]["peers"]
    assert (back["host"], back["enrolled"]) == ("h1", "192.0.2.1")
    # a revoked host loses its nodes: they move to h1, which then has no peer
    client.post("/api/v1/hosts/h2/revoke", headers=AUTH)
    moved = client.get("/api/v1/hosts/h1/nodes", headers=AUTH).get_json()
    assert [n["network"]["peers"] for n in moved] == [[], []]


def _conditions(holder: dict) -> dict[str, dict]:
    return {c["type"]: c for c in holder["conditions"]}


def test_nodes_wait_for_a_host_with_their_image_and_say_why(client: FlaskClient) -> None:
    images = [{"name": "flatcar", "version": "1", "sha256": "b" * 64}]
    body = {"name": "h1", "cpus": 8, "memory_mib": 8192, "images": images}
    assert client.post("/api/v1/hosts", headers=AUTH, json=body).status_code == 200
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201
    shown = client.get("/api/v1/tenants/acme", headers=AUTH).get_json()["status"]
    assert {n["host"] for n in shown["nodes"]} == {None}
    assert {n["state"] for n in shown["nodes"]} == {"pending"}
    scheduled = _conditions(shown["nodes"][0])["Scheduled"]
    assert (scheduled["status"], scheduled["reason"]) == ("False", "NoHostWithImage")
    assert "base image `lab`" in scheduled["message"]
    progressing = _conditions(shown)["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("False", "NoHostWithImage")
    hosts = client.get("/api/v1/hosts", headers=AUTH).get_json()["items"]
    assert hosts[0]["images"] == images

    with_lab = body | {"images": [*images, {"name": "lab", "version": "6.1"}]}
    assert client.post("/api/v1/hosts", headers=AUTH, json=with_lab).status_code == 200
    placed = client.get("/api/v1/tenants/acme", headers=AUTH).get_json()["status"]
    assert {n["host"] for n in placed["nodes"]} == {"h1"}
    assert _conditions(placed["nodes"][0])["Scheduled"]["status"] == "True"
    since = _conditions(placed)["Ready"]["lastTransitionTime"]

    report = {"state": "failed", "host": "h1", "reason": "BaseImageMissing",
              "message": "base image `lab` is not present on host `h1`: run ..."}  # fmt: skip
    put = client.put("/api/v1/tenants/acme/nodes/acme-master-0/status", headers=AUTH, json=report)
    assert put.status_code == 200, put.get_json()
    status = client.get("/api/v1/tenants/acme", headers=AUTH).get_json()["status"]
    ready = _conditions(status["nodes"][0])["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "BaseImageMissing")
    assert ready["message"].startswith("base image `lab` is not present on host `h1`")
    degraded = _conditions(status)["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "BaseImageMissing")
    assert _conditions(status)["Ready"]["lastTransitionTime"] == since  # still False
    bad = client.put(
        "/api/v1/tenants/acme/nodes/acme-master-0/status",
        headers=AUTH,
        json=report | {"reason": "not one word"},
    )
    assert bad.status_code == 400


def test_a_host_that_reports_no_images_takes_any(client: FlaskClient) -> None:
    _heartbeat(client, "h1")  # an agent older than image reports: no `images` member
    assert client.post("/api/v1/tenants", headers=AUTH, json=ACME).status_code == 201
    status = client.get("/api/v1/tenants/acme", headers=AUTH).get_json()["status"]
    assert {n["host"] for n in status["nodes"]} == {"h1"}
    assert client.get("/api/v1/hosts", headers=AUTH).get_json()["items"][0]["images"] is None
