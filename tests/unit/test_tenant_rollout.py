"""Rolling replacement on the server: which node a host gets in which revision, one at a time.

The pure rules (mayu_py.tenants.rollout) and the same walk through the admin API on a real
SQLite store: an agent's view (GET /api/v1/hosts/h1/nodes) and its reports drive it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from mayu_py.config import load_settings
from mayu_py.server.app import create_app
from mayu_py.store import open_store
from mayu_py.tenants import ImageInfo, NodeReport, NodeState, TenantCluster, parse_tenant
from mayu_py.tenants.rollout import Rollout, advance, desired_nodes, pin_changed, rollout_status
from tests.support.tenants import tenant_doc

AUTH = {"Authorization": "Bearer t"}
MASTERS = ["ro-master-0", "ro-master-1", "ro-master-2"]
WORKERS = ["ro-worker-0", "ro-worker-1"]
ORDER = MASTERS + WORKERS


def _doc(version: str = "1.36") -> dict[str, Any]:
    doc = tenant_doc("ro", "10.120.0.0/24", 120, workers=2, masters=3)
    doc["spec"]["kubernetesVersion"] = version
    return doc


def _tenant(version: str, generation: int) -> TenantCluster:
    doc = _doc(version)
    doc["metadata"]["generation"] = generation
    return parse_tenant(doc, {"lab": ImageInfo("lab")}, [])


def _ready(nodes: list[str], generation: int) -> dict[str, NodeReport]:
    return {n: NodeReport("ro", n, NodeState.READY, None, "h1", "", generation) for n in nodes}


def test_pure_walk_masters_first_one_at_a_time() -> None:
    old, new = _tenant("1.36", 1), _tenant("1.37", 2)
    reports = _ready(ORDER, 1)
    rollout = pin_changed(old, new, Rollout(), reports)
    assert dict(rollout.pins) == dict.fromkeys(ORDER, 1) and rollout.members == tuple(ORDER)
    old_hash = {n.name: n.spec_hash for n in desired_nodes(old, Rollout())}
    assert {n.name: n.spec_hash for n in desired_nodes(new, rollout)} == old_hash

    replaced = []
    for _ in ORDER:
        rollout = advance(new, rollout, reports)
        moving = [n for n in desired_nodes(new, rollout) if n.spec_hash != old_hash[n.name]]
        node = moving[-1].name
        assert [n.name for n in moving] == replaced + [node]  # exactly one more
        status = rollout_status(new, rollout, reports)
        assert status is not None and (status.node, status.step) == (node, "draining")
        # while it is recreated and boots, nothing else moves
        for state, step in ((NodeState.PENDING, "recreating"), (NodeState.RUNNING, "booting")):
            reports[node] = NodeReport("ro", node, state, None, "h1", "drain skipped", 0)
            assert advance(new, rollout, reports) == rollout
            status = rollout_status(new, rollout, reports)
            assert status is not None and (status.node, status.step) == (node, step)
            assert (status.done, status.total, status.message) == (
                len(replaced),
                5,
                "drain skipped",
            )
        reports[node] = NodeReport("ro", node, NodeState.READY, None, "h1", "", 2)
        replaced.append(node)
    assert replaced == ORDER
    assert advance(new, rollout, reports) == Rollout()
    assert rollout_status(new, Rollout(), reports) is None


def test_a_node_not_ready_holds_the_rollout_and_unrun_nodes_are_not_pinned() -> None:
    old, new = _tenant("1.36", 1), _tenant("1.37", 2)
    reports = _ready(ORDER[:-1], 1)  # ro-worker-1 never ran
    rollout = pin_changed(old, new, Rollout(), reports)
    assert "ro-worker-1" not in rollout.pins
    held = advance(new, rollout, reports)  # worker-1 is not ready in its new revision
    assert held == rollout
    status = rollout_status(new, held, reports)
    assert status is not None and (status.node, status.step) == ("ro-master-0", "waiting")
    reports["ro-worker-1"] = NodeReport("ro", "ro-worker-1", NodeState.READY, None, "h1", "", 2)
    assert advance(new, rollout, reports, lapsed={"ro-master-2"}) == rollout  # host lost
    assert "ro-master-0" not in advance(new, rollout, reports).pins


def test_a_second_change_keeps_earlier_pins() -> None:
    v1, v2 = _tenant("1.35", 1), _tenant("1.36", 2)
    reports = _ready(ORDER, 1)
    rollout = advance(v2, pin_changed(v1, v2, Rollout(), reports), reports)
    reports["ro-master-0"] = NodeReport("ro", "ro-master-0", NodeState.READY, None, "h1", "", 2)
    v3 = _tenant("1.37", 3)
    again = pin_changed(v2, v3, rollout, reports)
    assert again.pins["ro-master-0"] == 2 and again.pins["ro-master-1"] == 1
    assert set(again.revisions) == {1, 2}
    assert Rollout.from_json(again.to_json()) == again


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = load_settings(None, {("data_dir",): str(tmp_path / "data")}, environ={})
    return create_app(settings, open_store(settings.data_path), "t").test_client()


def test_through_the_api_a_host_gets_one_new_node_at_a_time(client: FlaskClient) -> None:
    body = {"name": "h1", "cpus": 16, "memory_mib": 16384, "address": "127.0.0.1"}
    assert client.post("/api/v1/hosts", headers=AUTH, json=body).status_code == 200
    assert client.post("/api/v1/tenants", headers=AUTH, json=_doc()).status_code == 201

    def desired() -> dict[str, dict[str, Any]]:
        return {n["node"]: n for n in client.get("/api/v1/hosts/h1/nodes", headers=AUTH).get_json()}

    def report(node: str, state: str, generation: int) -> dict[str, Any]:
        url = f"/api/v1/tenants/ro/nodes/{node}/status"
        resp = client.put(url, headers=AUTH, json={"state": state, "generation": generation})
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()

    for node in ORDER:
        report(node, "ready", 1)
    patched = client.patch(
        "/api/v1/tenants/ro", headers=AUTH, json={"spec": {"kubernetesVersion": "1.37"}}
    )
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["status"]["rollout"] == {
        "node": "ro-master-0", "step": "draining", "message": "", "done": 0, "total": 5,
        "revision": 2,
    }  # fmt: skip
    order = []
    for _ in ORDER:
        nodes = desired()
        new = [n for n, d in nodes.items() if d["generation"] == 2]
        assert len(new) == len(order) + 1
        node = next(n for n in new if n not in order)
        order.append(node)
        report(node, "pending", 0)
        assert len([d for d in desired().values() if d["generation"] == 2]) == len(order)
        doc = report(node, "ready", 2)
    assert order == ORDER
    assert "rollout" not in doc["status"]
    assert doc["status"]["observedGeneration"] == 2 and doc["status"]["phase"] == "Ready"
