"""Conditions of tenant nodes and tenants: reasons, aggregation, stable transition times, and
placement only on hosts that have the node's base image."""

from __future__ import annotations

from pathlib import Path

import pytest

from mayu_py.agent import plan as p
from mayu_py.agent.reasons import failure
from mayu_py.errors import BadRequest, MayuError
from mayu_py.images.base import ImageMissing
from mayu_py.tenants import (
    HostInfo,
    HostRegistration,
    ImageInfo,
    NodeReport,
    NodeState,
    ReportedNode,
    TenantRecord,
    parse_tenant,
    place,
    tenant_nodes,
)
from mayu_py.tenants.conditions import (
    NodeFacts,
    node_conditions,
    rfc3339,
    stamp,
    tenant_conditions,
)
from mayu_py.tenants.placement import HEARTBEAT_LAPSE_S, why_unplaced
from mayu_py.tenants.resource import Condition
from mayu_py.tenants.wire import HostImage
from tests.support.tenants import acme

S = NodeState
TENANT = parse_tenant(acme(), {"lab": ImageInfo("lab")}, [])
NODES = tenant_nodes(TENANT)
LAB = (HostImage("lab", "6.1", "a" * 64),)


def _by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conditions}


def test_stamp_keeps_the_time_while_the_status_holds() -> None:
    booting = [Condition(type="Ready", status="False", reason="Booting")]
    first = stamp(booting, [], 100.0)
    assert first[0].lastTransitionTime == rfc3339(100.0) == "1970-01-01T00:01:40Z"
    failed = [Condition(type="Ready", status="False", reason="DefineFailed", message="x")]
    same_status = stamp(failed, first, 200.0)
    assert same_status[0].lastTransitionTime == rfc3339(100.0)  # reason changed, status not
    assert same_status[0].reason == "DefineFailed"
    ready = stamp([Condition(type="Ready", status="True", reason="Ready")], same_status, 300.0)
    assert ready[0].lastTransitionTime == rfc3339(300.0)


def test_node_conditions_say_why() -> None:
    unplaced = NodeFacts("n", S.PENDING, None, unplaced=("NoHostWithImage", "no live host"))
    assert [(c.type, c.status, c.reason) for c in node_conditions(unplaced)] == [
        ("Scheduled", "False", "NoHostWithImage"),
        ("Ready", "False", "NoHostWithImage"),
    ]
    missing = NodeFacts("n", S.FAILED, "h1", "BaseImageMissing", "base image `lab` ...")
    ready = _by_type(node_conditions(missing))["Ready"]
    assert (ready.status, ready.reason, ready.message) == (
        "False",
        "BaseImageMissing",
        "base image `lab` ...",
    )
    booting = _by_type(node_conditions(NodeFacts("n", S.RUNNING, "h1")))
    assert (booting["Ready"].reason, booting["Scheduled"].message) == ("Booting", "on host h1")
    lost = _by_type(node_conditions(NodeFacts("n", S.UNKNOWN, "h1", "Ready", "gone")))
    assert (lost["Ready"].status, lost["Ready"].reason) == ("Unknown", "HostLost")
    assert _by_type(node_conditions(NodeFacts("n", S.READY, "h1")))["Ready"].status == "True"


def test_tenant_conditions_aggregate_their_nodes() -> None:
    ready = [NodeFacts(f"n{i}", S.READY, "h1") for i in range(2)]
    all_ready = _by_type(tenant_conditions(ready))
    assert [(c.status, c.reason) for c in all_ready.values()] == [
        ("True", "AllNodesReady"),
        ("False", "Settled"),
        ("False", "NoFailures"),
    ]
    failed = NodeFacts("n2", S.FAILED, "h1", "DefineFailed", "libvirt said no")
    booting = NodeFacts("n3", S.RUNNING, "h1")
    mixed = _by_type(tenant_conditions([*ready, failed, booting]))
    assert (mixed["Ready"].status, mixed["Ready"].reason) == ("False", "DefineFailed")
    assert mixed["Ready"].message.startswith("2 of 4 nodes ready: n2: DefineFailed")
    assert (mixed["Degraded"].status, mixed["Degraded"].reason) == ("True", "DefineFailed")
    assert "libvirt said no" in mixed["Degraded"].message
    assert (mixed["Progressing"].status, mixed["Progressing"].reason) == ("True", "Booting")
    stuck = NodeFacts("n4", S.PENDING, None, unplaced=("NoHostWithImage", "no image"))
    waiting = _by_type(tenant_conditions([*ready, stuck]))
    assert (waiting["Progressing"].status, waiting["Progressing"].reason) == (
        "False",
        "NoHostWithImage",
    )
    assert waiting["Degraded"].status == "False"
    deleting = _by_type(tenant_conditions(ready, deleting=True))
    assert (deleting["Ready"].reason, deleting["Progressing"].status) == ("Deleting", "True")


