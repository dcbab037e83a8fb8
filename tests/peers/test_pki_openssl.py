"""Peer tests: the real `openssl` accepts the chains, purposes and SANs mayu_py.pki issues."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import yaml

from mayu_py.command import run
from mayu_py.errors import CommandError
from mayu_py.pki import ClusterFacts, ClusterPKI, NodeIdentity
from tests.support.peers import require_peers

pytestmark = pytest.mark.peer

FACTS = ClusterFacts(
    name="mayu",
    domain="cluster.local",
    service_ip="10.96.0.1",
    api_endpoint="https://10.0.0.5:6443",
    etcd_members=(("c1", "10.0.0.5"),),
)
NODE = NodeIdentity(name="c1", role="controller", ips=("10.0.0.5", "fd00::5"))


def write_node(pki: ClusterPKI, root: Path) -> Path:
    """Write the node's files under root as Ignition would; return root/etc/kubernetes/pki."""
    for spec in pki.node_files(NODE, FACTS):
        target = root / spec.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(spec.contents)
        target.chmod(spec.mode)
    return root / "etc/kubernetes/pki"


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    require_peers("openssl")
    return write_node(ClusterPKI.load_or_create(tmp_path / "pki", "mayu"), tmp_path / "root")


def verify(ca: Path, cert: Path, purpose: str) -> str:
    return run(["openssl", "verify", "-purpose", purpose, "-CAfile", ca, cert]).stdout


@pytest.mark.parametrize(
    ("ca", "cert", "purpose"),
    [
        ("ca.crt", "apiserver.crt", "sslserver"),
        ("ca.crt", "apiserver-kubelet-client.crt", "sslclient"),
        ("ca.crt", "../../../var/lib/kubelet/pki/kubelet.crt", "sslserver"),
        ("etcd/ca.crt", "etcd/server.crt", "sslserver"),
        ("etcd/ca.crt", "etcd/peer.crt", "sslserver"),
        ("etcd/ca.crt", "etcd/peer.crt", "sslclient"),
        ("etcd/ca.crt", "etcd/healthcheck-client.crt", "sslclient"),
        ("etcd/ca.crt", "apiserver-etcd-client.crt", "sslclient"),
        ("front-proxy-ca.crt", "front-proxy-client.crt", "sslclient"),
    ],
)
def test_chain_verifies(node_dir: Path, ca: str, cert: str, purpose: str) -> None:
    assert verify(node_dir / ca, node_dir / cert, purpose).strip().endswith(": OK")


@pytest.mark.parametrize(
    ("ca", "cert"),
    [
        ("ca.crt", "etcd/server.crt"),
        ("etcd/ca.crt", "apiserver.crt"),
        ("ca.crt", "front-proxy-client.crt"),
    ],
)
def test_wrong_ca_of_same_cluster_is_rejected(node_dir: Path, ca: str, cert: str) -> None:
    with pytest.raises(CommandError):
        verify(node_dir / ca, node_dir / cert, "any")


def test_certificate_does_not_verify_against_another_cluster(
    node_dir: Path, tmp_path: Path
) -> None:
    other = write_node(ClusterPKI.load_or_create(tmp_path / "other", "mayu"), tmp_path / "root2")
    with pytest.raises(CommandError) as failure:
        verify(other / "ca.crt", node_dir / "apiserver.crt", "sslserver")
    assert "verification failed" in failure.value.stderr
    with pytest.raises(CommandError):
        verify(other / "etcd/ca.crt", node_dir / "etcd/server.crt", "sslserver")


def subject_alt_name(cert: Path) -> set[str]:
    """The SAN entries as openssl prints them ("DNS:x", "IP Address:y")."""
    text = run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert]).stdout
    header, _, entries = text.partition("\n")
    assert header.startswith("X509v3 Subject Alternative Name"), text
    return {entry.strip() for entry in entries.split(",")}


