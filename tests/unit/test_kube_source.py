"""KubernetesSource against a fake Kubernetes API server (tests/support/fake_kube.py), through
the real `kubernetes` client."""

from __future__ import annotations

import base64
import copy
import json
import shutil
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client

from mayu_py.agent.kube_source import KubernetesSource
from mayu_py.config import load_settings
from mayu_py.errors import NotFound
from mayu_py.pki import ClusterPKI
from mayu_py.render import IgnitionRenderer
from mayu_py.server.app import create_app
from mayu_py.store import open_store
from mayu_py.tenants import HostRegistration, NodeReport, TenantCluster, TenantNode, tenant_nodes
from mayu_py.tenants.ignition import render_tenant_node
from tests.support.fake_kube import BASE, FakeKube, serve_kube
from tests.support.wait import wait_for

SIZE = {"cpus": 1, "memory": "512Mi", "disk": "2Gi"}
ACME = {
    "apiVersion": "mayu.io/v1alpha1",
    "kind": "TenantCluster",
    "metadata": {"name": "acme"},
    "spec": {
        "kubernetesVersion": "1.37",
        "image": "lab",
        "network": {"cidr": "10.100.0.0/24", "vni": 100},
        "masters": [SIZE],
        "workers": [SIZE],
        "sshAuthorizedKeys": [],
    },
}
H1 = HostRegistration("h1", 4, 8192, "")
WAKE_S = 10.0  # a timeout only: the wait returns as soon as the watch wakes the loop


@pytest.fixture
def kube() -> Iterator[tuple[FakeKube, client.ApiClient]]:
    with serve_kube() as served:
        yield served


def _source(api: client.ApiClient, tmp_path: Path, host: str = "h1", **kw: Any) -> KubernetesSource:
    kw.setdefault("watch", False)
    source = KubernetesSource(host, api, pki_root=tmp_path / f"pki-{host}", **kw)
    return source


def _expected(doc: dict[str, Any], generation: int = 1) -> list[TenantNode]:
    tenant = TenantCluster.model_validate(
        {**doc, "metadata": {**doc["metadata"], "generation": generation}}
    )
    return tenant_nodes(tenant)


def test_tenant_becomes_desired_nodes_and_the_claim_is_persisted(kube, tmp_path: Path) -> None:
    fake, api = kube
    fake.create(ACME)
    source = _source(api, tmp_path)
    source.register(H1)
    nodes = source.desired_nodes()
    assert nodes == _expected(ACME)
    assert [(n.ip, n.mac) for n in nodes] == [
        ("10.100.0.10", nodes[0].mac),
        ("10.100.0.11", nodes[1].mac),
    ]
    status = fake.get("acme")["status"]
    assert [(n["name"], n["host"], n["state"]) for n in status["nodes"]] == [
        ("acme-master-0", "h1", "pending"),
        ("acme-worker-0", "h1", "pending"),
    ]
    assert status["phase"] == "Provisioning"
    patches = [r for r in fake.requests if r[0] == "PATCH"]
    assert patches and all(r[1].startswith(BASE + "/acme/status") for r in patches)
    assert {r[2] for r in patches} == {"application/merge-patch+json"}
    writes = fake.status_writes()
    assert source.desired_nodes() == nodes  # level-triggered, no second write
    assert fake.status_writes() == writes


def test_a_tenant_claimed_by_another_host_or_too_big_is_not_taken(kube, tmp_path: Path) -> None:
    fake, api = kube
    fake.create(ACME)
    first = _source(api, tmp_path, "h1")
    first.register(H1)
    assert len(first.desired_nodes()) == 2
    other = _source(api, tmp_path, "h2")
    other.register(HostRegistration("h2", 64, 65536, ""))
    assert other.desired_nodes() == []
    small = _source(api, tmp_path, "h3")
    small.register(HostRegistration("h3", 1, 600, ""))  # room for one node of two
    big = copy.deepcopy(ACME)
    big["metadata"]["name"] = "big"
    big["spec"]["network"] = {"cidr": "10.101.0.0/24", "vni": 101}
    fake.create(big)
    assert small.desired_nodes() == []
    assert "status" not in fake.get("big")  # nothing claimed, nothing written


