"""A tenant node's Ignition: the tenant's PKI files plus the rendered node template.

Shared by the server (GET /api/v1/tenants/<name>/nodes/<node>/ignition) and the agent's
Kubernetes source, which renders locally; both get the same bytes for the same tenant, node
and PKI directory. Sits above pki and render (it uses both) and below server and agent.
"""

from __future__ import annotations

from mayu_py.errors import NotFound
from mayu_py.kubernetes_releases import minor_of
from mayu_py.pki import ClusterFacts, ClusterPKI, NodeIdentity
from mayu_py.render import IgnitionRenderer
from mayu_py.tenant import TenantCluster, tenant_nodes

CLUSTER_DOMAIN = "cluster.local"
SERVICE_IP = "10.96.0.1"
RENDER_ROLE = {"master": "controller", "worker": "worker"}
TEMPLATES = {"master": "controller.yaml.j2", "worker": "worker.yaml.j2"}

__all__ = ["RENDER_ROLE", "TEMPLATES", "render_tenant_node"]


def render_tenant_node(
    tenant: TenantCluster, node_name: str, pki: ClusterPKI, renderer: IgnitionRenderer
) -> bytes:
    """The Ignition JSON of one node of `tenant`; NotFound when the spec has no such node."""
    nodes = {n.name: n for n in tenant_nodes(tenant)}
    node = nodes.get(node_name)
    if node is None:
        raise NotFound("no such node", {"tenant": tenant.name, "node": node_name})
    masters = [n for n in nodes.values() if n.role == "master"]
    facts = ClusterFacts(
        name=tenant.name,
        domain=CLUSTER_DOMAIN,
        service_ip=SERVICE_IP,
        api_endpoint=f"https://{masters[0].ip}:6443",
        etcd_members=tuple((m.name, m.ip) for m in masters),
    )
    identity = NodeIdentity(name=node.name, role=RENDER_ROLE[node.role], ips=(node.ip,))
    files = pki.node_files(identity, facts)
    version = tenant.spec.kubernetesVersion
    minor = minor_of(version)
    context = {
        "node": {
            "name": node.name,
            "role": RENDER_ROLE[node.role],
            "mac": node.mac,
            "ip": node.ip,
            "uuid": node.uuid,
            "serial": None,
            "labels": {"mayu.io/tenant": tenant.name},
            "metadata": {},
        },
        "cluster": {
            "name": tenant.name,
            "domain": CLUSTER_DOMAIN,
            "kubernetes_version": version if version.count(".") == 2 else f"{minor}.0",
            "kubernetes_minor": minor,
            "pod_cidr": "10.244.0.0/16",
            "service_cidr": "10.96.0.0/12",
            "cluster_dns": "10.96.0.10",
            "service_ip": SERVICE_IP,
            "api_endpoint": facts.api_endpoint,
            "etcd_members": [{"name": n, "address": a} for n, a in facts.etcd_members],
        },
        "ssh_authorized_keys": list(tenant.spec.sshAuthorizedKeys),
        "report_url": None,
    }
    return renderer.render_json(TEMPLATES[node.role], context, files)
