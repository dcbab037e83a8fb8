"""The rendered HAProxy configuration of the tenant API ingress (pure; the real HAProxy loads
it in tests/peers/test_ingress_haproxy.py)."""

from __future__ import annotations

from mayu_py.ingress import Route, render_config

A = Route(
    "a",
    "a.api.example.test",
    "10.1.0.2",
    (("a-master-1", "10.1.0.11"), ("a-master-0", "10.1.0.10")),
)
B = Route("b", "b.api.example.test", "10.2.0.2", (("b-master-0", "10.2.0.10"),))


def test_each_name_selects_its_tenant_backend_and_nothing_else_is_routed() -> None:
    text = render_config("192.0.2.1:6443", [B, A])
    lines = [ln.strip() for ln in text.splitlines()]
    assert "bind 192.0.2.1:6443" in lines
    assert "tcp-request content reject unless { req_ssl_hello_type 1 }" in lines
    assert [ln for ln in lines if ln.startswith("use_backend")] == [
        "use_backend tenant-a if { req_ssl_sni -i a.api.example.test }",
        "use_backend tenant-b if { req_ssl_sni -i b.api.example.test }",
    ]
    assert not any(ln.startswith("default_backend") for ln in lines)  # unknown names: closed
    start = lines.index("backend tenant-a")
    assert lines[start + 1 : start + 3] == [
        "server a-master-0 10.1.0.10:6443 check source 10.1.0.2",
        "server a-master-1 10.1.0.11:6443 check source 10.1.0.2",
    ]


def test_the_same_routes_give_the_same_text() -> None:
    assert render_config("192.0.2.1:6443", [A, B]) == render_config("192.0.2.1:6443", [B, A])
    moved = Route("a", A.name, A.source, (("a-master-0", "10.1.0.12"),))
    assert render_config("192.0.2.1:6443", [moved, B]) != render_config("192.0.2.1:6443", [A, B])


def test_no_routes_is_still_a_listener_that_refuses_everything() -> None:
    lines = render_config("192.0.2.1:6443", []).splitlines()
    assert "  bind 192.0.2.1:6443" in lines
    assert not any(ln.startswith(("backend", "  use_backend")) for ln in lines)