def test_racing_claims_one_wins_the_other_gets_409(kube, tmp_path: Path) -> None:
    fake, api = kube
    fake.create(ACME)
    first, second = _source(api, tmp_path, "h1"), _source(api, tmp_path, "h2")
    first.register(H1)
    second.register(HostRegistration("h2", 4, 8192, ""))
    stale = second._validate(second._list()[0])  # h2 read the tenant before h1 claimed it
    assert len(first.desired_nodes()) == 2
    assert second._claim(stale) == []  # its write carries the old resourceVersion: 409
    assert {n["host"] for n in fake.get("acme")["status"]["nodes"]} == {"h1"}
    assert second.wake_event.is_set()  # and it looks again at once
    assert second.desired_nodes() == []


def test_invalid_objects_are_skipped_and_marked(kube, tmp_path: Path) -> None:
    fake, api = kube
    fake.create(ACME)
    overlapping = copy.deepcopy(ACME)
    overlapping["metadata"]["name"] = "zeta"  # created later: the older tenant wins
    overlapping["spec"]["network"] = {"cidr": "10.100.0.0/25", "vni": 7}
    fake.create(overlapping)
    broken = copy.deepcopy(ACME)
    broken["metadata"]["name"] = "broken"
    broken["spec"]["network"] = {"cidr": "10.102.0.0/24", "vni": 102}
    broken["spec"]["masters"] = []
    fake.create(broken)
    source = _source(api, tmp_path)
    source.register(H1)
    assert {n.tenant for n in source.desired_nodes()} == {"acme"}
    for name, field in (("zeta", "spec.network.cidr"), ("broken", "spec.masters")):
        status = fake.get(name)["status"]
        assert status["phase"] == "Invalid"
        (condition,) = status["conditions"]
        assert condition["type"] == "Valid" and condition["status"] == "False"
        assert field in condition["message"]
    writes = fake.status_writes()
    source.desired_nodes()
    assert fake.status_writes() == writes  # the condition is written once
    fixed = copy.deepcopy(broken["spec"])
    fixed["masters"] = [SIZE]
    fake.update_spec("broken", fixed)
    assert {n.tenant for n in source.desired_nodes()} == {"acme", "broken"}
    condition = fake.get("broken")["status"]["conditions"][0]
    assert condition["status"] == "True"


class Judged:
    """The resourceVersions of the events a source's watch has judged (woken on or not)."""

    def __init__(self, source: KubernetesSource, monkeypatch: pytest.MonkeyPatch) -> None:
        self.versions: list[int] = []
        judge = source._relevant

        def recording(kind: str, obj: dict[str, Any]) -> bool:
            relevant = judge(kind, obj)
            self.versions.append(int(obj["metadata"]["resourceVersion"]))
            return relevant

        monkeypatch.setattr(source, "_relevant", recording)

    def wait_through(self, fake: FakeKube) -> None:
        """Until the watch has judged every event the fake API server has emitted so far."""
        with fake.cond:
            latest = fake.rv
        wait_for(f"the watch to judge resourceVersion {latest}", lambda: latest in self.versions)


@pytest.fixture
def watching(
    kube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeKube, KubernetesSource, Judged]]:
    fake, api = kube
    fake.create(ACME)
    source = _source(api, tmp_path, watch=True, watch_timeout_s=30)
    judged = Judged(source, monkeypatch)
    source.register(H1)
    assert len(source.desired_nodes()) == 2
    # the claim wrote the status: the watch streams that write, and it is no change to act on
    judged.wait_through(fake)
    assert not source.wake_event.is_set()
    yield fake, source, judged
    source.close()


def test_a_spec_change_wakes_the_loop(watching) -> None:
    fake, source, _ = watching
    spec = copy.deepcopy(ACME["spec"])
    spec["workers"] = [SIZE, SIZE]
    fake.update_spec("acme", spec)
    assert source.wake_event.wait(WAKE_S)
    source.wake_event.clear()
    nodes = source.desired_nodes()
    assert len(nodes) == 3
    assert nodes == _expected({**ACME, "spec": spec}, generation=2)
    assert fake.get("acme")["status"]["nodes"][2]["host"] == "h1"


