"""Every rendered config and every documented example passes the real `ignition-validate`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mayu_py.kubernetes_releases import RELEASES
from mayu_py.model import FileSpec
from mayu_py.pki import ClusterPKI
from mayu_py.render import IgnitionRenderer, sample_context
from mayu_py.render.ignition import file_text
from mayu_py.tenants import ImageInfo, parse_tenant, tenant_nodes
from mayu_py.tenants.ignition import render_tenant_node
from mayu_py.tenants.netconfig import NETWORK_FILE
from tests.support.install_profiles import approved_machine, install_profiles_client
from tests.support.tenants import acme

pytestmark = pytest.mark.peer

VALIDATE = shutil.which("ignition-validate")
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
KEYS = [FileSpec("/etc/kubernetes/pki/ca.key", 0o600, "-----BEGIN PRIVATE KEY-----\nx\n")]


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    if VALIDATE is None:
        pytest.skip("ignition-validate is not installed (Debian package `ignition`)")
    return subprocess.run([VALIDATE, str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("minor", list(RELEASES))
@pytest.mark.parametrize("role", ["controller", "worker"])
def test_rendered_config_validates(tmp_path: Path, role: str, minor: str) -> None:
    config = IgnitionRenderer().render_json(
        f"{role}.yaml.j2", sample_context(role, f"{minor}.0"), KEYS
    )
    path = tmp_path / f"{role}.ign"
    path.write_bytes(config)
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()


def test_tenant_node_configs_validate(tmp_path: Path) -> None:
    """What the server serves and the Kubernetes source renders for every node of a tenant,
    with the systemd-networkd unit a real OS image (Flatcar, Fedora CoreOS) takes its static
    overlay address from: the address the server stored for the node, the overlay's MTU."""
    doc = acme()
    doc["spec"]["network"]["addresses"] = {"acme-worker-1": "10.100.0.77"}
    tenant = parse_tenant(doc, {"lab": ImageInfo("lab")}, [])
    pki = ClusterPKI.load_or_create(tmp_path / "pki", tenant.name)
    nodes = tenant_nodes(tenant)
    assert {n.role for n in nodes} == {"master", "worker"}
    for node in nodes:
        path = tmp_path / f"{node.name}.ign"
        body = render_tenant_node(tenant, node.name, pki, IgnitionRenderer())
        path.write_bytes(body)
        result = validate(path)
        assert result.returncode == 0, (node.name, result.stdout + result.stderr)
        unit = file_text(json.loads(body), NETWORK_FILE)
        assert unit is not None, node.name
        assert f"MACAddress={node.mac}\n" in unit and "MTUBytes=1450\n" in unit
        assert f"Address={node.ip}/24\n" in unit and "Gateway=" not in unit
    assert nodes[-1].ip == "10.100.0.77"


def test_validator_rejects_a_broken_config(tmp_path: Path) -> None:
    config = json.loads(IgnitionRenderer().render_json("worker.yaml.j2", sample_context("worker")))
    config["storage"]["files"][0]["path"] = "relative/path"
    path = tmp_path / "broken.ign"
    path.write_text(json.dumps(config))
    assert validate(path).returncode != 0


EXAMPLE_FILES = sorted(EXAMPLES.glob("*.ign"))


def test_examples_exist() -> None:
    assert [p.name for p in EXAMPLE_FILES] == ["controller.ign", "worker.ign"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_validates_and_is_current(path: Path) -> None:
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    role = path.stem
    current = IgnitionRenderer().render(f"{role}.yaml.j2", sample_context(role))
    assert json.loads(path.read_text()) == current, (
        f"{path} is stale; regenerate it from IgnitionRenderer().render('{role}.yaml.j2', "
        f"sample_context('{role}')) as indented JSON"
    )


@pytest.mark.parametrize("os_label", ["fcos", "flatcar", "lab"])
def test_install_profiles_serve_valid_configs(tmp_path: Path, os_label: str) -> None:
    """What each install-to-disk profile of docs/examples/install-profiles.yaml hands out
    validates: the stub (for Fedora CoreOS, what coreos-installer writes to the disk), the
    real config, and for Flatcar the installed system's config inside it."""
    client = install_profiles_client(tmp_path)
    machine = approved_machine(client, "52-54-00-00-0e-01", os_label)
    token = machine.token()
    configs = {"stub": machine.stub(token).data, "real": machine.secret(token).data}
    real = json.loads(configs["real"])
    if os_label == "flatcar":
        configs["install.ign"] = file_text(real, "/etc/mayu/install.ign").encode()
    for name, body in configs.items():
        path = tmp_path / f"{name}.ign"
        path.write_bytes(body)
        result = validate(path)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
