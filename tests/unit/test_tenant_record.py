"""The phase rule, node reports on the wire, and the server's typed tenant record."""

from __future__ import annotations

import dataclasses

import pytest

from mayu_py.errors import BadRequest
from mayu_py.tenants import (
    HostInfo,
    ImageInfo,
    NodeReport,
    NodeState,
    Phase,
    ReportedNode,
    TenantRecord,
    parse_tenant,
    phase_of,
)
from mayu_py.tenants.placement import HEARTBEAT_LAPSE_S
from tests.support.tenants import acme

S = NodeState
TENANT = parse_tenant(acme(), {"lab": ImageInfo("lab")}, [])
NODES = ["acme-master-0", "acme-worker-0", "acme-worker-1"]


@pytest.mark.parametrize(
    ("states", "deleting", "phase"),
    [
        ([S.READY, S.READY], False, Phase.READY),
        ([S.READY, S.RUNNING], False, Phase.PROVISIONING),
        ([S.READY, S.PENDING], False, Phase.PROVISIONING),
        ([S.READY, S.FAILED], False, Phase.DEGRADED),
        ([S.RUNNING, S.CRASHED], False, Phase.DEGRADED),
        ([S.READY, S.UNKNOWN], False, Phase.DEGRADED),
        ([S.READY, S.READY], True, Phase.DELETING),
        ([], False, Phase.PROVISIONING),
    ],
)
def test_phase_rule(states: list[NodeState], deleting: bool, phase: Phase) -> None:
    assert phase_of(states, deleting=deleting) == phase


def test_reports_round_trip_and_unknown_is_not_reportable() -> None:
    report = NodeReport("acme", NODES[0], S.READY, "10.100.0.10", "h1", "x" * 600, 3)
    read = NodeReport.from_json("acme", NODES[0], report.to_json())
    assert read == dataclasses.replace(report, message="x" * 500)
    for bad in ({"state": "unknown"}, {"state": "flying"}, ["ready"], None):
        with pytest.raises(BadRequest, match="state must be one of pending, defined"):
            NodeReport.from_json("acme", NODES[0], bad)


def test_a_record_written_before_records_were_typed_still_reads() -> None:
    stored = {
        "doc": TENANT.model_dump(exclude={"status"}),
        "assignments": {NODES[0]: "h1", NODES[1]: "h1"},
        "nodes": {
            NODES[0]: {"state": "ready", "ip": "10.100.0.10", "host": "h1", "message": "",
                       "generation": 1, "updated": 5.0},
            NODES[1]: {"state": "running", "ip": None, "host": None, "message": "",
                       "generation": None, "updated": 6.0},
        },
        "deleting": False,
    }  # fmt: skip
    record = TenantRecord.from_json(stored)
    assert record.tenant == TENANT
    running = NodeReport("acme", NODES[1], S.RUNNING, None, None, "", 0)
    assert record.nodes[NODES[1]] == ReportedNode(running, 6.0)
    assert TenantRecord.from_json(record.to_json()) == record


def _reported(
    index: int, state: NodeState, ip: str | None = None, generation: int = 0
) -> ReportedNode:
    return ReportedNode(NodeReport("acme", NODES[index], state, ip, "h1", "", generation), 1.0)


def test_status_of_a_record() -> None:
    record = TenantRecord(
        TENANT,
        {NODES[0]: "h1", NODES[1]: "h2"},
        {
            NODES[0]: _reported(0, S.READY, "10.100.0.10", generation=2),
            NODES[1]: _reported(1, S.READY, "10.100.0.11", generation=1),
        },
    )
    hosts = [HostInfo("h1", 4, 4096, 100.0), HostInfo("h2", 4, 4096, 50.0)]
    status = record.status(hosts, now=100.0)
    assert [(n.name, n.host, n.state, n.ip) for n in status.nodes] == [
        (NODES[0], "h1", S.READY, "10.100.0.10"),
        (NODES[1], "h2", S.READY, "10.100.0.11"),
        (NODES[2], None, S.PENDING, None),
    ]
    assert status.phase == Phase.PROVISIONING and status.observedGeneration == 0
    lapsed = record.status(hosts, now=50.0 + HEARTBEAT_LAPSE_S + 1)
    assert lapsed.nodes[1].state == S.UNKNOWN and lapsed.phase == Phase.DEGRADED


def test_purgeable_once_every_node_an_agent_holds_is_deleted() -> None:
    held = TenantRecord(
        TENANT,
        {NODES[0]: "h1", NODES[1]: "h1"},
        {NODES[0]: _reported(0, S.DELETED), NODES[1]: _reported(1, S.RUNNING)},
        deleting=True,
    )
    assert not held.purgeable
    done = dataclasses.replace(held, nodes={**held.nodes, NODES[1]: _reported(1, S.DELETED)})
    assert done.purgeable
    assert dataclasses.replace(held, nodes={}).purgeable  # no agent ever saw a node
    assert not dataclasses.replace(done, deleting=False).purgeable
