"""A complete sample rendering context, used to check every template at start-up."""

from __future__ import annotations

from mayu_py.config import ClusterConfig
from mayu_py.kubernetes_releases import DEFAULT_KUBERNETES_VERSION
from mayu_py.render.context import ClusterContext, NodeFacts, RenderContext

SAMPLE_IP = "192.0.2.11"


def sample_context(
    role: str = "controller", kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
) -> RenderContext:
    """A context with every value the shipped templates use, for a node of `role`."""
    node = NodeFacts(
        name="node-525400000001",
        role=role,
        mac="52:54:00:00:00:01",
        ip=SAMPLE_IP,
        uuid="8a6d2d3e-5d1c-4d5b-9f57-6f6e0c2d1a01",
        serial="SAMPLE-0001",
        labels={"role": role, "rack": "r1"},
        metadata={"owner": "sample"},
    )
    cluster = ClusterContext.from_config(
        ClusterConfig(),
        api_endpoint=f"https://{SAMPLE_IP}:6443",
        etcd_members=((node.name, SAMPLE_IP),),
        kubernetes_version=kubernetes_version,
    )
    return RenderContext(
        node=node,
        cluster=cluster,
        ssh_authorized_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMayuSampleKey core@sample",),
        report_url="https://192.0.2.1:8443/report?mac=52-54-00-00-00-01",
    )