def test_delete_and_deletion_timestamp_are_not_desired(watching, tmp_path: Path) -> None:
    fake, source, _ = watching
    other = copy.deepcopy(ACME)
    other["metadata"]["name"] = "other"
    other["spec"]["network"] = {"cidr": "10.101.0.0/24", "vni": 101}
    fake.create(other)
    assert source.wake_event.wait(WAKE_S)
    source.wake_event.clear()
    assert {n.tenant for n in source.desired_nodes()} == {"acme", "other"}
    source.ignition(source.desired_nodes()[0])
    assert (tmp_path / "pki-h1" / "acme" / "ca").is_dir()

    fake.mark_deleting("other")
    assert source.wake_event.wait(WAKE_S)
    source.wake_event.clear()
    assert {n.tenant for n in source.desired_nodes()} == {"acme"}

    fake.delete("acme")
    assert source.wake_event.wait(WAKE_S)
    assert source.desired_nodes() == []
    assert not (tmp_path / "pki-h1" / "acme").exists()  # its CA keys go with it


def test_410_gone_relists_and_the_watch_resumes(watching) -> None:
    fake, source, judged = watching
    spec = copy.deepcopy(ACME["spec"])
    spec["workers"] = [SIZE, SIZE]
    fake.update_spec("acme", spec, silent=True)  # a change the watch never streams
    fake.expire()
    assert source.wake_event.wait(WAKE_S)
    assert source.relists == 1
    source.wake_event.clear()
    assert len(source.desired_nodes()) == 3
    judged.wait_through(fake)  # the new claim's status writes, seen by the resumed watch
    assert not source.wake_event.is_set()
    spec["workers"] = [SIZE]
    fake.update_spec("acme", spec)  # streamed by the watch started after the relist
    assert source.wake_event.wait(WAKE_S)
    assert len(source.desired_nodes()) == 2
    assert source.relists == 1  # the resumed watch holds: no list again, no 410 loop


def test_report_patches_status_until_ready(kube, tmp_path: Path) -> None:
    fake, api = kube
    fake.create(ACME)
    source = _source(api, tmp_path)
    source.register(H1)
    nodes = source.desired_nodes()
    source.report(NodeReport("acme", nodes[0].name, "running", nodes[0].ip, "h1", "", 1))
    status = fake.get("acme")["status"]
    conditions = {c["type"]: c for c in status["nodes"][0].pop("conditions")}
    assert status["nodes"][0] == {
        "name": "acme-master-0",
        "role": "master",
        "host": "h1",
        "state": "running",
        "ip": "10.100.0.10",
    }
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "Booting")
    assert conditions["Scheduled"]["status"] == "True"
    assert status["phase"] == "Provisioning" and status.get("observedGeneration", 0) == 0
    tenant = {c["type"]: c for c in status["conditions"]}
    assert (tenant["Progressing"]["status"], tenant["Ready"]["status"]) == ("True", "False")
    for node in nodes:
        source.report(NodeReport("acme", node.name, "ready", node.ip, "h1", "", 1))
    status = fake.get("acme")["status"]
    assert {n["state"] for n in status["nodes"]} == {"ready"}
    assert status["phase"] == "Ready" and status["observedGeneration"] == 1
    status = fake.get("acme")["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    report = NodeReport("acme", nodes[1].name, "failed", None, "h1", "boom", 1, "DefineFailed")
    source.report(report)
    status = fake.get("acme")["status"]
    assert status["phase"] == "Degraded" and "ip" not in status["nodes"][1]
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "DefineFailed")
    assert "boom" in degraded["message"]
    source.report(NodeReport("acme", nodes[1].name, "deleted", None, "h1"))
    assert [n["name"] for n in fake.get("acme")["status"]["nodes"]] == ["acme-master-0"]
    with pytest.raises(NotFound):
        source.report(NodeReport("gone", "gone-master-0", "deleted", None, "h1"))


def _files(config: bytes) -> dict[str, str]:
    result = {}
    for entry in json.loads(config)["storage"]["files"]:
        source = entry["contents"]["source"]
        head, payload = source.split(",", 1)
        raw = base64.b64decode(payload) if ";base64" in head else urllib.parse.unquote(payload)
        result[entry["path"]] = raw.decode() if isinstance(raw, bytes) else raw
    return result


