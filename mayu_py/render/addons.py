"""A cluster's add-ons its masters apply: the CNI manifests (flannel, vxlan) and mayu's RBAC.

`flannel_manifests` renders static_manifests/addons/flannel.yaml.j2 with the cluster's pod
CIDR and the MTU of the nodes' own link: flannel's vxlan backend costs VXLAN_OVERHEAD bytes
per packet, so pods get that much less. `operator_manifests` reads a file an operator gives
instead. `drainer_rbac` is what the mayu agents' drain identity may do in the cluster
(static_manifests/addons/drainers.yaml.j2), applied beside the CNI. Each text is one or more
YAML documents, each a Kubernetes object (`manifest_documents` checks that much; tests
validate ours with kubernetes-validate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mayu_py.errors import ConfigError, RenderError
from mayu_py.render.environment import create_environment, render_text
from mayu_py.render.paths import default_manifests_dir

ADDONS_DIR = "addons"
FLANNEL_TEMPLATE = "flannel.yaml.j2"
NAMESPACE = "kube-flannel"
FLANNEL_IMAGE = "ghcr.io/flannel-io/flannel:v0.28.9"
CNI_PLUGIN_IMAGE = "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3"
# outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 (flannel's and the kernel's figure)
VXLAN_OVERHEAD = 50
FLANNEL_VNI = 1  # flannel's Linux default; inside a tenant, it never meets the hosts' VNIs
CNI_NETWORK = "cbr0"
DRAINERS_TEMPLATE = "drainers.yaml.j2"
DRAINERS_ROLE = "mayu:drainer"


def flannel_manifests(
    pod_cidr: str, link_mtu: int, iface_can_reach: str, manifests_dir: Path | None = None
) -> str:
    """flannel's objects for a cluster whose pods live in `pod_cidr` and whose nodes' link
    (the one that reaches `iface_can_reach`) has MTU `link_mtu`."""
    pod_mtu = link_mtu - VXLAN_OVERHEAD
    context: dict[str, Any] = {
        "namespace": NAMESPACE,
        "net_conf": {
            "Network": pod_cidr,
            "EnableIPv4": True,
            "Backend": {"Type": "vxlan", "VNI": FLANNEL_VNI},
        },
        "cni_conf": {
            "name": CNI_NETWORK,
            "cniVersion": "1.0.0",
            "plugins": [
                {
                    "type": "flannel",
                    "delegate": {"hairpinMode": True, "isDefaultGateway": True, "mtu": pod_mtu},
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        "iface_can_reach": iface_can_reach,
        "flannel_image": FLANNEL_IMAGE,
        "cni_plugin_image": CNI_PLUGIN_IMAGE,
    }
    env = create_environment((manifests_dir or default_manifests_dir()) / ADDONS_DIR)
    text = render_text(env, FLANNEL_TEMPLATE, context)
    manifest_documents(text, FLANNEL_TEMPLATE)
    return text


def drainer_rbac(group: str, manifests_dir: Path | None = None) -> str:
    """A ClusterRole allowing a drain (get/list/patch nodes, list pods, create pods/eviction)
    and its ClusterRoleBinding to `group` (the agents' drain certificates' organization)."""
    env = create_environment((manifests_dir or default_manifests_dir()) / ADDONS_DIR)
    text = render_text(env, DRAINERS_TEMPLATE, {"group": group, "role": DRAINERS_ROLE})
    manifest_documents(text, DRAINERS_TEMPLATE)
    return text


def operator_manifests(path: Path) -> str:
    """The text of an operator's CNI manifest file; ConfigError when it is unreadable or not
    YAML documents of Kubernetes objects."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"CNI manifest {path}: {exc.strerror}") from None
    try:
        manifest_documents(text, str(path))
    except RenderError as exc:
        raise ConfigError(exc.message) from None
    return text


def manifest_documents(text: str, where: str) -> list[dict[str, Any]]:
    """The YAML documents of `text` (empty ones skipped); RenderError unless each is a mapping
    with apiVersion, kind and metadata.name."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise RenderError(f"{where}: not YAML: {exc}") from None
    if not documents:
        raise RenderError(f"{where}: no Kubernetes objects")
    for index, doc in enumerate(documents):
        name = doc.get("metadata", {}).get("name") if isinstance(doc, dict) else None
        if not (isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind") and name):
            raise RenderError(f"{where}: document {index} is not a Kubernetes object")
    return documents
