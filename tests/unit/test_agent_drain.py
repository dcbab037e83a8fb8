"""The drain hook (mayu_py.agent.drain) through the real `kubernetes` client against a fake
core API (tests/support/fake_kube_core.py): the calls in order, PDB retries, and the bounded,
explicit skip when the tenant API cannot be reached."""

from __future__ import annotations

import socket
import time

from mayu_py.agent.drain import KubeDrain
from tests.support.fake_kube_core import FakeCore, FakePod, kubeconfig, serve

NODE = "acme-master-0"


def test_cordons_then_evicts_in_order_skipping_daemonsets_and_mirror_pods() -> None:
    core = FakeCore()
    core.add_node(NODE)
    core.pods = [
        FakePod("default", "web-1", NODE),
        FakePod("kube-system", "flannel-x", NODE, owner_kind="DaemonSet"),
        FakePod("kube-system", "kube-apiserver-x", NODE, owner_kind="Node", mirror=True),
        FakePod("default", "db-0", NODE, owner_kind="StatefulSet", budget=1),
        FakePod("default", "elsewhere", "acme-worker-0"),
    ]
    with serve(core) as url:
        said = KubeDrain(lambda tenant: kubeconfig(url), timeout_s=30.0)("acme", NODE)
    assert said == "drained: cordoned, 2 pods evicted"
    calls = [(method, path.split("?")[0]) for method, path, _ in core.requests]
    pods_of_node = ("GET", "/api/v1/pods")
    assert calls == [
        ("PATCH", f"/api/v1/nodes/{NODE}"),
        pods_of_node,
        ("POST", "/api/v1/namespaces/default/pods/web-1/eviction"),
        ("POST", "/api/v1/namespaces/default/pods/db-0/eviction"),  # 429: its budget
        ("POST", "/api/v1/namespaces/default/pods/db-0/eviction"),
        pods_of_node,
    ], core.requests
    assert core.requests[0][2] == {"spec": {"unschedulable": True}}
    assert f"fieldSelector=spec.nodeName%3D{NODE}" in core.requests[1][1]
    eviction = core.requests[2][2]
    assert (eviction["apiVersion"], eviction["kind"], eviction["metadata"]) == (
        "policy/v1",
        "Eviction",
        {"name": "web-1", "namespace": "default"},
    )
    assert core.nodes[NODE]["spec"] == {"unschedulable": True}
    assert [p.name for p in core.pods] == ["flannel-x", "kube-apiserver-x", "elsewhere"]


def test_a_node_unknown_to_the_tenant_api_is_said() -> None:
    core = FakeCore()
    with serve(core) as url:
        said = KubeDrain(lambda tenant: kubeconfig(url), timeout_s=5.0)("acme", NODE)
    assert said == "drain skipped: the tenant API has no such node"
    assert [m for m, _, _ in core.requests] == ["PATCH"]


def test_every_drain_fetches_the_credential_afresh() -> None:
    core = FakeCore()
    core.add_node(NODE)
    core.add_node("acme-master-1")
    fetched: list[str] = []

    def credential(tenant: str) -> str:  # short-lived: never kept between drains
        fetched.append(tenant)
        return kubeconfig(url)

    with serve(core) as url:
        drain = KubeDrain(credential, timeout_s=5.0)
        assert (
            drain("acme", NODE)
            == drain("acme", "acme-master-1")
            == ("drained: cordoned, 0 pods evicted")
        )
    assert fetched == ["acme", "acme"]


def test_a_pod_that_stays_makes_the_drain_incomplete_within_the_timeout() -> None:
    core = FakeCore()
    core.add_node(NODE)
    core.pods = [FakePod("default", "db-0", NODE, budget=1000)]
    started = time.monotonic()
    with serve(core) as url:
        said = KubeDrain(lambda tenant: kubeconfig(url), timeout_s=1.5)("acme", NODE)
    assert said.startswith("drain incomplete: pod default/db-0 not evicted")
    assert time.monotonic() - started < 5.0


def test_an_unreachable_tenant_api_skips_the_drain_after_the_timeout_and_says_so() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    said = KubeDrain(lambda tenant: kubeconfig(f"http://127.0.0.1:{port}"), timeout_s=1.5)(
        "acme", NODE
    )
    took = time.monotonic() - started
    assert said.startswith("drain skipped: tenant API unreachable after"), said
    assert 1.0 <= took < 5.0


def test_no_kubeconfig_is_said() -> None:
    def missing(tenant: str) -> str:
        raise OSError("403 agent token of another host")

    said = KubeDrain(missing, timeout_s=1.0)("acme", NODE)
    assert said == "drain skipped: no tenant kubeconfig (403 agent token of another host)"
