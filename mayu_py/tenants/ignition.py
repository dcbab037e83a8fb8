"""A tenant node's Ignition and its cluster's facts: the tenant's PKI files plus the rendered
node template.

Shared by the server (GET /api/v1/tenants/<name>/nodes/<node>/ignition, the tenant's admin
kubeconfig) and the agent's Kubernetes source, which renders locally; both get the same bytes
for the same tenant, node and PKI directory. A tenant cluster's in-cluster networking (domain,
pod and service CIDRs, DNS and service addresses) is the default of `config.ClusterConfig`.
"""

from __future__ import annotations

from mayu_py.config import ClusterConfig
from mayu_py.errors import NotFound
from mayu_py.kubernetes_releases import minor_of
from mayu_py.pki import ClusterFacts, ClusterPKI, NodeIdentity
from mayu_py.render import ClusterContext, IgnitionRenderer, NodeFacts, RenderContext
from mayu_py.tenants.nodes import TenantNode, tenant_nodes
from mayu_py.tenants.resource import TenantCluster

IN_CLUSTER = ClusterConfig()
RENDER_ROLE = {"master": "controller", "worker": "worker"}
TEMPLATES = {"master": "controller.yaml.j2", "worker": "worker.yaml.j2"}
API_PORT = 6443


def _facts(tenant: TenantCluster, nodes: list[TenantNode]) -> ClusterFacts:
    masters = [n for n in nodes if n.role == "master"]
    return ClusterFacts(
        name=tenant.name,
        domain=IN_CLUSTER.domain,
        service_ip=IN_CLUSTER.service_ip,
        api_endpoint=f"https://{masters[0].ip}:{API_PORT}",
        etcd_members=tuple((m.name, m.ip) for m in masters),
    )


def cluster_facts(tenant: TenantCluster) -> ClusterFacts:
    """What the tenant's certificates and kubeconfigs name: its API on the first master."""
    return _facts(tenant, tenant_nodes(tenant))


def render_tenant_node(
    tenant: TenantCluster, node_name: str, pki: ClusterPKI, renderer: IgnitionRenderer
) -> bytes:
    """The Ignition JSON of one node of `tenant`; NotFound when the spec has no such node."""
    nodes = tenant_nodes(tenant)
    node = next((n for n in nodes if n.name == node_name), None)
    if node is None:
        raise NotFound("no such node", {"tenant": tenant.name, "node": node_name})
    facts = _facts(tenant, nodes)
    identity = NodeIdentity(name=node.name, role=RENDER_ROLE[node.role], ips=(node.ip,))
    files = pki.node_files(identity, facts)
    version = tenant.spec.kubernetesVersion
    context = RenderContext(
        node=NodeFacts(
            name=node.name,
            role=RENDER_ROLE[node.role],
            mac=node.mac,
            ip=node.ip,
            uuid=node.uuid,
            labels={"mayu.io/tenant": tenant.name},
        ),
        cluster=ClusterContext.from_config(
            IN_CLUSTER,
            name=tenant.name,
            kubernetes_version=version if version.count(".") == 2 else f"{minor_of(version)}.0",
            api_endpoint=facts.api_endpoint,
            etcd_members=facts.etcd_members,
        ),
        ssh_authorized_keys=tuple(tenant.spec.sshAuthorizedKeys),
    )
    return renderer.render_json(TEMPLATES[node.role], context, files)
