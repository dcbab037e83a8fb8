"""TenantCluster validation, deterministic node identities and placement."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from mayu_py.errors import Conflict, Unprocessable
from mayu_py.tenants import (
    HostInfo,
    ImageInfo,
    TenantNode,
    lapsed_nodes,
    parse_quantity,
    parse_tenant,
    place,
    tenant_nodes,
)
from mayu_py.tenants.resource import MAX_VNI
from mayu_py.tenants.validation import FIRST_AUTO_VNI, free_vni
from tests.support.tenants import acme

IMAGES = {"lab": ImageInfo("lab", min_memory_mib=256)}
DOC = acme()


def doc(**changes: object) -> dict:
    result = copy.deepcopy(DOC)
    for dotted, value in changes.items():
        target = result
        *path, last = dotted.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    return result


def errors_of(document: dict, existing: list | None = None) -> dict:
    with pytest.raises(Unprocessable) as info:
        parse_tenant(document, IMAGES, existing or [])
    assert info.value.status == 422
    return info.value.detail


def test_design_example_parses() -> None:
    tenant = parse_tenant(DOC, IMAGES, [])
    assert tenant.name == "acme"
    assert len(tenant.spec.workers) == 2


@pytest.mark.parametrize("name", ["Acme", "-acme", "acme_1", "a" * 41, ""])
def test_bad_name(name: str) -> None:
    assert "metadata.name" in errors_of(doc(metadata__name=name))


def test_zero_masters() -> None:
    assert errors_of(doc(spec__masters=[])) == {"spec.masters": "at least one master"}


def test_unknown_image() -> None:
    assert "spec.image" in errors_of(doc(spec__image="flatcar"))


@pytest.mark.parametrize("version", ["1.31", "1.34.2", "1.38"])
def test_an_unsupported_minor_is_a_field_error(version: str) -> None:
    detail = errors_of(doc(spec__kubernetesVersion=version))
    minor = ".".join(version.split(".")[:2])
    assert detail == {
        "spec.kubernetesVersion": f"Kubernetes {minor} is not supported (supported: 1.35, 1.36, 1.37)"
    }


@pytest.mark.parametrize("version", ["1.35", "1.36.3", "1.37.1"])
def test_every_supported_minor_parses(version: str) -> None:
    assert parse_tenant(
        doc(spec__kubernetesVersion=version), IMAGES, []
    ).spec.kubernetesVersion == (version)


def test_memory_below_image_minimum() -> None:
    small = [{"cpus": 1, "memory": "128Mi", "disk": "2Gi"}]
    detail = errors_of(doc(spec__workers=small))
    assert list(detail) == ["spec.workers[0].memory"]


def test_bad_quantity_and_missing_field() -> None:
    bad = [{"cpus": 1, "memory": "lots", "disk": "2Gi"}]
    assert "spec.masters[0].memory" in errors_of(doc(spec__masters=bad))
    missing = [{"cpus": 1, "memory": "512Mi"}]
    assert "spec.masters[0].disk" in errors_of(doc(spec__masters=missing))


@pytest.mark.parametrize("cidr", ["10.100.0.1/24", "nonsense", "10.0.0.0/8", "10.0.0.0/30"])
def test_invalid_cidr(cidr: str) -> None:
    assert "spec.network.cidr" in errors_of(doc(spec__network={"cidr": cidr, "vni": 100}))


def test_overlapping_cidr_and_reused_vni() -> None:
    other = parse_tenant(doc(metadata__name="other"), IMAGES, [])
    detail = errors_of(DOC, [other])
    assert "overlaps tenant 'other'" in detail["spec.network.cidr"]
    taken = doc(spec__network={"cidr": "10.101.0.0/24", "vni": 100})
    with pytest.raises(Conflict) as info:
        parse_tenant(taken, IMAGES, [other])
    assert info.value.status == 409
    assert "'other'" in info.value.detail["spec.network.vni"]
    # an update of the same tenant does not collide with itself
    assert parse_tenant(DOC, IMAGES, [parse_tenant(DOC, IMAGES, [])]).name == "acme"
    # a disjoint network and another vni are fine
    fine = doc(spec__network={"cidr": "10.101.0.0/24", "vni": 101})
    assert parse_tenant(fine, IMAGES, [other]).name == "acme"


def test_unknown_spec_field_rejected() -> None:
    assert "spec.replicas" in errors_of(doc(spec__replicas=3))


def test_quantities() -> None:
    assert parse_quantity("512Mi") == 512 * 2**20
    assert parse_quantity("2Gi") == 2 * 2**30
    assert parse_quantity("1G") == 10**9
    with pytest.raises(ValueError):
        parse_quantity("1.5Gi")


def test_node_identities_are_deterministic() -> None:
    first = tenant_nodes(parse_tenant(DOC, IMAGES, []))
    again = tenant_nodes(parse_tenant(copy.deepcopy(DOC), IMAGES, []))
    assert first == again
    assert [n.name for n in first] == ["acme-master-0", "acme-worker-0", "acme-worker-1"]
    assert [n.ip for n in first] == ["10.100.0.10", "10.100.0.11", "10.100.0.12"]
    assert all(n.mac.startswith("52:54:00:") for n in first)
    assert len({n.mac for n in first}) == len({n.uuid for n in first}) == 3
    net = ipaddress.IPv4Network("10.100.0.0/24")
    assert all(ipaddress.IPv4Address(n.ip) in net for n in first)
    other = tenant_nodes(parse_tenant(doc(metadata__name="beta"), IMAGES, []))
    assert {n.uuid for n in other}.isdisjoint(n.uuid for n in first)


def test_spec_hash_changes_with_size_only() -> None:
    tenant = parse_tenant(DOC, IMAGES, [])
    bigger = parse_tenant(
        doc(spec__workers=[{"cpus": 2, "memory": "512Mi", "disk": "2Gi"}]), IMAGES, []
    )
    a, b = tenant_nodes(tenant), tenant_nodes(bigger)
    assert a[0].spec_hash == b[0].spec_hash  # master unchanged
    assert a[1].spec_hash != b[1].spec_hash  # worker-0 resized
    wire = a[0].to_json()
    assert wire["node"] == "acme-master-0"
    assert wire["network"] == {
        "cidr": "10.100.0.0/24",
        "vni": 100,
        "gateway": "10.100.0.1",
        "ingress": "10.100.0.2",
        "peers": [],
    }
    assert wire["memory_mib"] == 512 and wire["disk_gib"] == 2
    assert TenantNode.from_json(wire) == a[0]


def node(tenant: str, name: str, role: str = "worker", cpus: int = 1, mem: int = 512) -> TenantNode:
    return TenantNode(
        tenant, name, role, 1, "h", cpus, mem, 2, "lab", "52:54:00:00:00:00", "", "",
        "10.100.0.0/24", 100, "10.100.0.1", "10.100.0.2",
    )  # fmt: skip


NOW = 1000.0


def hosts(*specs: tuple[str, int, int], lapsed: tuple[str, ...] = ()) -> list[HostInfo]:
    return [HostInfo(n, c, m, NOW - (300 if n in lapsed else 1)) for n, c, m in specs]


def test_masters_spread_over_hosts() -> None:
    masters = [node("acme", f"acme-master-{i}", "master") for i in range(3)]
    result = place(masters, hosts(("h1", 8, 8192), ("h2", 8, 8192), ("h3", 8, 8192)), {}, now=NOW)
    assert sorted(result.values()) == ["h1", "h2", "h3"]


def test_masters_share_hosts_when_too_few() -> None:
    masters = [node("acme", f"acme-master-{i}", "master") for i in range(3)]
    result = place(masters, hosts(("h1", 8, 8192), ("h2", 8, 8192)), {}, now=NOW)
    assert len(result) == 3 and set(result.values()) == {"h1", "h2"}


def test_placement_by_free_memory_and_capacity() -> None:
    big = node("acme", "acme-worker-0", mem=3000)
    small = node("acme", "acme-worker-1", mem=1000)
    result = place([big, small], hosts(("h1", 8, 3500), ("h2", 8, 2000)), {}, now=NOW)
    assert result == {"acme-worker-0": "h1", "acme-worker-1": "h2"}
    huge = node("acme", "acme-worker-2", mem=10_000)
    assert "acme-worker-2" not in place([huge], hosts(("h1", 8, 3500)), {}, now=NOW)


def test_existing_assignments_kept_and_count_as_usage() -> None:
    a = node("acme", "acme-worker-0", mem=1500)
    b = node("acme", "acme-worker-1", mem=1500)
    result = place(
        [a, b], hosts(("h1", 8, 2000), ("h2", 8, 4000)), {"acme-worker-0": "h1"}, now=NOW
    )
    assert result == {"acme-worker-0": "h1", "acme-worker-1": "h2"}


def test_lapsed_host_not_used_and_its_nodes_not_moved() -> None:
    kept = node("acme", "acme-worker-0")
    new = node("acme", "acme-worker-1")
    all_hosts = hosts(("h1", 8, 8192), ("h2", 8, 4096), lapsed=("h1",))
    result = place([kept, new], all_hosts, {"acme-worker-0": "h1"}, now=NOW)
    assert result == {"acme-worker-0": "h1", "acme-worker-1": "h2"}
    assert lapsed_nodes(result, all_hosts, now=NOW) == {"acme-worker-0"}


def test_node_of_removed_host_is_replaced() -> None:
    a = node("acme", "acme-worker-0")
    assert place([a], hosts(("h2", 8, 4096)), {"acme-worker-0": "gone"}, now=NOW) == {
        "acme-worker-0": "h2"
    }


def test_a_tenant_without_vni_gets_the_lowest_free_one() -> None:
    first = parse_tenant(doc(spec__network={"cidr": "10.100.0.0/24"}), IMAGES, [])
    assert first.spec.network.vni == FIRST_AUTO_VNI
    second = parse_tenant(
        doc(metadata__name="two", spec__network={"cidr": "10.101.0.0/24"}), IMAGES, [first]
    )
    assert second.spec.network.vni == FIRST_AUTO_VNI + 1
    # re-validating a tenant against the list that holds it keeps its VNI
    assert parse_tenant(first.model_dump(mode="json"), IMAGES, [first, second]) == first
    assert {n.vni for n in tenant_nodes(second)} == {FIRST_AUTO_VNI + 1}


def test_no_free_vni_left_is_a_conflict() -> None:
    assert free_vni({FIRST_AUTO_VNI, FIRST_AUTO_VNI + 2}) == FIRST_AUTO_VNI + 1
    with pytest.raises(Conflict) as info:
        free_vni({MAX_VNI - 1, MAX_VNI}, first=MAX_VNI - 1)
    assert info.value.status == 409