def test_ignition_is_what_the_server_renders(kube, tmp_path: Path) -> None:
    fake, api = kube
    settings = load_settings(None, {("data_dir",): str(tmp_path / "data")}, environ={})
    web = create_app(settings, open_store(settings.data_path), "t").test_client()
    auth = {"Authorization": "Bearer t"}
    assert web.post("/api/v1/tenants", headers=auth, json=ACME).status_code == 201
    fake.create(ACME)
    source = _source(api, tmp_path)
    source.register(H1)
    nodes = source.desired_nodes()
    for node in nodes:
        path = f"/api/v1/tenants/acme/nodes/{node.name}/ignition"
        served = web.get(path, headers=auth)
        assert served.status_code == 200
        local = source.ignition(node)
        assert set(_files(local)) == set(_files(served.data))
        assert "/etc/kubernetes/pki/ca.crt" in _files(local)
        ca = ClusterPKI.load_or_create(tmp_path / "pki-h1" / "acme", "acme")
        assert _files(local)["/etc/kubernetes/pki/ca.crt"] == ca.ca_certificate_pem

    # With the server's PKI directory the agent renders the very same bytes.
    shutil.rmtree(tmp_path / "pki-h1" / "acme")
    shutil.copytree(settings.data_path / "tenants" / "acme" / "pki", tmp_path / "pki-h1" / "acme")
    same = _source(api, tmp_path)
    for node in nodes:
        path = f"/api/v1/tenants/acme/nodes/{node.name}/ignition"
        assert same.ignition(node) == web.get(path, headers=auth).data


def _ready(source: KubernetesSource, nodes: list[TenantNode]) -> None:
    """What the agent reports once the nodes' VMs of their generation answer."""
    for node in nodes:
        source.report(NodeReport("acme", node.name, "ready", node.ip, "h1", "", node.generation))


def test_a_version_change_rolls_one_node_at_a_time_masters_first(kube, tmp_path: Path) -> None:
    fake, api = kube
    doc = copy.deepcopy(ACME)
    doc["spec"].update(kubernetesVersion="1.36", masters=[SIZE] * 3, workers=[SIZE])
    fake.create(doc)
    source = _source(api, tmp_path)
    source.register(H1)
    old = source.desired_nodes()
    _ready(source, old)
    order = [n.name for n in old]
    running = TenantCluster.model_validate({**doc, "metadata": {"name": "acme", "generation": 1}})
    assert order[:3] == [f"acme-master-{i}" for i in range(3)] and order[3] == "acme-worker-0"

    doc["spec"]["kubernetesVersion"] = "1.37"
    fake.update_spec("acme", doc["spec"])
    replaced = []
    for step in range(4):
        if step == 2:  # an agent restarted mid-rollout resumes with the same pins
            source = _source(api, tmp_path)
            source.register(H1)
        source.wake_event.clear()
        nodes = source.desired_nodes()
        new = [n for n in nodes if n.generation == 2]
        assert [n.name for n in new] == order[: step + 1]  # one more node released
        pinned = [n for n in nodes if n.generation == 1]
        assert [n.spec_hash for n in pinned] == [n.spec_hash for n in old[step + 1 :]]
        rollout = fake.get("acme")["status"]["rollout"]
        assert rollout == {
            "node": order[step], "step": "draining", "message": "", "done": step, "total": 4,
            "revision": 2,
        }  # fmt: skip
        if pinned:  # a pinned node's Ignition is still its revision's
            pki = ClusterPKI.load_or_create(tmp_path / "pki-h1" / "acme", "acme")
            then = render_tenant_node(running, pinned[0].name, pki, IgnitionRenderer())
            assert source.ignition(pinned[0]) == then
            assert source.desired_nodes() == nodes  # nothing more until that node is ready
        current = new[-1]
        replaced.append(current.name)
        said = "drain skipped: tenant API unreachable after 1.0s"
        source.report(NodeReport("acme", current.name, "running", None, "h1", said, 2))
        assert fake.get("acme")["status"]["rollout"]["step"] == "booting"
        assert fake.get("acme")["status"]["rollout"]["message"] == said
        assert not source.wake_event.is_set()
        _ready(source, [current])
        assert source.wake_event.is_set()  # the next node may go (or the rollout ended) at once
    assert replaced == order
    status = fake.get("acme")["status"]
    assert "rollout" not in status and status["observedGeneration"] == 2
    assert {n.generation for n in source.desired_nodes()} == {2}

    # what the fake API server saw, in order: each node replaced alone, masters first
    steps = [
        (e["status"]["rollout"]["node"], e["status"]["rollout"]["step"])
        for _, kind, e in fake.events
        if kind == "MODIFIED" and "rollout" in e.get("status", {})
    ]
    released = [node for i, (node, step) in enumerate(steps) if step == "draining"]
    assert list(dict.fromkeys(released)) == order
    assert all(p[0] == "PATCH" for p in fake.requests if p[1].startswith(BASE + "/acme/status"))


