"""The agent's ingress routes: the masters among a host's desired nodes, per tenant (pure); and
`mayu agent --ingress-listen` needs the ingress domain."""

from __future__ import annotations

from click.testing import CliRunner

from mayu_py.agent.ingress import routes_for
from mayu_py.cli.mayu import cli
from mayu_py.ingress import Route
from mayu_py.tenants import ImageInfo, TenantNode, parse_tenant, tenant_nodes
from tests.support.tenants import tenant_doc


def _nodes(name: str, cidr: str, vni: int, masters: int) -> list[TenantNode]:
    doc = tenant_doc(name, cidr, vni, workers=2)
    doc["spec"]["masters"] *= masters
    return tenant_nodes(parse_tenant(doc, {"lab": ImageInfo("lab")}, []))


def test_each_tenant_with_a_master_here_is_routed_to_those_masters_only() -> None:
    a = _nodes("a", "10.1.0.0/24", 101, masters=3)
    b = _nodes("b", "10.2.0.0/24", 102, masters=1)
    workers_only = [n for n in _nodes("c", "10.3.0.0/24", 103, masters=1) if n.role == "worker"]
    here = [a[2], a[0], a[3], *b, *workers_only]  # a's master-1 runs on another host
    assert routes_for(here, "example.test") == [
        Route("a", "a.api.example.test", "10.1.0.2",
              (("a-master-0", "10.1.0.10"), ("a-master-2", "10.1.0.12"))),
        Route("b", "b.api.example.test", "10.2.0.2", (("b-master-0", "10.2.0.10"),)),
    ]  # fmt: skip
    assert routes_for(workers_only, "example.test") == []


def test_an_ingress_listener_needs_its_domain() -> None:
    result = CliRunner().invoke(
        cli,
        ["agent", "--host-name", "h1", "--ingress-listen", "127.0.0.1:6443"],
        env={"MAYU_INGRESS_DOMAIN": None},
    )
    assert result.exit_code == 2
    assert "--ingress-domain" in result.output
