"""What the dashboard shows, as data (mayu_py.server.ui.views): pure functions of records."""

from __future__ import annotations

from mayu_py.model import Machine, MachineState
from mayu_py.server.ui import views
from mayu_py.tenants import (
    HostInfo,
    ImageInfo,
    NodeReport,
    NodeState,
    ReportedNode,
    TenantRecord,
    parse_tenant,
)
from tests.support.tenants import acme, tenant_doc


def _machine(i: int, state: MachineState, updated: float) -> Machine:
    mac = f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}"
    return Machine(id=mac, mac=mac, state=state, updated=updated, labels={"role": "worker"})


def test_board_groups_by_state_in_lifecycle_order_newest_first() -> None:
    machines = [
        _machine(1, MachineState.RUNNING, 10.0),
        _machine(2, MachineState.DISCOVERED, 5.0),
        _machine(3, MachineState.RUNNING, 20.0),
    ]
    board = views.board(machines)
    assert [c["state"] for c in board["columns"]] == [str(s) for s in MachineState]
    running = next(c for c in board["columns"] if c["state"] == "running")
    assert [m["id"] for m in running["machines"]] == ["52:54:00:00:00:03", "52:54:00:00:00:01"]
    assert running["machines"][0]["since"] == "1970-01-01T00:00:20Z"
    assert board["total"] == 3


def test_board_columns_are_capped_and_count_the_rest() -> None:
    many = [_machine(i, MachineState.INSTALLING, float(i)) for i in range(views.COLUMN_CARDS + 7)]
    column = next(c for c in views.board(many)["columns"] if c["state"] == "installing")
    assert len(column["machines"]) == views.COLUMN_CARDS
    assert column["count"] == views.COLUMN_CARDS + 7 and column["more"] == 7


def test_actions_follow_the_state() -> None:
    discovered = views.machine_actions(MachineState.DISCOVERED, has_bmc=False)
    assert discovered == {"approve": True, "reinstall": False, "maintenance": True, "power": []}
    running = views.machine_actions(MachineState.RUNNING, has_bmc=True)
    assert running == {
        "approve": False,
        "reinstall": True,
        "maintenance": True,
        "power": ["on", "off", "cycle"],
    }
    assert not views.machine_actions(MachineState.MAINTENANCE, has_bmc=False)["maintenance"]


def test_etag_changes_with_the_data_only() -> None:
    one = views.board([_machine(1, MachineState.RUNNING, 10.0)])
    same = views.board([_machine(1, MachineState.RUNNING, 10.0)])
    moved = views.board([_machine(1, MachineState.FAILED, 11.0)])
    assert views.etag("board", one, "c") == views.etag("board", same, "c")
    assert views.etag("board", one, "c") != views.etag("board", moved, "c")
    assert views.etag("board", one, "c") != views.etag("board", one, "other session")


def _record(doc: dict, assignments: dict[str, str], reports: dict[str, NodeState]) -> TenantRecord:
    tenant = parse_tenant(doc, {"lab": ImageInfo("lab")}, [])
    nodes = {
        node: ReportedNode(NodeReport(tenant.name, node, state, "10.100.0.9", "h1", "", 1), 1.0)
        for node, state in reports.items()
    }
    return TenantRecord(tenant, assignments, nodes)


def test_hosts_show_used_capacity_their_nodes_and_the_unplaced() -> None:
    record = _record(
        acme(),
        {"acme-master-0": "h1", "acme-worker-0": "h1"},
        {"acme-master-0": NodeState.READY},
    )
    hosts = [HostInfo("h1", 4, 8192, 100.0, "10.0.0.21"), HostInfo("h2", 2, 2048, 0.0)]
    page = views.hosts_page(hosts, [record], now=105.0)
    h1, h2 = page["hosts"]
    assert (h1["used_cpus"], h1["used_memory_mib"], h1["alive"]) == (2, 1024, True)
    assert [(n["node"], n["state"]) for n in h1["nodes"]] == [
        ("acme-master-0", "ready"),
        ("acme-worker-0", "pending"),
    ]
    assert (h2["used_cpus"], h2["alive"], h2["nodes"]) == (0, False, [])
    assert [n["node"] for n in page["unplaced"]] == ["acme-worker-1"]


def test_nodes_of_a_host_whose_heartbeat_lapsed_are_unknown() -> None:
    record = _record(
        tenant_doc("t1", "10.101.0.0/24", 101, workers=0),
        {"t1-master-0": "h1"},
        {"t1-master-0": NodeState.READY},
    )
    page = views.hosts_page([HostInfo("h1", 4, 8192, 0.0)], [record], now=10_000.0)
    assert page["hosts"][0]["nodes"][0]["state"] == "unknown"


def test_tenants_show_conditions_when_the_status_has_them() -> None:
    condition = {"type": "Ready", "status": "False", "reason": "ImageMissing", "message": "m"}
    doc = acme() | {
        "status": {
            "phase": "Degraded",
            "conditions": [condition],
            "nodes": [
                {
                    "name": "acme-master-0",
                    "role": "master",
                    "host": None,
                    "state": "failed",
                    "ip": None,
                    "conditions": [condition],
                },
                {
                    "name": "acme-worker-0",
                    "role": "worker",
                    "host": "h1",
                    "state": "ready",
                    "ip": "10.100.0.11",
                },
            ],
        }
    }
    tenant = views.tenants_page([doc])["tenants"][0]
    assert (tenant["name"], tenant["phase"], tenant["conditions"]) == (
        "acme",
        "Degraded",
        [condition],
    )
    assert [n["conditions"] for n in tenant["nodes"]] == [[condition], []]