def test_the_drain_credential_is_this_hosts_own(kube, tmp_path: Path) -> None:
    fake, api = kube
    fake.create(ACME)
    source = _source(api, tmp_path)
    source.register(H1)
    source.desired_nodes()
    config = yaml.safe_load(source.drain_kubeconfig("acme"))
    user = config["users"][0]
    assert user["name"] == "mayu:drainer:h1"
    pem = base64.b64decode(user["user"]["client-certificate-data"])
    certificate = x509.load_pem_x509_certificate(pem)
    assert certificate.subject.rfc4514_string() == "CN=mayu:drainer:h1,O=mayu:drainers"
    lived = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lived == timedelta(hours=1, minutes=5)  # an hour, notBefore back-dated for skew
    assert config["clusters"][0]["cluster"]["server"] == "https://10.100.0.10:6443"
    bundle = tmp_path / "pki-h1" / "acme" / "users" / "drainer-h1" / "drainer.pem"
    assert bundle.stat().st_mode & 0o777 == 0o600
    with pytest.raises(NotFound):
        source.drain_kubeconfig("other")
    fake.mark_deleting("acme")  # going: its VMs go undrained, and no credential is made for it
    source.desired_nodes()
    with pytest.raises(NotFound):
        source.drain_kubeconfig("acme")


def _addresses(source: KubernetesSource) -> dict[str, str]:
    return {n.name: n.ip for n in source.desired_nodes()}


def _running(
    kube: tuple[FakeKube, client.ApiClient], tmp_path: Path, **spec: Any
) -> tuple[dict[str, Any], KubernetesSource, list[TenantNode]]:
    """ACME with `spec` changed, claimed by h1 and its nodes reported ready."""
    fake, api = kube
    doc = copy.deepcopy(ACME)
    doc["spec"].update(spec)
    fake.create(doc)
    source = _source(api, tmp_path)
    source.register(H1)
    nodes = source.desired_nodes()
    _ready(source, nodes)
    return doc, source, nodes


def _at(*offsets: int) -> list[str]:
    return [f"10.100.0.{offset}" for offset in offsets]


def test_addresses_stay_as_masters_are_added_and_across_restarts(kube, tmp_path: Path) -> None:
    fake, api = kube
    doc, source, nodes = _running(kube, tmp_path, workers=[SIZE] * 2)
    first = {n.name: n.ip for n in nodes}
    assert list(first.values()) == _at(10, 11, 12)

    doc["spec"]["masters"] = [SIZE] * 3  # names no addresses: the workers keep theirs
    fake.update_spec("acme", doc["spec"])
    grown = _addresses(source)
    assert grown == first | dict(zip(["acme-master-1", "acme-master-2"], _at(13, 14), strict=True))
    record = tmp_path / "pki-h1" / "acme" / "record.json"
    assert record.stat().st_mode & 0o777 == 0o600

    restarted = _source(api, tmp_path)  # a new agent process: the same addresses
    restarted.register(H1)
    assert _addresses(restarted) == grown
    assert fake.get("acme")["spec"]["network"] == ACME["spec"]["network"]  # the object untouched