def test_placement_only_on_hosts_with_the_image() -> None:
    without = HostInfo("h1", 64, 65536, 0.0, images=(HostImage("other"),))
    with_lab = HostInfo("h2", 64, 65536, 0.0, images=LAB)
    untold = HostInfo("h3", 64, 65536, 0.0)  # an agent that reports no images: takes any
    assert set(place(NODES, [without, with_lab], {}, now=0.0).values()) == {"h2"}
    assert place(NODES, [without], {}, now=0.0) == {}
    assert set(place(NODES, [without, untold], {}, now=0.0).values()) == {"h3"}
    reason, message = why_unplaced(NODES[0], [without], 0.0)
    assert reason == "NoHostWithImage" and "base image `lab`" in message
    small = HostInfo("h2", 1, 64, 0.0, images=LAB)
    assert why_unplaced(NODES[0], [without, small], 0.0)[0] == "Unschedulable"
    assert why_unplaced(NODES[0], [with_lab], 10**9)[0] == "NoLiveHost"


def test_record_conditions_keep_their_times_and_a_lapse_has_its_own() -> None:
    hosts = [HostInfo("h1", 64, 65536, 100.0, images=LAB)]
    record = TenantRecord(TENANT, {n.name: "h1" for n in NODES}).refreshed(hosts, 100.0)
    report = NodeReport("acme", NODES[0].name, S.RUNNING, None, "h1", "", 1, "Booting")
    record = TenantRecord(
        TENANT, record.assignments, {NODES[0].name: ReportedNode(report, 110.0)}, False,
        record.conditions,
    ).refreshed(hosts, 110.0)  # fmt: skip
    later = record.status(hosts, 150.0)
    master = _by_type(later.nodes[0].conditions)["Ready"]
    assert (master.reason, master.lastTransitionTime) == ("Booting", rfc3339(100.0))
    assert _by_type(later.conditions)["Progressing"].lastTransitionTime == rfc3339(100.0)
    lapse = 100.0 + HEARTBEAT_LAPSE_S
    for now in (lapse + 5, lapse + 500):  # the same answer whenever it is asked
        lost = record.status(hosts, now)
        ready = _by_type(lost.nodes[1].conditions)["Ready"]
        assert (ready.status, ready.lastTransitionTime) == ("Unknown", rfc3339(lapse))
        degraded = _by_type(lost.conditions)["Degraded"]
        assert (degraded.status, degraded.reason) == ("True", "HostLost")
        assert degraded.lastTransitionTime == rfc3339(lapse)
    assert TenantRecord.from_json(record.to_json()) == record


def test_wire_carries_images_and_reasons() -> None:
    host = HostRegistration("h1", 2, 4096, "10.0.0.1", "", LAB)
    assert HostRegistration.from_json(host.to_json()) == host
    old_agent = HostRegistration("h1", 2, 4096, "10.0.0.1")
    assert "images" not in old_agent.to_json()
    assert HostRegistration.from_json(old_agent.to_json()).images is None
    with pytest.raises(BadRequest, match="images"):
        HostRegistration.from_json(host.to_json() | {"images": [{"name": "a/b"}]})
    report = NodeReport("acme", "acme-master-0", S.FAILED, None, "h1", "x", 1, "DefineFailed")
    assert NodeReport.from_json("acme", "acme-master-0", report.to_json()) == report
    with pytest.raises(BadRequest, match="reason"):
        NodeReport.from_json("acme", "n", report.to_json() | {"reason": "two words"})
    info = HostInfo.seen(host, 5.0)
    assert HostInfo.from_json(info.to_json()) == info and info.has_image("lab")
    assert not HostInfo.seen(host, 5.0).has_image("flatcar")


def test_agent_failures_name_their_reason_and_fix() -> None:
    define = p.DefineDomain(NODES[0])
    reason, message = failure(define, ImageMissing("lab", Path("/i")), "h1")
    assert reason == "BaseImageMissing"
    assert message.startswith("base image `lab` is not present on host `h1`: run `mayu images")
    libvirt = MayuError("define domain acme-master-0: XML error: bad\nmore detail")
    assert failure(define, libvirt, "h1") == (
        "DefineFailed",
        "define domain acme-master-0: XML error: bad",
    )
    assert failure(p.StartDomain("acme", "n"), MayuError("boom"), "h1")[0] == "StartFailed"
