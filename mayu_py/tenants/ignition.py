"""A tenant node's Ignition and its cluster's facts: the tenant's PKI files plus the rendered
node template.

Shared by the server (GET /api/v1/tenants/<name>/nodes/<node>/ignition, the tenant's admin
kubeconfig) and the agent's Kubernetes source, which renders locally; both get the same bytes
for the same tenant, node and PKI directory. A tenant cluster's in-cluster networking (domain,
pod and service CIDRs, DNS and service addresses) is the default of `config.ClusterConfig`;
its pod network is flannel (mayu_py.render.addons) unless the site's `TenantOptions` give
other manifests; masters also get the RBAC of the agents' drain identity
(`drainer_rbac`). With an ingress domain, the API server certificate also names
`<tenant>.api.<domain>` and the admin kubeconfig points there (mayu_py.tenants.networking).
"""

from __future__ import annotations

import dataclasses

from mayu_py.config import ClusterConfig
from mayu_py.errors import NotFound
from mayu_py.kubernetes_releases import minor_of
from mayu_py.pki import ClusterFacts, ClusterPKI, NodeIdentity
from mayu_py.pki.layout import DRAINERS_GROUP
from mayu_py.render import ClusterContext, IgnitionRenderer, NodeFacts, RenderContext
from mayu_py.render.addons import drainer_rbac, flannel_manifests
from mayu_py.tenants.networking import API_PORT, OVERLAY_MTU, TenantOptions, ingress_name
from mayu_py.tenants.nodes import TenantNode, tenant_nodes
from mayu_py.tenants.resource import TenantCluster

IN_CLUSTER = ClusterConfig()
RENDER_ROLE = {"master": "controller", "worker": "worker"}
TEMPLATES = {"master": "controller.yaml.j2", "worker": "worker.yaml.j2"}
DEFAULT_OPTIONS = TenantOptions()


def _facts(tenant: TenantCluster, nodes: list[TenantNode], options: TenantOptions) -> ClusterFacts:
    masters = [n for n in nodes if n.role == "master"]
    domain = options.ingress_domain
    return ClusterFacts(
        name=tenant.name,
        domain=IN_CLUSTER.domain,
        service_ip=IN_CLUSTER.service_ip,
        api_endpoint=f"https://{masters[0].ip}:{API_PORT}",
        etcd_members=tuple((m.name, m.ip) for m in masters),
        external_names=(ingress_name(tenant.name, domain),) if domain else (),
    )


def cluster_facts(tenant: TenantCluster, options: TenantOptions = DEFAULT_OPTIONS) -> ClusterFacts:
    """What the tenant's certificates and kubeconfigs name: its API on the first master (and
    at its ingress name)."""
    return _facts(tenant, tenant_nodes(tenant), options)


def admin_facts(tenant: TenantCluster, options: TenantOptions = DEFAULT_OPTIONS) -> ClusterFacts:
    """The facts of the admin kubeconfig: the API at its ingress URL when there is one."""
    facts = cluster_facts(tenant, options)
    url = options.ingress_url(tenant.name)
    return dataclasses.replace(facts, api_endpoint=url) if url else facts


def cni_manifest(node: TenantNode, options: TenantOptions = DEFAULT_OPTIONS) -> str:
    """The tenant's in-cluster networking: the operator's manifests, else mayu's flannel."""
    if options.cni_manifest is not None:
        return options.cni_manifest
    return flannel_manifests(IN_CLUSTER.pod_cidr, OVERLAY_MTU, node.gateway)


def render_tenant_node(
    tenant: TenantCluster,
    node_name: str,
    pki: ClusterPKI,
    renderer: IgnitionRenderer,
    options: TenantOptions = DEFAULT_OPTIONS,
) -> bytes:
    """The Ignition JSON of one node of `tenant`; NotFound when the spec has no such node."""
    nodes = tenant_nodes(tenant)
    node = next((n for n in nodes if n.name == node_name), None)
    if node is None:
        raise NotFound("no such node", {"tenant": tenant.name, "node": node_name})
    facts = _facts(tenant, nodes, options)
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
            cni_manifest=cni_manifest(node, options) if node.role == "master" else None,
            drainer_rbac=drainer_rbac(DRAINERS_GROUP) if node.role == "master" else None,
        ),
        ssh_authorized_keys=tuple(tenant.spec.sshAuthorizedKeys),
    )
    return renderer.render_json(TEMPLATES[node.role], context, files)