def test_a_removed_nodes_address_is_held_until_it_is_deleted(kube, tmp_path: Path) -> None:
    fake, api = kube
    doc, source, _ = _running(kube, tmp_path, workers=[SIZE] * 2)  # worker-1 runs at .12

    doc["spec"].update(masters=[SIZE] * 2, workers=[SIZE])  # worker-1 goes, master-1 comes
    fake.update_spec("acme", doc["spec"])
    assert _addresses(source) == dict(
        zip(["acme-master-0", "acme-master-1", "acme-worker-0"], _at(10, 13, 11), strict=True)
    )
    assert _addresses(_source(api, tmp_path)) == _addresses(source)  # held across a restart too

    source.report(NodeReport("acme", "acme-worker-1", "deleted", None, "h1"))
    doc["spec"]["masters"] = [SIZE] * 3
    fake.update_spec("acme", doc["spec"])
    assert _addresses(source)["acme-master-2"] == "10.100.0.12"  # free once it is gone


def test_a_first_pass_without_a_record_seeds_it_so_a_change_rolls(kube, tmp_path: Path) -> None:
    fake, api = kube
    doc, _, nodes = _running(kube, tmp_path, kubernetesVersion="1.36", masters=[SIZE] * 3)
    (tmp_path / "pki-h1" / "acme" / "record.json").unlink()  # an agent that kept no record
    del fake.objects["acme"]["status"]["applied"]  # nor mirrored it (from before it did)

    upgraded = _source(api, tmp_path)
    upgraded.register(H1)
    assert upgraded.desired_nodes() == nodes  # its first pass: nothing reported to it yet
    doc["spec"]["kubernetesVersion"] = "1.37"
    fake.update_spec("acme", doc["spec"])
    rolled = upgraded.desired_nodes()
    assert [n.name for n in rolled if n.generation == 2] == ["acme-master-0"]  # one at a time
    assert [n.spec_hash for n in rolled[1:]] == [n.spec_hash for n in nodes[1:]]
    assert fake.get("acme")["status"]["rollout"]["node"] == "acme-master-0"


def test_ignition_of_a_newer_generation_has_the_kept_addresses(kube, tmp_path: Path) -> None:
    fake, api = kube
    doc, source, _ = _running(kube, tmp_path)
    doc["spec"]["masters"] = [SIZE] * 3
    fake.update_spec("acme", doc["spec"])
    other = _source(api, tmp_path)  # another process of this host saw the change first
    other.register(H1)
    added = {n.name: n for n in other.desired_nodes()}["acme-master-1"]
    assert (added.generation, added.ip) == (2, "10.100.0.12")  # worker-0 keeps .11
    assert source.ignition(added) == other.ignition(added)  # fetched, with the same address


def _assigned(source: KubernetesSource) -> dict[str, str]:
    """The addresses a pass assigns the tenant (a node being rolled runs its old one yet)."""
    source.desired_nodes()
    record = source.book.get("acme")
    assert record is not None and record.tenant.spec.network.addresses is not None
    return dict(record.tenant.spec.network.addresses)


def test_an_object_naming_some_addresses_keeps_the_others_stable(kube, tmp_path: Path) -> None:
    fake, api = kube
    doc, source, _ = _running(kube, tmp_path, workers=[SIZE] * 2)  # .10, .11, .12
    doc["spec"]["masters"] = [SIZE] * 2
    doc["spec"]["network"] = {
        **doc["spec"]["network"],
        "addresses": {"acme-worker-1": "10.100.0.20"},
    }
    fake.update_spec("acme", doc["spec"])
    names = ["acme-master-0", "acme-master-1", "acme-worker-0", "acme-worker-1"]
    expected = dict(zip(names, _at(10, 13, 11, 20), strict=True))  # .12: worker-1 runs there yet
    assert _assigned(source) == expected
    _ready(source, source.desired_nodes())  # reports change what is held: nothing moves
    assert _assigned(source) == expected
    restarted = _source(api, tmp_path)
    restarted.register(H1)
    assert _assigned(restarted) == expected


def _vni(source: KubernetesSource, tenant: str) -> int:
    return {n.tenant: n.vni for n in source.desired_nodes()}[tenant]


