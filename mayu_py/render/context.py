"""The one typed render context of an Ignition template: facts about the node and its cluster.

Every caller (a level-1 machine, a tenant node, the start-up sample) builds a `RenderContext`;
`template_values()` is the only place it becomes the mapping the templates read. Cluster
constants (domain, CIDRs, DNS and service addresses) come from a `ClusterConfig`, never typed
again by a caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mayu_py.config import ClusterConfig
from mayu_py.kubernetes_releases import minor_of


@dataclass(frozen=True)
class NodeFacts:
    """The node being configured."""

    name: str
    role: str  # controller | worker (the renderer refuses anything else)
    mac: str | None = None
    ip: str | None = None
    uuid: str | None = None
    serial: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterContext:
    """The cluster the node joins."""

    name: str
    domain: str
    kubernetes_version: str
    pod_cidr: str
    service_cidr: str
    cluster_dns: str
    service_ip: str
    api_endpoint: str
    etcd_members: tuple[tuple[str, str], ...] = ()
    cni_manifest: str | None = None  # in-cluster networking its controllers apply (tenants)
    drainer_rbac: str | None = None  # what mayu's agents may do in it (tenants: drains)

    @property
    def kubernetes_minor(self) -> str:
        return minor_of(self.kubernetes_version)

    @classmethod
    def from_config(
        cls,
        config: ClusterConfig,
        *,
        api_endpoint: str,
        etcd_members: tuple[tuple[str, str], ...] = (),
        name: str | None = None,
        kubernetes_version: str | None = None,
        cni_manifest: str | None = None,
        drainer_rbac: str | None = None,
    ) -> ClusterContext:
        """The cluster's constants from `config`; name and version may differ (tenants)."""
        return cls(
            name=name or config.name,
            domain=config.domain,
            kubernetes_version=kubernetes_version or config.kubernetes_version,
            pod_cidr=config.pod_cidr,
            service_cidr=config.service_cidr,
            cluster_dns=config.cluster_dns,
            service_ip=config.service_ip,
            api_endpoint=api_endpoint,
            etcd_members=etcd_members,
            cni_manifest=cni_manifest,
            drainer_rbac=drainer_rbac,
        )


@dataclass(frozen=True)
class RenderContext:
    """Everything a template may use."""

    node: NodeFacts
    cluster: ClusterContext
    ssh_authorized_keys: tuple[str, ...] = ()
    report_url: str | None = None  # the phone-home URL (None: the node does not report)
    server_url: str | None = None  # where the node's agent reaches the server

    def template_values(self) -> dict[str, Any]:
        """The mapping templates read (`server_url` only when set: templates test `defined`)."""
        node, cluster = self.node, self.cluster
        values: dict[str, Any] = {
            "node": {
                "name": node.name,
                "role": node.role,
                "mac": node.mac,
                "ip": node.ip,
                "uuid": node.uuid,
                "serial": node.serial,
                "labels": dict(node.labels),
                "metadata": dict(node.metadata),
            },
            "cluster": {
                "name": cluster.name,
                "domain": cluster.domain,
                "kubernetes_version": cluster.kubernetes_version,
                "kubernetes_minor": cluster.kubernetes_minor,
                "pod_cidr": cluster.pod_cidr,
                "service_cidr": cluster.service_cidr,
                "cluster_dns": cluster.cluster_dns,
                "service_ip": cluster.service_ip,
                "api_endpoint": cluster.api_endpoint,
                "etcd_members": [{"name": n, "address": a} for n, a in cluster.etcd_members],
                "cni_manifest": cluster.cni_manifest,
                "drainer_rbac": cluster.drainer_rbac,
            },
            "ssh_authorized_keys": list(self.ssh_authorized_keys),
            "report_url": self.report_url,
        }
        if self.server_url is not None:
            values["server_url"] = self.server_url
        return values