def test_apiserver_sans(node_dir: Path) -> None:
    assert subject_alt_name(node_dir / "apiserver.crt") == {
        "DNS:c1",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "IP Address:10.0.0.5",
        "IP Address:10.96.0.1",
        "IP Address:127.0.0.1",
        "IP Address:FD00:0:0:0:0:0:0:5",
    }


def test_etcd_sans(node_dir: Path) -> None:
    for name in ("etcd/server.crt", "etcd/peer.crt"):
        assert subject_alt_name(node_dir / name) == {
            "DNS:c1",
            "DNS:localhost",
            "IP Address:127.0.0.1",
            "IP Address:0:0:0:0:0:0:0:1",
            "IP Address:10.0.0.5",
            "IP Address:FD00:0:0:0:0:0:0:5",
        }, name


def public_key(argv: list[str | Path]) -> str:
    return run(argv).stdout


def test_keys_match_certificates(node_dir: Path) -> None:
    for cert in sorted(node_dir.rglob("*.crt")):
        key = cert.with_suffix(".key")
        if not key.exists():
            continue
        from_cert = public_key(["openssl", "x509", "-noout", "-pubkey", "-in", cert])
        from_key = public_key(["openssl", "pkey", "-pubout", "-in", key])
        assert from_cert == from_key, cert
    sa = public_key(["openssl", "pkey", "-pubout", "-in", node_dir / "sa.key"])
    assert sa == (node_dir / "sa.pub").read_text()
    assert (
        "Public-Key: (2048 bit)"
        in run(["openssl", "pkey", "-in", node_dir / "sa.pub", "-pubin", "-noout", "-text"]).stdout
    )


def test_kubeconfig_client_certificates_verify(node_dir: Path, tmp_path: Path) -> None:
    etc = node_dir.parent
    for name in ("kubelet.conf", "controller-manager.conf", "scheduler.conf"):
        document = yaml.safe_load((etc / name).read_text())
        user = document["users"][0]["user"]
        ca = tmp_path / f"{name}.ca.crt"
        ca.write_bytes(
            base64.b64decode(document["clusters"][0]["cluster"]["certificate-authority-data"])
        )
        client = tmp_path / f"{name}.crt"
        client.write_bytes(base64.b64decode(user["client-certificate-data"]))
        assert verify(ca, client, "sslclient").strip().endswith(": OK")
        assert ca.read_text() == (node_dir / "ca.crt").read_text()
    subject = run(["openssl", "x509", "-noout", "-subject", "-in", tmp_path / "kubelet.conf.crt"])
    assert "O = system:nodes" in subject.stdout and "CN = system:node:c1" in subject.stdout


def test_the_drain_certificate_verifies_as_a_short_lived_client(tmp_path: Path) -> None:
    require_peers("openssl")
    pki = ClusterPKI.load_or_create(tmp_path / "pki", "mayu")
    document = yaml.safe_load(pki.drainer_kubeconfig("h1", FACTS))
    ca = tmp_path / "ca.crt"
    ca.write_bytes(
        base64.b64decode(document["clusters"][0]["cluster"]["certificate-authority-data"])
    )
    client = tmp_path / "drainer.crt"
    client.write_bytes(base64.b64decode(document["users"][0]["user"]["client-certificate-data"]))
    assert verify(ca, client, "sslclient").strip().endswith(": OK")
    with pytest.raises(CommandError):
        verify(ca, client, "sslserver")  # a client identity only
    subject = run(["openssl", "x509", "-noout", "-subject", "-in", client]).stdout
    assert "O = mayu:drainers" in subject and "CN = mayu:drainer:h1" in subject
    # still valid in 50 minutes, no longer in an hour and a minute (openssl's -attime)
    now = int(time.time())
    run(["openssl", "verify", "-attime", str(now + 3000), "-CAfile", ca, client])
    with pytest.raises(CommandError) as expired:
        run(["openssl", "verify", "-attime", str(now + 3660), "-CAfile", ca, client])
    assert "certificate has expired" in expired.value.stderr
