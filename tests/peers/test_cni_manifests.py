"""A tenant's in-cluster networking as its masters receive it: flannel (vxlan) with the tenant's
pod CIDR and the overlay's MTU, and the RBAC of the agents' drain identity, valid for every
supported Kubernetes minor by the real `kubernetes-validate --strict`; an operator's manifest
file replaces the CNI (not the RBAC)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mayu_py.config import load_settings
from mayu_py.errors import ConfigError
from mayu_py.kubernetes_releases import RELEASES
from mayu_py.pki import ClusterPKI
from mayu_py.render import IgnitionRenderer
from mayu_py.render.addons import VXLAN_OVERHEAD, flannel_manifests
from mayu_py.render.ignition import file_text
from mayu_py.server.tenant_service import tenant_options
from mayu_py.tenants import ImageInfo, TenantCluster, parse_tenant, tenant_nodes
from mayu_py.tenants.ignition import IN_CLUSTER, render_tenant_node
from mayu_py.tenants.networking import OVERLAY_MTU, TenantOptions
from tests.support.tenants import acme

pytestmark = pytest.mark.peer

CNI_FILE = "/etc/kubernetes/addons/cni.yaml"
DRAINERS_FILE = "/etc/kubernetes/addons/mayu-drainers.yaml"
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"


def _tenant(version: str) -> TenantCluster:
    doc = acme()
    doc["spec"]["kubernetesVersion"] = version
    return parse_tenant(doc, {"lab": ImageInfo("lab")}, [])


def _configs(tmp_path: Path, tenant: TenantCluster, options: TenantOptions) -> dict[str, dict]:
    pki = ClusterPKI.load_or_create(tmp_path / "pki", tenant.name)
    renderer = IgnitionRenderer()
    return {
        n.role + n.name[-1]: json.loads(render_tenant_node(tenant, n.name, pki, renderer, options))
        for n in tenant_nodes(tenant)
    }


@pytest.mark.parametrize("minor", list(RELEASES))
def test_masters_get_flannel_valid_for_each_minor(tmp_path: Path, minor: str) -> None:
    configs = _configs(tmp_path, _tenant(minor), TenantOptions())
    text = file_text(configs["master0"], CNI_FILE)
    assert text is not None
    assert all(file_text(c, CNI_FILE) is None for k, c in configs.items() if k != "master0")
    units = {u["name"]: u for u in configs["master0"]["systemd"]["units"]}
    assert units["mayu-addons.service"]["enabled"] is True
    assert (
        "--kubeconfig=/etc/kubernetes/admin.conf apply" in units["mayu-addons.service"]["contents"]
    )
    assert file_text(configs["master0"], "/etc/kubernetes/admin.conf") is not None

    rbac = file_text(configs["master0"], DRAINERS_FILE)
    assert rbac is not None
    assert all(file_text(c, DRAINERS_FILE) is None for k, c in configs.items() if k != "master0")

    path, rbac_path = tmp_path / "cni.yaml", tmp_path / "drainers.yaml"
    path.write_text(text)
    rbac_path.write_text(rbac)
    result = subprocess.run(
        [str(VALIDATE), "--strict", "-k", f"{minor}.0", str(path), str(rbac_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    docs = list(yaml.safe_load_all(text))
    assert result.stdout.count(" passed for resource ") == len(docs) + 2 == 8, result.stdout
    role, binding = yaml.safe_load_all(rbac)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "mayu:drainers"}
    ]
    kinds = [d["kind"] for d in docs]
    assert kinds == [
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
        "DaemonSet",
    ]  # fmt: skip

    data = docs[4]["data"]
    net = json.loads(data["net-conf.json"])
    assert net["Network"] == IN_CLUSTER.pod_cidr
    assert net["Backend"]["Type"] == "vxlan"
    cni = json.loads(data["cni-conf.json"])
    assert cni["plugins"][0]["type"] == "flannel"
    assert cni["plugins"][0]["delegate"]["mtu"] == OVERLAY_MTU - VXLAN_OVERHEAD == 1400


def test_strict_validation_refuses_a_bogus_field(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(flannel_manifests("10.244.0.0/16", 1450, "10.0.0.1")))
    docs[5]["spec"]["template"]["spec"]["bogusField"] = True
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = subprocess.run(
        [str(VALIDATE), "--strict", "-k", "1.37.0", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "bogusField" in result.stdout + result.stderr


def test_pod_cidr_and_mtu_are_the_inputs() -> None:
    docs = list(yaml.safe_load_all(flannel_manifests("10.77.0.0/16", 9000, "10.0.0.1")))
    cni = json.loads(docs[4]["data"]["cni-conf.json"])
    assert json.loads(docs[4]["data"]["net-conf.json"])["Network"] == "10.77.0.0/16"
    assert cni["plugins"][0]["delegate"]["mtu"] == 9000 - VXLAN_OVERHEAD
    args = docs[5]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--iface-can-reach=10.0.0.1" in args and "--kube-subnet-mgr" in args


def test_an_operator_manifest_replaces_flannel(tmp_path: Path) -> None:
    own = tmp_path / "calico.yaml"
    own.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: calico-system\n")
    settings = load_settings(overrides={("tenants", "cni_manifest"): str(own)}, environ={})
    configs = _configs(tmp_path, _tenant("1.37"), tenant_options(settings))
    assert file_text(configs["master0"], CNI_FILE) == own.read_text()

    own.write_text("just: a mapping\n")
    with pytest.raises(ConfigError, match="document 0 is not a Kubernetes object"):
        tenant_options(settings)
    with pytest.raises(ConfigError, match="calico.yaml"):
        own.unlink()
        tenant_options(settings)