def test_a_vni_the_object_does_not_name_is_picked_once_and_kept(kube, tmp_path: Path) -> None:
    fake, api = kube
    first = copy.deepcopy(ACME)
    first["spec"]["network"] = {"cidr": "10.100.0.0/24"}
    fake.create(first)
    source = _source(api, tmp_path)
    source.register(HostRegistration("h1", 16, 65536, ""))
    assert _vni(source, "acme") == 100
    second = copy.deepcopy(ACME)
    second["metadata"]["name"] = "beta"
    second["spec"]["network"] = {"cidr": "10.101.0.0/24"}
    fake.create(second)
    assert (_vni(source, "acme"), _vni(source, "beta")) == (100, 101)

    fake.delete("acme")  # the lowest VNI is free again: beta stays where it is
    assert _vni(source, "beta") == 101
    restarted = _source(api, tmp_path)
    restarted.register(HostRegistration("h1", 16, 65536, ""))
    assert _vni(restarted, "beta") == 101
    third = copy.deepcopy(ACME)
    third["metadata"]["name"] = "gamma"
    third["spec"]["network"] = {"cidr": "10.102.0.0/24", "vni": 100}
    fake.create(third)  # names the free one: no conflict, and beta keeps 101
    assert (_vni(restarted, "beta"), _vni(restarted, "gamma")) == (101, 100)
    fourth = copy.deepcopy(ACME)
    fourth["metadata"]["name"] = "delta"
    fourth["spec"]["network"] = {"cidr": "10.103.0.0/24"}
    fake.create(fourth)  # picks around those known here: the record's 101, gamma's 100
    assert _vni(restarted, "delta") == 102
    assert "vni" not in fake.get("beta")["spec"]["network"]  # the object is never written


def test_a_change_made_while_the_record_was_lost_still_rolls_one_node_at_a_time(
    kube, tmp_path: Path
) -> None:
    fake, api = kube
    doc, _, nodes = _running(kube, tmp_path, kubernetesVersion="1.36", masters=[SIZE] * 3)
    record = tmp_path / "pki-h1" / "acme" / "record.json"
    record.unlink()  # the agent's state is lost, its VMs run on
    doc["spec"]["kubernetesVersion"] = "1.37"
    fake.update_spec("acme", doc["spec"])  # and the tenant changes before it is back

    def restarted() -> list[TenantNode]:
        source = _source(api, tmp_path)
        source.register(H1)
        return source.desired_nodes()

    rolled = restarted()  # restored from status.applied: the change is one from what runs
    assert [n.name for n in rolled if n.generation == 2] == ["acme-master-0"]
    assert [n.spec_hash for n in rolled[1:]] == [n.spec_hash for n in nodes[1:]]
    assert [n.ip for n in rolled] == [n.ip for n in nodes]
    assert fake.get("acme")["status"]["rollout"]["node"] == "acme-master-0"

    source = _source(api, tmp_path)
    source.register(H1)
    _ready(source, source.desired_nodes()[:1])  # master-0 replaced and ready again
    record.unlink()  # lost again mid-rollout: the pins of the others come back with it
    rolled = restarted()
    assert [n.name for n in rolled if n.generation == 2] == ["acme-master-0", "acme-master-1"]
    assert [n.spec_hash for n in rolled[2:]] == [n.spec_hash for n in nodes[2:]]


def test_an_invalid_status_applied_is_not_restored(kube, tmp_path: Path) -> None:
    fake, api = kube
    _, _, nodes = _running(kube, tmp_path, masters=[SIZE] * 2)
    (tmp_path / "pki-h1" / "acme" / "record.json").unlink()
    status = fake.objects["acme"]["status"]
    applied = json.loads(status["applied"])
    applied["doc"]["spec"]["network"]["addresses"]["acme-master-1"] = "10.100.0.1"  # the gateway
    status["applied"] = json.dumps(applied)
    source = _source(api, tmp_path)
    source.register(H1)
    assert source.desired_nodes() == nodes  # seeded from status.nodes instead, as before
    record = source.book.get("acme")
    assert record is not None and record.tenant.spec.network.addresses == {
        n.name: n.ip for n in nodes
    }
